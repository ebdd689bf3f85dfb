"""course.edm and course.samplers (notebook 09's library): closed forms, conversions, measured orders,
DDIM = Euler, and cross-checks against diffusers' schedulers (skipped when diffusers is not installed;
nothing is downloaded: the schedulers are built from their configuration alone)."""
from __future__ import annotations

import math

import pytest
import torch

from course import data2d
from course.ddim import ddim_sample, ddim_timesteps
from course.edm import (GMMDenoiser, edm_denoiser, edm_loss, edm_precond, eps_to_x0, gmm_denoiser, karras_sigmas,
                        pf_ode_derivative, v_target, v_to_x0, vp_eps_to_denoiser, vp_sigmas, x0_to_eps)
from course.ode import convergence_order
from course.oracles import gmm_eps_model
from course.samplers import (CountingDenoiser, ddim_sigma_sampler, dpmpp_2m_sampler, euler_sampler, heun_sampler,
                             heun_step, reference_solution, steps_for_nfe)
from course.schedules import make_schedule

MIX = data2d.two_gaussians_mixture()


def test_karras_sigmas_shape_ends_and_rho():
    s = karras_sigmas(10, 0.002, 80.0)
    assert s.shape == (11,) and s.dtype == torch.float32
    assert s[0] == pytest.approx(80.0) and s[-2] == pytest.approx(0.002, rel=1e-5) and s[-1] == 0
    assert bool((s[1:] < s[:-1]).all())
    inv = s[:-1].double() ** (1 / 7)
    assert torch.allclose(inv[1:] - inv[:-1], (inv[1] - inv[0]).expand(9), rtol=1e-3)


def test_edm_precond_limits_and_unit_variance_target():
    sigma = torch.tensor([1e-6, 0.5, 1e4])
    c_skip, c_out, c_in, c_noise = edm_precond(sigma, 0.5)
    assert c_skip[0] == pytest.approx(1.0) and c_out[0] == pytest.approx(0.0, abs=1e-5) and c_skip[2] < 1e-6
    # for data of std sigma_data the effective target (x0 - c_skip x) / c_out has unit variance
    var_target = (c_skip ** 2 * (sigma ** 2 + 0.25) - 2 * c_skip * 0.25 + 0.25) / c_out ** 2
    assert torch.allclose(var_target[1:], torch.ones(2), rtol=1e-4)
    assert torch.allclose(c_noise, sigma.log() / 4)


def test_gmm_denoiser_single_gaussian_closed_form():
    mu, s = torch.tensor([[1.0, -2.0]]), torch.tensor([0.7])
    x, sigma = torch.randn(50, 2) * 3, torch.rand(50) * 5 + 0.01
    got = gmm_denoiser(x, sigma, mu, s, torch.ones(1))
    expected = mu + (s ** 2 / (s ** 2 + sigma ** 2))[:, None] * (x - mu)
    assert torch.allclose(got, expected, atol=1e-5)
    D = GMMDenoiser(mu, s, torch.ones(1))
    assert D.sigma_data == pytest.approx(math.sqrt(0.49 + 1.0 * 0 + ((1.0 - 1.0) ** 2)), rel=1e-5)
    assert torch.allclose(pf_ode_derivative(D, x, sigma), (x - expected) / sigma[:, None], atol=1e-4)


def test_edm_loss_of_the_exact_denoiser_is_the_posterior_variance():
    """A network that makes D exact (F = (D* - c_skip x) / c_out) has the loss E[lambda Var(x0 | x)] (Gaussian data)."""
    s, sd = 0.8, 0.8
    D_star = GMMDenoiser(torch.zeros(1, 2), torch.tensor([s]), torch.ones(1))
    sigma = torch.full((4000,), 1.3)

    def F(x_in, c_noise):
        sig = torch.exp(4 * c_noise)
        c_skip, c_out, c_in, _ = edm_precond(sig, sd)
        x = x_in / c_in[:, None]
        return (D_star(x, sig) - c_skip[:, None] * x) / c_out[:, None]

    x0, noise = s * torch.randn(4000, 2), torch.randn(4000, 2)
    loss = float(edm_loss(F, x0, sigma, noise, sd))
    post_var = 2 * s ** 2 * 1.3 ** 2 / (s ** 2 + 1.3 ** 2)  # summed over 2 dimensions
    weight = (1.3 ** 2 + sd ** 2) / (1.3 * sd) ** 2
    assert loss == pytest.approx(weight * post_var, rel=0.08)
    x = x0 + 1.3 * noise
    assert torch.allclose(edm_denoiser(F, x, sigma, sd), D_star(x, sigma), atol=1e-4)


def test_conversions_roundtrip_on_a_general_path():
    x0, eps = torch.randn(20, 3), torch.randn(20, 3)
    a, s = torch.rand(20) + 0.1, torch.rand(20) + 0.1
    xt = a[:, None] * x0 + s[:, None] * eps
    assert torch.allclose(x0_to_eps(xt, x0, a, s), eps, atol=1e-4)
    assert torch.allclose(eps_to_x0(xt, eps, a, s), x0, atol=1e-4)
    assert torch.allclose(v_to_x0(xt, v_target(x0, eps, a, s), a, s), x0, atol=1e-4)


def test_vp_eps_model_as_denoiser_is_exact_on_the_grid():
    betas, alpha_bar = make_schedule(1000, "linear")
    D_vp = vp_eps_to_denoiser(gmm_eps_model(MIX.means, MIX.stds, MIX.weights, alpha_bar), alpha_bar)
    steps = torch.tensor([0, 10, 200, 600, 999])
    sigma = vp_sigmas(alpha_bar)[steps]
    x = torch.randn(5, 2) * (sigma[:, None] + 1)
    assert torch.allclose(D_vp(x, sigma), GMMDenoiser.from_mixture(MIX)(x, sigma), rtol=1e-3, atol=1e-3)


def test_ddim_is_euler_is_first_order_dpm_solver():
    """04's DDIM (eta = 0) on DDPM's variable = Euler on EDM's, on the converted eps-model (float32 rounding)."""
    betas, alpha_bar = make_schedule(1000, "linear")
    eps_model = gmm_eps_model(MIX.means, MIX.stds, MIX.weights, alpha_bar)
    ts = ddim_timesteps(1000, 12)
    x_T = torch.randn(200, 2)
    x_vp = ddim_sample(eps_model, x_T, ts, alpha_bar)
    sig = torch.cat([vp_sigmas(alpha_bar)[ts], torch.zeros(1)])
    x_edm = x_T * (1 + sig[0] ** 2).sqrt()
    D = vp_eps_to_denoiser(eps_model, alpha_bar)
    for sampler in (euler_sampler, ddim_sigma_sampler):
        assert torch.allclose(sampler(D, x_edm, sig), x_vp, atol=1e-4)


def test_measured_orders_and_nfe():
    D = GMMDenoiser.from_mixture(MIX)
    x = 20.0 * torch.randn(64, 2, dtype=torch.float64)
    ref = reference_solution(D, x, 20.0, 0.05, 1000)
    nfes = [32, 64, 128]
    for name, sampler, order in [("euler", euler_sampler, 1), ("heun", heun_sampler, 2), ("dpmpp_2m", dpmpp_2m_sampler, 2)]:
        errs = []
        for nfe in nfes:
            sig = karras_sigmas(steps_for_nfe(name, nfe) + 1, 0.05, 20.0).double()[:-1]
            errs.append(float((sampler(D, x, sig) - ref).norm(dim=1).mean()))
        assert abs(convergence_order([1 / n for n in nfes], errs) - order) < 0.3, (name, errs)
    counted = CountingDenoiser(D)
    heun_sampler(counted, x, karras_sigmas(6, 0.05, 20.0).double())
    assert counted.nfe == 2 * 6 - 1


def test_heun_step_skips_the_correction_on_the_step_to_zero():
    D = GMMDenoiser.from_mixture(MIX)
    counted, x = CountingDenoiser(D), torch.randn(8, 2)
    out = heun_step(counted, x, 0.5, 0.0)
    assert counted.nfe == 1 and torch.allclose(out, D(x, torch.full((8,), 0.5)))


def test_churn_keeps_a_gaussian():
    mu, s = torch.tensor([[0.5, -1.0]]), torch.tensor([0.5])
    D = GMMDenoiser(mu, s, torch.ones(1))
    x = 40 * torch.randn(4000, 2, generator=torch.Generator().manual_seed(0))
    out = heun_sampler(D, x, karras_sigmas(40, 0.005, 40.0), s_churn=10.0, generator=torch.Generator().manual_seed(1))
    assert torch.allclose(out.mean(0), mu[0], atol=0.05) and torch.allclose(out.std(0), torch.full((2,), 0.5), rtol=0.06)


# ---------------------------------------------------------------------------------------------
# diffusers cross-checks: the same denoiser through diffusers' schedulers (prediction_type="sample")
# ---------------------------------------------------------------------------------------------
def _diffusers():
    return pytest.importorskip("diffusers", reason="diffusers is not installed (a dev dependency: pip install -e '.[dev]')")


def _run_scheduler(sched, D, x_edm, vp_input: bool):
    """Walk a diffusers scheduler with the denoiser D as its 'sample'-predicting model."""
    sample = x_edm / (1 + sched.sigmas[0] ** 2).sqrt() if vp_input else x_edm
    for t in sched.timesteps:
        i = sched.step_index if sched.step_index is not None else 0
        sigma = float(sched.sigmas[i])
        x = sample * math.sqrt(1 + sigma ** 2) if vp_input else sample
        x0 = D(x, torch.full((x.shape[0],), sigma))
        sample = sched.step(x0, t, sample).prev_sample
    return sample


def _case(n_levels=None):
    torch.manual_seed(0)
    return GMMDenoiser.from_mixture(MIX), torch.randn(256, 2)


@pytest.mark.parametrize("n", [5, 12, 25])
def test_euler_and_karras_sigmas_match_diffusers(n):
    diffusers = _diffusers()
    sched = diffusers.EulerDiscreteScheduler(use_karras_sigmas=True, prediction_type="sample")
    sched.set_timesteps(n)
    sig = sched.sigmas.float()
    assert torch.allclose(karras_sigmas(n, float(sig[-2]), float(sig[0])), sig, rtol=1e-5, atol=1e-6)
    D, noise = _case()
    x = float(sig[0]) * noise
    ours, theirs = euler_sampler(D, x, sig), _run_scheduler(sched, D, x, vp_input=False)
    assert torch.allclose(ours, theirs, rtol=1e-4, atol=1e-4), float((ours - theirs).abs().max())


@pytest.mark.parametrize("n", [5, 12, 25])
def test_heun_matches_diffusers(n):
    diffusers = _diffusers()
    sched = diffusers.HeunDiscreteScheduler(use_karras_sigmas=True, prediction_type="sample")
    sched.set_timesteps(n)
    levels = torch.unique_consecutive(sched.sigmas.float())  # diffusers repeats each inner level for the corrector
    assert levels.shape == (n + 1,)
    D, noise = _case()
    x = float(levels[0]) * noise
    counted = CountingDenoiser(D)
    ours, theirs = heun_sampler(counted, x, levels), _run_scheduler(sched, D, x, vp_input=False)
    assert counted.nfe == len(sched.timesteps) == 2 * n - 1
    assert torch.allclose(ours, theirs, rtol=1e-4, atol=1e-4), float((ours - theirs).abs().max())


@pytest.mark.parametrize("n", [5, 12, 25])
def test_dpmpp_2m_matches_diffusers(n):
    diffusers = _diffusers()
    sched = diffusers.DPMSolverMultistepScheduler(use_karras_sigmas=True, prediction_type="sample",
                                                  algorithm_type="dpmsolver++", solver_order=2, final_sigmas_type="zero")
    sched.set_timesteps(n)
    sig = sched.sigmas.float()
    assert sig.shape == (n + 1,) and sig[-1] == 0
    D, noise = _case()
    x = float(sig[0]) * noise
    ours, theirs = dpmpp_2m_sampler(D, x, sig), _run_scheduler(sched, D, x, vp_input=True)
    assert torch.allclose(ours, theirs, rtol=1e-4, atol=1e-4), float((ours - theirs).abs().max())

"""The DDIM toolkit (``course.ddim``) against closed forms: DDPM's posterior, the Euler step of the
probability-flow ODE, the exact Gaussian predictor, and the geometry of slerp."""
from __future__ import annotations

import pytest
import torch

from course import ddim
from course.ddpm import predict_x0, q_posterior
from course.oracles import gaussian_eps_model
from course.schedules import make_schedule, posterior_variance

T = 1000
BETAS, ALPHA_BAR = make_schedule(T, "linear")
M = torch.tensor([0.5, -1.0])
C = torch.tensor([[0.64, 0.40], [0.40, 0.41]])


@pytest.fixture
def gen():
    return torch.Generator().manual_seed(0)


@pytest.mark.parametrize("T_, n", [(1000, 10), (1000, 20), (1000, 1000), (37, 5), (10, 2)])
def test_timesteps_descend_evenly_from_T_minus_1_to_0(T_, n):
    """Are the steps n integers, descending, from T-1 to 0, each within 1/2 of the even grid?"""
    ts = ddim.ddim_timesteps(T_, n)
    assert ts.dtype == torch.long and ts.shape == (n,)
    assert int(ts[0]) == T_ - 1 and int(ts[-1]) == 0
    assert bool((ts[:-1] > ts[1:]).all())
    assert bool(((ts.double() - torch.linspace(T_ - 1, 0, n, dtype=torch.float64)).abs() <= 0.5).all())


def test_timesteps_reject_too_few_or_too_many_steps():
    """Is a sub-sequence that cannot start at T-1 and end at 0 refused?"""
    for n in (0, 1, T + 1):
        with pytest.raises(ValueError):
            ddim.ddim_timesteps(T, n)


def test_sigma_with_eta_one_on_single_steps_is_ddpm_posterior_std():
    """With eta = 1 and t_prev = t - 1, is sigma DDPM's sqrt(beta_tilde_t) (Song et al. 2020, eq. 16)?"""
    beta_tilde = posterior_variance(BETAS, ALPHA_BAR)
    for t in (1, 10, 500, 999):
        assert torch.allclose(ddim.ddim_sigma(t, t - 1, ALPHA_BAR, 1.0), beta_tilde[t].sqrt(), rtol=1e-3)


def test_sigma_is_zero_for_the_last_step_and_linear_in_eta():
    """Does the step to the data (t_prev = -1) add no noise, and does sigma scale with eta?"""
    assert float(ddim.ddim_sigma(0, -1, ALPHA_BAR, 1.0)) == 0.0
    assert float(ddim.ddim_sigma(400, -1, ALPHA_BAR, 1.0)) == 0.0
    s1, s_half = ddim.ddim_sigma(700, 300, ALPHA_BAR, 1.0), ddim.ddim_sigma(700, 300, ALPHA_BAR, 0.5)
    assert s1.dim() == 0 and torch.allclose(s_half, 0.5 * s1)
    assert float(ddim.ddim_sigma(300, 700, ALPHA_BAR, 0.0)) == 0.0  # inversion direction: no NaN


def test_step_with_eta_one_is_the_ddpm_ancestral_step(gen):
    """Is a one-step DDIM move with eta = 1 the posterior mean q(x_{t-1} | x_t, x0_hat) plus sqrt(beta_tilde) z?"""
    xt, eps, z = (torch.randn(64, 2, generator=gen) for _ in range(3))
    t = 400
    tb = torch.full((64,), t, dtype=torch.long)
    mean, var = q_posterior(predict_x0(xt, tb, eps, ALPHA_BAR), xt, tb, BETAS, ALPHA_BAR)
    expected = mean + var.sqrt()[:, None] * z
    assert torch.allclose(ddim.ddim_step(eps, xt, t, t - 1, ALPHA_BAR, 1.0, z), expected, atol=1e-5)


def test_step_with_eta_zero_is_an_euler_step_of_the_pf_ode(gen):
    """Is the eta = 0 step Euler's step x_bar + (s_prev - s_t) eps in x_bar = x / sqrt(ab), s = sqrt((1 - ab) / ab)?"""
    xt, eps = torch.randn(64, 2, generator=gen), torch.randn(64, 2, generator=gen)
    t, t_prev = 800, 350
    ab_t, ab_prev = ALPHA_BAR[t].double(), ALPHA_BAR[t_prev].double()
    s_t, s_prev = ((1 - ab_t) / ab_t).sqrt(), ((1 - ab_prev) / ab_prev).sqrt()
    euler = (xt.double() / ab_t.sqrt() + (s_prev - s_t) * eps.double()) * ab_prev.sqrt()
    got = ddim.ddim_step(eps, xt, t, t_prev, ALPHA_BAR, 0.0, None)
    assert torch.allclose(got.double(), euler, atol=1e-5)


def test_final_step_returns_the_predicted_clean_point(gen):
    """Does the step to t_prev = -1 (alpha_bar = 1) return x0_hat, whatever eta?"""
    xt, eps, z = (torch.randn(8, 1, 4, 4, generator=gen) for _ in range(3))
    x0_hat = predict_x0(xt, torch.full((8,), 5, dtype=torch.long), eps, ALPHA_BAR)
    for eta in (0.0, 1.0):
        assert torch.allclose(ddim.ddim_step(eps, xt, 5, -1, ALPHA_BAR, eta, z), x0_hat, atol=1e-6)


@pytest.mark.parametrize("eta", [0.0, 1.0])
def test_sampler_with_the_gaussian_oracle_has_the_closed_form_law(gen, eta):
    """Do DDIM samples driven by the exact Gaussian predictor have gaussian_ddim_moments' mean and covariance?"""
    ts = ddim.ddim_timesteps(T, 10)
    x = ddim.ddim_sample(gaussian_eps_model(M, C, ALPHA_BAR), torch.randn(20_000, 2, generator=gen), ts,
                         ALPHA_BAR, eta, generator=gen)
    mean, cov = ddim.gaussian_ddim_moments(M, C, ts, ALPHA_BAR, eta)
    assert torch.allclose(x.mean(0).double(), mean, atol=0.03)
    assert torch.allclose(torch.cov(x.T).double(), cov, atol=0.03)


def test_closed_form_law_approaches_the_data_as_steps_grow():
    """Does the exact DDIM output law tend to N(m, C), and shrink the covariance with few steps?"""
    traces = []
    for n in (10, 50, 1000):
        mean, cov = ddim.gaussian_ddim_moments(M, C, ddim.ddim_timesteps(T, n), ALPHA_BAR, 0.0)
        traces.append(float(cov.trace()))
    assert traces[0] < traces[1] < traces[2] <= float(C.trace()) + 1e-6
    assert torch.allclose(mean, M.double(), atol=0.01) and torch.allclose(cov, C.double(), atol=0.01)


def test_inversion_then_sampling_reconstructs_the_data(gen):
    """Does DDIM inversion with the exact predictor encode data into codes that decode back to it?"""
    model = gaussian_eps_model(M, C, ALPHA_BAR)
    x0 = M + torch.randn(500, 2, generator=gen) @ torch.linalg.cholesky(C).T
    errors = {}
    for n in (20, 200):
        ts = ddim.ddim_timesteps(T, n)
        codes = ddim.ddim_invert(model, x0, ts, ALPHA_BAR)
        errors[n] = float((ddim.ddim_sample(model, codes, ts, ALPHA_BAR) - x0).norm(dim=1).mean())
    assert errors[200] < 0.02 and errors[200] < errors[20] / 4
    assert abs(float(codes.std()) - 1) < 0.15


def test_walk_draws_no_noise_when_eta_is_zero():
    """Does the deterministic sampler leave the generator untouched (same output with or without it)?"""
    model = gaussian_eps_model(M, C, ALPHA_BAR)
    g = torch.Generator().manual_seed(3)
    x_T = torch.randn(16, 2, generator=g)
    state = g.get_state()
    a = ddim.ddim_sample(model, x_T, ddim.ddim_timesteps(T, 8), ALPHA_BAR, 0.0, generator=g)
    assert torch.equal(g.get_state(), state)
    assert torch.equal(a, ddim.ddim_sample(model, x_T, ddim.ddim_timesteps(T, 8), ALPHA_BAR, 0.0))


def test_slerp_end_points_arc_and_shapes(gen):
    """Does slerp start at z0, end at z1, keep equal norms along the arc, and work row by row on images?"""
    z0, z1 = torch.randn(6, 1, 3, 3, generator=gen), torch.randn(6, 1, 3, 3, generator=gen)
    assert torch.allclose(ddim.slerp(z0, z1, 0.0), z0, atol=1e-5)
    assert torch.allclose(ddim.slerp(z0, z1, 1.0), z1, atol=1e-5)
    u0 = torch.nn.functional.normalize(torch.randn(5, 16, generator=gen), dim=1)
    u1 = torch.nn.functional.normalize(torch.randn(5, 16, generator=gen), dim=1)
    for alpha in (0.25, 0.5, 0.9):
        assert torch.allclose(ddim.slerp(u0, u1, alpha).norm(dim=1), torch.ones(5), atol=1e-5)
    e0, e1 = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 1.0]])
    assert torch.allclose(ddim.slerp(e0, e1, 1 / 3), torch.tensor([[3 ** 0.5 / 2, 0.5]]), atol=1e-6)
    same = ddim.slerp(e0, 2 * e0, 0.5)  # parallel rows: falls back to linear interpolation, no NaN
    assert torch.allclose(same, torch.tensor([[1.5, 0.0]]))

"""Hidden tests of notebook 09 (samplers). Inputs are drawn at grading time from ``rng``; expected
answers come from closed forms (the preconditioning of EDM Table 1, the conversions' identities) and
from the course's reference samplers run in float64 on exact mixture denoisers in the grader's process."""
from __future__ import annotations

import math

import torch

from course import edm, samplers
from course.edm import GMMDenoiser
from course.schedules import make_schedule
from grader.engine.api import Hint, Mismatch, Ref, build, expect, expect_close, exercise
from grader.public.nb09_samplers import (check_karras, check_precond, check_sampler_output,
                                         denoiser_variants, loss_variants, mixture_denoiser,
                                         sampler_expected, toy_network, v_to_x0_hints, vp_case)


def random_mixture(rng, k=3, d=2):
    means = 2 * torch.randn(k, d, generator=rng)
    stds = 0.1 + 0.5 * torch.rand(k, generator=rng)
    weights = torch.rand(k, generator=rng) + 0.2
    return means, stds, weights / weights.sum()


def log_uniform(rng, n, lo, hi):
    return torch.exp(math.log(lo) + (math.log(hi) - math.log(lo)) * torch.rand(n, generator=rng))


def alpha_sigma(rng, n, vp=True):
    ab = 0.02 + 0.96 * torch.rand(n, generator=rng)
    a, s = ab.sqrt(), (1 - ab).sqrt()
    if not vp:  # a general path: alpha^2 + sigma^2 != 1
        a, s = a * (0.5 + torch.rand(n, generator=rng)), s * (0.5 + torch.rand(n, generator=rng))
    return a, s


@exercise("karras_sigmas")
def test_karras_sigmas_random(sub, rng):
    """karras_sigmas with random n, range and rho"""
    n = int(torch.randint(3, 30, (1,), generator=rng))
    smin = float(log_uniform(rng, 1, 1e-3, 0.1))
    smax = float(log_uniform(rng, 1, 5.0, 160.0))
    rho = float(2 + 8 * torch.rand(1, generator=rng))
    check_karras(sub.call("karras_sigmas", n, smin, smax, rho), n, smin, smax, rho,
                 f"karras_sigmas({n}, {smin:.4g}, {smax:.4g}, rho={rho:.3g})")


@exercise("karras_sigmas")
def test_karras_sigmas_default_rho(sub, rng):
    """karras_sigmas uses rho = 7 by default"""
    n = int(torch.randint(4, 20, (1,), generator=rng))
    check_karras(sub.call("karras_sigmas", n, 0.002, 80.0), n, 0.002, 80.0, 7.0, f"karras_sigmas({n}, 0.002, 80.0)")


@exercise("x0_to_eps")
def test_x0_to_eps_general_path(sub, rng):
    """x0_to_eps on random points of a general path x_t = alpha x0 + sigma eps"""
    x0, eps = torch.randn(32, 3, generator=rng), torch.randn(32, 3, generator=rng)
    a, s = alpha_sigma(rng, 32, vp=False)
    xt = a[:, None] * x0 + s[:, None] * eps
    expect_close(sub.call("x0_to_eps", xt, x0, a, s), eps, "x0_to_eps(xt, x0, alpha, sigma)", rtol=1e-3, atol=1e-4, hints=[
        Hint((xt - x0) / s[:, None], "x_t = alpha x0 + sigma eps: subtract alpha * x0, not x0."),
        Hint((xt - a[:, None] * x0) * s[:, None], "divide by sigma, do not multiply."),
        Hint((xt - a[:, None] ** 2 * x0) / s[:, None], "the coefficient of x0 is alpha, not alpha^2 (alpha is never alpha_bar)."),
    ])


@exercise("eps_to_x0")
def test_eps_to_x0_general_path(sub, rng):
    """eps_to_x0 on random points of a general path"""
    x0, eps = torch.randn(32, 3, generator=rng), torch.randn(32, 3, generator=rng)
    a, s = alpha_sigma(rng, 32, vp=False)
    xt = a[:, None] * x0 + s[:, None] * eps
    expect_close(sub.call("eps_to_x0", xt, eps, a, s), x0, "eps_to_x0(xt, eps, alpha, sigma)", rtol=1e-3, atol=1e-4, hints=[
        Hint((xt - s[:, None] * eps) * a[:, None], "divide by alpha, do not multiply."),
        Hint((xt + s[:, None] * eps) / a[:, None], "x0 = (x_t - sigma eps) / alpha: the sign of the eps term is minus."),
        Hint((xt - eps) / a[:, None], "remove sigma * eps, not eps: the noise enters x_t scaled by sigma."),
    ])


@exercise("v_target")
def test_v_target_random(sub, rng):
    """v_target on random data, noise and coefficients"""
    x0, eps = torch.randn(32, 2, generator=rng), torch.randn(32, 2, generator=rng)
    a, s = alpha_sigma(rng, 32)
    expect_close(sub.call("v_target", x0, eps, a, s), a[:, None] * eps - s[:, None] * x0,
                 "v_target(x0, eps, alpha, sigma)", rtol=1e-3, atol=1e-5, hints=[
        Hint(a[:, None] * x0 - s[:, None] * eps, "v = alpha * eps - sigma * x0: you swapped eps and x0."),
        Hint(a[:, None] * eps + s[:, None] * x0, "v = alpha eps - sigma x0: the x0 term has a minus sign."),
        Hint(eps - x0, "v weighs eps by alpha and x0 by sigma."),
        Hint(s[:, None] * eps - a[:, None] * x0, "v = alpha * eps - sigma * x0: alpha goes with eps, sigma with x0."),
    ])


@exercise("v_to_x0")
def test_v_to_x0_general_path(sub, rng):
    """v_to_x0 on a general path (alpha^2 + sigma^2 != 1)"""
    x0, eps = torch.randn(32, 2, generator=rng), torch.randn(32, 2, generator=rng)
    a, s = alpha_sigma(rng, 32, vp=False)
    xt = a[:, None] * x0 + s[:, None] * eps
    v = a[:, None] * eps - s[:, None] * x0
    expect_close(sub.call("v_to_x0", xt, v, a, s), x0, "v_to_x0(xt, v, alpha, sigma) with alpha^2 + sigma^2 != 1",
                 rtol=1e-3, atol=1e-4, hints=v_to_x0_hints(xt, v, a, s))


@exercise("v_to_x0")
def test_v_to_x0_vp_roundtrip(sub, rng):
    """v_to_x0 on a variance-preserving path"""
    x0, eps = torch.randn(16, 2, generator=rng), torch.randn(16, 2, generator=rng)
    a, s = alpha_sigma(rng, 16)
    xt = a[:, None] * x0 + s[:, None] * eps
    v = a[:, None] * eps - s[:, None] * x0
    expect_close(sub.call("v_to_x0", xt, v, a, s), x0, "v_to_x0(xt, v, alpha, sigma)", rtol=1e-3, atol=1e-4)


@exercise("edm_precond")
def test_edm_precond_random(sub, rng):
    """edm_precond on random sigmas and sigma_data"""
    sigma = log_uniform(rng, 16, 0.002, 80.0)
    sd = float(0.2 + 1.5 * torch.rand(1, generator=rng))
    check_precond(sub.call("edm_precond", sigma, sd), sigma, sd, f"edm_precond(sigma, {sd:.3g})")


@exercise("edm_precond")
def test_edm_precond_limits(sub, rng):
    """edm_precond: c_skip -> 1 and c_out -> 0 as sigma -> 0; unit-variance effective target"""
    sigma = torch.tensor([1e-4, 1.0, 1e3])
    got = sub.call("edm_precond", sigma, 1.0)
    check_precond(got, sigma, 1.0, "edm_precond(sigma, 1.0) at sigma = 1e-4, 1, 1e3")


@exercise("edm_denoiser")
def test_edm_denoiser_random(sub, rng):
    """edm_denoiser with a random fixed network at random sigmas"""
    seed = int(torch.randint(0, 10_000, (1,), generator=rng))
    F = Ref(toy_network, seed)
    x = 3 * torch.randn(24, 2, generator=rng)
    sigma = log_uniform(rng, 24, 0.01, 50.0)
    sd = float(0.3 + torch.rand(1, generator=rng))
    expected, hints = denoiser_variants(build(F), x, sigma, sd)
    expect_close(sub.call("edm_denoiser", F, x, sigma, sd), expected, "edm_denoiser(F, x, sigma, sigma_data)",
                 rtol=1e-3, atol=1e-5, hints=hints)


@exercise("edm_loss")
def test_edm_loss_random(sub, rng):
    """edm_loss with a random fixed network, data, sigmas and noise"""
    seed = int(torch.randint(0, 10_000, (1,), generator=rng))
    F = Ref(toy_network, seed)
    x0, noise = torch.randn(32, 2, generator=rng), torch.randn(32, 2, generator=rng)
    sigma = log_uniform(rng, 32, 0.05, 20.0)
    sd = float(0.3 + torch.rand(1, generator=rng))
    expected, hints = loss_variants(build(F), x0, sigma, noise, sd)
    expect_close(sub.call("edm_loss", F, x0, sigma, noise, sd), expected.float(), "edm_loss(F, x0, sigma, noise, sigma_data)",
                 rtol=1e-3, atol=1e-5, hints=hints)


def sampler_case(rng, kind, n_lo=4, n_hi=12):
    means, stds, weights = random_mixture(rng)
    D = Ref(mixture_denoiser, means, stds, weights)
    n = int(torch.randint(n_lo, n_hi, (1,), generator=rng))
    smax = float(log_uniform(rng, 1, 10.0, 80.0))
    sig = edm.karras_sigmas(n, float(log_uniform(rng, 1, 0.2, 1.0)), smax)  # the last step to 0 matters
    x = smax * torch.randn(48, 2, generator=rng)
    expected, hints = sampler_expected(kind, build(D), x, sig)
    return D, x, sig, expected, hints


@exercise("euler_sampler")
def test_euler_sampler_random_mixture(sub, rng):
    """euler_sampler on a random mixture's exact denoiser"""
    D, x, sig, expected, hints = sampler_case(rng, "euler")
    check_sampler_output(sub.call("euler_sampler", D, x, sig), expected, hints, f"euler_sampler(D, x, sigmas) with {len(sig) - 1} steps")


@exercise("euler_sampler")
def test_euler_sampler_one_step_is_denoising(sub, rng):
    """euler_sampler with one step to 0 returns D(x, sigma_max)"""
    means, stds, weights = random_mixture(rng)
    D = Ref(mixture_denoiser, means, stds, weights)
    x = 5 * torch.randn(16, 2, generator=rng)
    sig = torch.tensor([5.0, 0.0])
    expect_close(sub.call("euler_sampler", D, x, sig), GMMDenoiser(means, stds, weights)(x, torch.full((16,), 5.0)),
                 "euler_sampler(D, x, [5, 0]) (one step straight to the data is D(x, 5))", rtol=1e-3, atol=1e-4)


@exercise("heun_sampler", weight=2.0)
def test_heun_sampler_random_mixture(sub, rng):
    """heun_sampler (no churn) on a random mixture's exact denoiser"""
    D, x, sig, expected, hints = sampler_case(rng, "heun")
    check_sampler_output(sub.call("heun_sampler", D, x, sig), expected, hints, f"heun_sampler(D, x, sigmas) with {len(sig) - 1} steps")


@exercise("heun_sampler")
def test_heun_sampler_churn_statistics(sub, rng):
    """heun_sampler with churn: samples of a Gaussian with the right moments, and random"""
    mu = torch.randn(2, generator=rng)
    s = float(0.3 + 0.4 * torch.rand(1, generator=rng))
    D = Ref(mixture_denoiser, mu[None], torch.tensor([s]), torch.ones(1))
    n = 3000
    x = 40.0 * torch.randn(n, 2, generator=rng)
    sig = edm.karras_sigmas(24, 0.005, 40.0)
    got = sub.call("heun_sampler", D, x, sig, s_churn=30.0, timeout=60)
    det = sub.call("heun_sampler", D, x, sig, timeout=60)
    check_sampler_output(det, *sampler_expected("heun", build(D), x, sig), "heun_sampler(D, x, sigmas) (no churn)")
    if not isinstance(got, torch.Tensor) or tuple(got.shape) != (n, 2) or not bool(torch.isfinite(got).all()):
        raise Mismatch([f"heun_sampler(D, x, sigmas, s_churn=30) should return finite samples of shape ({n}, 2)."])
    moved = float((got - det).norm(dim=1).mean())
    expect(moved > 0.05 * s, "heun_sampler(D, x, sigmas, s_churn=30) returned the same samples as without churn.",
           "Hint: with s_churn > 0 each step first adds fresh noise, x + sqrt(sigma_hat^2 - sigma^2) * randn_like(x), "
           "with sigma_hat = sigma (1 + gamma), gamma = min(s_churn / N, sqrt(2) - 1); then the Heun step starts at sigma_hat.")
    # the reference sampler with churn, run here with its own noise: the same statistics up to sampling error
    ref = samplers.heun_sampler(build(D), x, sig, s_churn=30.0, generator=torch.Generator().manual_seed(int(
        torch.randint(0, 2 ** 31 - 1, (1,), generator=rng)))).double()
    mean, std = got.double().mean(0), got.double().std(0)
    ref_mean, ref_std = ref.mean(0), ref.std(0)
    lines = []
    if float((mean - ref_mean).abs().max()) > 8 * s / math.sqrt(n) + 0.01:
        lines.append(f"their mean is {[round(v, 4) for v in mean.tolist()]}, expected about "
                     f"{[round(v, 4) for v in ref_mean.tolist()]}.")
    if float((std / ref_std - 1).abs().max()) > 0.06:
        lines.append(f"their standard deviations are {[round(v, 4) for v in std.tolist()]}, expected about "
                     f"{[round(v, 4) for v in ref_std.tolist()]}.")
    if lines:
        raise Mismatch(["heun_sampler with s_churn = 30 on a Gaussian's exact denoiser: the samples do not have the "
                        "statistics of EDM's Algorithm 2: " + " ".join(lines),
                        "Hint: add noise of std sqrt(sigma_hat^2 - sigma^2) (not sigma_hat - sigma), then take the Heun "
                        "step from sigma_hat (not sigma) to the next level; gamma = min(s_churn / N, sqrt(2) - 1) "
                        "with N = len(sigmas) - 1 steps."])


@exercise("dpmpp_2m_sampler", weight=2.0)
def test_dpmpp_2m_sampler_random_mixture(sub, rng):
    """dpmpp_2m_sampler on a random mixture's exact denoiser"""
    D, x, sig, expected, hints = sampler_case(rng, "dpmpp_2m")
    check_sampler_output(sub.call("dpmpp_2m_sampler", D, x, sig), expected, hints,
                         f"dpmpp_2m_sampler(D, x, sigmas) with {len(sig) - 1} steps")


@exercise("dpmpp_2m_sampler")
def test_dpmpp_2m_sampler_uneven_levels(sub, rng):
    """dpmpp_2m_sampler on unevenly spaced levels (the ratio r matters)"""
    means, stds, weights = random_mixture(rng)
    D = Ref(mixture_denoiser, means, stds, weights)
    inner = torch.sort(log_uniform(rng, 6, 0.02, 30.0), descending=True).values
    sig = torch.cat([torch.tensor([40.0]), inner, torch.zeros(1)])
    x = 40.0 * torch.randn(32, 2, generator=rng)
    expected, hints = sampler_expected("dpmpp_2m", build(D), x, sig)
    check_sampler_output(sub.call("dpmpp_2m_sampler", D, x, sig), expected, hints,
                         "dpmpp_2m_sampler(D, x, sigmas) on uneven levels")


@exercise("vp_eps_to_denoiser")
def test_vp_eps_to_denoiser_random(sub, rng):
    """vp_eps_to_denoiser of a random mixture's exact eps-model, at random DDPM steps"""
    means, stds, weights = random_mixture(rng)
    steps = torch.randint(0, 1000, (24,), generator=rng)
    sigma = edm.vp_sigmas(make_schedule(1000, "linear")[1])[steps]
    x = means[torch.randint(0, 3, (24,), generator=rng)] + sigma[:, None] * torch.randn(24, 2, generator=rng)
    eps_ref, alpha_bar, sigma, expected, hints = vp_case(steps, x, means, stds, weights)
    got = sub.probe("probe_vp_denoiser", eps_ref, alpha_bar, x, sigma)
    expect_close(got, expected, "vp_eps_to_denoiser(eps_model, alpha_bar)(x, sigma) at random DDPM steps' sigmas",
                 rtol=2e-3, atol=2e-3, hints=hints)


"""Hidden tests of notebook 03 (DDPM). Inputs are drawn at grading time from ``rng``; expected
answers come from the course library (``course.schedules``, ``course.ddpm``) and closed forms;
samplers are judged by their statistics under the exact eps-predictor of Gaussian data, whose
output distribution ``course.oracles.gaussian_chain_moments`` computes exactly."""
from __future__ import annotations

import math

import torch

from course import ddpm, oracles, schedules
from grader.engine.api import Hint, Ref, build, exercise, expect, expect_close, expect_moments, expect_scalar
from grader.public.nb03_ddpm import (WHERE_LOOP, col, expect_schedule_shape, gaussian_eps_model, generator,
                                     gmm_eps_model, log_variance_mistakes, loss_mistakes,
                                     moments_near, p_sample_mistakes, pixel_eps_model, posterior_mean_1d,
                                     posterior_mean_mistakes, posterior_mistakes, shifted, tanh_eps_model)


def random_schedule(rng, T: int | None = None):
    """(T, betas, alpha_bar) of a random linear or cosine schedule."""
    T = T or int(torch.randint(20, 200, (1,), generator=rng))
    if float(torch.rand(1, generator=rng)) < 0.5:
        betas = schedules.linear_beta_schedule(T, 1e-3, 0.1)
    else:
        betas = schedules.cosine_beta_schedule(T)
    return T, betas, schedules.alpha_bar_from_betas(betas)


def random_steps(rng, T: int, n: int, with_zero: bool = True) -> torch.Tensor:
    t = torch.randint(0 if with_zero else 1, T, (n,), generator=rng)
    if with_zero:
        t[0] = 0
    t[-1] = T - 1
    return t


def random_tanh_model(rng, T: int, d: int = 2) -> Ref:
    return Ref(tanh_eps_model, torch.randn(d, d, generator=rng), torch.randn(d, generator=rng), 2.0, T)


def random_gaussian(rng, d: int = 2, scale: float = 1.0):
    """(m, C): a random mean and a random covariance (eigenvalues between about 0.2 and 1.2, times scale)."""
    m = torch.randn(d, generator=rng)
    q, _ = torch.linalg.qr(torch.randn(d, d, generator=rng))
    eig = 0.2 + torch.rand(d, generator=rng)
    return m, scale * (q * eig) @ q.T


# -- linear_beta_schedule ---------------------------------------------------------------------
@exercise("linear_beta_schedule")
def test_linear_random(sub, rng):
    """linear_beta_schedule on a random T and random end points"""
    T = int(torch.randint(10, 1000, (1,), generator=rng))
    start = float(torch.rand(1, generator=rng)) * 1e-3 + 1e-4
    end = float(torch.rand(1, generator=rng)) * 0.05 + 0.01
    got = sub.call("linear_beta_schedule", T, start, end)
    what = f"linear_beta_schedule({T}, {start:.3g}, {end:.3g})"
    expect_schedule_shape(got, T, what)
    expected = schedules.linear_beta_schedule(T, start, end)
    expect_close(got, expected, what, rtol=1e-4, atol=1e-7, dtype=torch.float32, hints=[
        Hint(1 - expected, "you returned alphas = 1 - betas; the schedule is the betas."),
        Hint(start + (end - start) * torch.arange(T) / T,
             "the last beta should be beta_end: both end points belong to the schedule, so the T values are "
             "T - 1 equal steps apart."),
        Hint(schedules.alpha_bar_from_betas(expected), "you returned alpha_bar; the schedule is the betas."),
    ])


@exercise("linear_beta_schedule", weight=0.5)
def test_linear_defaults(sub, rng):
    """linear_beta_schedule(1000) uses Ho et al.'s defaults 1e-4 and 0.02"""
    got = sub.call("linear_beta_schedule", 1000)
    expect_schedule_shape(got, 1000, "linear_beta_schedule(1000)")
    expect_close(got, schedules.linear_beta_schedule(1000), "linear_beta_schedule(1000)", rtol=1e-4, atol=1e-7,
                 dtype=torch.float32)


# -- cosine_beta_schedule ---------------------------------------------------------------------
def cosine_mistakes(T: int, s: float = 0.008, max_beta: float = 0.999) -> list[Hint]:
    u = torch.arange(T + 1, dtype=torch.float64) / T
    f = torch.cos((u + s) / (1 + s) * math.pi / 2) ** 2
    no_square = torch.cos((u + s) / (1 + s) * math.pi / 2)
    shifted_u = (torch.arange(T + 1, dtype=torch.float64) - 1).clamp(min=0) / T
    f_shift = torch.cos((shifted_u + s) / (1 + s) * math.pi / 2) ** 2
    abar = f / f[0]
    return [
        Hint((1 - f[1:] / f[:-1]).float(),
             "the last beta is 1 (alpha_bar reaches 0 at t = T): clip the betas at max_beta."),
        Hint((1 - no_square[1:] / no_square[:-1]).clamp(max=max_beta).float(),
             "f(u) = cos^2(((u + s) / (1 + s)) pi / 2): the cosine is squared (Nichol & Dhariwal, eq. 17)."),
        Hint((1 - f_shift[1:] / f_shift[:-1]).clamp(max=max_beta).float(),
             "your betas are shifted by one step (t off by one): betas[t] = 1 - alpha_bar((t + 1) / T) / alpha_bar(t / T) "
             "for t = 0..T-1."),
        Hint(abar[1:].float(), "you returned alpha_bar; turn it into betas[t] = 1 - alpha_bar[t] / alpha_bar[t-1]."),
        Hint((1 - f[:-1] / f[1:]).clamp(max=max_beta).float(),
             "the ratio is upside down: betas[t] = 1 - alpha_bar((t + 1) / T) / alpha_bar(t / T)."),
    ]


@exercise("cosine_beta_schedule", weight=2.0)
def test_cosine_random_T(sub, rng):
    """cosine_beta_schedule on a random T"""
    T = int(torch.randint(20, 1000, (1,), generator=rng))
    got = sub.call("cosine_beta_schedule", T)
    expect_schedule_shape(got, T, f"cosine_beta_schedule({T})")
    expect_close(got, schedules.cosine_beta_schedule(T), f"cosine_beta_schedule({T})", rtol=1e-3, atol=1e-6,
                 dtype=torch.float32, hints=cosine_mistakes(T))


@exercise("cosine_beta_schedule")
def test_cosine_parameters(sub, rng):
    """cosine_beta_schedule honours s and max_beta"""
    T = int(torch.randint(8, 40, (1,), generator=rng))
    s, max_beta = 0.02, 0.3
    got = sub.call("cosine_beta_schedule", T, s=s, max_beta=max_beta)
    what = f"cosine_beta_schedule({T}, s={s}, max_beta={max_beta})"
    expect_schedule_shape(got, T, what)
    expect_close(got, schedules.cosine_beta_schedule(T, s, max_beta), what, rtol=1e-3, atol=1e-6,
                 dtype=torch.float32, hints=[
                     Hint(schedules.cosine_beta_schedule(T, s, 0.999),
                          "clip at the max_beta argument, not at a fixed 0.999."),
                     Hint(schedules.cosine_beta_schedule(T, 0.008, max_beta), "use the s argument, not a fixed 0.008."),
                 ] + cosine_mistakes(T, s, max_beta))


# -- q_sample ---------------------------------------------------------------------------------
def q_sample_mistakes(x0, t, eps, alpha_bar) -> list[Hint]:
    ab = col(alpha_bar[t], x0.ndim)
    return [
        Hint(ab * x0 + (1 - ab) * eps, "you used a variance where a std belongs: x_t = sqrt(alpha_bar[t]) x0 + "
                                       "sqrt(1 - alpha_bar[t]) eps (take square roots)."),
        Hint((1 - ab).sqrt() * x0 + ab.sqrt() * eps, "the two coefficients are swapped: x0 is scaled by "
                                                     "sqrt(alpha_bar[t]), the noise by sqrt(1 - alpha_bar[t])."),
        Hint(col(shifted(alpha_bar, t, -1), x0.ndim).sqrt() * x0 + (1 - col(shifted(alpha_bar, t, -1), x0.ndim)).sqrt() * eps,
             "t is off by one: with 0-based steps x_t uses alpha_bar[t], not alpha_bar[t - 1]."),
        Hint(col(shifted(alpha_bar, t, 1), x0.ndim).sqrt() * x0 + (1 - col(shifted(alpha_bar, t, 1), x0.ndim)).sqrt() * eps,
             "t is off by one: with 0-based steps x_t uses alpha_bar[t], not alpha_bar[t + 1]."),
    ]


@exercise("q_sample", weight=2.0)
def test_q_sample_points(sub, rng):
    """q_sample on random 2D points and steps"""
    T, betas, alpha_bar = random_schedule(rng)
    x0, eps = torch.randn(64, 2, generator=rng), torch.randn(64, 2, generator=rng)
    t = random_steps(rng, T, 64)
    expect_close(sub.call("q_sample", x0, t, eps, alpha_bar), ddpm.q_sample(x0, t, eps, alpha_bar),
                 "q_sample(x0, t, eps, alpha_bar)", hints=q_sample_mistakes(x0, t, eps, alpha_bar))


@exercise("q_sample")
def test_q_sample_images(sub, rng):
    """q_sample on a batch of images (B, 1, 8, 8): one step per image"""
    T, betas, alpha_bar = random_schedule(rng)
    x0, eps = torch.rand(6, 1, 8, 8, generator=rng) * 2 - 1, torch.randn(6, 1, 8, 8, generator=rng)
    t = random_steps(rng, T, 6)
    expect_close(sub.call("q_sample", x0, t, eps, alpha_bar), ddpm.q_sample(x0, t, eps, alpha_bar),
                 "q_sample on images (6, 1, 8, 8)", hints=q_sample_mistakes(x0, t, eps, alpha_bar))


# -- q_posterior ------------------------------------------------------------------------------
def expect_pair(got, what: str):
    expect(isinstance(got, (tuple, list)) and len(got) == 2,
           f"{what} should return a tuple (mean, variance); got {type(got).__name__}.")
    return got


@exercise("q_posterior", weight=2.0)
def test_q_posterior_random(sub, rng):
    """q_posterior on random points and steps"""
    T, betas, alpha_bar = random_schedule(rng)
    B = 32
    x0, xt = torch.randn(B, 2, generator=rng), torch.randn(B, 2, generator=rng)
    t = random_steps(rng, T, B)
    mean, var = ddpm.q_posterior(x0, xt, t, betas, alpha_bar)
    mean_got, var_got = expect_pair(sub.call("q_posterior", x0, xt, t, betas, alpha_bar), "q_posterior")
    var_hints, mean_hints = posterior_mistakes(x0, xt, t, betas, alpha_bar)
    expect_close(var_got, var, "the posterior variance beta_tilde[t], shape (B,)", rtol=1e-4, atol=1e-7,
                 hints=var_hints)
    expect_close(mean_got, mean, "the posterior mean", rtol=1e-4, atol=1e-4, hints=mean_hints)


@exercise("q_posterior")
def test_q_posterior_images(sub, rng):
    """q_posterior on images (B, 1, 8, 8): mean with x0's shape, variance (B,)"""
    T, betas, alpha_bar = random_schedule(rng)
    x0, xt = torch.rand(5, 1, 8, 8, generator=rng) * 2 - 1, torch.randn(5, 1, 8, 8, generator=rng)
    t = random_steps(rng, T, 5)
    mean, var = ddpm.q_posterior(x0, xt, t, betas, alpha_bar)
    mean_got, var_got = expect_pair(sub.call("q_posterior", x0, xt, t, betas, alpha_bar), "q_posterior")
    expect_close(mean_got, mean, "the posterior mean on images", rtol=1e-4, atol=1e-4)
    expect_close(var_got, var, "the posterior variance on images, shape (B,)", rtol=1e-4, atol=1e-7)


# -- predict_x0 -------------------------------------------------------------------------------
@exercise("predict_x0", weight=2.0)
def test_predict_x0_random(sub, rng):
    """predict_x0 on random points and steps"""
    T, betas, alpha_bar = random_schedule(rng)
    xt, eps = torch.randn(64, 2, generator=rng), torch.randn(64, 2, generator=rng)
    t = random_steps(rng, T, 64)
    ab = col(alpha_bar[t], 2)
    ab_m = col(shifted(alpha_bar, t, -1), 2)
    expected = ddpm.predict_x0(xt, t, eps, alpha_bar)
    expect_close(sub.call("predict_x0", xt, t, eps, alpha_bar), expected, "predict_x0(xt, t, eps, alpha_bar)",
                 rtol=1e-4, atol=1e-4, hints=[
                     Hint((xt - (1 - ab) * eps) / ab.sqrt(), "the noise enters x_t with std sqrt(1 - alpha_bar[t]), "
                                                             "not the variance 1 - alpha_bar[t]."),
                     Hint((xt - (1 - ab).sqrt() * eps) / ab, "divide by sqrt(alpha_bar[t]), not alpha_bar[t]."),
                     Hint((xt - (1 - ab).sqrt() * eps) * ab.sqrt(), "solve x_t = sqrt(alpha_bar) x0 + ... for x0: divide "
                                                                    "by sqrt(alpha_bar[t]), do not multiply."),
                     Hint((xt - (1 - ab_m).sqrt() * eps) / ab_m.sqrt(), "t is off by one: use alpha_bar[t]."),
                 ])


@exercise("predict_x0")
def test_predict_x0_round_trip_images(sub, rng):
    """predict_x0 recovers x0 from q_sample on images"""
    T, betas, alpha_bar = random_schedule(rng, 100)
    x0, eps = torch.rand(4, 1, 8, 8, generator=rng) * 2 - 1, torch.randn(4, 1, 8, 8, generator=rng)
    t = torch.randint(0, 60, (4,), generator=rng)
    xt = ddpm.q_sample(x0, t, eps, alpha_bar)
    expect_close(sub.call("predict_x0", xt, t, eps, alpha_bar), x0, "predict_x0(q_sample(x0, t, eps), t, eps)",
                 rtol=1e-3, atol=1e-3)


# -- ddpm_loss --------------------------------------------------------------------------------
@exercise("ddpm_loss", weight=2.0)
def test_ddpm_loss_random_model(sub, rng):
    """ddpm_loss with a fixed nonlinear model on random data"""
    T, betas, alpha_bar = random_schedule(rng)
    ref = random_tanh_model(rng, T)
    model = build(ref)
    x0, eps = torch.randn(48, 2, generator=rng), torch.randn(48, 2, generator=rng)
    t = random_steps(rng, T, 48)
    expected = float(ddpm.ddpm_loss(model, x0, t, eps, alpha_bar))
    got = sub.call("ddpm_loss", ref, x0, t, eps, alpha_bar)
    expect(not isinstance(got, torch.Tensor) or got.numel() == 1,
           f"ddpm_loss should return a single number (the mean over all elements); got shape {tuple(got.shape)}.")
    hints = loss_mistakes(model, x0, t, eps, alpha_bar)
    expect_scalar(got, expected, "ddpm_loss(model, x0, t, eps, alpha_bar)", rtol=1e-4, atol=1e-6, hints=hints)


@exercise("ddpm_loss")
def test_ddpm_loss_images(sub, rng):
    """ddpm_loss on images with an elementwise model"""
    T, betas, alpha_bar = random_schedule(rng)
    ref = Ref(pixel_eps_model, 0.7, 1.5, T)
    x0, eps = torch.rand(5, 1, 8, 8, generator=rng) * 2 - 1, torch.randn(5, 1, 8, 8, generator=rng)
    t = random_steps(rng, T, 5)
    expected = float(ddpm.ddpm_loss(build(ref), x0, t, eps, alpha_bar))
    expect_scalar(sub.call("ddpm_loss", ref, x0, t, eps, alpha_bar), expected, "ddpm_loss on images",
                  rtol=1e-4, atol=1e-6)


# -- p_sample_step ----------------------------------------------------------------------------
@exercise("p_sample_step", weight=2.0)
def test_p_sample_step_beta(sub, rng):
    """p_sample_step with variance "beta" on random points and steps (t == 0 included)"""
    T, betas, alpha_bar = random_schedule(rng)
    ref = random_tanh_model(rng, T)
    xt, z = torch.randn(40, 2, generator=rng), torch.randn(40, 2, generator=rng)
    t = random_steps(rng, T, 40)
    t[1:4] = 0
    expected = ddpm.p_sample_step(build(ref), xt, t, z, betas, alpha_bar, "beta")
    expect_close(sub.call("p_sample_step", ref, xt, t, z, betas, alpha_bar, variance="beta"), expected,
                 "p_sample_step(model, xt, t, z, betas, alpha_bar, variance='beta')", rtol=1e-4, atol=1e-4,
                 hints=p_sample_mistakes(build(ref), xt, t, z, betas, alpha_bar, "beta"))


@exercise("p_sample_step", weight=2.0)
def test_p_sample_step_tilde(sub, rng):
    """p_sample_step with variance "tilde" and the exact eps of a Gaussian mixture"""
    T, betas, alpha_bar = random_schedule(rng)
    means, stds, weights = torch.randn(3, 2, generator=rng) * 2, torch.rand(3, generator=rng) * 0.5 + 0.1, \
        torch.full((3,), 1 / 3)
    ref = Ref(gmm_eps_model, means, stds, weights, alpha_bar)
    xt, z = torch.randn(40, 2, generator=rng), torch.randn(40, 2, generator=rng)
    t = random_steps(rng, T, 40)
    t[1:3] = 0
    t[3:6] = 1
    expected = ddpm.p_sample_step(build(ref), xt, t, z, betas, alpha_bar, "tilde")
    expect_close(sub.call("p_sample_step", ref, xt, t, z, betas, alpha_bar, variance="tilde"), expected,
                 "p_sample_step(model, xt, t, z, betas, alpha_bar, variance='tilde')", rtol=1e-4, atol=1e-4,
                 hints=p_sample_mistakes(build(ref), xt, t, z, betas, alpha_bar, "tilde"))


@exercise("p_sample_step")
def test_p_sample_step_images(sub, rng):
    """p_sample_step on images (B, 1, 4, 4): the step's coefficients broadcast per image"""
    T, betas, alpha_bar = random_schedule(rng)
    ref = Ref(pixel_eps_model, 0.8, -1.0, T)
    xt, z = torch.randn(5, 1, 4, 4, generator=rng), torch.randn(5, 1, 4, 4, generator=rng)
    t = random_steps(rng, T, 5)
    expected = ddpm.p_sample_step(build(ref), xt, t, z, betas, alpha_bar)
    expect_close(sub.call("p_sample_step", ref, xt, t, z, betas, alpha_bar), expected,
                 "p_sample_step on images", rtol=1e-4, atol=1e-4,
                 hints=p_sample_mistakes(build(ref), xt, t, z, betas, alpha_bar, "beta"))


# -- ddpm_sample ------------------------------------------------------------------------------
SHORT_T = 12


def short_schedule():
    """A deliberately coarse schedule (large betas from the first step) where every mistake shows."""
    betas = schedules.linear_beta_schedule(SHORT_T, 0.08, 0.6)
    return betas, schedules.alpha_bar_from_betas(betas)


def sampler_mistakes(m, C, betas, alpha_bar, variance: str, n: int) -> list[Hint]:
    """What a sampler with a known mistake produces, as exact moments, with the message naming it."""
    beta_tilde = schedules.posterior_variance(betas, alpha_bar)
    right = betas.clone() if variance == "beta" else beta_tilde.clone()
    right[0] = 0.0
    other = beta_tilde.clone() if variance == "beta" else betas.clone()
    other[0] = 0.0
    noisy_end = right.clone()
    noisy_end[0] = betas[0] if variance == "beta" else beta_tilde[1]
    cases = [
        (oracles.gaussian_chain_moments(m, C, betas, alpha_bar, noisy_end),
         "noise was added at the last step: at t == 0 the sampler returns the mean alone."),
        (oracles.gaussian_chain_moments(m, C, betas, alpha_bar, right, last_step=1),
         "the loop stopped before the last step: the step at index 0 (the one that lands on the data level) "
         "was never taken."),
        (oracles.gaussian_chain_moments(m, C, betas, alpha_bar, other),
         f"the statistics match the other variance: variance={variance!r} must be passed on to each step "
         "(beta and beta_tilde swapped?)."),
        (oracles.gaussian_chain_moments(m, C, betas, alpha_bar, right ** 2),
         "the noise is sigma_t z with sigma_t = sqrt(variance): z was multiplied by the variance."),
    ]
    return [Hint(moments_near(mean, cov, n), message, where=WHERE_LOOP) for (mean, cov), message in cases]


@exercise("ddpm_sample", weight=2.0)
def test_ddpm_sample_long_schedule(sub, rng):
    """ddpm_sample with the exact eps of N(m, C), 200 linear steps: samples with mean m, covariance C"""
    betas, alpha_bar = schedules.make_schedule(200, "linear")
    m, C = random_gaussian(rng)
    n = 2000
    x_T = torch.randn(n, 2, generator=rng)
    got = sub.call("ddpm_sample", Ref(gaussian_eps_model, m, C, alpha_bar), x_T, betas, alpha_bar,
                   generator=Ref(generator, int(torch.randint(0, 2 ** 30, (1,), generator=rng))), timeout=30)
    expect(isinstance(got, torch.Tensor) and tuple(got.shape) == (n, 2),
           f"ddpm_sample should return the final samples with x_T's shape ({n}, 2); got "
           f"{tuple(got.shape) if isinstance(got, torch.Tensor) else type(got).__name__}.")
    expect_moments(got, m, C, "ddpm_sample(exact eps of N(m, C), x_T, linear betas, T = 200)")


@exercise("ddpm_sample", weight=2.0)
def test_ddpm_sample_coarse_schedule(sub, rng):
    """ddpm_sample on a coarse 12-step schedule, variance "beta" and "tilde": exact output statistics"""
    betas, alpha_bar = short_schedule()
    m, C = random_gaussian(rng, scale=0.1)
    n = 6000
    for variance in ("beta", "tilde"):
        x_T = torch.randn(n, 2, generator=rng)
        got = sub.call("ddpm_sample", Ref(gaussian_eps_model, m, C, alpha_bar), x_T, betas, alpha_bar,
                       generator=Ref(generator, int(torch.randint(0, 2 ** 30, (1,), generator=rng))),
                       variance=variance)
        expect(isinstance(got, torch.Tensor) and tuple(got.shape) == (n, 2),
               f"ddpm_sample should return the final samples with x_T's shape ({n}, 2).")
        right = betas.clone() if variance == "beta" else schedules.posterior_variance(betas, alpha_bar)
        right[0] = 0.0
        mean, cov = oracles.gaussian_chain_moments(m, C, betas, alpha_bar, right)
        expect_moments(got, mean, cov, f"ddpm_sample(..., variance={variance!r}) on a {SHORT_T}-step schedule",
                       n_sigma=5.0, hints=sampler_mistakes(m, C, betas, alpha_bar, variance, n))


# -- learned_log_variance ---------------------------------------------------------------------
@exercise("learned_log_variance", weight=2.0)
def test_learned_log_variance_random(sub, rng):
    """learned_log_variance for random v in [0, 1] and steps t >= 1"""
    T, betas, alpha_bar = random_schedule(rng)
    v = torch.rand(24, 2, generator=rng)
    t = random_steps(rng, T, 24, with_zero=False)
    expect_close(sub.call("learned_log_variance", v, t, betas, alpha_bar), ddpm.learned_log_variance(v, t, betas, alpha_bar),
                 "learned_log_variance(v, t, betas, alpha_bar)", rtol=1e-4, atol=1e-5,
                 hints=log_variance_mistakes(v, t, betas, alpha_bar))


@exercise("learned_log_variance")
def test_learned_log_variance_first_step(sub, rng):
    """learned_log_variance at t = 0 stays finite (beta_tilde[0] = 0 is replaced by beta_tilde[1])"""
    T, betas, alpha_bar = random_schedule(rng)
    v = torch.rand(4, 3, generator=rng)
    t = torch.tensor([0, 0, 1, T - 1])
    got = sub.call("learned_log_variance", v, t, betas, alpha_bar)
    expect_close(got, ddpm.learned_log_variance(v, t, betas, alpha_bar),
                 "learned_log_variance at t = 0 (log beta_tilde clipped to log beta_tilde[1])", rtol=1e-4, atol=1e-5)


# -- questions --------------------------------------------------------------------------------
# predict_log_alpha_bar_last is graded by its public check alone (a hidden copy only doubled its weight)


@exercise("derive_posterior_mean", weight=0.5)
def test_derive_posterior_mean_images(sub, rng):
    """derive_posterior_mean on a batch of images and other inputs: E[x0 | x_t] elementwise"""
    xt = torch.randn(3, 1, 8, 8, generator=rng)
    ab = float(torch.rand(1, generator=rng)) * 0.98 + 0.01
    m, s2 = float(torch.randn(1, generator=rng)) * 0.5, float(torch.rand(1, generator=rng)) * 2 + 0.05
    expect_close(sub.call("derive_posterior_mean", xt, ab, m, s2), posterior_mean_1d(xt, ab, m, s2),
                 f"derive_posterior_mean(xt (3, 1, 8, 8), alpha_bar_t={ab:.3f}, m={m:.3f}, s2={s2:.3f})",
                 rtol=1e-4, atol=1e-5, hints=posterior_mean_mistakes(xt, ab, m, s2))

"""Notebook 03 (DDPM): its manifest, the argument factories, and the public checks.

Time convention (Ho et al. 2020 with 0-based steps): t = 0..T-1, alpha_bar[t] = prod(alphas[:t+1]),
t a LongTensor (B,), model(x, t) predicts eps. Factories build the noise predictors handed to the
learner's functions, inside the sandbox and in the grader alike; samplers are judged against the
closed-form oracles of ``course.oracles`` (exact eps-predictors of Gaussian data).
"""
from __future__ import annotations

import math

import torch

from course import ddpm, oracles, schedules
from course.batching import append_dims
from grader.engine.api import (Hint, Ref, build, exercise, expect, expect_close, expect_moments,
                               expect_scalar, generator)
from grader.engine.compare import WHERE_PREFIX

EXERCISES = {  # exercise (= nbgrader grade_id of its answer cell) -> points
    "linear_beta_schedule": 1,
    "cosine_beta_schedule": 2,
    "q_sample": 1,
    "q_posterior": 2,
    "predict_x0": 1,
    "ddpm_loss": 1,
    "p_sample_step": 2,
    "ddpm_sample": 2,
    "learned_log_variance": 1,
    "predict_log_alpha_bar_last": 0.5,  # questions ("predict, then run"; a derivation): half an answer cell's weight
    "derive_posterior_mean": 0.5,
}

LIBRARY = {  # the course library's implementation of each exercise (calling it scores zero)
    "linear_beta_schedule": "course.schedules:linear_beta_schedule",
    "cosine_beta_schedule": "course.schedules:cosine_beta_schedule",
    "q_sample": "course.ddpm:q_sample",
    "q_posterior": "course.ddpm:q_posterior",
    "predict_x0": "course.ddpm:predict_x0",
    "ddpm_loss": "course.ddpm:ddpm_loss",
    "p_sample_step": "course.ddpm:p_sample_step",
    "ddpm_sample": "course.ddpm:ddpm_sample",
    "learned_log_variance": "course.ddpm:learned_log_variance",
}


# ---------------------------------------------------------------------------------------------
# Factories: noise predictors model(x, t) and generators
# ---------------------------------------------------------------------------------------------
def tanh_eps_model(W, b, c: float, T: int):
    """A fixed nonlinear "network" on points (B, d): tanh(x W^T + b + c t / T)."""
    W, b = torch.as_tensor(W, dtype=torch.float32), torch.as_tensor(b, dtype=torch.float32)
    return lambda x, t: torch.tanh(x @ W.T + b + c * (t.to(x.dtype) / T)[:, None])


def pixel_eps_model(a: float, c: float, T: int):
    """A fixed elementwise "network" for any shape (B, ...): tanh(a x + c t / T)."""
    return lambda x, t: torch.tanh(a * x + c * append_dims(t.to(x.dtype) / T, x))


def gaussian_eps_model(m, C, alpha_bar):
    """The exact eps-predictor of data N(m, C) (course.oracles)."""
    return oracles.gaussian_eps_model(m, C, alpha_bar)


def gmm_eps_model(means, stds, weights, alpha_bar):
    """The exact eps-predictor of an isotropic Gaussian mixture (course.oracles)."""
    return oracles.gmm_eps_model(means, stds, weights, alpha_bar)




# ---------------------------------------------------------------------------------------------
# Known mistakes, shared by the public and hidden tests
# ---------------------------------------------------------------------------------------------
def shifted(schedule: torch.Tensor, t: torch.Tensor, by: int) -> torch.Tensor:
    """schedule[t + by] as a t-off-by-one answer reads it: index -1 wraps to the end (as in torch),
    indices past the end are clamped (the answer would fail there anyway)."""
    T = schedule.shape[0]
    return schedule[torch.where(t + by < 0, (t + by) % T, (t + by).clamp(max=T - 1))]


def col(v: torch.Tensor, ndim: int) -> torch.Tensor:
    """(B,) -> (B, 1, ..., 1) with ndim dimensions."""
    return v.reshape(-1, *([1] * (ndim - 1)))


def moments_near(mean: torch.Tensor, cov: torch.Tensor, n: int, n_sigma: float = 4.0):
    """A predicate on sample moments (m_hat, c_hat): do they agree with (mean, cov) up to sampling error?
    Used to name the mistake behind a sampler's wrong statistics."""
    mean, cov = mean.double(), cov.double()
    var = cov.diagonal()
    se_mean = (var / n).sqrt()
    se_cov = ((var[:, None] * var[None, :] + cov ** 2) / n).sqrt()

    def near(m_hat, c_hat):
        return bool(((m_hat - mean).abs() <= n_sigma * se_mean + 1e-6).all()
                    and ((c_hat - cov).abs() <= n_sigma * se_cov + 1e-6).all())

    return near


def expect_schedule_shape(got, T: int, what: str) -> None:
    expect(isinstance(got, torch.Tensor) and tuple(got.shape) == (T,),
           f"{what} should return a tensor of shape ({T},): one value per step t = 0..T-1; got "
           f"{tuple(got.shape) if isinstance(got, torch.Tensor) else type(got).__name__}.",
           "Hint: a schedule holds one value per step: T values, the first and the last end point both "
           "included; a schedule built from T + 1 grid points has T differences (or ratios).",
           WHERE_PREFIX + "the definition of the steps t = 0, ..., T-1 above the answer cell.")


# Where to look, per exercise (staged hints: the message says what is wrong, ``where`` where to look)
WHERE_POSTERIOR = "the posterior q(x_{t-1} | x_t, x_0) in section 3 (Ho et al., eq. 6-7): the coefficient of x_t and beta_tilde_t"
WHERE_LOSS = "Algorithm 1 of Ho et al. (the simple loss, eq. 14): what the network is given and what it must output"
WHERE_STEP = "the reverse step of section 5 (Ho et al., eq. 11): the factor in front of the bracket, and the sigma_t z term"
WHERE_LOOP = "Algorithm 2 of Ho et al. and the index bookkeeping above the answer cell: which step indices the loop visits"
WHERE_LOG_VAR = "Nichol & Dhariwal's eq. 15 in section 8: what is interpolated, and what replaces beta_tilde at t = 0"


def posterior_mistakes(x0, xt, t, betas, alpha_bar) -> tuple[list[Hint], list[Hint]]:
    """(hints on the variance, hints on the mean) of q_posterior's known mistakes."""
    n = x0.ndim
    beta_tilde = schedules.posterior_variance(betas, alpha_bar)
    ab, beta = col(alpha_bar[t], n), col(betas[t], n)
    ab_prev = col(schedules.alpha_bar_prev(alpha_bar)[t], n)
    coef_x0 = ab_prev.sqrt() * beta / (1 - ab)
    var_hints = [
        Hint(betas[t], "that is beta_t; the posterior variance is beta_tilde_t (beta and beta_tilde swapped).",
             where=WHERE_POSTERIOR),
        Hint(beta_tilde[t].sqrt(), "you returned the std sqrt(beta_tilde_t) where the variance belongs.",
             where=WHERE_POSTERIOR),
        Hint(shifted(beta_tilde, t, -1), "t is off by one: the variance at step t is beta_tilde[t], with alpha_bar "
                                         "before step 0 equal to 1.", where=WHERE_POSTERIOR),
        Hint(shifted(beta_tilde, t, 1), "t is off by one: the variance at step t is beta_tilde[t], with alpha_bar "
                                        "before step 0 equal to 1.", where=WHERE_POSTERIOR),
    ]
    mean_hints = [
        Hint(coef_x0 * x0 + ab.sqrt() * (1 - ab_prev) / (1 - ab) * xt,
             "x_t's coefficient in the mean uses alpha_bar where alpha belongs (alpha_t = 1 - beta_t is one step's "
             "factor, alpha_bar_t the product of all of them).", where=WHERE_POSTERIOR),
        Hint(ab.sqrt() * beta / (1 - ab) * x0 + (1 - beta).sqrt() * xt,
             "t is off by one: the mean uses alpha_bar[t-1], alpha_bar shifted by one step (equal to 1 before step 0), "
             "where you used alpha_bar[t].", where=WHERE_POSTERIOR),
        Hint(coef_x0 * x0 + (1 - beta).sqrt() * (1 - ab_prev) / (1 - ab).sqrt() * xt,
             "x_t's coefficient divides by 1 - alpha_bar[t] itself, not by its square root.", where=WHERE_POSTERIOR),
    ]
    return var_hints, mean_hints


def loss_mistakes(model, x0, t, eps, alpha_bar) -> list[Hint]:
    """The values of ddpm_loss's known mistakes."""
    xt = ddpm.q_sample(x0, t, eps, alpha_bar)
    return [
        Hint(float(((model(xt, t) - x0) ** 2).mean()), "the target of the simple loss is the noise eps, not x0.",
             where=WHERE_LOSS),
        Hint(float(((model(x0, t) - eps) ** 2).mean()),
             "the model was given the clean x0: it sees the noised x_t (x0 noised to step t with eps).", where=WHERE_LOSS),
        Hint(float(((model(xt, t) - eps) ** 2).sum()), "the loss is a mean over all elements, not a sum.",
             where=WHERE_LOSS),
        Hint(float(((model(xt, t) - eps) ** 2).sum(-1).mean()),
             "the loss is a mean over all elements, not a sum over the dimensions of each sample.", where=WHERE_LOSS),
        Hint(float((model(xt, t) - eps).abs().mean()), "the simple loss squares the error.", where=WHERE_LOSS),
    ]


def p_sample_mistakes(model, xt, t, z, betas, alpha_bar, variance: str) -> list[Hint]:
    """What p_sample_step's known mistakes return."""
    n = xt.ndim
    eps = model(xt, t)
    ab, beta = col(alpha_bar[t], n), col(betas[t], n)
    beta_tilde = col(schedules.posterior_variance(betas, alpha_bar)[t], n)
    var = beta if variance == "beta" else beta_tilde
    other = beta_tilde if variance == "beta" else beta
    mean = (xt - beta / (1 - ab).sqrt() * eps) / (1 - beta).sqrt()
    keep = col((t > 0).to(xt.dtype), n)
    ab_m, beta_m = col(shifted(alpha_bar, t, -1), n), col(shifted(betas, t, -1), n)
    return [
        Hint(mean + var.sqrt() * z, "no noise is added at the last step: where t == 0, the step returns the mean alone.",
             where=WHERE_STEP),
        Hint(mean + keep * var * z, "the noise is sigma_t z with sigma_t the square root of the variance: you "
                                    "multiplied z by the variance itself (sigma not squared: sigma_t^2 is beta_t or "
                                    "beta_tilde_t).", where=WHERE_STEP),
        Hint(mean + keep * other.sqrt() * z, f"variance={variance!r} asks for "
                                             f"{'beta_t' if variance == 'beta' else 'beta_tilde_t'}: beta and "
                                             "beta_tilde are swapped (or the variance argument is ignored).",
             where=WHERE_STEP),
        Hint((xt - beta / (1 - ab).sqrt() * eps) / ab.sqrt() + keep * var.sqrt() * z,
             "the mean divides by the wrong factor: sqrt(alpha_t), one step's factor, not sqrt(alpha_bar_t) "
             "(alpha is not alpha_bar).", where=WHERE_STEP),
        Hint((xt - beta / (1 - ab) * eps) / (1 - beta).sqrt() + keep * var.sqrt() * z,
             "eps is scaled by beta_t over the square root of 1 - alpha_bar_t, not over 1 - alpha_bar_t itself.",
             where=WHERE_STEP),
        Hint((xt - beta_m / (1 - ab_m).sqrt() * eps) / (1 - beta_m).sqrt() + keep * var.sqrt() * z,
             "t is off by one: step t uses betas[t] and alpha_bar[t].", where=WHERE_STEP),
    ]


def log_variance_mistakes(v, t, betas, alpha_bar) -> list[Hint]:
    """What learned_log_variance's known mistakes return (for steps t >= 1)."""
    n = v.ndim
    beta_tilde = schedules.posterior_variance(betas, alpha_bar)
    b, bt = col(betas[t], n), col(beta_tilde[t], n)
    expected = v * b.log() + (1 - v) * bt.log()
    log_b_m, log_bt_m = col(shifted(betas, t, -1).log(), n), col(shifted(beta_tilde, t, -1).log(), n)
    return [
        Hint(torch.log(v * b + (1 - v) * bt), "you interpolated the variances and took the log: interpolate the "
                                              "log variances instead (the interpolation is geometric).",
             where=WHERE_LOG_VAR),
        Hint(v * bt.log() + (1 - v) * b.log(), "v weighs log beta_t and (1 - v) weighs log beta_tilde_t: beta and "
                                               "beta_tilde are swapped.", where=WHERE_LOG_VAR),
        Hint(0.5 * expected, "you returned a log std; the answer is a log variance (sigma squared).",
             where=WHERE_LOG_VAR),
        Hint(v * log_b_m + (1 - v) * log_bt_m, "t is off by one: use betas[t] and beta_tilde[t].", where=WHERE_LOG_VAR),
    ]


# ---------------------------------------------------------------------------------------------
# Public checks (also part of grading)
# ---------------------------------------------------------------------------------------------
T5 = 5
BETAS5 = torch.linspace(0.1, 0.5, T5, dtype=torch.float64).float()  # not the library's: stubbed in the sandbox
ALPHA_BAR5 = schedules.alpha_bar_from_betas(BETAS5)
X3 = torch.tensor([[1.0, 0.0], [0.0, 2.0], [-1.0, 0.5]])
EPS3 = torch.tensor([[0.5, -1.0], [1.5, 0.2], [0.0, -0.3]])
T3 = torch.tensor([0, 2, 4])


@exercise("linear_beta_schedule")
def test_linear_small(sub, rng):
    """linear_beta_schedule(5, 0.1, 0.5)"""
    got = sub.call("linear_beta_schedule", 5, 0.1, 0.5)
    expect_schedule_shape(got, 5, "linear_beta_schedule(5, 0.1, 0.5)")
    expect_close(got, torch.tensor([0.1, 0.2, 0.3, 0.4, 0.5]), "linear_beta_schedule(5, 0.1, 0.5)",
                 hints=[Hint(torch.tensor([0.9, 0.8, 0.7, 0.6, 0.5]), "you returned alphas = 1 - betas; return betas.")])


@exercise("cosine_beta_schedule")
def test_cosine_small(sub, rng):
    """cosine_beta_schedule(10)"""
    got = sub.call("cosine_beta_schedule", 10)
    expected = schedules.cosine_beta_schedule(10)
    expect_schedule_shape(got, 10, "cosine_beta_schedule(10)")
    unclipped = expected.clone()
    unclipped[-1] = 1.0
    expect_close(got, expected, "cosine_beta_schedule(10)", hints=[
        Hint(unclipped, "the last beta is 1 (alpha_bar reaches 0 at t = T): clip the betas at max_beta.")])


@exercise("q_sample")
def test_q_sample_small(sub, rng):
    """q_sample on three points"""
    got = sub.call("q_sample", X3, T3, EPS3, ALPHA_BAR5)
    ab = col(ALPHA_BAR5[T3], 2)
    expect_close(got, ab.sqrt() * X3 + (1 - ab).sqrt() * EPS3, "q_sample(x0, t, eps, alpha_bar)",
                 hints=[Hint(ab * X3 + (1 - ab) * EPS3, "x_t's mean coefficient is sqrt(alpha_bar[t]) and its noise "
                                                       "std sqrt(1 - alpha_bar[t]): take square roots.")])


@exercise("q_posterior")
def test_q_posterior_first_step(sub, rng):
    """q_posterior at t = 0 is a point mass at x0"""
    xt = X3 + EPS3
    got = sub.call("q_posterior", X3, xt, torch.zeros(3, dtype=torch.long), BETAS5, ALPHA_BAR5)
    expect(isinstance(got, tuple) and len(got) == 2, "q_posterior should return a tuple (mean, variance).")
    expect_close(got[0], X3, "the posterior mean at t = 0 (alpha_bar before step 0 is 1, so it is x0)")
    expect_close(got[1], torch.zeros(3), "the posterior variance at t = 0 (beta_tilde[0] = 0), shape (B,)")


@exercise("q_posterior")
def test_q_posterior_later_steps(sub, rng):
    """q_posterior at t = 1, 2, 4 on random points: mean and variance"""
    x0, xt = torch.randn(3, 2, generator=rng), torch.randn(3, 2, generator=rng)
    t = torch.tensor([1, 2, 4])
    mean, var = ddpm.q_posterior(x0, xt, t, BETAS5, ALPHA_BAR5)
    got = sub.call("q_posterior", x0, xt, t, BETAS5, ALPHA_BAR5)
    expect(isinstance(got, tuple) and len(got) == 2, "q_posterior should return a tuple (mean, variance).")
    var_hints, mean_hints = posterior_mistakes(x0, xt, t, BETAS5, ALPHA_BAR5)
    expect_close(got[1], var, "the posterior variance beta_tilde[t] at t = 1, 2, 4, shape (B,)", hints=var_hints)
    expect_close(got[0], mean, "the posterior mean at t = 1, 2, 4", rtol=1e-4, atol=1e-4, hints=mean_hints)


@exercise("predict_x0")
def test_predict_x0_inverts_q_sample(sub, rng):
    """predict_x0 undoes q_sample when given the true noise"""
    xt = ddpm.q_sample(X3, T3, EPS3, ALPHA_BAR5)
    expect_close(sub.call("predict_x0", xt, T3, EPS3, ALPHA_BAR5), X3, "predict_x0(q_sample(x0, t, eps), t, eps)",
                 rtol=1e-4, atol=1e-4)


@exercise("ddpm_loss")
def test_ddpm_loss_zero_model(sub, rng):
    """ddpm_loss of a model that predicts 0 is the mean of eps^2"""
    got = sub.call("ddpm_loss", Ref(pixel_eps_model, 0.0, 0.0, T5), X3, T3, EPS3, ALPHA_BAR5)
    expect_scalar(got, float((EPS3 ** 2).mean()), "ddpm_loss(model = 0, x0, t, eps, alpha_bar)",
                  hints=[Hint(float((EPS3 ** 2).sum()), "the loss is a mean over all elements, not a sum.",
                              where=WHERE_LOSS)])


@exercise("ddpm_loss")
def test_ddpm_loss_elementwise_model(sub, rng):
    """ddpm_loss of a model that depends on its input x_t and on t"""
    ref = Ref(pixel_eps_model, 0.7, 1.5, T5)
    x0, eps = torch.randn(3, 2, generator=rng), torch.randn(3, 2, generator=rng)
    model = build(ref)
    expected = float(ddpm.ddpm_loss(model, x0, T3, eps, ALPHA_BAR5))
    expect_scalar(sub.call("ddpm_loss", ref, x0, T3, eps, ALPHA_BAR5), expected,
                  "ddpm_loss(model, x0, t, eps, alpha_bar) with model(x, t) = tanh(0.7 x + 1.5 t / T)",
                  rtol=1e-4, atol=1e-6, hints=loss_mistakes(model, x0, T3, eps, ALPHA_BAR5))


STEP_REF = Ref(tanh_eps_model, [[1.0, -0.5], [0.3, 0.8]], [0.1, -0.2], 1.0, T5)


@exercise("p_sample_step")
def test_p_sample_step_last_step_is_mean(sub, rng):
    """p_sample_step adds no noise at t = 0: the output does not depend on z there"""
    t = torch.zeros(3, dtype=torch.long)
    z = torch.randn(3, 2, generator=rng)
    first = sub.call("p_sample_step", STEP_REF, X3, t, z, BETAS5, ALPHA_BAR5)
    second = sub.call("p_sample_step", STEP_REF, X3, t, 3 * z, BETAS5, ALPHA_BAR5)
    expect(isinstance(first, torch.Tensor) and tuple(first.shape) == (3, 2),
           "p_sample_step should return x_{t-1} with x_t's shape (3, 2).")
    expect(torch.allclose(first, second, atol=1e-6),
           "p_sample_step at t = 0 changed when z was tripled: noise was added at the last step.",
           "Hint: at the last step (t == 0) the sample is the mean alone, whatever z is.",
           WHERE_PREFIX + WHERE_STEP)


@exercise("p_sample_step")
def test_p_sample_step_mean_and_noise(sub, rng):
    """p_sample_step at t = 0, 0, 3: the mean's coefficients and the sigma_t z term"""
    t = torch.tensor([0, 0, 3])
    model = build(STEP_REF)
    expected = ddpm.p_sample_step(model, X3, t, EPS3, BETAS5, ALPHA_BAR5)
    got = sub.call("p_sample_step", STEP_REF, X3, t, EPS3, BETAS5, ALPHA_BAR5)
    expect_close(got, expected, "p_sample_step(model, xt, t = [0, 0, 3], z, betas, alpha_bar)",
                 hints=p_sample_mistakes(model, X3, t, EPS3, BETAS5, ALPHA_BAR5, "beta"))


@exercise("ddpm_sample")
def test_ddpm_sample_gaussian_oracle(sub, rng):
    """ddpm_sample with the exact eps of N(m, C) gives samples with mean m and covariance C"""
    betas, alpha_bar = schedules.make_schedule(50, "cosine")
    m, C = torch.tensor([1.0, -1.0]), torch.tensor([[0.5, 0.2], [0.2, 0.3]])
    x_T = torch.randn(2000, 2, generator=rng)
    got = sub.call("ddpm_sample", Ref(gaussian_eps_model, m, C, alpha_bar), x_T, betas, alpha_bar,
                   generator=Ref(generator, 0))
    expect(isinstance(got, torch.Tensor) and tuple(got.shape) == (2000, 2),
           f"ddpm_sample should return the final samples with x_T's shape (2000, 2); got "
           f"{tuple(got.shape) if isinstance(got, torch.Tensor) else type(got).__name__}.")
    sigma2 = betas.clone()
    sigma2[0] = 0.0
    mean, cov = oracles.gaussian_chain_moments(m, C, betas, alpha_bar, sigma2)
    expect_moments(got, mean, cov, "ddpm_sample(oracle of N(m, C), x_T, betas, alpha_bar)")


@exercise("ddpm_sample")
def test_ddpm_sample_single_step(sub, rng):
    """ddpm_sample with T = 1: its only step is the last one, so it returns that step's mean, noise-free"""
    betas = torch.tensor([0.3])
    alpha_bar = schedules.alpha_bar_from_betas(betas)
    ref = STEP_REF
    x_T = torch.randn(4, 2, generator=rng)
    t = torch.zeros(4, dtype=torch.long)
    mean = ddpm.p_mean_from_eps(x_T, t, build(ref)(x_T, t), betas, alpha_bar)
    got = sub.call("ddpm_sample", ref, x_T, betas, alpha_bar, generator=Ref(generator, 0))
    expect(isinstance(got, torch.Tensor) and tuple(got.shape) == (4, 2),
           "ddpm_sample should return the final samples with x_T's shape (4, 2).")
    expect(not torch.allclose(got, x_T),
           "ddpm_sample with a one-step schedule returned x_T unchanged: the loop stopped before the last step.",
           "Hint: the loop must visit every step index, the last one (t = 0) included: T steps for T betas.",
           WHERE_PREFIX + WHERE_LOOP)
    z = torch.randn(x_T.shape, generator=build(Ref(generator, 0)))
    expect_close(got, mean, "ddpm_sample(model, x_T, betas = [0.3]) (one step, the last one: its mean)", hints=[
        Hint(mean + 0.3 ** 0.5 * z, "noise was added at the last step: where t == 0 the step returns its mean alone.",
             where=WHERE_LOOP),
        Hint(lambda: got if (got - mean).std() > 0.2 else None,
             "noise was added at the last step (or the step is wrong): with one step, the only step is the last one, "
             "and it returns the mean alone.", where=WHERE_LOOP)])


@exercise("ddpm_sample")
def test_ddpm_sample_reproducible(sub, rng):
    """ddpm_sample draws its noise from the generator: the same seed gives the same samples"""
    betas = torch.tensor([0.1, 0.2, 0.3])
    alpha_bar = schedules.alpha_bar_from_betas(betas)
    ref = Ref(pixel_eps_model, 0.5, 1.0, 3)
    x_T = torch.randn(3, 1, 4, 4, generator=rng)
    first = sub.call("ddpm_sample", ref, x_T, betas, alpha_bar, generator=Ref(generator, 7))
    expect(isinstance(first, torch.Tensor) and tuple(first.shape) == (3, 1, 4, 4),
           "ddpm_sample on images (3, 1, 4, 4) should return samples of the same shape.")
    again = sub.call("ddpm_sample", ref, x_T, betas, alpha_bar, generator=Ref(generator, 7))
    expect(torch.equal(first, again), "two calls of ddpm_sample with generators seeded alike gave different samples.",
           "Hint: every z must be drawn from the generator passed in (the global random state differs from call "
           "to call, so samples drawn from it cannot be reproduced).",
           WHERE_PREFIX + "the paragraph above the answer cell: where each step's noise z comes from")


@exercise("learned_log_variance")
def test_learned_log_variance_ends(sub, rng):
    """learned_log_variance with v = 1 and v = 0"""
    t = torch.tensor([1, 2, 4])
    beta_tilde = schedules.posterior_variance(BETAS5, ALPHA_BAR5)
    got1 = sub.call("learned_log_variance", torch.ones(3, 2), t, BETAS5, ALPHA_BAR5)
    expect_close(got1, col(BETAS5[t].log(), 2).expand(3, 2), "learned_log_variance(v = 1) (it is log beta_t)",
                 hints=log_variance_mistakes(torch.ones(3, 2), t, BETAS5, ALPHA_BAR5))
    got0 = sub.call("learned_log_variance", torch.zeros(3, 2), t, BETAS5, ALPHA_BAR5)
    expect_close(got0, col(beta_tilde[t].log(), 2).expand(3, 2), "learned_log_variance(v = 0) (it is log beta_tilde_t)",
                 hints=log_variance_mistakes(torch.zeros(3, 2), t, BETAS5, ALPHA_BAR5))


@exercise("learned_log_variance")
def test_learned_log_variance_between(sub, rng):
    """learned_log_variance for v strictly between 0 and 1, and at t = 0"""
    t = torch.tensor([1, 2, 4])
    v = torch.rand(3, 2, generator=rng) * 0.6 + 0.2
    got = sub.call("learned_log_variance", v, t, BETAS5, ALPHA_BAR5)
    expect_close(got, ddpm.learned_log_variance(v, t, BETAS5, ALPHA_BAR5),
                 "learned_log_variance(v in (0.2, 0.8), t = 1, 2, 4)", rtol=1e-4, atol=1e-5,
                 hints=log_variance_mistakes(v, t, BETAS5, ALPHA_BAR5))
    t0 = torch.tensor([0, 0, 1])
    got0 = sub.call("learned_log_variance", v, t0, BETAS5, ALPHA_BAR5)
    expect(isinstance(got0, torch.Tensor) and bool(torch.isfinite(got0).all()),
           "learned_log_variance at t = 0 is not finite: beta_tilde_0 = 0, and the log of zero is -inf.",
           "Hint: at t = 0 the log of beta_tilde is replaced by its value at t = 1, as in Nichol & Dhariwal's code.",
           WHERE_PREFIX + WHERE_LOG_VAR)
    expect_close(got0, ddpm.learned_log_variance(v, t0, BETAS5, ALPHA_BAR5),
                 "learned_log_variance at t = 0, 0, 1 (log beta_tilde at t = 0 replaced by its value at t = 1)",
                 rtol=1e-4, atol=1e-5)


# ---------------------------------------------------------------------------------------------
# Questions (predict, then run; a derivation)
# ---------------------------------------------------------------------------------------------
def log_alpha_bar_last_linear(T: int = 1000) -> float:
    """ln alpha_bar at the last step of Ho et al.'s linear schedule (1e-4 to 0.02), exactly (float64)."""
    betas = torch.linspace(1e-4, 0.02, T, dtype=torch.float64)
    return float(torch.log1p(-betas).sum())


LOG_ALPHA_BAR_WHERE = ("section 1: alpha_bar_t is a product of the factors 1 - beta_s, so its log is a sum of "
                       "log(1 - beta_s), each about -beta_s for small beta; the betas rise linearly, so their sum is "
                       "T times their average")


@exercise("predict_log_alpha_bar_last", weight=0.5)
def test_predict_log_alpha_bar_last(sub, rng):
    """predict_log_alpha_bar_last(): ln alpha_bar at the last step of the linear schedule, to within 5%"""
    exact = log_alpha_bar_last_linear()
    got = sub.call("predict_log_alpha_bar_last")
    expect((isinstance(got, (int, float)) and not isinstance(got, bool))
           or (isinstance(got, torch.Tensor) and got.numel() == 1),
           f"predict_log_alpha_bar_last() should return a number; got {type(got).__name__}.")
    expect_scalar(float(got), exact, "predict_log_alpha_bar_last() (to within 5%)", reveal=False, rtol=0.05, atol=0.0, hints=[
        Hint(-0.02 * 1000, "that is -T beta_end: every beta taken at its largest value; the betas rise linearly from "
                           "1e-4, so their sum is T times their average.", where=LOG_ALPHA_BAR_WHERE),
        Hint(exact / 2, "that is the log of sqrt(alpha_bar), the coefficient of x_0 in x_T; the question asks for the "
                        "log of alpha_bar itself.", where=LOG_ALPHA_BAR_WHERE),
        Hint(exact / math.log(10), "that is the decimal logarithm; the question asks for the natural log ln.",
             where=LOG_ALPHA_BAR_WHERE),
        Hint(0.0, "ln alpha_bar is 0 only when nothing was destroyed; every step removes about beta_t of it.",
             where=LOG_ALPHA_BAR_WHERE),
        Hint(-exact, "the sign: alpha_bar is below 1, so its log is negative.", where=LOG_ALPHA_BAR_WHERE),
    ])


def posterior_mean_1d(xt, ab: float, m: float, s2: float):
    """E[x0 | x_t] for x0 ~ N(m, s2), x_t = sqrt(ab) x0 + sqrt(1 - ab) eps (Bayes for Gaussians)."""
    gain = math.sqrt(ab) * s2 / (ab * s2 + 1 - ab)
    return m + gain * (xt - math.sqrt(ab) * m)


POSTERIOR_MEAN_WHERE = ("Bayes' rule for a Gaussian prior N(m, s2) and a Gaussian observation x_t = sqrt(alpha_bar) x0 "
                        "+ noise: the posterior mean is the prior mean plus Cov(x0, x_t) / Var(x_t) times "
                        "(x_t - E[x_t]) (Bishop, PRML, eq. 2.116, or the exact predictor of section 5)")


def posterior_mean_mistakes(xt, ab: float, m: float, s2: float) -> list[Hint]:
    r = math.sqrt(ab)
    return [
        Hint(xt / r, "that is x_t / sqrt(alpha_bar), x_t's own estimate of x0 with the noise ignored: the prior "
                     "N(m, s2) pulls the estimate towards m.", where=POSTERIOR_MEAN_WHERE),
        Hint(r * s2 / (ab * s2 + 1 - ab) * xt, "the prior mean m is missing: the estimate is m plus a gain times "
                                               "x_t's deviation from its own mean sqrt(alpha_bar) m.",
             where=POSTERIOR_MEAN_WHERE),
        Hint(m + s2 / (s2 + 1 - ab) * (xt - r * m), "the gain is Cov(x0, x_t) / Var(x_t) = sqrt(alpha_bar) s2 / "
                                                   "(alpha_bar s2 + 1 - alpha_bar): alpha_bar is missing from it.",
             where=POSTERIOR_MEAN_WHERE),
        Hint(m + ab * s2 / (ab * s2 + 1 - ab) * (xt - r * m), "the gain has sqrt(alpha_bar) in its numerator (the "
                                                              "covariance of x0 and x_t), not alpha_bar.",
             where=POSTERIOR_MEAN_WHERE),
    ]


@exercise("derive_posterior_mean", weight=0.5)
def test_derive_posterior_mean(sub, rng):
    """derive_posterior_mean(xt, alpha_bar_t, m, s2) on random inputs: E[x0 | x_t] for Gaussian data"""
    xt = torch.randn(6, generator=rng) * 1.5
    ab = float(torch.rand(1, generator=rng)) * 0.8 + 0.1
    m, s2 = float(torch.randn(1, generator=rng)), float(torch.rand(1, generator=rng)) * 1.5 + 0.2
    got = sub.call("derive_posterior_mean", xt, ab, m, s2)
    expect_close(got, posterior_mean_1d(xt, ab, m, s2),
                 f"derive_posterior_mean(xt, alpha_bar_t={ab:.3f}, m={m:.3f}, s2={s2:.3f})", rtol=1e-4, atol=1e-5,
                 hints=posterior_mean_mistakes(xt, ab, m, s2))

"""Notebook 03 (DDPM): its manifest, the argument factories, and the public checks.

Time convention (Ho et al. 2020 with 0-based steps): t = 0..T-1, alpha_bar[t] = prod(alphas[:t+1]),
t a LongTensor (B,), model(x, t) predicts eps. Factories build the noise predictors handed to the
learner's functions, inside the sandbox and in the grader alike; samplers are judged against the
closed-form oracles of ``course.oracles`` (exact eps-predictors of Gaussian data).
"""
from __future__ import annotations

import torch

from course import ddpm, oracles, schedules
from course.batching import append_dims
from grader.engine.api import Hint, Ref, build, exercise, expect, expect_close, expect_moments, expect_scalar, generator

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
           "Hint: torch.linspace(start, end, T) has T points and includes both ends; a schedule "
           "built from T + 1 grid points has T differences (or ratios).")


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
                  hints=[Hint(float((EPS3 ** 2).sum()), "the loss is a mean over all elements (F.mse_loss), not a sum.")])


@exercise("p_sample_step")
def test_p_sample_step_last_step_is_mean(sub, rng):
    """p_sample_step adds no noise at t = 0"""
    ref = Ref(tanh_eps_model, [[1.0, -0.5], [0.3, 0.8]], [0.1, -0.2], 1.0, T5)
    t = torch.tensor([0, 0, 3])
    expected = ddpm.p_sample_step(build(ref), X3, t, EPS3, BETAS5, ALPHA_BAR5)
    got = sub.call("p_sample_step", ref, X3, t, EPS3, BETAS5, ALPHA_BAR5)
    expect_close(got, expected, "p_sample_step(model, xt, t = [0, 0, 3], z, betas, alpha_bar)",
                 hints=[Hint(expected + col(BETAS5[t], 2).sqrt() * EPS3 * col((t == 0).float(), 2),
                             "no noise is added at the last step (where t == 0).")])


@exercise("ddpm_sample")
def test_ddpm_sample_gaussian_oracle(sub, rng):
    """ddpm_sample with the exact eps of N(m, C) gives samples with mean m and covariance C"""
    betas, alpha_bar = schedules.make_schedule(50, "cosine")
    m, C = torch.tensor([1.0, -1.0]), torch.tensor([[0.5, 0.2], [0.2, 0.3]])
    x_T = torch.randn(2000, 2, generator=rng)
    got = sub.call("ddpm_sample", Ref(gaussian_eps_model, m, C, alpha_bar), x_T, betas, alpha_bar,
                   generator=Ref(generator, 0))
    expect(isinstance(got, torch.Tensor) and tuple(got.shape) == (2000, 2),
           f"ddpm_sample should return the final samples x_0 with x_T's shape (2000, 2); got "
           f"{tuple(got.shape) if isinstance(got, torch.Tensor) else type(got).__name__}.")
    sigma2 = betas.clone()
    sigma2[0] = 0.0
    mean, cov = oracles.gaussian_chain_moments(m, C, betas, alpha_bar, sigma2)
    expect_moments(got, mean, cov, "ddpm_sample(oracle of N(m, C), x_T, betas, alpha_bar)")


@exercise("learned_log_variance")
def test_learned_log_variance_ends(sub, rng):
    """learned_log_variance with v = 1 and v = 0"""
    t = torch.tensor([1, 2, 4])
    beta_tilde = schedules.posterior_variance(BETAS5, ALPHA_BAR5)
    got1 = sub.call("learned_log_variance", torch.ones(3, 2), t, BETAS5, ALPHA_BAR5)
    expect_close(got1, col(BETAS5[t].log(), 2).expand(3, 2), "learned_log_variance(v = 1) (it is log beta_t)")
    got0 = sub.call("learned_log_variance", torch.zeros(3, 2), t, BETAS5, ALPHA_BAR5)
    expect_close(got0, col(beta_tilde[t].log(), 2).expand(3, 2), "learned_log_variance(v = 0) (it is log beta_tilde_t)")

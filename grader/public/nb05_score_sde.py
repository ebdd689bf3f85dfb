"""Notebook 05 (score matching and SDEs): its manifest, the argument factories, probes, and the
public checks.

Time convention (Song et al. 2021): t in [0, 1], t = 0 data, t = 1 noise, times are (B,) tensors.
Factories build score functions and SDEs inside the sandbox and in the grader (to compute the
expected answers). Scores are closed-form oracles: exact scores of Gaussian mixtures at every noise
level, never trained models.
"""
from __future__ import annotations

import math

import torch

from course import gmm, score, sde
from course.batching import time_batch
from grader.engine.api import Hint, Ref, build, exercise, expect, expect_close

EXERCISES = {  # exercise (= nbgrader grade_id of its answer cell) -> points
    "gmm_log_prob": 1,
    "gmm_score": 2,
    "dsm_loss": 2,
    "langevin_step": 1,
    "vp_marginal": 2,
    "vp_sde": 1,
    "reverse_sde_step": 2,
    "pf_ode_drift": 1,
    "pc_sample": 2,
    "pf_ode_log_prob": 2,
    "eps_to_score": 1,
}

LIBRARY = {  # the course library's implementation of each exercise (calling it scores zero)
    "gmm_log_prob": "course.gmm:gmm_log_prob",
    "gmm_score": "course.gmm:gmm_score",
    "dsm_loss": "course.score:dsm_loss",
    "langevin_step": "course.score:langevin_step",
    "vp_marginal": "course.sde:vp_marginal",
    "vp_sde": "course.sde:vp_sde",
    "reverse_sde_step": "course.sde:reverse_sde_step",
    "pf_ode_drift": "course.sde:pf_ode_drift",
    "pc_sample": "course.sde:pc_sample",
    "pf_ode_log_prob": "course.sde:pf_ode_log_prob",
    "eps_to_score": "course.score:eps_to_score",
}


# ---------------------------------------------------------------------------------------------
# Factories: score functions, SDEs, score models
# ---------------------------------------------------------------------------------------------
def _t(v):
    return torch.as_tensor(v, dtype=torch.float32)


def vp(beta_min: float = 0.1, beta_max: float = 20.0):
    """sde(x, t) = (drift, diffusion) of the VP SDE, the grader's closed form f = -beta x / 2, g = sqrt(beta)
    (never the library's vp_sde, an exercise of this notebook: a stub in the sandbox while it is graded)."""

    def vp_sde_(x, t):
        beta = sde.vp_beta(time_batch(t, x), beta_min, beta_max)  # (B,)
        return -0.5 * beta[:, None] * x, torch.sqrt(beta)

    return vp_sde_


def scaled_vp(c: float = 1.0):
    """A VP-like SDE with a constant rate: f = -c x / 2, g = sqrt(c) (t-independent, easy to hand-check)."""
    return lambda x, t: (-0.5 * c * x, torch.full((x.shape[0],), math.sqrt(c)))


def vp_mixture_score(means, stds, weights, beta_min: float = 0.1, beta_max: float = 20.0):
    """score_fn(x, t): the exact score of a mixture diffused by the VP SDE, from the marginal's closed form
    (mean_coef m(t) as in vp_gaussian_score, std sqrt(1 - m^2)) and the noised mixture's score
    (course.gmm.noised_gmm_log_prob_and_score): no exercise of 05 (vp_marginal, gmm_score) inside."""
    means, stds, weights = _t(means), _t(stds), _t(weights)

    def score_fn(x, t):
        t = time_batch(t, x)  # (B,)
        log_m = -0.5 * beta_min * t - 0.25 * t ** 2 * (beta_max - beta_min)
        return gmm.noised_gmm_log_prob_and_score(x, torch.exp(log_m), torch.sqrt(-torch.expm1(2 * log_m)),
                                                 means, stds, weights)[1]

    return score_fn


def counting_vp_mixture_score(means, stds, weights):
    """The exact VP mixture score that counts its evaluations (in ``.calls``)."""
    exact = vp_mixture_score(means, stds, weights)

    def score_fn(x, t):
        score_fn.calls += 1
        return exact(x, t)

    score_fn.calls = 0
    return score_fn


def linear_time_score(A, c: float = 1.0):
    """score_fn(x, t) = -(x A^T) (1 + c t): a simple, smooth field with a known divergence."""
    A = _t(A)
    return lambda x, t: -(x @ A.T) * (1 + c * t)[:, None]


def gaussian_score(mu, s: float):
    """score_fn(x) of N(mu, s^2 I): (mu - x) / s^2 (for Langevin)."""
    mu = _t(mu)
    return lambda x: (mu - x) / s ** 2


def toy_score_model(W, b):
    """score_model(x, sigma) = tanh(x W^T + b) (1 + sigma) - x: depends on both x and sigma."""
    W, b = _t(W), _t(b)
    return lambda x, sigma: torch.tanh(x @ W.T + b) * (1 + sigma)[:, None] - x



# ---------------------------------------------------------------------------------------------
# Probes: calls that need a generator or a counter inside the sandbox
# ---------------------------------------------------------------------------------------------
def probe_pc_sample(ns, means, stds, weights, n: int, n_steps: int, snr: float, n_corrector: int,
                    seed: int = 0):
    """Run the learner's pc_sample on the exact VP mixture score from x_T ~ N(0, I).

    Returns (samples (n, d), number of score evaluations).
    """
    score_fn = counting_vp_mixture_score(means, stds, weights)
    generator = torch.Generator().manual_seed(seed)
    x_T = torch.randn(n, len(means[0]), generator=generator)
    x0 = ns["pc_sample"](score_fn, x_T, vp(), n_steps, snr, n_corrector, generator=generator)
    return x0, score_fn.calls


# ---------------------------------------------------------------------------------------------
# Public checks (also part of grading)
# ---------------------------------------------------------------------------------------------
MEANS = torch.tensor([[-1.0, 0.0], [1.5, 0.5]])
STDS = torch.tensor([0.5, 0.3])
WEIGHTS = torch.tensor([0.4, 0.6])
X3 = torch.tensor([[0.0, 0.0], [1.0, 0.5], [-2.0, 1.0]])


@exercise("gmm_log_prob")
def test_gmm_log_prob_single_component(sub, rng):
    """gmm_log_prob of one standard normal component"""
    got = sub.call("gmm_log_prob", X3, torch.zeros(1, 2), torch.ones(1), torch.ones(1))
    expected = -0.5 * (X3 ** 2).sum(1) - math.log(2 * math.pi)
    expect_close(got, expected, "gmm_log_prob(x, one N(0, I) component)", hints=[
        Hint(-0.5 * (X3 ** 2).sum(1), "the normalising constant -d/2 log(2 pi s^2) is missing.")])


@exercise("gmm_score")
def test_gmm_score_single_component(sub, rng):
    """gmm_score of one Gaussian is (mu - x) / s^2"""
    mu = torch.tensor([[1.0, -1.0]])
    got = sub.call("gmm_score", X3, mu, torch.tensor([0.5]), torch.ones(1))
    expect_close(got, (mu - X3) / 0.25, "gmm_score(x, one N(mu, 0.5^2 I) component)", hints=[
        Hint((mu - X3) / 0.5, "divide by the variance s^2, not the standard deviation s.")])


@exercise("dsm_loss")
def test_dsm_loss_exact_score_of_noise(sub, rng):
    """dsm_loss is 0 for the exact score of pure noise around x0 = 0"""
    # With x0 = 0 the perturbed data is N(0, sigma^2 I), whose score is -x / sigma^2, so
    # sigma s(sigma noise) + noise = 0 exactly.
    noise = torch.tensor([[0.5, -1.0], [2.0, 0.3]])
    sigma = torch.tensor([0.5, 2.0])
    got = sub.call("dsm_loss", Ref(toy_score_model, torch.zeros(2, 2), torch.zeros(2)), torch.zeros(2, 2),
                   sigma, noise)
    expected = score.dsm_loss(build(Ref(toy_score_model, torch.zeros(2, 2), torch.zeros(2))),
                              torch.zeros(2, 2), sigma, noise)
    expect_close(got, expected, "dsm_loss(score_model, x0=0, sigma, noise) for s(x, sigma) = -x")


@exercise("langevin_step")
def test_langevin_step_gaussian(sub, rng):
    """langevin_step on a Gaussian score"""
    z = torch.tensor([[1.0, -1.0], [0.0, 0.5], [0.2, 0.2]])
    got = sub.call("langevin_step", Ref(gaussian_score, [1.0, 0.0], 1.0), X3, 0.01, z)
    expected = X3 + 0.01 * (torch.tensor([1.0, 0.0]) - X3) + math.sqrt(0.02) * z
    expect_close(got, expected, "langevin_step(score_fn, x, step_size=0.01, z)", hints=[
        Hint(X3 + 0.01 * (torch.tensor([1.0, 0.0]) - X3) + 0.1 * z,
             "the noise is sqrt(2 step_size) z, not sqrt(step_size) z.")])


@exercise("vp_marginal")
def test_vp_marginal_ends(sub, rng):
    """vp_marginal at t = 0 (data) and t = 1 (noise)"""
    got = sub.call("vp_marginal", torch.tensor([0.0, 1.0]))
    expect(isinstance(got, tuple) and len(got) == 2, "vp_marginal(t) should return a tuple (mean_coef, std).")
    expect_close(got[0], torch.tensor([1.0, math.exp(-0.25 * 19.9 - 0.05)]), "mean_coef at t = 0 and t = 1",
                 rtol=1e-4, atol=1e-6)
    expect_close(got[1], torch.tensor([0.0, math.sqrt(1 - math.exp(-0.5 * 19.9 - 0.1))]), "std at t = 0 and t = 1",
                 rtol=1e-4, atol=1e-5)


@exercise("vp_sde")
def test_vp_sde_at_one(sub, rng):
    """vp_sde at t = 1: beta = beta_max"""
    got = sub.call("vp_sde", X3, torch.ones(3))
    expect(isinstance(got, tuple) and len(got) == 2, "vp_sde(x, t) should return a tuple (drift, diffusion).")
    expect_close(got[0], -10.0 * X3, "the drift -beta(t) x / 2 at t = 1")
    expect_close(got[1].reshape(-1), torch.full((3,), math.sqrt(20.0)), "the diffusion g(t) at t = 1", hints=[
        Hint(torch.full((3,), 20.0), "g(t) = sqrt(beta(t)); you returned beta(t).")])


@exercise("reverse_sde_step")
def test_reverse_sde_step_constant_rate(sub, rng):
    """reverse_sde_step with f = -x/2, g = 1 and a linear score"""
    z = torch.tensor([[1.0, 0.0], [0.0, -1.0], [0.5, 0.5]])
    t = torch.full((3,), 0.5)
    got = sub.call("reverse_sde_step", Ref(linear_time_score, torch.eye(2), 0.0), X3, t, 0.04, z, Ref(scaled_vp, 1.0))
    expected = X3 - (-0.5 * X3 + X3) * 0.04 + 0.2 * z  # score = -x, so f - g^2 s = x / 2
    expect_close(got, expected, "reverse_sde_step(score_fn, x, t, dt=0.04, z, sde)", hints=[
        Hint(X3 - (-0.5 * X3 - X3) * 0.04 + 0.2 * z,
             "the reverse drift is f - g^2 score (minus): check its sign.")])


@exercise("pf_ode_drift")
def test_pf_ode_drift_constant_rate(sub, rng):
    """pf_ode_drift with f = -x/2, g = 1 and score -x is 0"""
    got = sub.call("pf_ode_drift", Ref(linear_time_score, torch.eye(2), 0.0), X3, torch.full((3,), 0.3),
                   Ref(scaled_vp, 1.0))
    expect_close(got, torch.zeros(3, 2), "pf_ode_drift for a stationary N(0, I) (it should vanish)", hints=[
        Hint(0.5 * X3, "the probability-flow ODE has half the score term: f - (1/2) g^2 score.")])


@exercise("pc_sample")
def test_pc_sample_runs(sub, rng):
    """pc_sample returns one finite sample per starting point"""
    got, _ = sub.probe("probe_pc_sample", MEANS, STDS, WEIGHTS, 64, 10, 0.16, 1)
    expect(isinstance(got, torch.Tensor) and tuple(got.shape) == (64, 2),
           f"pc_sample should return samples with x_T's shape (64, 2); got "
           f"{tuple(got.shape) if isinstance(got, torch.Tensor) else type(got).__name__}.")
    expect(bool(torch.isfinite(got).all()), "pc_sample returned NaN or infinite values.",
           "Hint: check the sign of the reverse drift f - g^2 score.")


@exercise("pf_ode_log_prob")
def test_pf_ode_log_prob_standard_normal(sub, rng):
    """pf_ode_log_prob of N(0, I) data (every p_t is N(0, I))"""
    # N(0, I) data stays N(0, I) under the VP SDE: the PF-ODE drift is 0 and log p = log N(x; 0, I).
    got = sub.call("pf_ode_log_prob", Ref(vp_mixture_score, [[0.0, 0.0]], [1.0], [1.0]), X3, Ref(vp), 4)
    expect_close(got, -0.5 * (X3 ** 2).sum(1) - math.log(2 * math.pi), "pf_ode_log_prob for N(0, I) data",
                 rtol=1e-4, atol=1e-4)


@exercise("eps_to_score")
def test_eps_to_score_simple(sub, rng):
    """eps_to_score divides by the std, with a minus sign"""
    eps = torch.tensor([[1.0, -2.0], [0.5, 0.5]])
    std = torch.tensor([0.5, 2.0])
    got = sub.call("eps_to_score", eps, std)
    expect_close(got, torch.tensor([[-2.0, 4.0], [-0.25, -0.25]]), "eps_to_score(eps, std)", hints=[
        Hint(torch.tensor([[2.0, -4.0], [0.25, 0.25]]), "score = -eps / std: the minus sign is missing.")])

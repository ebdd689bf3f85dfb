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

from course import score, sde
from course.batching import time_batch
from grader.engine.api import Hint, Ref, build, exercise, expect, expect_choice, expect_close

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
    "predict_vp_stationary": 0.5,  # questions ("predict, then run"): half an answer cell's weight
    "derive_vp_variance": 0.5,
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


def vp_gaussian_score(mu, s: float, beta_min: float = 0.1, beta_max: float = 20.0):
    """score_fn(x, t) of data N(mu, s^2 I) diffused by the VP SDE, in closed form (no exercise of 05 inside):
    p_t = N(m(t) mu, (m(t)^2 s^2 + 1 - m(t)^2) I), m(t) = exp(-beta_min t / 2 - t^2 (beta_max - beta_min) / 4)."""
    mu = _t(mu)

    def score_fn(x, t):
        m = torch.exp(-0.5 * beta_min * t - 0.25 * t ** 2 * (beta_max - beta_min))[:, None]  # (B, 1)
        var = m ** 2 * s ** 2 + 1 - m ** 2
        return -(x - m * mu) / var

    return score_fn


def vp_mixture_score(means, stds, weights, beta_min: float = 0.1, beta_max: float = 20.0):
    """score_fn(x, t): the exact score of a mixture diffused by the VP SDE: the library's oracle
    ``course.sde.vp_gmm_score_fn`` (the marginal's closed form and the noised mixture's score; no
    exercise of 05, such as vp_marginal or gmm_score, inside)."""
    return sde.vp_gmm_score_fn(_t(means), _t(stds), _t(weights), beta_min, beta_max)


def counting_vp_mixture_score(means, stds, weights):
    """The exact VP mixture score that counts its evaluations (in ``.calls``)."""
    exact = vp_mixture_score(means, stds, weights)

    def score_fn(x, t):
        score_fn.calls += 1
        return exact(x, t)

    score_fn.calls = 0
    return score_fn


def counting_vp_gaussian_score(mu, s: float):
    """The closed-form VP score of N(mu, s^2 I) data that counts its evaluations (in ``.calls``)."""
    exact = vp_gaussian_score(mu, s)

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


def probe_pc_sample_gaussian(ns, mu, s: float, n: int, n_steps: int, snr: float, n_corrector: int, seed: int = 0):
    """Run the learner's pc_sample on the closed-form VP score of N(mu, s^2 I) (the grader's own VP SDE)
    from x_T ~ N(0, I). Returns (samples (n, d), number of score evaluations)."""
    score_fn = counting_vp_gaussian_score(mu, s)
    generator = torch.Generator().manual_seed(seed)
    x_T = torch.randn(n, len(mu), generator=generator)
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


def _mixture_log_prob(x, means, stds, weights):
    """log sum_k w_k N(x; mu_k, s_k^2 I), the grader's closed form (torch.distributions), (N,)."""
    comps = torch.distributions.Normal(means[None], stds[None, :, None])  # (1, K, d)
    return torch.logsumexp(comps.log_prob(x[:, None, :]).sum(-1) + weights.log(), dim=1)


GMM_WHERE = "section 1: the log-sum-exp formula for log p(x), term by term."
SCORE_WHERE = "section 1: the score as a responsibility-weighted average of the components' scores."


@exercise("gmm_log_prob")
def test_gmm_log_prob_two_components(sub, rng):
    """gmm_log_prob of a two-component mixture with unequal weights and widths"""
    x = torch.randn(16, 2, generator=rng) * 1.5
    expected = _mixture_log_prob(x, MEANS, STDS, WEIGHTS)
    no_weights = _mixture_log_prob(x, MEANS, STDS, torch.ones(2))
    std_as_var = torch.logsumexp(torch.log(WEIGHTS) - torch.log(2 * math.pi * STDS) - 0.5 * ((x[:, None] - MEANS[None]) ** 2).sum(-1) / STDS, 1)
    got = sub.call("gmm_log_prob", x, MEANS, STDS, WEIGHTS)
    expect_close(got, expected, "gmm_log_prob(x, two components, weights 0.4 / 0.6)", rtol=1e-4, atol=1e-4, hints=[
        Hint(no_weights, "the mixture weights are missing: each component's log density needs its log w_k.",
             where=GMM_WHERE + " The first term inside the brackets."),
        Hint(std_as_var, "you used the std s_k where the variance s_k^2 belongs.",
             where=GMM_WHERE + " The normalising constant and the squared distance: both use s_k^2."),
    ])


@exercise("gmm_log_prob")
def test_gmm_log_prob_far_points(sub, rng):
    """gmm_log_prob is finite far from every component"""
    x = torch.randn(8, 2, generator=rng) + 40.0
    got = sub.call("gmm_log_prob", x, MEANS, STDS * 0.2, WEIGHTS)
    expect(isinstance(got, torch.Tensor) and bool(torch.isfinite(got).all()),
           "gmm_log_prob returned -inf or NaN for points far from every component.",
           "Hint: each exp(...) of a very negative number underflows to 0 in float32, and log(0) = -inf: "
           "combine the components' log terms without leaving the log domain.",
           "Where to look: " + GMM_WHERE + " (what the notebook says about computing it stably).")
    expect_close(got, _mixture_log_prob(x, MEANS, STDS * 0.2, WEIGHTS), "gmm_log_prob far from the mixture",
                 rtol=1e-4, atol=1e-2)


@exercise("gmm_score")
def test_gmm_score_single_component(sub, rng):
    """gmm_score of one Gaussian is (mu - x) / s^2"""
    mu = torch.tensor([[1.0, -1.0]])
    got = sub.call("gmm_score", X3, mu, torch.tensor([0.5]), torch.ones(1))
    expect_close(got, (mu - X3) / 0.25, "gmm_score(x, one N(mu, 0.5^2 I) component)", hints=[
        Hint((mu - X3) / 0.5, "divide by the variance s^2, not the standard deviation s.", where=SCORE_WHERE)])


@exercise("gmm_score")
def test_gmm_score_two_components(sub, rng):
    """gmm_score of a two-component mixture is the gradient of its log density"""
    x = (torch.randn(16, 2, generator=rng) * 1.5).requires_grad_(True)
    (expected,) = torch.autograd.grad(_mixture_log_prob(x, MEANS, STDS, WEIGHTS).sum(), x)
    x = x.detach()
    per_comp = (MEANS[None] - x[:, None]) / (STDS ** 2)[None, :, None]  # (N, K, d)
    got = sub.call("gmm_score", x, MEANS, STDS, WEIGHTS)
    expect_close(got, expected, "gmm_score(x, two components) against the gradient of log p", rtol=1e-3, atol=1e-4,
                 hints=[
                     Hint(per_comp.mean(1), "average the components' scores with the responsibilities r_k(x), "
                                            "not uniformly.", where=SCORE_WHERE),
                     Hint((WEIGHTS[None, :, None] * per_comp).sum(1),
                          "weight each component by its responsibility r_k(x) = w_k N_k(x) / p(x), not by w_k alone.",
                          where=SCORE_WHERE),
                     Hint(-expected, "the score points towards the means: (mu_k - x) / s_k^2.", where=SCORE_WHERE),
                 ])


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


@exercise("vp_marginal")
def test_vp_marginal_middle_times(sub, rng):
    """vp_marginal at t = 0.1, 0.3, 0.5"""
    t = torch.tensor([0.1, 0.3, 0.5])
    integral = 0.1 * t + 0.5 * t ** 2 * 19.9  # the integral of beta from 0 to t
    mean_coef = torch.exp(-0.5 * integral)
    std = torch.sqrt(1 - mean_coef ** 2)
    beta_t = 0.1 + 19.9 * t
    where = "section 4: the formulas for m(t) and sigma(t)."
    got = sub.call("vp_marginal", t)
    expect(isinstance(got, tuple) and len(got) == 2, "vp_marginal(t) should return a tuple (mean_coef, std).")
    expect_close(got[0], mean_coef, "mean_coef at t = 0.1, 0.3, 0.5", rtol=1e-4, atol=1e-6, hints=[
        Hint(torch.exp(-integral), "mean_coef = exp(-1/2 of the integral of beta): the 1/2 is missing.", where=where),
        Hint(torch.exp(-0.5 * beta_t * t), "integrate beta from 0 to t; beta(t) t is not its integral.", where=where),
    ])
    expect_close(got[1], std, "std at t = 0.1, 0.3, 0.5", rtol=1e-4, atol=1e-5, hints=[
        Hint(1 - mean_coef ** 2, "you returned the variance 1 - mean_coef^2; the std is its square root.", where=where),
        Hint(1 - mean_coef, "std = sqrt(1 - mean_coef^2), not 1 - mean_coef.", where=where),
    ])


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


@exercise("pf_ode_drift")
def test_pf_ode_drift_faster_rate(sub, rng):
    """pf_ode_drift with f = -2x, g = 2 and score -x is 0 (N(0, I) stays put at any constant rate)"""
    x = torch.randn(8, 2, generator=rng)
    got = sub.call("pf_ode_drift", Ref(linear_time_score, torch.eye(2), 0.0), x, torch.full((8,), 0.3),
                   Ref(scaled_vp, 4.0))
    where = "section 5: the probability-flow ODE, eq. 13 of Song et al. (the coefficient of the score)."
    expect_close(got, torch.zeros(8, 2), "pf_ode_drift with f = -2x, g = 2 for a stationary N(0, I)", hints=[
        Hint(-x, "the score term is (1/2) g(t)^2 score: g must be squared (with g = 1 you could not tell).",
             where=where),
        Hint(2 * x, "the probability-flow ODE has half the score term: (1/2) g^2 score.", where=where),
        Hint(-4 * x, "the sign of the score term is flipped: f minus (1/2) g^2 score.", where=where),
    ])


PC_WHERE = ("section 5, predictor-corrector: the corrector (a Langevin step with step size eps and noise "
            "sqrt(2 eps) z, n_corrector times at each t_i) and the predictor (the reverse Euler-Maruyama step).")


@exercise("pc_sample")
def test_pc_sample_keeps_a_stationary_gaussian(sub, rng):
    """pc_sample of N(0, I) data (every p_t is N(0, I)): the samples stay N(0, I)"""
    n, n_steps, n_corrector = 2000, 20, 6
    got, calls = sub.probe("probe_pc_sample_gaussian", [0.0, 0.0], 1.0, n, n_steps, 0.3, n_corrector, 3)
    expect(isinstance(got, torch.Tensor) and tuple(got.shape) == (n, 2),
           f"pc_sample should return samples with x_T's shape ({n}, 2).")
    expect(bool(torch.isfinite(got).all()) and float(got.abs().max()) < 1e3,
           "pc_sample's samples blew up (NaN, inf or huge values) on N(0, I) data, where nothing should move much.",
           "Hint: the reverse drift is f - g^2 score and the step goes from t to t - dt: check the sign of the "
           "score term.", "Where to look: section 5, the reverse SDE (Song et al. eq. 6) and its Euler-Maruyama step.")
    expect(calls >= n_steps * (1 + n_corrector),
           f"pc_sample evaluated the score {calls} times with n_steps={n_steps}, n_corrector={n_corrector}; "
           f"a predictor-corrector sampler needs at least n_steps (1 + n_corrector) = {n_steps * (1 + n_corrector)}.",
           "Hint: run n_corrector Langevin corrector steps at every time t_i, before its predictor step.",
           "Where to look: " + PC_WHERE)
    var = float(got.var(0).mean())
    expect(var > 0.8, f"the samples' variance is {var:.3g}; N(0, I) data should give about 1 (0.8 to 1.3).",
           "Hint: the samples are too concentrated: the corrector's noise is sqrt(2 eps) z.", "Where to look: " + PC_WHERE)
    expect(var < 1.3, f"the samples' variance is {var:.3g}; N(0, I) data should give about 1 (0.8 to 1.3).",
           "Hint: the samples are too spread out: check the predictor's drift f - g^2 score and its noise "
           "g sqrt(dt) z.", "Where to look: " + PC_WHERE)


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
    got = sub.call("pf_ode_log_prob", Ref(vp_gaussian_score, [0.0, 0.0], 1.0), X3, Ref(vp), 4)
    expect_close(got, -0.5 * (X3 ** 2).sum(1) - math.log(2 * math.pi), "pf_ode_log_prob for N(0, I) data",
                 rtol=1e-4, atol=1e-4, hints=[
                     Hint(torch.zeros(3), "the prior term log N(x_1; 0, I) at the end point x_1 is missing.",
                          where=PF_WHERE)])


PF_WHERE = "section 6: log p_0(x_0) = log N(x_1; 0, I) + the integral of the divergence (Song et al., Appendix D.2)."


@exercise("pf_ode_log_prob")
def test_pf_ode_log_prob_gaussian(sub, rng):
    """pf_ode_log_prob of N(mu, 0.6^2 I) data, against its closed form"""
    mu, s = torch.tensor([0.5, -0.5]), 0.6
    x = mu + s * torch.randn(6, 2, generator=rng)
    expected = _mixture_log_prob(x, mu[None], torch.tensor([s]), torch.ones(1))
    got = sub.call("pf_ode_log_prob", Ref(vp_gaussian_score, mu, s), x, Ref(vp), 10)
    # the ODE's end point in closed form: x_t - m(t) mu = sqrt(v(t)) / s (x - mu), v(t) = m^2 s^2 + 1 - m^2
    m1 = math.exp(-0.05 - 0.25 * 19.9)
    x1 = m1 * mu + math.sqrt(m1 ** 2 * s ** 2 + 1 - m1 ** 2) / s * (x - mu)
    prior = -0.5 * (x1 ** 2).sum(1) - math.log(2 * math.pi)
    integral = expected - prior
    expect_close(got, expected, "pf_ode_log_prob(score of N(mu, 0.6^2 I) data, x, VP SDE, 10 steps)",
                 rtol=0.0, atol=0.06, hints=[
                     Hint(prior - integral, "log p_0(x) = log p_1(x_1) + the integral of the divergence from t = 0 "
                                            "to 1: add the integral (you subtracted it).", where=PF_WHERE),
                     Hint(integral, "the prior term log N(x_1; 0, I) at the end point x_1 is missing.", where=PF_WHERE),
                     Hint(-0.5 * (x ** 2).sum(1) - math.log(2 * math.pi) + integral,
                          "evaluate the prior at the end point x_1 of the ODE path, not at x.", where=PF_WHERE),
                 ])


@exercise("eps_to_score")
def test_eps_to_score_simple(sub, rng):
    """eps_to_score divides by the std, with a minus sign"""
    eps = torch.tensor([[1.0, -2.0], [0.5, 0.5]])
    std = torch.tensor([0.5, 2.0])
    got = sub.call("eps_to_score", eps, std)
    expect_close(got, torch.tensor([[-2.0, 4.0], [-0.25, -0.25]]), "eps_to_score(eps, std)", hints=[
        Hint(torch.tensor([[2.0, -4.0], [0.25, 0.25]]), "score = -eps / std: the minus sign is missing.")])


# -- questions ("predict, then run"; a short derivation) -------------------------------------------
VP_STATIONARY_WHERE = ("section 4: the VP SDE's drift -beta x / 2 and noise sqrt(beta) dw; write d mean / dt and "
                       "d variance / dt (an Ornstein-Uhlenbeck process).")
VP_STATIONARY_WHY_NOT = {
    "b": "the drift -beta(t) x / 2 pulls every point towards 0: the mean decays like m(t), it does not stay.",
    "c": "the pull of the drift and the noise balance at variance 1 whatever beta is: d var / dt = beta (1 - var).",
    "d": "that is the VE SDE (noise, no drift); the VP SDE's drift keeps the variance bounded.",
}
VP_VARIANCE_WHERE = ("section 4: x_t = m(t) x_0 + sigma(t) z with z independent of x_0; the variance of a sum of "
                     "independent terms, and of a multiple of one.")


def vp_variance_hints(v0, t):
    """Realistic wrong derivations of Var(x_t) (per coordinate) for data of variance v0."""
    m = torch.exp(-0.05 * t - 0.25 * t ** 2 * 19.9)
    return [
        Hint(v0 + 1 - m ** 2, "the data's part is scaled too: x_t = m(t) x_0 + sigma(t) z, so it contributes "
                              "m(t)^2 v0, not v0.", where=VP_VARIANCE_WHERE),
        Hint(m * v0 + 1 - m ** 2, "a multiple m x_0 has variance m^2 Var(x_0): square m(t).", where=VP_VARIANCE_WHERE),
        Hint(m ** 2 * v0 + (1 - m ** 2).sqrt(), "the noise contributes sigma(t)^2 = 1 - m(t)^2, a variance, "
                                                "not the std sigma(t).", where=VP_VARIANCE_WHERE),
        Hint(torch.ones_like(t), "the variance is 1 only for data of variance 1 (that is the 'preserving' in VP).",
             where=VP_VARIANCE_WHERE),
    ]


@exercise("predict_vp_stationary", weight=0.5)
def test_predict_vp_stationary(sub, rng):
    """where the VP SDE takes any data after a long time"""
    expect_choice(sub.call("predict_vp_stationary"), "a", "predict_vp_stationary()",
                  why_not=VP_STATIONARY_WHY_NOT, where=VP_STATIONARY_WHERE)


@exercise("derive_vp_variance", weight=0.5)
def test_derive_vp_variance(sub, rng):
    """Var(x_t) under the VP SDE for data of variance v0, at several times"""
    t = torch.tensor([0.05, 0.2, 0.5, 0.9])
    v0 = torch.tensor([4.0, 0.25, 2.0, 9.0])
    m = torch.exp(-0.05 * t - 0.25 * t ** 2 * 19.9)
    got = sub.call("derive_vp_variance", v0, t)
    expect_close(got, m ** 2 * v0 + 1 - m ** 2, "derive_vp_variance(v0, t)", rtol=1e-4, atol=1e-5,
                 hints=vp_variance_hints(v0, t))

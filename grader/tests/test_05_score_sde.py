"""Hidden tests of notebook 05 (score matching and SDEs). Inputs are drawn at grading time from
``rng``; expected answers come from the course library (the reference) and closed forms; samplers
are judged by statistics against exact mixture scores (no trained model anywhere)."""
from __future__ import annotations

import math

import torch

from course import flows, gmm, score, sde
from grader.engine.api import Hint, Ref, build, exercise, expect, expect_close, expect_moments
from grader.public.nb05_score_sde import (gaussian_score, toy_score_model, vp, vp_mixture_score,
                                         vp_variance_hints)


def random_mixture(rng, k=3, d=2):
    means = torch.randn(k, d, generator=rng) * 1.5
    stds = torch.rand(k, generator=rng) * 0.5 + 0.3
    weights = torch.rand(k, generator=rng) + 0.2
    return means, stds, weights / weights.sum()


def points(rng, n=32, d=2, scale=1.5):
    return torch.randn(n, d, generator=rng) * scale


def times(rng, n, lo=0.05, hi=0.95):
    return torch.rand(n, generator=rng) * (hi - lo) + lo


def _component_log_probs(x, means, stds, weights, var_of=lambda s: s ** 2, with_weights=True, with_norm=True):
    """Every component's log term, with switches that reproduce common mistakes: (N, K)."""
    d = x.shape[1]
    var = var_of(stds)
    sq = ((x[:, None, :] - means[None]) ** 2).sum(-1)
    out = -0.5 * sq / var
    if with_norm:
        out = out - 0.5 * d * torch.log(2 * math.pi * var)
    return out + torch.log(weights) if with_weights else out


# -- gmm_log_prob ------------------------------------------------------------------------------
@exercise("gmm_log_prob")
def test_gmm_log_prob_random_mixture(sub, rng):
    """gmm_log_prob of a random 3-component mixture in 3 dimensions"""
    means, stds, weights = random_mixture(rng, 3, 3)
    x = points(rng, 40, 3)
    expected = gmm.gmm_log_prob(x, means, stds, weights)
    got = sub.call("gmm_log_prob", x, means, stds, weights)
    expect_close(got, expected, "gmm_log_prob(x, means, stds, weights)", rtol=1e-4, atol=1e-4, hints=[
        Hint(torch.logsumexp(_component_log_probs(x, means, stds, weights, with_weights=False), 1),
             "the mixture weights are missing: add log w_k to each component's log density."),
        Hint(torch.logsumexp(_component_log_probs(x, means, stds, weights, var_of=lambda s: s), 1),
             "you used the std s_k where the variance s_k^2 belongs."),
        Hint(torch.logsumexp(_component_log_probs(x, means, stds, weights, with_norm=False), 1),
             "the Gaussian normalising constant -d/2 log(2 pi s_k^2) is missing."),
        Hint(torch.logsumexp(_component_log_probs(x, means, stds, weights) + 0.5 * 2 * torch.log(
            2 * math.pi * stds ** 2)[None], 1),
             "the normalising constant must be -d/2 log(2 pi s_k^2), with d the dimension (here 3)."),
    ])


@exercise("gmm_log_prob")
def test_gmm_log_prob_far_points(sub, rng):
    """gmm_log_prob is finite far from every component (stable logsumexp)"""
    means, stds, weights = random_mixture(rng, 4)
    stds = stds * 0.2
    x = points(rng, 16) + 40.0  # far away: every exp underflows in float32
    got = sub.call("gmm_log_prob", x, means, stds, weights)
    expect(isinstance(got, torch.Tensor) and bool(torch.isfinite(got).all()),
           "gmm_log_prob returned -inf or NaN for points far from the components.",
           "Hint: exp of a very negative number underflows to 0 in float32, and log(0) = -inf: combine the "
           "components' log terms without leaving the log domain (the log-sum-exp trick).",
           "Where to look: section 1, the formula for log p(x) and the sentence below it.")
    expect_close(got, gmm.gmm_log_prob(x, means, stds, weights), "gmm_log_prob far from the mixture",
                 rtol=1e-4, atol=1e-2)


# -- gmm_score ---------------------------------------------------------------------------------
@exercise("gmm_score")
def test_gmm_score_random_mixture(sub, rng):
    """gmm_score of a random mixture"""
    means, stds, weights = random_mixture(rng, 3)
    x = points(rng, 40)
    expected = gmm.gmm_score(x, means, stds, weights)
    per_comp = (means[None] - x[:, None]) / (stds ** 2)[None, :, None]  # (N, K, d)
    resp = torch.softmax(_component_log_probs(x, means, stds, weights), 1)[:, :, None]
    resp_no_w = torch.softmax(_component_log_probs(x, means, stds, weights, with_weights=False), 1)[:, :, None]
    per_comp_std = (means[None] - x[:, None]) / stds[None, :, None]
    got = sub.call("gmm_score", x, means, stds, weights)
    expect_close(got, expected, "gmm_score(x, means, stds, weights)", rtol=1e-3, atol=1e-4, hints=[
        Hint(-expected, "the score points towards the means: (mu_k - x) / s_k^2, not (x - mu_k) / s_k^2."),
        Hint((weights[None, :, None] * per_comp).sum(1),
             "weight each component by its responsibility r_k(x) = w_k N_k(x) / p(x), not by w_k alone."),
        Hint(per_comp.mean(1), "average the components' scores with the responsibilities r_k(x), not uniformly."),
        Hint((resp_no_w * per_comp).sum(1), "the responsibilities must include the weights: r_k ∝ w_k N_k(x)."),
        Hint((resp * per_comp_std).sum(1), "divide by the variance s_k^2, not the standard deviation s_k."),
    ])


@exercise("gmm_score")
def test_gmm_score_is_gradient(sub, rng):
    """gmm_score is the gradient of the log density (checked by autograd), in 3 dimensions"""
    means, stds, weights = random_mixture(rng, 2, 3)
    x = points(rng, 16, 3).requires_grad_(True)
    (expected,) = torch.autograd.grad(gmm.gmm_log_prob(x, means, stds, weights).sum(), x)
    got = sub.call("gmm_score", x.detach(), means, stds, weights)
    expect_close(got, expected, "gmm_score(x, ...) against autograd of log p", rtol=1e-3, atol=1e-4)


# -- dsm_loss ----------------------------------------------------------------------------------
@exercise("dsm_loss")
def test_dsm_loss_toy_model(sub, rng):
    """dsm_loss with a toy score model that depends on x and sigma"""
    ref = Ref(toy_score_model, torch.randn(2, 2, generator=rng), torch.randn(2, generator=rng))
    model = build(ref)
    x0, noise = points(rng, 24), torch.randn(24, 2, generator=rng)
    sigma = torch.rand(24, generator=rng) * 1.5 + 0.1
    s = sigma[:, None]
    expected = score.dsm_loss(model, x0, sigma, noise)
    got = sub.call("dsm_loss", ref, x0, sigma, noise)
    expect_close(got, expected, "dsm_loss(score_model, x0, sigma, noise)", rtol=1e-4, atol=1e-5, hints=[
        Hint(((s * model(x0 + s * noise, sigma) - noise) ** 2).mean(),
             "the target score is -noise / sigma: the loss is (sigma s + noise)^2, with a plus."),
        Hint(((s * model(x0, sigma) + noise) ** 2).mean(),
             "evaluate the model at the noisy point x0 + sigma noise, not at x0."),
        Hint(((model(x0 + s * noise, sigma) + noise / s) ** 2).mean(),
             "you dropped the sigma^2 weighting: multiply the residual by sigma, "
             "(sigma s + noise)^2 = sigma^2 (s + noise / sigma)^2."),
        Hint(((s * model(x0 + s ** 2 * noise, sigma) + noise) ** 2).mean(),
             "the perturbation is x0 + sigma noise (sigma is a standard deviation, not a variance)."),
        Hint(((s * model(x0 + s * noise, sigma) + noise) ** 2).sum(),
             "the loss is a mean over all elements (like F.mse_loss), not a sum."),
        Hint(((s * model(x0 + s * noise, sigma) + noise) ** 2).sum(1).mean(),
             "the loss is a mean over all elements (like F.mse_loss), not a sum over dimensions."),
    ])


@exercise("dsm_loss")
def test_dsm_loss_zero_for_exact_score(sub, rng):
    """dsm_loss of the exact score of a perturbed point mass: residual zero on average? (sanity: scalar)"""
    ref = Ref(toy_score_model, torch.zeros(3, 3), torch.zeros(3))
    x0, noise = points(rng, 8, 3), torch.randn(8, 3, generator=rng)
    sigma = torch.full((8,), 0.7)
    got = sub.call("dsm_loss", ref, x0, sigma, noise)
    expect(isinstance(got, torch.Tensor) and got.dim() == 0,
           "dsm_loss should return a single number (a 0-dim tensor), the mean over all elements.")
    expect_close(got, score.dsm_loss(build(ref), x0, sigma, noise), "dsm_loss in 3 dimensions", rtol=1e-4)


# -- langevin_step -----------------------------------------------------------------------------
@exercise("langevin_step")
def test_langevin_step_random(sub, rng):
    """langevin_step on a Gaussian score with a random step size"""
    mu = torch.randn(2, generator=rng)
    s, h = 0.7, float(torch.rand(1, generator=rng)) * 0.05 + 0.01
    ref = Ref(gaussian_score, mu, s)
    x, z = points(rng, 20), torch.randn(20, 2, generator=rng)
    sc = build(ref)(x)
    got = sub.call("langevin_step", ref, x, h, z)
    expect_close(got, x + h * sc + math.sqrt(2 * h) * z, f"langevin_step(score_fn, x, step_size={h:.3g}, z)",
                 hints=[Hint(x + h * sc + math.sqrt(h) * z, "the noise is sqrt(2 step_size) z, not sqrt(step_size) z."),
                        Hint(x + h * sc, "the noise term sqrt(2 step_size) z is missing: Langevin dynamics is stochastic."),
                        Hint(x - h * sc + math.sqrt(2 * h) * z, "move along the score (+ step_size score): it points uphill in log p."),
                        Hint(x + h * sc + 2 * h * z, "the noise is sqrt(2 step_size) z, not 2 step_size z."),
                        Hint(x + 0.5 * h * sc + math.sqrt(h) * z,
                             "that is the step_size / 2 convention; here the step is x + step_size score + sqrt(2 step_size) z.")])


@exercise("langevin_step")
def test_langevin_chain_stationary(sub, rng):
    """many langevin_step calls keep N(mu, s^2 I) (about) stationary"""
    # One step from exact samples of N(mu, s^2) with step h gives variance (1 - h/s^2)^2 s^2 + 2h;
    # the right noise scale keeps it close to s^2.
    mu, s, h = torch.tensor([0.5, -1.0]), 1.0, 0.01
    x = mu + s * torch.randn(4000, 2, generator=rng)
    z = torch.randn(4000, 2, generator=rng)
    got = sub.call("langevin_step", Ref(gaussian_score, mu, s), x, h, z)
    var = ((1 - h / s ** 2) ** 2 * s ** 2 + 2 * h)
    expect_moments(got, mu, torch.eye(2) * var, "one Langevin step from N(mu, I)", hints=[
        Hint(lambda m, c: float(c.diagonal().mean()) < 0.995, "the noise is too small: it is sqrt(2 step_size) z.")])


# -- vp_marginal -------------------------------------------------------------------------------
@exercise("vp_marginal")
def test_vp_marginal_random_times(sub, rng):
    """vp_marginal at random times and a random schedule"""
    t = torch.rand(12, generator=rng)
    bmin, bmax = 0.1 + float(torch.rand(1, generator=rng)) * 0.2, 10 + float(torch.rand(1, generator=rng)) * 10
    mean_coef, std = sde.vp_marginal(t, bmin, bmax)
    integral = bmin * t + 0.5 * t ** 2 * (bmax - bmin)
    beta_t = bmin + t * (bmax - bmin)
    got = sub.call("vp_marginal", t, bmin, bmax)
    expect(isinstance(got, tuple) and len(got) == 2, "vp_marginal(t) should return a tuple (mean_coef, std).")
    expect_close(got[0], mean_coef, "mean_coef", rtol=1e-4, atol=1e-6, hints=[
        Hint(torch.exp(-integral), "mean_coef = exp(-1/2 ∫_0^t beta(s) ds): the 1/2 is missing."),
        Hint(torch.exp(-0.5 * beta_t * t), "integrate beta: ∫_0^t beta(s) ds = beta_min t + t^2 (beta_max - beta_min) / 2, "
                                           "not beta(t) t."),
        Hint(torch.exp(-0.5 * (bmin * t + t ** 2 * (bmax - bmin))),
             "∫_0^t s ds = t^2 / 2: the t^2 term of the integral has a 1/2."),
    ])
    expect_close(got[1], std, "std", rtol=1e-4, atol=1e-5, hints=[
        Hint(1 - mean_coef ** 2, "you returned the variance 1 - mean_coef^2; the std is its square root."),
        Hint(1 - mean_coef, "std = sqrt(1 - mean_coef^2), not 1 - mean_coef."),
        Hint(torch.sqrt(1 - mean_coef), "std = sqrt(1 - mean_coef^2): square mean_coef first."),
    ])


@exercise("vp_marginal")
def test_vp_marginal_small_t(sub, rng):
    """vp_marginal near t = 0 (std grows like sqrt(beta_min t))"""
    t = torch.tensor([1e-4, 1e-3, 1e-2])
    got = sub.call("vp_marginal", t)
    expect(isinstance(got, tuple) and len(got) == 2, "vp_marginal(t) should return a tuple (mean_coef, std).")
    expect_close(got[1], sde.vp_marginal(t)[1], "std at t = 1e-4, 1e-3, 1e-2", rtol=2e-2, atol=1e-4)


# -- vp_sde ------------------------------------------------------------------------------------
def _diffusion_as_vector(g, b):
    return g.reshape(b) if isinstance(g, torch.Tensor) and g.numel() == b else g


@exercise("vp_sde")
def test_vp_sde_random(sub, rng):
    """vp_sde at random times"""
    x, t = points(rng, 16), times(rng, 16, 0.0, 1.0)
    drift, g = sde.vp_sde(x, t)
    beta = sde.vp_beta(t)
    got = sub.call("vp_sde", x, t)
    expect(isinstance(got, tuple) and len(got) == 2, "vp_sde(x, t) should return a tuple (drift, diffusion).")
    expect_close(got[0], drift, "the drift f(x, t)", hints=[
        Hint(0.5 * beta[:, None] * x, "the drift -beta(t) x / 2 pulls x towards 0: a minus sign is missing."),
        Hint(-beta[:, None] * x, "the drift is -beta(t) x / 2: the 1/2 is missing."),
        Hint(-0.5 * torch.sqrt(beta)[:, None] * x, "the drift uses beta(t), not sqrt(beta(t))."),
        Hint(-0.5 * (20.0 - t * 19.9)[:, None] * x, "beta(t) = beta_min + t (beta_max - beta_min) grows with t "
                                                    "(t = 1 is noise)."),
    ])
    expect_close(_diffusion_as_vector(got[1], 16), g, "the diffusion g(t) (one value per sample, shape (B,))", hints=[
        Hint(beta, "g(t) = sqrt(beta(t)): you returned beta(t) where its square root belongs."),
        Hint(torch.sqrt(0.5 * beta), "g(t) = sqrt(beta(t)), without a 1/2."),
        Hint(torch.sqrt(20.0 - t * 19.9), "beta(t) = beta_min + t (beta_max - beta_min) grows with t."),
    ])


@exercise("vp_sde")
def test_vp_sde_schedule_arguments(sub, rng):
    """vp_sde uses its beta_min and beta_max arguments"""
    x, t = points(rng, 8), times(rng, 8, 0.0, 1.0)
    got = sub.call("vp_sde", x, t, 1.0, 5.0)
    expect(isinstance(got, tuple) and len(got) == 2, "vp_sde(x, t) should return a tuple (drift, diffusion).")
    drift, g = sde.vp_sde(x, t, 1.0, 5.0)
    expect_close(got[0], drift, "the drift with beta_min=1, beta_max=5")
    expect_close(_diffusion_as_vector(got[1], 8), g, "the diffusion with beta_min=1, beta_max=5")


# -- reverse_sde_step --------------------------------------------------------------------------
@exercise("reverse_sde_step")
def test_reverse_sde_step_vp_mixture(sub, rng):
    """reverse_sde_step on the VP SDE with an exact mixture score"""
    means, stds, weights = random_mixture(rng)
    score_ref, sde_ref = Ref(vp_mixture_score, means, stds, weights), Ref(vp)
    x, t, z = points(rng, 24), times(rng, 24), torch.randn(24, 2, generator=rng)
    dt = 0.02
    s = build(score_ref)(x, t)
    f, g = sde.vp_sde(x, t)
    g = g[:, None]
    expected = sde.reverse_sde_step(build(score_ref), x, t, dt, z, build(sde_ref))
    got = sub.call("reverse_sde_step", score_ref, x, t, dt, z, sde_ref)
    expect_close(got, expected, "reverse_sde_step(score_fn, x, t, dt=0.02, z, sde)", rtol=1e-4, atol=1e-4, hints=[
        Hint(x - (f + g ** 2 * s) * dt + g * math.sqrt(dt) * z,
             "the reverse drift is f - g^2 score (Song et al. eq. 6): the sign of the score term is flipped."),
        Hint(x + (f - g ** 2 * s) * dt + g * math.sqrt(dt) * z,
             "the step goes backwards in time, from t to t - dt: x - [f - g^2 score] dt."),
        Hint(x - (f - g * s) * dt + g * math.sqrt(dt) * z, "the score term is g(t)^2 score, not g(t) score."),
        Hint(x - (f - g ** 2 * s) * dt + g * z, "the noise is g sqrt(dt) z: its std grows like sqrt(dt)."),
        Hint(x - (f - g ** 2 * s) * dt + g * dt * z, "the noise is g sqrt(dt) z, not g dt z."),
        Hint(x - (f - g ** 2 * s) * dt, "the noise term g sqrt(dt) z is missing (that would be the ODE)."),
        Hint(x - (f - 0.5 * g ** 2 * s) * dt + g * math.sqrt(dt) * z,
             "1/2 g^2 score belongs to the probability-flow ODE; the reverse SDE has the full g^2 score."),
    ])


@exercise("reverse_sde_step")
def test_reverse_sde_step_keeps_gaussian(sub, rng):
    """one reverse step on N(0, I) data keeps N(0, I) (statistics)"""
    # For data N(0, I) under the VP SDE, p_t = N(0, I) for all t: the reverse step must keep it.
    x, z = torch.randn(4000, 2, generator=rng), torch.randn(4000, 2, generator=rng)
    t = torch.full((4000,), 0.5)
    got = sub.call("reverse_sde_step", Ref(vp_mixture_score, [[0.0, 0.0]], [1.0], [1.0]), x, t, 0.01, z, Ref(vp))
    beta = float(sde.vp_beta(torch.tensor(0.5)))
    var = (1 - 0.5 * beta * 0.01) ** 2 + beta * 0.01  # drift f - g^2 s = beta x / 2
    expect_moments(got, torch.zeros(2), torch.eye(2) * var, "one reverse step from N(0, I)")


# -- pf_ode_drift ------------------------------------------------------------------------------
@exercise("pf_ode_drift")
def test_pf_ode_drift_vp_mixture(sub, rng):
    """pf_ode_drift on the VP SDE with an exact mixture score"""
    means, stds, weights = random_mixture(rng)
    score_ref, sde_ref = Ref(vp_mixture_score, means, stds, weights), Ref(vp)
    x, t = points(rng, 24), times(rng, 24)
    s = build(score_ref)(x, t)
    f, g = sde.vp_sde(x, t)
    g = g[:, None]
    got = sub.call("pf_ode_drift", score_ref, x, t, sde_ref)
    expect_close(got, f - 0.5 * g ** 2 * s, "pf_ode_drift(score_fn, x, t, sde)", rtol=1e-4, atol=1e-4, hints=[
        Hint(f - g ** 2 * s, "the probability-flow ODE has half the score term: f - (1/2) g^2 score "
                             "(f - g^2 score is the reverse SDE's drift)."),
        Hint(f + 0.5 * g ** 2 * s, "the drift is f - (1/2) g^2 score: the sign of the score term is flipped."),
        Hint(f - 0.5 * g * s, "the score term is (1/2) g(t)^2 score, not (1/2) g(t) score."),
        Hint(-0.5 * g ** 2 * s, "the SDE's own drift f(x, t) is missing."),
    ])


# -- pc_sample ---------------------------------------------------------------------------------
def _gaussian_check(sub, rng, n_steps, snr, n_corrector, n=3000):
    mu = torch.randn(2, generator=rng)
    s = 0.4 + float(torch.rand(1, generator=rng)) * 0.3
    seed = int(torch.randint(0, 2 ** 30, (1,), generator=rng))
    got, calls = sub.probe("probe_pc_sample", mu[None], torch.tensor([s]), torch.ones(1), n, n_steps, snr,
                           n_corrector, seed, timeout=30)
    expect(isinstance(got, torch.Tensor) and tuple(got.shape) == (n, 2),
           f"pc_sample should return samples with x_T's shape ({n}, 2).")
    expect(bool(torch.isfinite(got).all()) and float(got.abs().max()) < 1e3,
           "pc_sample's samples blew up (NaN, inf or huge values).",
           "Hint: the reverse drift is f - g^2 score, stepping from t to t - dt; check the sign.")
    return got, calls, mu, s


@exercise("pc_sample")
def test_pc_sample_gaussian_statistics(sub, rng):
    """pc_sample with the exact score of a Gaussian gives that Gaussian (mean and covariance)"""
    n_steps, n_corrector = 100, 1
    got, calls, mu, s = _gaussian_check(sub, rng, n_steps, 0.16, n_corrector)
    expect(calls >= n_steps * (1 + n_corrector),
           f"pc_sample evaluated the score {calls} times with n_steps={n_steps}, n_corrector={n_corrector}; "
           f"a predictor-corrector sampler needs at least n_steps (1 + n_corrector) = {n_steps * (1 + n_corrector)}.",
           "Hint: run n_corrector Langevin corrector steps at every time, before each predictor step.")
    expect_moments(got, mu, torch.eye(2) * s ** 2 * 1.0, "pc_sample(score of N(mu, s^2 I))", n_sigma=6, hints=[
        Hint(lambda m, c: float(c.diagonal().mean()) < 0.85 * s ** 2,
             "the samples are too concentrated: check the noise of both steps, sqrt(2 eps) z for the "
             "corrector and g sqrt(dt) z for the predictor."),
        Hint(lambda m, c: float(c.diagonal().mean()) > 1.2 * s ** 2,
             "the samples are too spread out: check the drift of the predictor, f - g^2 score, and "
             "that time runs from 1 down to 0."),
    ])


@exercise("pc_sample")
def test_pc_sample_corrector_only_matters(sub, rng):
    """pc_sample with many corrector steps keeps the right spread (the corrector's noise scale)"""
    got, calls, mu, s = _gaussian_check(sub, rng, 20, 0.3, 6)
    expect(calls >= 20 * 7, f"pc_sample evaluated the score {calls} times with n_steps=20, n_corrector=6; "
           "expected at least 140 (one per corrector step and one per predictor step).",
           "Hint: run n_corrector Langevin corrector steps at every time, before each predictor step.")
    var = float(got.var(0).mean())
    # the reference sampler on the same problem: 20 coarse steps leave a discretisation bias, so the
    # spread is compared with what a correct sampler gives, not with s^2
    from course.sde import pc_sample as reference_pc_sample
    from grader.public.nb05_score_sde import probe_pc_sample

    ref, _ = probe_pc_sample({"pc_sample": reference_pc_sample}, mu[None], torch.tensor([s]), torch.ones(1),
                             3000, 20, 0.3, 6, seed=int(torch.randint(0, 2 ** 30, (1,), generator=rng)))
    ref_var = float(ref.var(0).mean())
    expect(0.75 * ref_var < var < 1.33 * ref_var,
           f"with 6 corrector steps per step the samples' variance is {var:.3g}; a correct sampler gives "
           f"about {ref_var:.3g} here (the target's is {s ** 2:.3g}).",
           "Hint: the corrector is a Langevin step x + eps score + sqrt(2 eps) z, with "
           "eps = 2 (snr ||z|| / ||score||)^2 (norms averaged over the batch).")


@exercise("pc_sample")
def test_pc_sample_mixture_weights(sub, rng):
    """pc_sample on a two-component mixture finds both modes with the right weights"""
    means = torch.tensor([[-2.0, 0.0], [2.0, 0.0]])
    w0 = 0.2 + float(torch.rand(1, generator=rng)) * 0.2
    seed = int(torch.randint(0, 2 ** 30, (1,), generator=rng))
    n = 3000
    got, _ = sub.probe("probe_pc_sample", means, torch.tensor([0.3, 0.3]), torch.tensor([w0, 1 - w0]), n, 100,
                       0.16, 1, seed, timeout=30)
    expect(isinstance(got, torch.Tensor) and tuple(got.shape) == (n, 2) and bool(torch.isfinite(got).all()),
           "pc_sample should return finite samples with x_T's shape.")
    frac = float((got[:, 0] < 0).float().mean())
    se = math.sqrt(w0 * (1 - w0) / n)
    expect(abs(frac - w0) < 5 * se + 0.02,
           f"{frac:.3f} of the samples fell in the left mode, whose weight is {w0:.3f}.",
           "Hint: check the predictor step (f - g^2 score, noise g sqrt(dt) z) and the time grid "
           "t_i = 1 - i / n_steps.")
    near = (got - means[(got[:, 0] > 0).long()]).norm(dim=1)
    expect(float(near.median()) < 0.6, "the samples are not concentrated around the two means.")


# -- pf_ode_log_prob ---------------------------------------------------------------------------
@exercise("pf_ode_log_prob")
def test_pf_ode_log_prob_mixture(sub, rng):
    """pf_ode_log_prob with the exact score matches the true mixture log density"""
    means, stds, weights = random_mixture(rng, 3)
    score_ref, sde_ref = Ref(vp_mixture_score, means, stds, weights), Ref(vp)
    x = gmm.GaussianMixture(means, stds, weights).sample(32, rng)
    true = gmm.gmm_log_prob(x, means, stds, weights)
    n_steps = 40
    score_fn, vp_sde = build(score_ref), build(sde_ref)
    x1, delta = sde.pf_ode_endpoint(score_fn, x, vp_sde, n_steps)
    prior = flows.standard_normal_log_prob(x1)
    doubled = lambda y, t: (vp_sde(y, t)[0], vp_sde(y, t)[1] * math.sqrt(2.0))  # f - g^2 s as the ODE drift
    got = sub.call("pf_ode_log_prob", score_ref, x, sde_ref, n_steps, timeout=30)
    expect_close(got, true, f"pf_ode_log_prob(score_fn, x, sde, n_steps={n_steps}) against the true log p(x)",
                 rtol=0.0, atol=0.05, hints=[
                     Hint(prior - delta, "log p_0(x) = log p_1(x_1) + ∫_0^1 div(drift) dt: add the integral of the "
                                         "divergence when you integrate from t = 0 to 1."),
                     Hint(delta, "the prior term log N(x_1; 0, I) at the end point x_1 is missing."),
                     Hint(flows.standard_normal_log_prob(x) + delta,
                          "evaluate the prior at the end point x_1 of the ODE path, not at x."),
                     Hint(lambda: sde.pf_ode_log_prob(score_fn, x, doubled, n_steps),
                          "use the probability-flow drift f - (1/2) g^2 score, not the reverse SDE's f - g^2 score."),
                 ])
    expect_close(got, prior + delta, "pf_ode_log_prob against the reference (RK4)", rtol=0.0, atol=0.02)


@exercise("pf_ode_log_prob")
def test_pf_ode_log_prob_gaussian_closed_form(sub, rng):
    """pf_ode_log_prob of Gaussian data N(mu, s^2 I), in closed form"""
    mu = torch.randn(1, 2, generator=rng)
    s = 0.5 + float(torch.rand(1, generator=rng)) * 0.5
    x = mu + s * torch.randn(16, 2, generator=rng)
    got = sub.call("pf_ode_log_prob", Ref(vp_mixture_score, mu, [s], [1.0]), x, Ref(vp), 30, timeout=30)
    expected = gmm.gmm_log_prob(x, mu, torch.tensor([s]), torch.ones(1))
    expect_close(got, expected, "pf_ode_log_prob for N(mu, s^2 I) data", rtol=0.0, atol=0.05)


# -- eps_to_score ------------------------------------------------------------------------------
@exercise("eps_to_score")
def test_eps_to_score_random(sub, rng):
    """eps_to_score with one std per sample"""
    eps, std = torch.randn(20, 3, generator=rng), torch.rand(20, generator=rng) * 0.9 + 0.1
    got = sub.call("eps_to_score", eps, std)
    sd = std[:, None]
    expect_close(got, -eps / sd, "eps_to_score(eps, std)", hints=[
        Hint(eps / sd, "score = -eps / std: the minus sign is missing (the score points back to the data)."),
        Hint(-eps / sd ** 2, "divide by the std, not the variance: score = -eps / std."),
        Hint(-eps * sd, "score = -eps / std: divide by the std, do not multiply."),
        Hint(-sd * eps, "that is eps from a score (eps = -std score); here the score is -eps / std."),
    ])


@exercise("eps_to_score")
def test_eps_to_score_inverts_q_sample(sub, rng):
    """eps_to_score gives the exact score of x_t | x0 = N(a x0, std^2 I)"""
    x0, eps = torch.randn(10, 2, generator=rng), torch.randn(10, 2, generator=rng)
    mean_coef, std = sde.vp_marginal(times(rng, 10))
    xt = mean_coef[:, None] * x0 + std[:, None] * eps
    got = sub.call("eps_to_score", eps, std)
    expect_close(got, -(xt - mean_coef[:, None] * x0) / std[:, None] ** 2, "eps_to_score against grad log N(x_t; a x0, std^2)",
                 rtol=1e-4, atol=1e-4)


# -- questions ---------------------------------------------------------------------------------
@exercise("derive_vp_variance", weight=0.5)
def test_derive_vp_variance_random(sub, rng):
    """Var(x_t) under the VP SDE for random data variances and times"""
    t, v0 = torch.rand(6, generator=rng) * 0.9 + 0.05, torch.rand(6, generator=rng) * 5 + 0.1
    mean_coef, std = sde.vp_marginal(t)
    got = sub.call("derive_vp_variance", v0, t)
    expect_close(got, mean_coef ** 2 * v0 + std ** 2, "derive_vp_variance(v0, t) at random v0, t", rtol=1e-4,
                 atol=1e-5, hints=vp_variance_hints(v0, t))

"""Hidden tests of notebook 06 (rectified flow). Inputs are drawn at grading time from ``rng``;
expected answers come from the course library (the reference) and closed-form oracles: the exact
marginal velocity and score of Gaussian mixtures stand in for trained models."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from course import rectified_flow as rf
from course import velocity
from course.gmm import gmm_score, noised_gmm_log_prob_and_score
from grader.engine.api import Hint, Mismatch, Ref, build, exercise, expect, expect_close, expect_moments, expect_scalar, matches
from grader.public.nb06_rectified_flow import (check_logit_normal, expect_no_graph, expect_pair,
                                               gaussian_velocity, generator, sorted_rows,
                                               tanh_velocity, tiny_mlp)


def points(rng, n=64, d=2):
    return torch.randn(n, d, generator=rng)


def times(rng, n=64, lo=0.05, hi=0.95):
    return lo + (hi - lo) * torch.rand(n, generator=rng)


def random_tanh_velocity(rng, d=2):
    return Ref(tanh_velocity, torch.randn(d, d, generator=rng), torch.randn(d, generator=rng), 0.8)


def random_mixture(rng, k=3, d=2):
    """A random Gaussian mixture (means, stds, weights), weights normalised."""
    means = 2 * torch.randn(k, d, generator=rng)
    stds = 0.2 + 0.5 * torch.rand(k, generator=rng)
    weights = torch.rand(k, generator=rng) + 0.2
    return means, stds, weights / weights.sum()


def mixture_sample(means, stds, weights, n, rng):
    k = torch.multinomial(weights, n, replacement=True, generator=rng)
    return means[k] + stds[k, None] * torch.randn(n, means.shape[1], generator=rng)


def mixture_moments(means, stds, weights):
    mean = (weights[:, None] * means).sum(0)
    d = means.shape[1]
    second = sum(w * (torch.outer(m, m) + s ** 2 * torch.eye(d)) for m, s, w in zip(means, stds, weights))
    return mean, second - torch.outer(mean, mean)


def euler(f, x0, grid):
    """Euler on an arbitrary list of step start times (to build the hint of a wrong grid)."""
    x, dt = x0, 1.0 / len(grid)
    for t in grid:
        x = x + dt * f(x, torch.full((x.shape[0],), float(t)))
    return x


# -- interpolate ------------------------------------------------------------------------------
@exercise("interpolate")
def test_interpolate_random(sub, rng):
    """interpolate on random points and times"""
    x0, x1, t = points(rng), points(rng) + 3, torch.rand(64, generator=rng)
    tc = t[:, None]
    expect_close(sub.call("interpolate", x0, x1, t), (1 - tc) * x0 + tc * x1, "interpolate(x0, x1, t)", hints=[
        Hint(tc * x0 + (1 - tc) * x1, "t and 1 - t are swapped: here t = 0 is the noise x0 and t = 1 the data x1, "
                                      "so x_t = (1 - t) x0 + t x1 (the opposite of notebook 05's convention)."),
        Hint(x0 + tc * x1, "the weight of x0 is 1 - t, not 1: x_t = (1 - t) x0 + t x1."),
        Hint(tc * (x1 - x0), "you returned t (x1 - x0), the displacement: add it to x0."),
    ])


@exercise("interpolate", weight=0.5)
def test_interpolate_images(sub, rng):
    """interpolate on images (B, C, H, W): t must broadcast over every dimension after the first"""
    x0, x1, t = torch.randn(5, 1, 4, 4, generator=rng), torch.randn(5, 1, 4, 4, generator=rng), torch.rand(5, generator=rng)
    tc = t.reshape(5, 1, 1, 1)
    expect_close(sub.call("interpolate", x0, x1, t), (1 - tc) * x0 + tc * x1, "interpolate(x0, x1, t) on (5, 1, 4, 4)")


# -- cfm_loss ---------------------------------------------------------------------------------
@exercise("cfm_loss")
def test_cfm_loss_tanh_field(sub, rng):
    """cfm_loss with a nonlinear velocity field"""
    ref, x0, x1, t = random_tanh_velocity(rng), points(rng), points(rng) * 0.5 + 2, torch.rand(64, generator=rng)
    v = build(ref)
    xt = rf.interpolate(x0, x1, t)
    pred = v(xt, t)
    expected = F.mse_loss(pred, x1 - x0)
    got = sub.call("cfm_loss", ref, x0, x1, t)
    expect_scalar(got, float(expected), "cfm_loss(v_model, x0, x1, t)", rtol=1e-4, hints=[
        Hint(F.mse_loss(pred, x0 - x1), "the target velocity is x1 - x0 (noise to data, t = 0 to 1), not x0 - x1."),
        Hint(((pred - (x1 - x0)) ** 2).sum(), "take the mean over all elements, not the sum.",
             where="section 2: the loss is an expectation, written as a mean over all elements."),
        Hint(((pred - (x1 - x0)) ** 2).sum(1).mean(), "take the mean over all elements, "
                                                      "not the sum over coordinates then the mean over samples.",
             where="the sentence under the loss in section 2."),
        Hint(F.mse_loss(v(x0, t), x1 - x0), "evaluate the model at x_t = (1 - t) x0 + t x1, not at the noise x0."),
        Hint(F.mse_loss(v(rf.interpolate(x1, x0, t), t), x1 - x0),
             "the model's input x_t has t and 1 - t swapped: x_t = (1 - t) x0 + t x1."),
    ])


@exercise("cfm_loss")
def test_cfm_loss_network(sub, rng):
    """cfm_loss with a small network on 3-dimensional points"""
    x0, x1, t = points(rng, 32, 3), points(rng, 32, 3), torch.rand(32, generator=rng)
    seed = int(torch.randint(0, 1000, (1,), generator=rng))
    net = build(Ref(tiny_mlp, seed, 3))
    expected = rf.cfm_loss(net, x0, x1, t)
    expect_scalar(sub.call("cfm_loss", Ref(tiny_mlp, seed, 3), x0, x1, t), float(expected),
                  "cfm_loss(net, x0, x1, t) for a TimeMLP", rtol=1e-4)


# -- sample_ode -------------------------------------------------------------------------------
@exercise("sample_ode")
def test_sample_ode_tanh_field(sub, rng):
    """sample_ode on a nonlinear, time-dependent field"""
    ref, x0 = random_tanh_velocity(rng), points(rng)
    n = int(torch.randint(3, 9, (1,), generator=rng))
    v = build(ref)
    expected = rf.sample_ode(v, x0, n)
    path = rf.euler_path(v, x0, n)[0]
    got = sub.call("sample_ode", ref, x0, n)
    if hasattr(got, "shape") and tuple(got.shape) == tuple(path.shape):
        expect(False, f"sample_ode(v, x0, n_steps={n}) should return only the end points, shape {tuple(x0.shape)}; "
                      f"you returned the whole path {tuple(got.shape)}.",
               "Hint: return x after the last step (the path is for plots, straightness and animations).")
    expect_close(got, expected, f"sample_ode(v, x0, n_steps={n})", rtol=1e-4, atol=1e-5, hints=[
        Hint(euler(v, x0, [(i + 1) / n for i in range(n)]),
             "each Euler step uses v at the start of the step, t_i = i / n_steps, not at its end."),
        Hint(euler(v, x0, torch.linspace(0, 1, n).tolist()),
             "your step times run from 0 to 1 inclusive: that is the wrong grid. The step times are "
             "t_i = i / n_steps for i = 0..n_steps-1.",
             where="section 3: the grid t_i = i / n, i = 0, ..., n - 1."),
        Hint(euler(v, x0, [1 - i / n for i in range(n)]),
             "time runs from t = 0 (noise) to t = 1 (data) in this notebook, the opposite of notebook 05."),
        Hint(x0 + v(x0, torch.zeros(x0.shape[0])), "take n_steps Euler steps of size 1 / n_steps, not one step."),
    ])


@exercise("sample_ode")
def test_sample_ode_exact_mixture_velocity(sub, rng):
    """sample_ode with the exact velocity to a Gaussian reproduces its mean and covariance"""
    means, stds, weights = random_mixture(rng, k=1)
    n = 4000
    x0 = points(rng, n)
    got = sub.call("sample_ode", Ref(gaussian_velocity, means[0], float(stds[0])), x0, 100)
    mean, cov = mixture_moments(means, stds, weights)
    expect_moments(got, mean, cov, "sample_ode(v_exact, x0 ~ N(0, I), 100)", n_sigma=6.0)


# -- straightness -----------------------------------------------------------------------------
def straightness_variants(v, x0, n):
    path, vel, _ = rf.euler_path(v, x0, n)
    diff = (path[-1] - path[0])[None] - vel  # (n, B, d)
    return {
        "no_square": diff.norm(dim=-1).mean(),
        "coord_mean": (diff ** 2).mean(),
        "sum_steps": (diff ** 2).sum(-1).mean(1).sum(),
        "sum_samples": (diff ** 2).sum(-1).sum(1).mean(),
    }


@exercise("straightness")
def test_straightness_tanh_field(sub, rng):
    """straightness of a curved, time-dependent field"""
    ref, x0 = random_tanh_velocity(rng), points(rng)
    n = int(torch.randint(4, 10, (1,), generator=rng))
    v = build(ref)
    wrong = straightness_variants(v, x0, n)
    got = sub.call("straightness", ref, x0, n)
    expect_scalar(got, float(rf.straightness(v, x0, n)), f"straightness(v, x0, n_steps={n})", rtol=1e-4, hints=[
        Hint(wrong["no_square"], "S uses the *squared* norm ||(x1 - x0) - v(x_t, t)||^2; you took the norm "
                                 "without squaring it."),
        Hint(wrong["coord_mean"], "the squared Euclidean norm sums over the coordinates; you averaged over them. "
                                  "Sum over coordinates, then average over samples and steps."),
        Hint(wrong["sum_steps"], "S is an integral over t in [0, 1]: average over the n_steps grid points "
                                 "(a Riemann sum with dt = 1 / n_steps), do not sum them."),
        Hint(wrong["sum_samples"], "S is an expectation over samples: average over them, do not sum."),
    ])


@exercise("straightness")
def test_straightness_exact_velocity(sub, rng):
    """straightness of the exact 1-rectified flow to a Gaussian is far from 0 (its paths bend)"""
    means, stds, _ = random_mixture(rng, k=1)
    ref = Ref(gaussian_velocity, means[0], 0.5 * float(stds[0]))
    x0 = points(rng, 256)
    v = build(ref)
    expected = float(rf.straightness(v, x0, 20))
    got = sub.call("straightness", ref, x0, 20)
    expect_scalar(got, expected, "straightness(v_exact, x0, 20)", rtol=1e-3,
                  hints=[Hint(straightness_variants(v, x0, 20)["no_square"], "square the norm.")])


# -- reflow_pairs -----------------------------------------------------------------------------
@exercise("reflow_pairs")
def test_reflow_pairs_network(sub, rng):
    """reflow_pairs with a small network: (x0, the Euler end point of x0)"""
    seed = int(torch.randint(0, 1000, (1,), generator=rng))
    x0, n = points(rng, 48), 6
    net = build(Ref(tiny_mlp, seed))
    x1_hat = rf.sample_ode(net, x0, n)
    got = expect_pair(sub.call("reflow_pairs", Ref(tiny_mlp, seed), x0, n), f"reflow_pairs(v, x0, n_steps={n})")
    expect_close(got[0], x0, "the first element of the pair (the noise x0 itself)", hints=[
        Hint(x1_hat, "the pair is (x0, x1_hat), noise first: you returned it in the other order.")])
    if hasattr(got[1], "shape") and tuple(got[1].shape) == tuple(x1_hat.shape) and not matches(got[1], x1_hat) \
            and matches(sorted_rows(got[1]), sorted_rows(x1_hat)):
        raise Mismatch(["the second element holds the right end points, but not in the order of x0.",
                        "Hint: reflow needs the coupling: x1_hat[i] must be the end point of the ODE started at x0[i]. "
                        "Do not shuffle or re-draw."])
    expect_close(got[1], x1_hat, f"the second element (x1_hat = sample_ode(v, x0, {n}))", rtol=1e-4, atol=1e-5, hints=[
        Hint(x0 + net(x0, torch.zeros(48)), f"x1_hat must come from n_steps = {n} Euler steps, not one."),
        Hint(rf.euler_path(net, x0, n)[0][-2], "you stopped one step early: x1_hat is the point at t = 1."),
    ])


@exercise("reflow_pairs")
def test_reflow_pairs_are_plain_data(sub, rng):
    """reflow_pairs with a network whose parameters require grad: the pairs carry no graph"""
    seed = int(torch.randint(0, 1000, (1,), generator=rng))
    expect_no_graph(sub.probe("probe_reflow_pairs_graph", seed, points(rng, 16), 4))


# -- conversions --------------------------------------------------------------------------------
def oracle_batch(rng, n=64):
    """x_t drawn from the straight path to a random mixture, its t, the exact v and the exact score."""
    means, stds, weights = random_mixture(rng)
    t = times(rng, n)
    x1 = mixture_sample(means, stds, weights, n, rng)
    xt = rf.interpolate(points(rng, n), x1, t)
    v = velocity.gmm_marginal_velocity(xt, t, means, stds, weights)
    _, score = noised_gmm_log_prob_and_score(xt, t, 1 - t, means, stds, weights)
    return xt, t, v, score, (means, stds, weights)


@exercise("velocity_to_x0")
def test_velocity_to_x0_oracle(sub, rng):
    """velocity_to_x0 with the exact velocity of a mixture: E[x0 | x_t] = -(1 - t) score"""
    xt, t, v, score, _ = oracle_batch(rng)
    tc = t[:, None]
    expected = -(1 - tc) * score  # Tweedie: E[x0 | x_t] from the exact score, independent of v
    expect_close(sub.call("velocity_to_x0", xt, t, v), expected, "velocity_to_x0(x_t, t, v)", rtol=1e-3, atol=1e-4,
                 hints=[Hint(xt + tc * v, "going back to t = 0 subtracts: x0 = x_t - t v."),
                        Hint(xt - (1 - tc) * v, "the distance back to t = 0 is t, not 1 - t: x0 = x_t - t v."),
                        Hint(xt - v, "scale the velocity by the time left to travel back, t: x0 = x_t - t v.")])


@exercise("velocity_to_x1")
def test_velocity_to_x1_oracle(sub, rng):
    """velocity_to_x1 with the exact velocity of a mixture"""
    xt, t, v, score, _ = oracle_batch(rng)
    tc = t[:, None]
    expected = (xt + (1 - tc) ** 2 * score) / tc  # E[x1 | x_t] = (x_t - (1 - t) E[x0 | x_t]) / t
    expect_close(sub.call("velocity_to_x1", xt, t, v), expected, "velocity_to_x1(x_t, t, v)", rtol=1e-3, atol=1e-4,
                 hints=[Hint(xt + tc * v, "the distance on to t = 1 is 1 - t, not t: x1 = x_t + (1 - t) v."),
                        Hint(xt - (1 - tc) * v, "going on to t = 1 adds: x1 = x_t + (1 - t) v."),
                        Hint(xt + v, "scale the velocity by the time left, 1 - t: x1 = x_t + (1 - t) v.")])


@exercise("velocity_to_score")
def test_velocity_to_score_oracle(sub, rng):
    """velocity_to_score with the exact velocity of a mixture gives its exact score"""
    xt, t, v, score, _ = oracle_batch(rng)
    tc = t[:, None]
    x0_hat = xt - tc * v
    expect_close(sub.call("velocity_to_score", xt, t, v), score, "velocity_to_score(x_t, t, v)", rtol=1e-3, atol=1e-3,
                 hints=[Hint(x0_hat / (1 - tc), "the score points towards the data: score = -(x_t - t v) / (1 - t)."),
                        Hint(-x0_hat / (1 - tc) ** 2, "divide by the noise std 1 - t once, not by the variance "
                                                      "(1 - t)^2: E[x0 | x_t] already is the noise in std units."),
                        Hint(-x0_hat, "divide E[x0 | x_t] = x_t - t v by the noise std 1 - t."),
                        Hint(-(xt + (1 - tc) * v) / (1 - tc), "the score uses the predicted *noise* x_t - t v, "
                                                             "not the predicted data.")])


# -- gmm_marginal_velocity ---------------------------------------------------------------------
@exercise("gmm_marginal_velocity", weight=2.0)
def test_gmm_velocity_random_mixture(sub, rng):
    """gmm_marginal_velocity of a random mixture against the closed form"""
    means, stds, weights = random_mixture(rng, k=4)
    x, t = 2 * points(rng), times(rng)
    tc = t[:, None]
    expected = velocity.gmm_marginal_velocity(x, t, means, stds, weights)
    _, score = noised_gmm_log_prob_and_score(x, t, 1 - t, means, stds, weights)
    # the posterior mean with the prior weights in place of the responsibilities
    var_t = tc ** 2 * stds[None] ** 2 + (1 - tc) ** 2
    per_comp = means[None] + ((tc * stds[None] ** 2 - (1 - tc)) / var_t)[:, :, None] * (x[:, None] - tc[:, :, None] * means[None])
    prior_weighted = (weights[None, :, None] * per_comp).sum(1)
    clean_score = gmm_score(x, means, stds, weights)  # the data mixture's score, not p_t's
    got = sub.call("gmm_marginal_velocity", x, t, means, stds, weights)
    expect_close(got, expected, "gmm_marginal_velocity(x, t, means, stds, weights)", rtol=1e-3, atol=1e-4, hints=[
        Hint(-expected, "the velocity points from noise to data, E[x1 - x0 | x_t], not E[x0 - x1 | x_t]."),
        Hint((x - (1 - tc) * score) / tc, "sign slip: from score = -(x - t v) / (1 - t), v = (x + (1 - t) score) / t."),
        Hint(prior_weighted, "weight each component by its posterior responsibility r_k(x_t) (a softmax of the "
                             "noised components' log densities), not by the prior weight w_k."),
        Hint((x + (1 - tc) * clean_score) / tc, "use the score of the *noised* marginal p_t (means t mu_k, "
                                                "variances t^2 s_k^2 + (1 - t)^2), not of the data mixture."),
    ])


@exercise("gmm_marginal_velocity")
def test_gmm_velocity_is_a_regression(sub, rng):
    """gmm_marginal_velocity is E[x1 - x0 | x_t]: it has the same mean as x1 - x0 over the path"""
    means, stds, weights = random_mixture(rng, k=2)
    n = 4000
    x1 = mixture_sample(means, stds, weights, n, rng)
    x0 = points(rng, n)
    t = times(rng, n, 0.1, 0.9)
    xt = rf.interpolate(x0, x1, t)
    got = sub.call("gmm_marginal_velocity", xt, t, means, stds, weights)
    expect(hasattr(got, "shape") and tuple(got.shape) == (n, 2),
           f"gmm_marginal_velocity should return shape ({n}, 2); got {tuple(getattr(got, 'shape', ()))}.")
    got = got.double()
    target = (x1 - x0).double()
    # E[v(x_t)] = E[x1 - x0] and E[<v, x1 - x0>] = E[|v|^2] (v is an orthogonal projection of x1 - x0)
    gap_mean = float((got.mean(0) - target.mean(0)).abs().max())
    se = float(target.std(0).max()) / math.sqrt(n)
    proj = float(((target - got) * got).sum(1).mean())
    se_proj = float(((target - got) * got).sum(1).std()) / math.sqrt(n)
    expect(gap_mean < 6 * se and abs(proj) < 6 * se_proj,
           "your velocity is not the conditional mean E[x1 - x0 | x_t]: over samples of the path, "
           f"mean(v) - mean(x1 - x0) = {gap_mean:.3g} (tolerance {6 * se:.2g}), "
           f"E[<x1 - x0 - v, v>] = {proj:.3g} (should be 0, tolerance {6 * se_proj:.2g}).")


# -- logit_normal_t ---------------------------------------------------------------------------
@exercise("logit_normal_t")
def test_logit_normal_shifted(sub, rng):
    """logit_normal_t with m and s: the logit of the times is N(m, s^2)"""
    m = float(torch.rand(1, generator=rng)) - 0.5
    s = 1.4 + 0.4 * float(torch.rand(1, generator=rng))
    n = 20000
    seed = int(torch.randint(0, 10_000, (1,), generator=rng))
    got = sub.call("logit_normal_t", n, m, s, generator=Ref(generator, seed))
    check_logit_normal(got, n, m, s, f"logit_normal_t({n}, m={m:.3f}, s={s:.3f})")


@exercise("logit_normal_t", weight=0.5)
def test_logit_normal_uses_generator(sub, rng):
    """logit_normal_t draws from the generator it is given (reproducible)"""
    m, s, n, seed = 0.3, 0.8, 256, int(torch.randint(0, 10_000, (1,), generator=rng))
    got = sub.call("logit_normal_t", n, m=m, s=s, generator=Ref(generator, seed))
    expected = torch.sigmoid(m + s * torch.randn(n, generator=torch.Generator().manual_seed(seed)))
    if matches(got, expected, rtol=1e-4, atol=1e-5):
        return
    what = f"logit_normal_t({n}, m={m}, s={s}, generator=g)"
    check_logit_normal(got, n, m, s, what)
    raise Mismatch([f"{what} has the right distribution, but not the numbers that `generator` gives.",
                    "Hint: draw the normal numbers from the generator you are given, so that runs are reproducible.",
                    "Where to look: section 4, last sentence; the docstring's generator argument."])


# -- questions: graded by their public checks alone (a hidden copy would only double their weight) --

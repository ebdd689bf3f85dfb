"""Notebook 06 (rectified flow): its manifest, the argument factories, and the public checks.

Time convention: t in [0, 1], t = 0 noise x0, t = 1 data x1, x_t = (1 - t) x0 + t x1, velocity
x1 - x0. Velocity "models" handed to the learner are closed forms (an analytic field, the exact
marginal velocity to a Gaussian, a small fixed network), built by the factories below both
inside the sandbox and in the grader.
"""
from __future__ import annotations

import math

import torch

from course import rectified_flow as rf
from course.batching import time_batch
from course.gmm import noised_gmm_log_prob_and_score
from course.nets import frozen_time_mlp
from grader.engine.api import (Hint, Mismatch, Ref, build, exercise, expect, expect_choice, expect_close, expect_scalar,
                               expect_tensor, generator, matches)
from grader.engine.compare import WHERE_PREFIX

EXERCISES = {  # exercise (= nbgrader grade_id of its answer cell) -> points
    "interpolate": 1,
    "cfm_loss": 2,
    "sample_ode": 2,
    "straightness": 2,
    "reflow_pairs": 1,
    "velocity_to_x0": 1,
    "velocity_to_x1": 1,
    "velocity_to_score": 2,
    "gmm_marginal_velocity": 3,
    "logit_normal_t": 2,
    "predict_one_euler_step": 0.5,  # questions: predict, then run
    "predict_reflow_straightness": 0.5,
}

LIBRARY = {  # the course library's implementation of each exercise (calling it scores zero)
    "interpolate": "course.rectified_flow:interpolate",
    "cfm_loss": "course.rectified_flow:cfm_loss",
    # the Euler loop is written once (euler_path); sample_ode, straightness and reflow_pairs use it
    "sample_ode": "course.rectified_flow:euler_path",
    "straightness": "course.rectified_flow:euler_path",
    "reflow_pairs": "course.rectified_flow:euler_path",
    "velocity_to_x0": "course.velocity:velocity_to_x0",
    "velocity_to_x1": "course.velocity:velocity_to_x1",
    "velocity_to_score": "course.velocity:velocity_to_score",
    "gmm_marginal_velocity": "course.velocity:gmm_marginal_velocity",
    "logit_normal_t": "course.rectified_flow:logit_normal_t",
}


# ---------------------------------------------------------------------------------------------
# Factories: velocity models v(x, t) with t a float tensor (B,) (a float is accepted too)
# ---------------------------------------------------------------------------------------------
def constant_velocity(c):
    """v(x, t) = c: every path is a straight line, so Euler is exact and the straightness is 0."""
    c = torch.as_tensor(c, dtype=torch.float32)
    return lambda x, t: c.expand_as(x).clone()


def time_velocity():
    """v(x, t) = t in every coordinate: Euler sums the grid times, which shows which grid was used."""
    return lambda x, t: time_batch(t, x)[:, None].expand_as(x).clone()


def tanh_velocity(W, b, c: float = 1.0):
    """v(x, t) = tanh(W x + b) (1 + c t) + cos(3 t): nonlinear, time-dependent."""
    W, b = torch.as_tensor(W, dtype=torch.float32), torch.as_tensor(b, dtype=torch.float32)

    def v(x, t):
        t = time_batch(t, x)[:, None]  # (B, 1)
        return torch.tanh(x @ W.T + b) * (1 + c * t) + torch.cos(3 * t)

    return v


def gaussian_velocity(mu, s: float):
    """The exact marginal velocity of the straight path x_t = (1 - t) x0 + t x1 from N(0, I) to N(mu, s^2 I)
    (its ideal 1-rectified flow). The flow is affine, x_t = t mu + sqrt(c(t)) x0 with c(t) = t^2 s^2 + (1 - t)^2,
    so v(x, t) = mu + c'(t) / (2 c(t)) (x - t mu). Not the library's gmm_marginal_velocity (an exercise of
    this notebook, a stub in the sandbox while it is graded)."""
    mu = torch.as_tensor(mu, dtype=torch.float32)

    def v(x, t):
        t = time_batch(t, x)[:, None]  # (B, 1)
        c = t ** 2 * s ** 2 + (1 - t) ** 2
        return mu + (t * s ** 2 - (1 - t)) / c * (x - t * mu)

    return v


def tiny_mlp(seed: int, dim: int = 2):
    """A small TimeMLP with weights fixed by ``seed`` (a stand-in for a trained velocity network)."""
    return frozen_time_mlp(seed, dim=dim, hidden=32, depth=2, emb_dim=16, time_scale=1000.0)




# ---------------------------------------------------------------------------------------------
# Shared checks (public and hidden tests use them)
# ---------------------------------------------------------------------------------------------
def euler_grid_sum(n: int, starts) -> float:
    """sum_i dt * s_i for grid start times s_i: what Euler on v = t returns, minus x0."""
    return float(sum(starts) / n)


def expect_pair(got, what: str):
    """``got`` is a pair (tuple or list of two tensors); return it as a tuple."""
    expect(isinstance(got, (tuple, list)) and len(got) == 2,
           f"{what} should return a pair (x0, x1_hat), but returned "
           f"{type(got).__name__}{' of length ' + str(len(got)) if isinstance(got, (tuple, list)) else ''}.")
    return tuple(got)


def sorted_rows(x: torch.Tensor) -> torch.Tensor:
    """Rows of x (N, d) sorted by their first coordinate: equal for two permutations of one set."""
    return x[torch.argsort(x[:, 0])]


def check_logit_normal(got, n: int, m: float, s: float, what: str, n_sigma: float = 6.0) -> None:
    """Shape, range and the statistics of logit(t) ~ N(m, s^2), with hints for known mistakes."""
    got = expect_tensor(got, what, shape=(n,), dtype=None)
    expect(got.is_floating_point(), f"{what} should be a float tensor; got {got.dtype}.")
    t = got.double()
    if not bool(((t > 0) & (t < 1)).all()):
        raise Mismatch([f"{what} returned values outside (0, 1): min {float(t.min()):.4g}, max {float(t.max()):.4g}.",
                        "Hint: times must lie in (0, 1): pass the normal draws u ~ N(m, s^2) "
                        "through the sigmoid, t = 1 / (1 + exp(-u)).",
                        WHERE_PREFIX + "section 4: the second half of the logit-normal's definition."])
    u = torch.log(t) - torch.log1p(-t)  # logit
    mean, std = float(u.mean()), float(u.std())
    se_mean, se_std = s / math.sqrt(n), s / math.sqrt(2 * n)
    lines = []
    if abs(mean - m) > n_sigma * se_mean:
        lines.append(f"the logit of your times has mean {mean:.4g}, expected m = {m:g} (+/- {n_sigma * se_mean:.2g}).")
    if abs(std - s) > n_sigma * se_std:
        lines.append(f"the logit of your times has standard deviation {std:.4g}, expected s = {s:g} "
                     f"(+/- {n_sigma * se_std:.2g}).")
    if lines:
        hint = "Hint: t = sigmoid(u) with u = m + s z, z ~ N(0, 1) a standard normal draw, s a standard deviation."
        if float(u.min()) >= m - 1e-4 and float(u.max()) <= m + s + 1e-4:
            hint = ("Hint: logit(t) is spread evenly over [m, m + s]: you took the sigmoid of a *uniform* "
                    "draw. The logit-normal needs a standard normal draw z.")
        elif abs(std - s * s) < n_sigma * se_std * max(s, 1) and abs(s - 1) > 0.1:
            hint = "Hint: the spread of logit(t) is s^2: s is the standard deviation, multiply z by s."
        elif abs(std - math.sqrt(s)) < n_sigma * se_std and abs(s - 1) > 0.1:
            hint = "Hint: the spread of logit(t) is sqrt(s): s is the standard deviation, not the variance."
        raise Mismatch([f"{what}: the times do not follow the logit-normal distribution."] + lines
                       + [hint, WHERE_PREFIX + "section 4: u ~ N(m, s^2), then t = sigmoid(u)."])


# ---------------------------------------------------------------------------------------------
# Public checks (also part of grading)
# ---------------------------------------------------------------------------------------------
X0 = torch.tensor([[0.5, -1.0], [2.0, 0.0], [-1.0, 1.5]])
X1 = torch.tensor([[1.5, 1.0], [0.0, 2.0], [3.0, -0.5]])
T3 = torch.tensor([0.0, 0.25, 1.0])
MIX = dict(means=[[-1.5, 0.0], [1.5, 0.5]], stds=[0.4, 0.6], weights=[0.3, 0.7])  # course.data2d.two_gaussians


@exercise("interpolate")
def test_interpolate_endpoints(sub, rng):
    """interpolate is x0 at t = 0 and x1 at t = 1"""
    got = sub.call("interpolate", X0, X1, T3)
    expected = torch.stack([X0[0], 0.75 * X0[1] + 0.25 * X1[1], X1[2]])
    expect_close(got, expected, "interpolate(x0, x1, t) with t = [0, 0.25, 1]", hints=[
        Hint(torch.stack([X1[0], 0.25 * X0[1] + 0.75 * X1[1], X0[2]]),
             "t and 1 - t are swapped: at t = 0 the path must start at the noise x0, at t = 1 reach the data x1."),
    ])


@exercise("cfm_loss")
def test_cfm_loss_exact_field(sub, rng):
    """cfm_loss is 0 for the model that predicts x1 - x0 on a single straight pair"""
    x0 = X0[:1].expand(4, 2).clone()
    x1 = X1[:1].expand(4, 2).clone()
    t = torch.tensor([0.1, 0.4, 0.6, 0.9])
    c = (X1[0] - X0[0]).tolist()
    got = sub.call("cfm_loss", Ref(constant_velocity, c), x0, x1, t)
    expect_scalar(got, 0.0, "cfm_loss(v, x0, x1, t) with v = x1 - x0 (a perfect model)", atol=1e-6, hints=[
        Hint(torch.tensor(4.0 * (X1[0] - X0[0]).pow(2).mean().item()),
             "the target velocity is x1 - x0 (from noise to data), not x0 - x1."),
    ])


def cfm_terms(v, x0, x1, t):
    """The squared errors (B, d) of the flow matching loss, and those of the model evaluated at the noise x0."""
    xt = (1 - t[:, None]) * x0 + t[:, None] * x1
    return (v(xt, t) - (x1 - x0)) ** 2, (v(x0, t) - (x1 - x0)) ** 2


@exercise("cfm_loss")
def test_cfm_loss_curved_field(sub, rng):
    """cfm_loss with a curved field: a mean over every element, the model evaluated on the path"""
    W, b = torch.randn(2, 2, generator=rng), torch.randn(2, generator=rng)
    x0, x1, t = torch.randn(6, 2, generator=rng), torch.randn(6, 2, generator=rng) + 2, torch.rand(6, generator=rng)
    sq, sq_at_noise = cfm_terms(tanh_velocity(W, b, 0.8), x0, x1, t)
    got = sub.call("cfm_loss", Ref(tanh_velocity, W, b, 0.8), x0, x1, t)
    expect_scalar(got, float(sq.mean()), "cfm_loss(v, x0, x1, t) for a curved v", rtol=1e-4, hints=[
        Hint(sq.sum(), "you summed the squared errors: the loss is their mean over all elements (so that it "
                       "does not grow with the batch size).", where="section 2: the loss is an expectation."),
        Hint(sq.sum(1).mean(), "you summed over the coordinates, then averaged over samples: the loss asked for "
                               "is the mean over all elements.", where="the sentence under the loss in section 2."),
        Hint(sq_at_noise.mean(), "you evaluated the model at the noise x0: it must see the point x_t on the path.",
             where="section 2: the loss evaluates v_theta at (x_t, t), x_t from section 1."),
    ])


@exercise("sample_ode")
def test_sample_ode_time_grid(sub, rng):
    """sample_ode with v = t: Euler on the grid t_i = i / n_steps"""
    n = 4
    got = sub.call("sample_ode", Ref(time_velocity), X0, n)
    expected = X0 + euler_grid_sum(n, [i / n for i in range(n)])
    expect_close(got, expected, f"sample_ode(v, x0, n_steps={n}) for v(x, t) = t", hints=[
        Hint(X0 + euler_grid_sum(n, [(i + 1) / n for i in range(n)]),
             "the step from t_i to t_{i+1} must use v at its start, t_i = i / n_steps (0, 1/n, ...), "
             "not at its end.", where="section 3: the Euler update evaluates v at (x_{t_i}, t_i)."),
        Hint(X0 + euler_grid_sum(n, [i / (n - 1) for i in range(n)]),
             "your step times run from 0 to 1 inclusive, spaced 1 / (n_steps - 1): that is the wrong grid. "
             "The step times are t_i = i / n_steps for i = 0..n_steps-1 (the last step starts at 1 - 1/n_steps).",
             where="section 3: the grid t_i = i / n, i = 0, ..., n - 1, and the step size 1 / n."),
    ])


@exercise("straightness")
def test_straightness_constant_field(sub, rng):
    """straightness of a constant field is 0 (every path is straight)"""
    got = sub.call("straightness", Ref(constant_velocity, [1.0, -2.0]), X0, 5)
    expect_scalar(got, 0.0, "straightness(v, x0, 5) for a constant v", atol=1e-6)


def time_field_gaps(n: int) -> torch.Tensor:
    """For v = t in every coordinate: the chord's coordinate (n - 1) / (2 n) minus each grid time t_i = i / n."""
    return (n - 1) / (2 * n) - torch.arange(n, dtype=torch.float64) / n


@exercise("straightness")
def test_straightness_time_field(sub, rng):
    """straightness for v = t (curved in time), against its closed form d mean_i (c - t_i)^2"""
    n = int(torch.randint(4, 9, (1,), generator=rng))
    x0 = torch.randn(5, 2, generator=rng)
    gaps = time_field_gaps(n)  # (n,)
    got = sub.call("straightness", Ref(time_velocity), x0, n)
    expect_scalar(got, float(2 * (gaps ** 2).mean()), f"straightness(v, x0, {n}) for v(x, t) = t", rtol=1e-4, hints=[
        Hint(float(math.sqrt(2) * gaps.abs().mean()), "you took the norm without squaring it.",
             where="Liu et al.'s S in section 3: the *squared* Euclidean norm."),
        Hint(float((gaps ** 2).mean()), "you averaged over the coordinates: the squared norm sums over them.",
             where="section 3: the squared Euclidean norm per sample is a sum over coordinates."),
        Hint(float(2 * (gaps ** 2).sum()), "you summed over the grid points: the integral over t is their mean.",
             where="section 3: the integral over [0, 1] is a Riemann sum with dt = 1 / n, a mean over the grid."),
    ])


@exercise("reflow_pairs")
def test_reflow_pairs_constant_field(sub, rng):
    """reflow_pairs pairs each x0 with its ODE end point"""
    c = [1.0, -2.0]
    got = expect_pair(sub.call("reflow_pairs", Ref(constant_velocity, c), X0, 3), "reflow_pairs(v, x0, 3)")
    expect_close(got[0], X0, "the first element of the pair (it should be x0 itself)", hints=[
        Hint(X0 + torch.tensor(c), "the pair is (x0, x1_hat), noise first: you returned it in the other order.")])
    expect_close(got[1], X0 + torch.tensor(c), "the second element (x1_hat, the Euler end point)")


@exercise("reflow_pairs")
def test_reflow_pairs_time_field(sub, rng):
    """reflow_pairs with v = t: x1_hat is the end of n_steps Euler steps"""
    n, x0 = int(torch.randint(3, 8, (1,), generator=rng)), torch.randn(4, 2, generator=rng)
    got = expect_pair(sub.call("reflow_pairs", Ref(time_velocity), x0, n), f"reflow_pairs(v, x0, {n})")
    expect_close(got[1], x0 + euler_grid_sum(n, [i / n for i in range(n)]),
                 f"the second element (x1_hat after {n} Euler steps) for v(x, t) = t", hints=[
                     Hint(x0, "x1_hat must come from n_steps Euler steps, not one.",
                          where="section 6: x1_hat is the end of the ODE solved with the sampler of section 3.")])


def probe_reflow_pairs_graph(ns, seed: int, x0, n_steps: int):
    """Whether each element of reflow_pairs(net, x0, n_steps) carries a graph (requires_grad, has a grad_fn),
    for a network whose parameters require grad, as in training."""
    net = tiny_mlp(seed).requires_grad_(True)  # trainable, as the notebook's flow is
    pair = ns["reflow_pairs"](net, x0, n_steps)
    return [[bool(getattr(p, "requires_grad", False)), getattr(p, "grad_fn", None) is not None] for p in pair]


def expect_no_graph(flags) -> None:
    expect(isinstance(flags, list) and len(flags) == 2, "reflow_pairs should return a pair (x0, x1_hat).")
    expect(not any(any(f) for f in flags),
           "the pairs carry the computation graph of the flow that made them (requires_grad is True).",
           "Hint: training the next flow on these pairs backpropagates into that graph at every step: the "
           "second training step fails with 'Trying to backward through the graph a second time' (and the "
           "old flow would receive gradients). The pairs are data: generate them without tracking gradients.",
           WHERE_PREFIX + "Liu et al.'s Algorithm 1 in section 6: drawing the pairs only evaluates the old flow.")


@exercise("reflow_pairs")
def test_reflow_pairs_carry_no_graph(sub, rng):
    """reflow_pairs with a network: the pairs are plain data (no graph to backpropagate into)"""
    seed = int(torch.randint(0, 1000, (1,), generator=rng))
    expect_no_graph(sub.probe("probe_reflow_pairs_graph", seed, torch.randn(8, 2, generator=rng), 3))


@exercise("velocity_to_x0")
def test_velocity_to_x0_single_pair(sub, rng):
    """velocity_to_x0 recovers x0 from x_t and x1 - x0 on one straight path"""
    t = torch.tensor([0.3, 0.5, 0.9])
    xt = rf.interpolate(X0, X1, t)
    got = sub.call("velocity_to_x0", xt, t, X1 - X0)
    expect_close(got, X0, "velocity_to_x0(x_t, t, x1 - x0)", rtol=1e-4, atol=1e-5)


@exercise("velocity_to_x1")
def test_velocity_to_x1_single_pair(sub, rng):
    """velocity_to_x1 recovers x1 from x_t and x1 - x0 on one straight path"""
    t = torch.tensor([0.3, 0.5, 0.9])
    xt = rf.interpolate(X0, X1, t)
    got = sub.call("velocity_to_x1", xt, t, X1 - X0)
    expect_close(got, X1, "velocity_to_x1(x_t, t, x1 - x0)", rtol=1e-4, atol=1e-5)


@exercise("velocity_to_score")
def test_velocity_to_score_gaussian(sub, rng):
    """velocity_to_score for standard normal data: the score of N(0, t^2 + (1 - t)^2)"""
    t = torch.tensor([0.2, 0.5, 0.7])
    var = t ** 2 + (1 - t) ** 2
    v = ((2 * t - 1) / var)[:, None] * X0  # the exact velocity when x1 ~ N(0, I)
    got = sub.call("velocity_to_score", X0, t, v)
    expect_close(got, -X0 / var[:, None], "velocity_to_score(x_t, t, v) when x1 ~ N(0, I)", rtol=1e-4, atol=1e-5)


@exercise("gmm_marginal_velocity")
def test_gmm_velocity_single_gaussian(sub, rng):
    """gmm_marginal_velocity of one standard normal component: (2t - 1) x / (t^2 + (1 - t)^2)"""
    t = torch.tensor([0.2, 0.5, 0.7])
    got = sub.call("gmm_marginal_velocity", X0, t, torch.zeros(1, 2), torch.ones(1), torch.ones(1))
    var = t ** 2 + (1 - t) ** 2
    expect_close(got, ((2 * t - 1) / var)[:, None] * X0, "gmm_marginal_velocity(x, t, means=0, stds=1, weights=1)",
                 rtol=1e-4, atol=1e-5)


@exercise("gmm_marginal_velocity")
def test_gmm_velocity_two_components(sub, rng):
    """gmm_marginal_velocity of a two-component mixture: each component weighted by its responsibility"""
    means, stds, weights = (torch.tensor(MIX[k]) for k in ("means", "stds", "weights"))
    x, t = 1.5 * torch.randn(6, 2, generator=rng), 0.2 + 0.6 * torch.rand(6, generator=rng)
    tc = t[:, None]
    _, score = noised_gmm_log_prob_and_score(x, t, 1 - t, means, stds, weights)
    expected = (x + (1 - tc) * score) / tc  # from the exact score of p_t (section 9)
    var_t = tc ** 2 * stds[None] ** 2 + (1 - tc) ** 2  # (B, K)
    per_comp = means[None] + ((tc * stds[None] ** 2 - (1 - tc)) / var_t)[:, :, None] * (x[:, None] - tc[:, :, None] * means[None])
    got = sub.call("gmm_marginal_velocity", x, t, means, stds, weights)
    expect_close(got, expected, "gmm_marginal_velocity(x, t, means, stds, weights) for two components",
                 rtol=1e-3, atol=1e-4, hints=[
                     Hint((weights[None, :, None] * per_comp).sum(1),
                          "you weighted each component by its prior weight w_k: use its posterior responsibility "
                          "r_k(x_t) given the point.",
                          where="the challenge's second route: r_k(x_t) is proportional to w_k N(x_t; t mu_k, c_k I)."),
                 ])


@exercise("logit_normal_t")
def test_logit_normal_statistics(sub, rng):
    """logit_normal_t(n): times in (0, 1) whose logit is N(0, 1)"""
    n = 20000
    got = sub.call("logit_normal_t", n, generator=Ref(generator, 0))
    check_logit_normal(got, n, 0.0, 1.0, f"logit_normal_t({n})")


@exercise("logit_normal_t")
def test_logit_normal_reproducible(sub, rng):
    """logit_normal_t draws from the generator it is given: the same seed gives the same times"""
    seed = int(torch.randint(0, 10_000, (1,), generator=rng))
    first = sub.call("logit_normal_t", 64, 0.3, 0.8, generator=Ref(generator, seed))
    second = sub.call("logit_normal_t", 64, 0.3, 0.8, generator=Ref(generator, seed))
    expect(matches(first, second, rtol=0, atol=0),
           "two calls of logit_normal_t(64, 0.3, 0.8, generator=g) with generators seeded alike gave different "
           "times: your draws are not the numbers that `generator` gives.",
           "Hint: draw the normal numbers from the generator you are given, so that a seed reproduces a run.",
           WHERE_PREFIX + "section 4, last sentence; the docstring's generator argument.")


# ---------------------------------------------------------------------------------------------
# Questions (shared with the hidden tests)
# ---------------------------------------------------------------------------------------------
def expect_one_euler_step(got) -> None:
    expect_choice(got, "b", "predict_one_euler_step()", why_not={
        "a": "one step follows the velocity at t = 0 for the whole unit of time; at t = 0 the velocity does "
             "not yet know which mode a particle will reach.",
        "c": "the velocity at t = 0 is not zero: it is E[x1 - x0 | x0] = E[x1] - x0.",
        "d": "one step is a straight move from x0; only where the velocity at t = 0 points decides where it lands.",
    }, where="section 2: the marginal velocity v(x, t) = E[x1 - x0 | x_t = x], at t = 0 where x_t = x0.")


def expect_reflow_straightness(got) -> None:
    expect_choice(got, "b", "predict_reflow_straightness()", why_not={
        "a": "reflow changes the coupling the next flow is trained on: its pairs come from the ODE, whose paths "
             "never cross, so the conditional velocities conflict far less.",
        "c": "reflow does not add curvature: Liu et al. prove it never increases any convex transport cost, and "
             "straight couplings are its fixed points.",
    }, where="section 6 (Liu et al. 2022, Algorithm 1 and Sec. 3) and the definition of S in section 3.")


@exercise("predict_one_euler_step", weight=0.5)
def test_predict_one_euler_step(sub, rng):
    """your prediction: where one Euler step of the 1-rectified flow lands"""
    expect_one_euler_step(sub.call("predict_one_euler_step"))


@exercise("predict_reflow_straightness", weight=0.5)
def test_predict_reflow_straightness(sub, rng):
    """your prediction: the straightness S after reflow"""
    expect_reflow_straightness(sub.call("predict_reflow_straightness"))

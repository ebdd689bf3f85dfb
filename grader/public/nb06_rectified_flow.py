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
from course.nets import frozen_time_mlp
from grader.engine.api import Hint, Mismatch, Ref, build, exercise, expect, expect_close, expect_scalar, expect_tensor, generator, matches

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
                        "through the sigmoid, t = 1 / (1 + exp(-u))."])
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
        hint = "Hint: t = sigmoid(u) with u = m + s z, z ~ N(0, 1) (torch.randn), s a standard deviation."
        if float(u.min()) >= m - 1e-4 and float(u.max()) <= m + s + 1e-4:
            hint = ("Hint: logit(t) is spread evenly over [m, m + s]: you took the sigmoid of a *uniform* "
                    "draw (torch.rand). The logit-normal needs a normal draw, torch.randn.")
        elif abs(std - s * s) < n_sigma * se_std * max(s, 1) and abs(s - 1) > 0.1:
            hint = "Hint: the spread of logit(t) is s^2: s is the standard deviation, multiply z by s."
        elif abs(std - math.sqrt(s)) < n_sigma * se_std and abs(s - 1) > 0.1:
            hint = "Hint: the spread of logit(t) is sqrt(s): s is the standard deviation, not the variance."
        raise Mismatch([f"{what}: the times do not follow the logit-normal distribution."] + lines + [hint])


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


@exercise("sample_ode")
def test_sample_ode_time_grid(sub, rng):
    """sample_ode with v = t: Euler on the grid t_i = i / n_steps"""
    n = 4
    got = sub.call("sample_ode", Ref(time_velocity), X0, n)
    expected = X0 + euler_grid_sum(n, [i / n for i in range(n)])
    expect_close(got, expected, f"sample_ode(v, x0, n_steps={n}) for v(x, t) = t", hints=[
        Hint(X0 + euler_grid_sum(n, [(i + 1) / n for i in range(n)]),
             "the step from t_i to t_{i+1} must use v at its start, t_i = i / n_steps (0, 1/n, ...), "
             "not at its end."),
        Hint(X0 + euler_grid_sum(n, torch.linspace(0, 1, n).tolist()),
             "the step times are t_i = i / n_steps for i = 0..n_steps-1; torch.linspace(0, 1, n_steps) "
             "gives the wrong grid (use linspace(0, 1, n_steps + 1)[:-1])."),
    ])


@exercise("straightness")
def test_straightness_constant_field(sub, rng):
    """straightness of a constant field is 0 (every path is straight)"""
    got = sub.call("straightness", Ref(constant_velocity, [1.0, -2.0]), X0, 5)
    expect_scalar(got, 0.0, "straightness(v, x0, 5) for a constant v", atol=1e-6)


@exercise("reflow_pairs")
def test_reflow_pairs_constant_field(sub, rng):
    """reflow_pairs pairs each x0 with its ODE end point"""
    c = [1.0, -2.0]
    got = expect_pair(sub.call("reflow_pairs", Ref(constant_velocity, c), X0, 3), "reflow_pairs(v, x0, 3)")
    expect_close(got[0], X0, "the first element of the pair (it should be x0 itself)", hints=[
        Hint(X0 + torch.tensor(c), "the pair is (x0, x1_hat), noise first: you returned it in the other order.")])
    expect_close(got[1], X0 + torch.tensor(c), "the second element (x1_hat, the Euler end point)")


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


@exercise("logit_normal_t")
def test_logit_normal_statistics(sub, rng):
    """logit_normal_t(n): times in (0, 1) whose logit is N(0, 1)"""
    n = 20000
    got = sub.call("logit_normal_t", n, generator=Ref(generator, 0))
    check_logit_normal(got, n, 0.0, 1.0, f"logit_normal_t({n})")

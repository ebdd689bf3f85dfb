"""Notebook 04 (DDIM): its manifest, the argument factories, and the public checks.

Factories run inside the sandbox (they build the eps-models and generators handed to the
learner's functions) and in the grader (to compute the expected answers), so both sides use one
definition. The eps-models are exact oracles (``course.oracles``) or a small fixed random network,
wrapped so that a call with the wrong kind of t fails with a message that says what is expected.
"""
from __future__ import annotations

import torch

from course import ddim, oracles
from course.nets import frozen_time_mlp
from course.schedules import make_alpha_bar
from grader.engine.api import Hint, Ref, build, exercise, expect, expect_close, generator

EXERCISES = {  # exercise (= nbgrader grade_id of its answer cell) -> points
    "ddim_timesteps": 1,
    "ddim_sigma": 1,
    "ddim_step": 2,
    "ddim_sample": 2,
    "ddim_invert": 2,
    "slerp": 1,
}

LIBRARY = {  # the course library's implementation of each exercise (calling it scores zero)
    "ddim_timesteps": "course.ddim:ddim_timesteps",
    "ddim_sigma": "course.ddim:ddim_sigma",
    "ddim_step": "course.ddim:ddim_step",
    "ddim_sample": "course.ddim:ddim_sample",
    "ddim_invert": "course.ddim:ddim_invert",
    "slerp": "course.ddim:slerp",
}


# ---------------------------------------------------------------------------------------------
# Factories: eps-models model(x, t), generators
# ---------------------------------------------------------------------------------------------
def _strict(model, T: int):
    """``model`` that insists on the course's calling convention: t a LongTensor (B,) in 0..T-1."""

    def eps_model(x, t):
        if not (isinstance(t, torch.Tensor) and t.dtype == torch.long and tuple(t.shape) == (x.shape[0],)):
            got = f"a tensor of dtype {t.dtype} and shape {tuple(t.shape)}" if isinstance(t, torch.Tensor) \
                else f"{type(t).__name__} {t!r}"
            raise TypeError(f"model(x, t) takes t as a LongTensor of shape (B,) = ({x.shape[0]},), one step "
                            f"per sample, but got {got}. Build it with "
                            "torch.full((x.shape[0],), t, dtype=torch.long).")
        if bool((t < 0).any()) or bool((t >= T).any()):
            raise IndexError(f"model(x, t) was asked about step {int(t[0])}, outside 0..{T - 1}. "
                             "t_prev = -1 stands for the clean data: the model is never called there.")
        return model(x, t)

    return eps_model


def gaussian_model(m, C, alpha_bar):
    """The exact eps-predictor of data N(m, C)."""
    alpha_bar = torch.as_tensor(alpha_bar, dtype=torch.float32)
    return _strict(oracles.gaussian_eps_model(m, C, alpha_bar), alpha_bar.shape[0])


def gmm_model(means, stds, weights, alpha_bar):
    """The exact eps-predictor of an isotropic Gaussian mixture."""
    alpha_bar = torch.as_tensor(alpha_bar, dtype=torch.float32)
    return _strict(oracles.gmm_eps_model(means, stds, weights, alpha_bar), alpha_bar.shape[0])


def random_net(seed: int, T: int, dim: int = 2):
    """A small TimeMLP with fixed random weights: a nonlinear eps-model, the same on both sides."""
    return _strict(frozen_time_mlp(seed, dim=dim, hidden=32, depth=2, emb_dim=16), T)




# ---------------------------------------------------------------------------------------------
# Public checks (also part of grading)
# ---------------------------------------------------------------------------------------------
T_SMALL = 50
ALPHA_BAR = make_alpha_bar(T_SMALL)
X4 = torch.tensor([[1.0, 0.0], [0.0, 2.0], [-1.0, 0.5], [0.3, -0.7]])
EPS4 = torch.tensor([[0.5, -0.2], [1.0, 0.1], [-0.3, 0.4], [0.0, -1.0]])


@exercise("ddim_timesteps")
def test_ddim_timesteps_thousand_in_ten(sub, rng):
    """ddim_timesteps(1000, 10)"""
    got = sub.call("ddim_timesteps", 1000, 10)
    expect(isinstance(got, torch.Tensor) and not got.is_floating_point(),
           f"ddim_timesteps should return a LongTensor, got {getattr(got, 'dtype', type(got).__name__)}.",
           "Hint: steps index alpha_bar: round them and convert with .long().")
    expect_close(got, torch.arange(999, -1, -111), "ddim_timesteps(1000, 10)")


@exercise("ddim_sigma")
def test_ddim_sigma_one_step_is_ddpm(sub, rng):
    """ddim_sigma with eta = 1 over one step is DDPM's sqrt(beta_tilde)"""
    t = 30
    beta_t = 1 - ALPHA_BAR[t] / ALPHA_BAR[t - 1]
    expected = ((1 - ALPHA_BAR[t - 1]) / (1 - ALPHA_BAR[t]) * beta_t).sqrt()
    got = sub.call("ddim_sigma", t, t - 1, ALPHA_BAR, 1.0)
    expect_close(got, expected, "ddim_sigma(t=30, t_prev=29, alpha_bar, eta=1)",
                 hints=[Hint(expected ** 2, "you returned sigma^2 (a variance): take its square root.")])
    expect_close(sub.call("ddim_sigma", 0, -1, ALPHA_BAR, 1.0), torch.tensor(0.0),
                 "ddim_sigma(t=0, t_prev=-1, alpha_bar, eta=1) (the last step adds no noise)")


@exercise("ddim_step")
def test_ddim_step_deterministic(sub, rng):
    """ddim_step with eta = 0 from t = 40 to t_prev = 20"""
    got = sub.call("ddim_step", EPS4, X4, 40, 20, ALPHA_BAR, 0.0, torch.zeros_like(X4))
    expect_close(got, ddim.ddim_step(EPS4, X4, 40, 20, ALPHA_BAR, 0.0, None), "ddim_step(eps, xt, 40, 20, ..., eta=0)")


@exercise("ddim_sample")
def test_ddim_sample_deterministic(sub, rng):
    """ddim_sample with eta = 0 on a small network, 5 steps"""
    ts = ddim.ddim_timesteps(T_SMALL, 5)
    ref = Ref(random_net, 0, T_SMALL)
    got = sub.call("ddim_sample", ref, X4, ts, ALPHA_BAR, eta=0.0)
    expect_close(got, ddim.ddim_sample(build(ref), X4, ts, ALPHA_BAR), "ddim_sample(model, x_T, timesteps, eta=0)",
                 rtol=1e-4, atol=1e-4)


@exercise("ddim_invert")
def test_ddim_invert_small_net(sub, rng):
    """ddim_invert on a small network, 5 steps"""
    ts = ddim.ddim_timesteps(T_SMALL, 5)
    ref = Ref(random_net, 0, T_SMALL)
    got = sub.call("ddim_invert", ref, X4, ts, ALPHA_BAR)
    expect_close(got, ddim.ddim_invert(build(ref), X4, ts, ALPHA_BAR), "ddim_invert(model, x0, timesteps)",
                 rtol=1e-4, atol=1e-4)


@exercise("slerp")
def test_slerp_orthogonal(sub, rng):
    """slerp halfway between orthogonal unit vectors stays on the unit circle"""
    z0 = torch.tensor([[1.0, 0.0], [0.0, 3.0]])
    z1 = torch.tensor([[0.0, 1.0], [3.0, 0.0]])
    got = sub.call("slerp", z0, z1, 0.5)
    expect_close(got, torch.tensor([[0.5 ** 0.5, 0.5 ** 0.5], [1.5 * 2 ** 0.5, 1.5 * 2 ** 0.5]]),
                 "slerp(z0, z1, 0.5) for orthogonal rows",
                 hints=[Hint(0.5 * (z0 + z1), "that is linear interpolation: slerp follows the arc, so the "
                                              "halfway point keeps the norm.")])

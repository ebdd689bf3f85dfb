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
from grader.engine.api import Hint, Ref, build, exercise, expect, expect_choice, expect_close, expect_scalar, generator

EXERCISES = {  # exercise (= nbgrader grade_id of its answer cell) -> points
    "ddim_timesteps": 1,
    "ddim_sigma": 1,
    "ddim_step": 2,
    "ddim_sample": 2,
    "ddim_invert": 2,
    "slerp": 1,
    "predict_ddim_eta0_twice": 0.5,  # questions ("predict, then run"): half an answer cell's weight
    "predict_inversion_calls": 0.5,
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
                            f"per sample, but got {got}: the calling convention is in the notebook's section 3.")
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
# a short, steep schedule (alpha_bar_0 far from 1): the step from the data (t = -1) to t = 0 matters
T_STEEP = 20
ALPHA_BAR_STEEP = torch.linspace(0.7, 0.02, T_STEEP)
X4 = torch.tensor([[1.0, 0.0], [0.0, 2.0], [-1.0, 0.5], [0.3, -0.7]])
EPS4 = torch.tensor([[0.5, -0.2], [1.0, 0.1], [-0.3, 0.4], [0.0, -1.0]])

# where to look, for the staged hints (what is wrong is in each hint's message)
SIGMA_WHERE = "section 2, eq. 16 (the noise scale sigma)."
STEP_WHERE = "section 2, eq. 12 (the three terms of the step)."
SAMPLE_WHERE = "section 3: the loop over the timesteps and the step it takes each time."
INVERT_WHERE = "section 5: the path -1 -> tau_1 = 0 -> ... -> tau_S = T-1 and the model's label on each step."
SLERP_WHERE = "section 6: Shoemake's formula, theta for each row."


def walk(model, x, path, alpha_bar, label, eta=0.0, generator=None):
    """The eta-step walk along ``path`` (t = -1 for the data), asking the model about ``label(t_from, t_to)``
    on each step: what a common wrong loop computes (one z per step when eta > 0)."""
    for t_from, t_to in zip(path[:-1], path[1:]):
        eps = model(x, torch.full((x.shape[0],), label(t_from, t_to), dtype=torch.long))
        z = torch.randn(x.shape, generator=generator) if eta > 0 else None
        x = ddim.ddim_step(eps, x, t_from, t_to, alpha_bar, eta, z)
    return x


def sigma_hints(t, t_prev, alpha_bar, eta):
    """Hints for the common mistakes in ddim_sigma (eq. 16)."""
    ab_t, ab_prev = alpha_bar[t], alpha_bar[t_prev]
    variance = (1 - ab_prev) / (1 - ab_t) * (1 - ab_t / ab_prev)
    beta_t = 1 - ab_t / alpha_bar[t - 1]  # 1 - alpha_t: right only when t_prev = t - 1
    return [
        Hint(eta * variance, "you returned sigma^2 (a variance): take its square root.", where=SIGMA_WHERE),
        Hint(variance.sqrt(), "eta is ignored: sigma must be multiplied by eta (eta = 0 gives no noise).",
             where=SIGMA_WHERE + " The factor in front of the square roots."),
        Hint(eta * ((1 - ab_prev) / (1 - ab_t) * beta_t).sqrt(),
             "you used alpha_t = 1 - beta_t where alpha_bar_t / alpha_bar_prev belongs: with skipped steps "
             "they differ. Use alpha_bar at t and at t_prev.", where=SIGMA_WHERE + " Its last factor."),
        Hint(eta ** 2 * variance.sqrt(), "eta multiplies sigma, not sigma^2: use eta, not eta^2.", where=SIGMA_WHERE),
    ]


def step_hints(eps, xt, t, t_prev, alpha_bar, eta, z):
    """Hints for the common mistakes in ddim_step (eq. 12)."""
    ab_t, ab_prev = alpha_bar[t], alpha_bar[t_prev] if t_prev >= 0 else torch.tensor(1.0)
    sigma = ddim.ddim_sigma(t, t_prev, alpha_bar, eta)
    x0 = (xt - (1 - ab_t).sqrt() * eps) / ab_t.sqrt()
    direction = (1 - ab_prev - sigma ** 2).clamp(min=0).sqrt() * eps
    return [
        Hint(ab_prev.sqrt() * x0 + (1 - ab_prev - sigma).clamp(min=0).sqrt() * eps + sigma * z,
             "the direction term is sqrt(1 - alpha_bar_prev - sigma^2) eps: sigma must be squared there.",
             where=STEP_WHERE + " The second term, the direction pointing to x_t."),
        Hint(ab_prev.sqrt() * x0 + direction,
             "the fresh noise sigma z is missing: with eta > 0 the step adds sigma z.",
             where=STEP_WHERE + " The third term, the random noise."),
        Hint(ab_prev.sqrt() * x0 + direction + z, "the noise must be scaled: add sigma z, not z.",
             where=STEP_WHERE + " The third term."),
        Hint(ab_prev.sqrt() * x0 + (1 - ab_prev).sqrt() * eps + sigma * z,
             "the coefficient of eps is sqrt(1 - alpha_bar_prev - sigma^2): the noise sigma z takes its share "
             "of the variance.", where=STEP_WHERE + " The second term."),
    ]


# ---------------------------------------------------------------------------------------------
# Public checks (also part of grading)
# ---------------------------------------------------------------------------------------------
@exercise("ddim_timesteps")
def test_ddim_timesteps_thousand_in_ten(sub, rng):
    """ddim_timesteps(1000, 10)"""
    got = sub.call("ddim_timesteps", 1000, 10)
    expect(isinstance(got, torch.Tensor) and not got.is_floating_point(),
           f"ddim_timesteps should return a LongTensor, got {getattr(got, 'dtype', type(got).__name__)}.",
           "Hint: the steps index alpha_bar, so they must be whole numbers stored as integers (int64).")
    expect_close(got, torch.arange(999, -1, -111), "ddim_timesteps(1000, 10)")


@exercise("ddim_sigma")
def test_ddim_sigma_one_step_is_ddpm(sub, rng):
    """ddim_sigma with eta = 1 over one step is DDPM's sqrt(beta_tilde)"""
    t = 30
    beta_t = 1 - ALPHA_BAR[t] / ALPHA_BAR[t - 1]
    expected = ((1 - ALPHA_BAR[t - 1]) / (1 - ALPHA_BAR[t]) * beta_t).sqrt()
    got = sub.call("ddim_sigma", t, t - 1, ALPHA_BAR, 1.0)
    expect_close(got, expected, "ddim_sigma(t=30, t_prev=29, alpha_bar, eta=1)",
                 hints=[Hint(expected ** 2, "you returned sigma^2 (a variance): take its square root.",
                             where=SIGMA_WHERE)])
    expect_close(sub.call("ddim_sigma", 0, -1, ALPHA_BAR, 1.0), torch.tensor(0.0),
                 "ddim_sigma(t=0, t_prev=-1, alpha_bar, eta=1) (the last step adds no noise)")


@exercise("ddim_sigma")
def test_ddim_sigma_skipped_steps_and_eta(sub, rng):
    """ddim_sigma over a jump of 20 steps with eta = 0.5"""
    t, t_prev, eta = 40, 20, 0.5
    ab_t, ab_prev = ALPHA_BAR[t], ALPHA_BAR[t_prev]
    expected = eta * ((1 - ab_prev) / (1 - ab_t) * (1 - ab_t / ab_prev)).sqrt()  # eq. 16
    got = sub.call("ddim_sigma", t, t_prev, ALPHA_BAR, eta)
    expect_close(got, expected, f"ddim_sigma(t={t}, t_prev={t_prev}, alpha_bar, eta={eta})",
                 hints=sigma_hints(t, t_prev, ALPHA_BAR, eta))


@exercise("ddim_step")
def test_ddim_step_deterministic(sub, rng):
    """ddim_step with eta = 0 from t = 40 to t_prev = 20"""
    got = sub.call("ddim_step", EPS4, X4, 40, 20, ALPHA_BAR, 0.0, torch.zeros_like(X4))
    expect_close(got, ddim.ddim_step(EPS4, X4, 40, 20, ALPHA_BAR, 0.0, None), "ddim_step(eps, xt, 40, 20, ..., eta=0)",
                 hints=step_hints(EPS4, X4, 40, 20, ALPHA_BAR, 0.0, torch.zeros_like(X4)))


@exercise("ddim_step")
def test_ddim_step_with_noise(sub, rng):
    """ddim_step with eta = 0.8 from t = 40 to t_prev = 10"""
    eps, xt, z = (torch.randn(8, 2, generator=rng) for _ in range(3))
    got = sub.call("ddim_step", eps, xt, 40, 10, ALPHA_BAR, 0.8, z)
    expect_close(got, ddim.ddim_step(eps, xt, 40, 10, ALPHA_BAR, 0.8, z), "ddim_step(eps, xt, 40, 10, ..., eta=0.8, z)",
                 hints=step_hints(eps, xt, 40, 10, ALPHA_BAR, 0.8, z))


@exercise("ddim_step")
def test_ddim_step_last_step_adds_no_noise(sub, rng):
    """the last step (t_prev = -1) lands on x0_hat and adds no noise, even with eta = 1"""
    eps, xt, z = (torch.randn(8, 2, generator=rng) for _ in range(3))
    t = 3
    x0_hat = (xt - (1 - ALPHA_BAR[t]).sqrt() * eps) / ALPHA_BAR[t].sqrt()
    got = sub.call("ddim_step", eps, xt, t, -1, ALPHA_BAR, 1.0, z)
    last = ALPHA_BAR[-1]
    expect_close(got, x0_hat, f"ddim_step(eps, xt, t={t}, t_prev=-1, eta=1) against x0_hat (alpha_bar_prev = 1, sigma = 0)",
                 hints=[Hint(last.sqrt() * x0_hat + (1 - last).sqrt() * eps,
                             "the final step must go to alpha_bar = 1 (t_prev = -1 is the clean data), but you "
                             "used the last, noisiest entry of alpha_bar.",
                             where="section 2: the sentence on t_prev = -1 below eq. 16; Python's index -1."),
                        Hint(x0_hat + z, "the last step adds noise: sigma must be 0 when alpha_bar_prev = 1.",
                             where=SIGMA_WHERE)])


@exercise("ddim_sample")
def test_ddim_sample_deterministic(sub, rng):
    """ddim_sample with eta = 0 on a small network, 5 steps"""
    ts = ddim.ddim_timesteps(T_SMALL, 5)
    ref = Ref(random_net, 0, T_SMALL)
    got = sub.call("ddim_sample", ref, X4, ts, ALPHA_BAR, eta=0.0)
    expect_close(got, ddim.ddim_sample(build(ref), X4, ts, ALPHA_BAR), "ddim_sample(model, x_T, timesteps, eta=0)",
                 rtol=1e-4, atol=1e-4)


@exercise("ddim_sample")
def test_ddim_sample_with_noise(sub, rng):
    """ddim_sample with eta = 1 and a seeded generator on a small network, 5 steps"""
    ts = ddim.ddim_timesteps(T_SMALL, 5)
    ref = Ref(random_net, 1, T_SMALL)
    model = build(ref)
    x_T = torch.randn(16, 2, generator=rng)
    got = sub.call("ddim_sample", ref, x_T, ts, ALPHA_BAR, eta=1.0, generator=Ref(generator, 7))
    expect_close(got, ddim.ddim_sample(model, x_T, ts, ALPHA_BAR, 1.0, generator(7)),
                 "ddim_sample(model, x_T, timesteps, eta=1, generator)", rtol=1e-4, atol=1e-4, hints=[
                     Hint(lambda: ddim.ddim_sample(model, x_T, ts, ALPHA_BAR, 0.0),
                          "your samples ignore eta: with eta = 1 they came out as the deterministic (eta = 0) ones.",
                          where=SAMPLE_WHERE + " Which eta does each step get?"),
                     Hint(lambda: ddim.ddim_walk(model, x_T, [int(t) for t in ts], ALPHA_BAR, 1.0, generator(7)),
                          "the final step must go to alpha_bar = 1: after the last entry of timesteps (0), one "
                          "more step goes to t_prev = -1, the clean data.", where=SAMPLE_WHERE),
                 ])


@exercise("ddim_invert")
def test_ddim_invert_small_net(sub, rng):
    """ddim_invert on a small network, 5 steps of a short, steep schedule"""
    ts = ddim.ddim_timesteps(T_STEEP, 5)
    ref = Ref(random_net, 0, T_STEEP)
    model = build(ref)
    up = [-1] + [int(t) for t in ts.flip(0)]
    got = sub.call("ddim_invert", ref, X4, ts, ALPHA_BAR_STEEP)
    expect_close(got, ddim.ddim_invert(model, X4, ts, ALPHA_BAR_STEEP),
                 "ddim_invert(model, x0, timesteps, alpha_bar) (a schedule with alpha_bar_0 = 0.7)",
                 rtol=1e-4, atol=1e-4, hints=[
                     Hint(lambda: walk(model, X4, [-1] + [int(t) for t in ts], ALPHA_BAR_STEEP, lambda a, b: b),
                          "inversion walks up, from the data to the noisiest step: reverse the timesteps.",
                          where=INVERT_WHERE),
                     Hint(lambda: walk(model, X4, up, ALPHA_BAR_STEEP, lambda a, b: max(a, 0)),
                          "ask the model about the step you move to (t), not the one you come from.",
                          where=INVERT_WHERE),
                     Hint(lambda: walk(model, X4, up[1:], ALPHA_BAR_STEEP, lambda a, b: b),
                          "start at the data, t = -1 with alpha_bar = 1: the first step goes from -1 to 0. "
                          "(With the usual schedules alpha_bar_0 is close to 1 and this step looks harmless; "
                          "here it is 0.7.)", where=INVERT_WHERE),
                 ])


@exercise("slerp")
def test_slerp_orthogonal(sub, rng):
    """slerp halfway between orthogonal unit vectors stays on the unit circle"""
    z0 = torch.tensor([[1.0, 0.0], [0.0, 3.0]])
    z1 = torch.tensor([[0.0, 1.0], [3.0, 0.0]])
    got = sub.call("slerp", z0, z1, 0.5)
    expect_close(got, torch.tensor([[0.5 ** 0.5, 0.5 ** 0.5], [1.5 * 2 ** 0.5, 1.5 * 2 ** 0.5]]),
                 "slerp(z0, z1, 0.5) for orthogonal rows",
                 hints=[Hint(0.5 * (z0 + z1), "that is linear interpolation: slerp follows the arc, so the "
                                              "halfway point keeps the norm.", where=SLERP_WHERE)])


@exercise("slerp")
def test_slerp_rows_and_end_points(sub, rng):
    """slerp between random rows at alpha = 0.3, and its end point alpha = 0"""
    z0, z1 = torch.randn(6, 5, generator=rng), 2 * torch.randn(6, 5, generator=rng)
    flat_theta = torch.arccos((z0 * z1).sum() / (z0.norm() * z1.norm()))
    expected = ddim.slerp(z0, z1, 0.3)
    expect_close(sub.call("slerp", z0, z1, 0.0), z0, "slerp(z0, z1, alpha=0) (it must be z0)", rtol=1e-4, atol=1e-4,
                 hints=[Hint(z1, "the weights are swapped: at alpha = 0 slerp must give z0, so sin((1 - alpha) "
                                 "theta) goes with z0.", where=SLERP_WHERE)])
    expect_close(sub.call("slerp", z0, z1, 0.3), expected, "slerp(z0, z1, alpha=0.3) for random rows",
                 rtol=1e-4, atol=1e-4, hints=[
                     Hint(0.7 * z0 + 0.3 * z1, "that is linear interpolation: slerp follows the arc.",
                          where=SLERP_WHERE),
                     Hint((torch.sin(0.7 * flat_theta) * z0 + torch.sin(0.3 * flat_theta) * z1) / torch.sin(flat_theta),
                          "compute the angle theta row by row (one per sample), not once for the whole batch.",
                          where=SLERP_WHERE),
                 ])


# -- questions ("predict, then run") ------------------------------------------------------------
ETA0_TWICE_WHERE = "section 2: eq. 12 with eta = 0 (what does sigma z contribute?), and Song et al. 2020, section 4.1."
ETA0_TWICE_WHY_NOT = {
    "b": "with eta = 0, sigma = 0 on every step, so the fresh noise z is multiplied by 0: nothing random is left.",
    "c": "the last step adds no noise for any eta, and with eta = 0 no other step does either.",
}
INVERSION_CALLS_WHERE = "section 5: the path -1 -> tau_1 -> ... -> tau_S and one model call per step of it."
INVERSION_CALLS_WRONG = {  # a realistic wrong count -> what it counts
    49: "49 counts the steps between the 50 timesteps, but the walk also takes the step from the data (t = -1) to 0.",
    51: "51 counts the points of the path; the model is called once per step between them.",
    100: "100 counts encoding and decoding; ddim_invert only encodes.",
}


@exercise("predict_ddim_eta0_twice", weight=0.5)
def test_predict_ddim_eta0_twice(sub, rng):
    """DDIM with eta = 0 run twice from the same x_T with different seeds"""
    expect_choice(sub.call("predict_ddim_eta0_twice"), "a", "predict_ddim_eta0_twice()",
                  why_not=ETA0_TWICE_WHY_NOT, where=ETA0_TWICE_WHERE)


@exercise("predict_inversion_calls", weight=0.5)
def test_predict_inversion_calls(sub, rng):
    """the number of network calls of ddim_invert with 50 timesteps"""
    expect_scalar(sub.call("predict_inversion_calls"), 50, "predict_inversion_calls()", reveal=False, rtol=0, atol=0.01,
                  hints=[Hint(torch.tensor(float(k)), msg, where=INVERSION_CALLS_WHERE)
                         for k, msg in INVERSION_CALLS_WRONG.items()])

"""Hidden tests of notebook 04 (DDIM). Inputs are drawn at grading time from ``rng``; expected
answers come from the course library (``course.ddim``, the reference) and closed forms: for
Gaussian data the exact eps-predictor is linear, so DDIM's output law is known exactly
(``course.ddim.gaussian_ddim_moments``) and approaches the data's mean and covariance."""
from __future__ import annotations

import torch

from course import ddim
from course.schedules import make_alpha_bar
from grader.engine.api import Hint, Ref, build, exercise, expect, expect_close, expect_moments, matches
from grader.public.nb04_ddim import (INVERT_WHERE, SAMPLE_WHERE, SLERP_WHERE, STEP_WHERE, gaussian_model, generator,
                                     random_net, sigma_hints, step_hints)

T = 1000
ALPHA_BAR = make_alpha_bar(T)
T_NET = 100  # the small random network runs on a shorter schedule
ALPHA_BAR_NET = make_alpha_bar(T_NET)


def random_gaussian(rng, d=2):
    """A random mean and a well-conditioned covariance (eigenvalues in [0.3, 2])."""
    m = torch.randn(d, generator=rng)
    q, _ = torch.linalg.qr(torch.randn(d, d, generator=rng))
    lam = 0.3 + 1.7 * torch.rand(d, generator=rng)
    return m, q @ torch.diag(lam) @ q.T


def points(rng, n=64, d=2):
    return torch.randn(n, d, generator=rng)


def labelled_walk(model, x, path, alpha_bar, label, eta=0.0, generator=None):
    """The walk along ``path`` with another rule for the model's label: what common wrong loops
    compute. ``label(t_from, t_to)`` gives the step the model is asked about; one z per step."""
    for t_from, t_to in zip(path[:-1], path[1:]):
        eps = model(x, torch.full((x.shape[0],), label(t_from, t_to), dtype=torch.long))
        z = torch.randn(x.shape, generator=generator) if eta > 0 else None
        x = ddim.ddim_step(eps, x, t_from, t_to, alpha_bar, eta, z)
    return x


# -- ddim_timesteps --------------------------------------------------------------------------
def check_timesteps(got, T_, n):
    what = f"ddim_timesteps(T={T_}, n_steps={n})"
    expect(isinstance(got, torch.Tensor), f"{what} should return a torch LongTensor, got {type(got).__name__}.")
    expect(not got.is_floating_point(), f"{what} has dtype {got.dtype}, expected torch.int64 (a LongTensor).",
           "Hint: the steps index alpha_bar, so they must be whole numbers stored as integers (int64).")
    expect(got.dim() == 1 and got.numel() >= 2, f"{what} should be a 1-dimensional tensor of {n} steps, "
                                                 f"got shape {tuple(got.shape)}.")
    steps = got.tolist()
    expect(steps[0] > steps[-1], f"{what} is in ascending order ({steps[0]}, {steps[1]}, ...).",
           "Hint: DDIM walks from noise to data: the steps must be descending, T-1 first and 0 last.",
           "Where to look: section 1, the order of the sub-sequence tau.")
    expect(steps[0] == T_ - 1, f"{what} starts at {steps[0]}, but must start at T-1 = {T_ - 1}.",
           "Hint: the first step must be T-1 (the noisiest step, where x_T ~ N(0, I) is right); a stride of "
           "T // n_steps from 0 never reaches it. Space the steps evenly from T-1 down to 0.",
           "Where to look: section 1, the formula for tau_i (i = S gives T-1).")
    expect(steps[-1] == 0, f"{what} ends at {steps[-1]}, but must end at 0.",
           "Hint: the last step must be 0, the least noisy one, so the final step lands on clean data.",
           "Where to look: section 1, the formula for tau_i (i = 1 gives 0).")
    expect(tuple(got.shape) == (n,), f"{what} should have shape ({n},): n_steps steps, got {tuple(got.shape)}.")
    exact = torch.linspace(T_ - 1, 0, n, dtype=torch.float64)
    off = (got.double() - exact).abs()
    expect(bool((off < 1).all()),
           f"{what} is not evenly spaced: step {steps[int(off.argmax())]} is {float(off.max()):.3g} away from "
           f"{float(exact[int(off.argmax())]):.2f}, the evenly spaced value.",
           "Hint: n_steps evenly spaced values from T-1 down to 0, each rounded to the nearest integer.",
           "Where to look: section 1, the formula for tau_i.")


@exercise("ddim_timesteps")
def test_ddim_timesteps_random_sizes(sub, rng):
    """ddim_timesteps for random T and n_steps"""
    for _ in range(3):
        T_ = int(torch.randint(50, 1001, (1,), generator=rng))
        n = int(torch.randint(3, 40, (1,), generator=rng))
        check_timesteps(sub.call("ddim_timesteps", T_, n), T_, n)


@exercise("ddim_timesteps")
def test_ddim_timesteps_every_step(sub, rng):
    """ddim_timesteps(T, T) is every step, T-1 down to 0"""
    T_ = int(torch.randint(5, 60, (1,), generator=rng))
    got = sub.call("ddim_timesteps", T_, T_)
    check_timesteps(got, T_, T_)
    expect_close(got, torch.arange(T_ - 1, -1, -1), f"ddim_timesteps({T_}, {T_})")


# -- ddim_sigma ------------------------------------------------------------------------------
def sigma_variants(t, t_prev, eta):
    return sigma_hints(t, t_prev, ALPHA_BAR, eta)


@exercise("ddim_sigma")
def test_ddim_sigma_skipped_steps(sub, rng):
    """ddim_sigma for jumps over many steps and eta in (0, 1)"""
    for _ in range(4):
        t = int(torch.randint(100, T, (1,), generator=rng))
        t_prev = int(torch.randint(1, t - 20, (1,), generator=rng))
        eta = round(0.2 + 0.6 * float(torch.rand(1, generator=rng)), 3)
        got = sub.call("ddim_sigma", t, t_prev, ALPHA_BAR, eta)
        expect_close(got, ddim.ddim_sigma(t, t_prev, ALPHA_BAR, eta),
                     f"ddim_sigma(t={t}, t_prev={t_prev}, alpha_bar, eta={eta})",
                     hints=sigma_variants(t, t_prev, eta))


@exercise("ddim_sigma")
def test_ddim_sigma_last_step_and_eta_zero(sub, rng):
    """ddim_sigma is 0 on the last step (t_prev = -1) and for eta = 0"""
    t = int(torch.randint(0, 200, (1,), generator=rng))
    got = sub.call("ddim_sigma", t, -1, ALPHA_BAR, 1.0)
    ok = isinstance(got, (torch.Tensor, float, int)) and matches(got, torch.tensor(0.0), atol=1e-6)
    expect(ok, f"ddim_sigma(t={t}, t_prev=-1, alpha_bar, eta=1) should be 0 (the step to the data adds no "
               f"noise), got {got if not isinstance(got, torch.Tensor) else got.tolist()}.",
           "Hint: t_prev = -1 stands for the clean data, alpha_bar_prev = 1; alpha_bar[-1] is the *last* "
           "entry of the schedule (the noisiest step) in Python.")
    t, t_prev = 700, 300
    got = sub.call("ddim_sigma", t, t_prev, ALPHA_BAR, 0.0)
    expect_close(got, torch.tensor(0.0), "ddim_sigma(700, 300, alpha_bar, eta=0)")


# -- ddim_step -------------------------------------------------------------------------------
def step_variants(eps, xt, t, t_prev, eta, z):
    ab_t = ALPHA_BAR[t]
    sigma = ddim.ddim_sigma(t, t_prev, ALPHA_BAR, eta)
    ab_prev = ALPHA_BAR[t_prev] if t_prev >= 0 else torch.tensor(1.0)
    alpha_t = ab_t / ALPHA_BAR[t - 1]
    x0_alpha = (xt - (1 - alpha_t).sqrt() * eps) / alpha_t.sqrt()
    direction = (1 - ab_prev - sigma ** 2).clamp(min=0).sqrt() * eps
    return step_hints(eps, xt, t, t_prev, ALPHA_BAR, eta, z) + [
        Hint(ab_prev.sqrt() * x0_alpha + direction + sigma * z,
             "x0_hat uses alpha_bar_t (the product of all alphas), not alpha_t = 1 - beta_t.",
             where=STEP_WHERE + " The prediction x0_hat above it."),
    ]


@exercise("ddim_step", weight=2.0)
def test_ddim_step_stochastic(sub, rng):
    """ddim_step with eta in (0, 1] over a jump of many steps"""
    xt, eps, z = points(rng), points(rng), points(rng)
    t = int(torch.randint(300, T, (1,), generator=rng))
    t_prev = int(torch.randint(50, t - 100, (1,), generator=rng))
    eta = round(0.3 + 0.7 * float(torch.rand(1, generator=rng)), 3)
    got = sub.call("ddim_step", eps, xt, t, t_prev, ALPHA_BAR, eta, z)
    expect_close(got, ddim.ddim_step(eps, xt, t, t_prev, ALPHA_BAR, eta, z),
                 f"ddim_step(eps, xt, t={t}, t_prev={t_prev}, alpha_bar, eta={eta}, z)",
                 hints=step_variants(eps, xt, t, t_prev, eta, z))


@exercise("ddim_step")
def test_ddim_step_to_data(sub, rng):
    """ddim_step to t_prev = -1 returns the predicted clean point x0_hat"""
    xt, eps, z = points(rng), points(rng), points(rng)
    t = int(torch.randint(1, 120, (1,), generator=rng))
    ab_t, ab_last = ALPHA_BAR[t], ALPHA_BAR[-1]
    x0 = (xt - (1 - ab_t).sqrt() * eps) / ab_t.sqrt()
    got = sub.call("ddim_step", eps, xt, t, -1, ALPHA_BAR, 0.0, z)
    expect_close(got, ddim.ddim_step(eps, xt, t, -1, ALPHA_BAR, 0.0, z), f"ddim_step(eps, xt, t={t}, t_prev=-1, eta=0)",
                 hints=[Hint(ab_last.sqrt() * x0 + (1 - ab_last).sqrt() * eps,
                             "the final step must go to alpha_bar = 1 (t_prev = -1 is the clean data), "
                             "but you used alpha_bar[-1], the last and noisiest entry.")])


@exercise("ddim_step")
def test_ddim_step_images(sub, rng):
    """ddim_step on images (B, C, H, W) with eta = 0 (z must not matter)"""
    xt, eps, z = (torch.randn(3, 1, 4, 4, generator=rng) for _ in range(3))
    got = sub.call("ddim_step", eps, xt, 500, 250, ALPHA_BAR, 0.0, z)
    expect_close(got, ddim.ddim_step(eps, xt, 500, 250, ALPHA_BAR, 0.0, None), "ddim_step on (3, 1, 4, 4) images, eta=0",
                 hints=[Hint(ddim.ddim_step(eps, xt, 500, 250, ALPHA_BAR, 0.0, None) + z,
                             "the noise must be scaled by sigma, which is 0 when eta = 0.")])


# -- ddim_sample -----------------------------------------------------------------------------
@exercise("ddim_sample", weight=2.0)
def test_ddim_sample_values_with_noise(sub, rng):
    """ddim_sample with eta = 0.6 and a seeded generator on a small network"""
    n_steps = int(torch.randint(5, 12, (1,), generator=rng))
    ts = ddim.ddim_timesteps(T_NET, n_steps)
    seed = int(torch.randint(0, 2 ** 30, (1,), generator=rng))
    ref = Ref(random_net, seed % 1000, T_NET)
    model = build(ref)
    x_T = points(rng, 32)
    expected = ddim.ddim_sample(model, x_T, ts, ALPHA_BAR_NET, 0.6, torch.Generator().manual_seed(seed))
    path = [int(t) for t in ts]
    got = sub.call("ddim_sample", ref, x_T, ts, ALPHA_BAR_NET, eta=0.6, generator=Ref(generator, seed))
    expect_close(got, expected, f"ddim_sample(model, x_T, {n_steps} timesteps, alpha_bar, eta=0.6, generator)",
                 rtol=1e-4, atol=1e-4, hints=[
                     Hint(lambda: ddim.ddim_sample(model, x_T, ts, ALPHA_BAR_NET, 0.0),
                          "your samples ignore eta: with eta = 0.6 they came out as the deterministic (eta = 0) ones.",
                          where=SAMPLE_WHERE + " Which eta does each step get?"),
                     Hint(lambda: ddim.ddim_walk(model, x_T, path, ALPHA_BAR_NET, 0.6, torch.Generator().manual_seed(seed)),
                          "the final step must go to alpha_bar = 1: after the last entry of timesteps (0), take "
                          "one more step to t_prev = -1, the clean data.", where=SAMPLE_WHERE),
                     Hint(lambda: labelled_walk(model, x_T, path + [-1], ALPHA_BAR_NET, lambda a, b: max(b, 0), 0.6,
                                                torch.Generator().manual_seed(seed)),
                          "call the model at the current step t (where x is), not at t_prev.", where=SAMPLE_WHERE),
                 ])


@exercise("ddim_sample")
def test_ddim_sample_reproducible(sub, rng):
    """ddim_sample with eta = 1 gives the same samples for the same seed"""
    ts = ddim.ddim_timesteps(T_NET, 6)
    x_T = points(rng, 16)
    a = sub.call("ddim_sample", Ref(random_net, 3, T_NET), x_T, ts, ALPHA_BAR_NET, eta=1.0, generator=Ref(generator, 5))
    b = sub.call("ddim_sample", Ref(random_net, 3, T_NET), x_T, ts, ALPHA_BAR_NET, eta=1.0, generator=Ref(generator, 5))
    expect_close(a, b, "two calls of ddim_sample with the same seed", hints=[])
    expect(not matches(a, ddim.ddim_sample(build(Ref(random_net, 3, T_NET)), x_T, ts, ALPHA_BAR_NET, 0.0)),
           "ddim_sample with eta = 1 returned the deterministic (eta = 0) samples.",
           "Hint: eta must reach ddim_step (and z must be drawn) so that eta > 0 adds noise.")


@exercise("ddim_sample", weight=2.0)
def test_ddim_sample_gaussian_oracle_exact_law(sub, rng):
    """ddim_sample with the exact predictor of Gaussian data, 10 steps: the closed-form output law"""
    m, C = random_gaussian(rng)
    ts = ddim.ddim_timesteps(T, 10)
    x_T = torch.randn(4000, 2, generator=rng)
    for eta in (0.0, 1.0):
        mean, cov = ddim.gaussian_ddim_moments(m, C, ts, ALPHA_BAR, eta)
        got = sub.call("ddim_sample", Ref(gaussian_model, m, C, ALPHA_BAR), x_T, ts, ALPHA_BAR, eta=eta,
                       generator=Ref(generator, 11))
        expect_moments(got, mean, cov, f"ddim_sample(exact Gaussian predictor, 10 steps, eta={eta:g})")


@exercise("ddim_sample")
def test_ddim_sample_gaussian_oracle_matches_data(sub, rng):
    """deterministic DDIM with the exact predictor of Gaussian data and 200 steps samples the data"""
    m, C = random_gaussian(rng)
    x_T = torch.randn(3000, 2, generator=rng)
    got = sub.call("ddim_sample", Ref(gaussian_model, m, C, ALPHA_BAR), x_T, ddim.ddim_timesteps(T, 200),
                   ALPHA_BAR, eta=0.0)
    expect_moments(got, m, C, "DDIM samples (eta=0, 200 steps, exact predictor) against the data N(m, C)")


# -- ddim_invert -----------------------------------------------------------------------------
@exercise("ddim_invert", weight=2.0)
def test_ddim_invert_values(sub, rng):
    """ddim_invert on a small network, up to a middle step (so the codes still remember x0)"""
    n_steps = int(torch.randint(4, 10, (1,), generator=rng))
    top = int(torch.randint(40, 70, (1,), generator=rng))
    ts = torch.linspace(top, 0, n_steps).round().long()  # a descending sub-sequence ending at 0
    ref = Ref(random_net, int(torch.randint(0, 1000, (1,), generator=rng)), T_NET)
    model = build(ref)
    x0 = points(rng, 32)
    up = [-1] + [int(t) for t in ts.flip(0)]
    got = sub.call("ddim_invert", ref, x0, ts, ALPHA_BAR_NET)
    expect_close(got, ddim.ddim_invert(model, x0, ts, ALPHA_BAR_NET), f"ddim_invert(model, x0, timesteps={ts.tolist()})",
                 rtol=1e-4, atol=1e-4, hints=[
                     Hint(lambda: labelled_walk(model, x0, [-1] + [int(t) for t in ts], ALPHA_BAR_NET, lambda a, b: b),
                          "inversion walks *up*, from the data (t = -1) through 0, ... to T-1: reverse the "
                          "timesteps.", where=INVERT_WHERE),
                     Hint(lambda: labelled_walk(model, x0, up, ALPHA_BAR_NET, lambda a, b: max(a, 0)),
                          "ask the model about the step you move to (t), not the one you come from: it cannot be "
                          "asked about t = -1.", where=INVERT_WHERE),
                     Hint(lambda: labelled_walk(model, x0, up[1:], ALPHA_BAR_NET, lambda a, b: b),
                          "start at the data, t = -1 with alpha_bar = 1: the first step goes from -1 to 0.",
                          where=INVERT_WHERE),
                 ])


@exercise("ddim_invert")
def test_ddim_invert_reconstructs_with_exact_oracle(sub, rng):
    """inverting Gaussian data with the exact predictor, then sampling, gives the data back"""
    m, C = random_gaussian(rng)
    x0 = m + torch.randn(256, 2, generator=rng) @ torch.linalg.cholesky(C).T
    ts = ddim.ddim_timesteps(T, 500)
    ref = Ref(gaussian_model, m, C, ALPHA_BAR)
    codes = sub.call("ddim_invert", ref, x0, ts, ALPHA_BAR)
    expect(isinstance(codes, torch.Tensor) and tuple(codes.shape) == tuple(x0.shape),
           f"ddim_invert should return codes with x0's shape {tuple(x0.shape)}.")
    back = ddim.ddim_sample(build(ref), codes, ts, ALPHA_BAR)
    err = float((back - x0).norm(dim=1).mean())
    expect(err < 0.05, f"decoding your codes with DDIM (500 steps) gives points {err:.3g} away from x0 on average "
                       "(a correct inversion is within about 0.01).",
           "Hint: invert the eta = 0 step: walk from t = -1 (alpha_bar = 1) up the reversed timesteps.")
    expect_moments(codes, torch.zeros(2), torch.eye(2), "your codes x_T of data samples (they should be N(0, I))")


# -- slerp -----------------------------------------------------------------------------------
def reference_slerp(z0, z1, alpha):
    return ddim.slerp(z0, z1, alpha)


@exercise("slerp")
def test_slerp_random_rows(sub, rng):
    """slerp between random rows, alpha in (0, 1)"""
    z0, z1 = points(rng, 16, 8), points(rng, 16, 8) * 2
    alpha = round(0.1 + 0.8 * float(torch.rand(1, generator=rng)), 3)
    flat_theta = torch.arccos((z0 * z1).sum() / (z0.norm() * z1.norm()))
    got = sub.call("slerp", z0, z1, alpha)
    expected = reference_slerp(z0, z1, alpha)
    expect_close(got, expected, f"slerp(z0, z1, alpha={alpha})", rtol=1e-4, atol=1e-4, hints=[
        Hint((1 - alpha) * z0 + alpha * z1, "that is linear interpolation: slerp weights z0 and z1 by "
                                            "sin((1 - alpha) theta) / sin(theta) and sin(alpha theta) / sin(theta).", where=SLERP_WHERE),
        Hint(reference_slerp(z0, z1, 1 - alpha), "the weights are swapped: slerp(z0, z1, 0) must be z0, so "
                                                 "sin((1 - alpha) theta) goes with z0.", where=SLERP_WHERE),
        Hint((torch.sin((1 - alpha) * flat_theta) * z0 + torch.sin(alpha * flat_theta) * z1) / torch.sin(flat_theta),
             "compute the angle theta row by row (one per sample), not once for the whole batch.", where=SLERP_WHERE),
        Hint(expected / expected.norm(dim=1, keepdim=True), "do not normalise the result: slerp keeps the norms "
                                                            "of its end points when they are equal.", where=SLERP_WHERE),
    ])


@exercise("slerp")
def test_slerp_images_and_end_points(sub, rng):
    """slerp on (N, C, H, W) codes, and its end points alpha = 0 and 1"""
    z0, z1 = torch.randn(4, 1, 3, 3, generator=rng), torch.randn(4, 1, 3, 3, generator=rng)
    expect_close(sub.call("slerp", z0, z1, 0.3), reference_slerp(z0, z1, 0.3), "slerp on (4, 1, 3, 3) codes, alpha=0.3",
                 rtol=1e-4, atol=1e-4)
    expect_close(sub.call("slerp", z0, z1, 0.0), z0, "slerp(z0, z1, 0)", rtol=1e-4, atol=1e-4)
    expect_close(sub.call("slerp", z0, z1, 1.0), z1, "slerp(z0, z1, 1)", rtol=1e-4, atol=1e-4)


# -- questions -----------------------------------------------------------------------------------

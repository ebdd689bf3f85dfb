"""Notebook 09 (samplers: parameterisations, EDM, DPM-Solver++): manifest, factories, public checks.

Time convention (EDM): x = x0 + sigma n, sigma from sigma_max down to 0; a denoiser ``D(x, sigma)``
with sigma a float tensor (B,) predicts x0. The denoisers handed to the learner's samplers are exact
(``course.edm.GMMDenoiser``: a Gaussian mixture's E[x0 | x]), so expected answers are computed by the
course's reference samplers in the grader's process, in float64, and compared within tolerances.
"""
from __future__ import annotations

import math

import torch

from course import edm, samplers
from course.edm import GMMDenoiser
from course.oracles import gmm_eps_model
from course.schedules import make_alpha_bar
from grader.engine.api import (Hint, Mismatch, Ref, build, expect, expect_choice, expect_close, expect_scalar,  # noqa: F401
                               expect_tensor, exercise, generator)

EXERCISES = {  # exercise (= nbgrader grade_id of its answer cell) -> points
    "karras_sigmas": 1,
    "x0_to_eps": 1,
    "eps_to_x0": 1,
    "v_target": 1,
    "v_to_x0": 1,
    "edm_precond": 2,
    "edm_denoiser": 1,
    "edm_loss": 2,
    "euler_sampler": 2,
    "heun_sampler": 3,
    "dpmpp_2m_sampler": 3,
    "vp_eps_to_denoiser": 2,
    "predict_heun_nfe": 0.5,  # questions: "predict, then run" (issue 13)
    "predict_ddim_is_euler": 0.5,
}

LIBRARY = {  # the course library's implementation of each exercise (calling it scores zero)
    "karras_sigmas": "course.edm:karras_sigmas",
    "x0_to_eps": "course.edm:x0_to_eps",
    "eps_to_x0": "course.edm:eps_to_x0",
    "v_target": "course.edm:v_target",
    "v_to_x0": "course.edm:v_to_x0",
    "edm_precond": "course.edm:edm_precond",
    "edm_denoiser": "course.edm:edm_denoiser",
    "edm_loss": "course.edm:edm_loss",
    # the sampling loop is written once (course.samplers.sample_loop); each sampler's step is its own
    "euler_sampler": "course.samplers:euler_step",
    "heun_sampler": "course.samplers:heun_step",
    "dpmpp_2m_sampler": "course.samplers:dpmpp_2m_step",
    "vp_eps_to_denoiser": "course.edm:vp_eps_to_denoiser",
}


# ---------------------------------------------------------------------------------------------
# Factories (built inside the sandbox and, by api.build, in the grader)
# ---------------------------------------------------------------------------------------------
def mixture_denoiser(means, stds, weights):
    """The exact denoiser D(x, sigma) of an isotropic Gaussian mixture (one component: a Gaussian)."""
    D = GMMDenoiser(means, stds, weights)

    def denoiser(x, sigma):
        if not (isinstance(sigma, torch.Tensor) and sigma.is_floating_point() and tuple(sigma.shape) == (x.shape[0],)):
            got = f"a tensor of dtype {sigma.dtype} and shape {tuple(sigma.shape)}" if isinstance(sigma, torch.Tensor) \
                else f"{type(sigma).__name__} {sigma!r}"
            raise TypeError(f"D(x, sigma) takes sigma as a float tensor of shape (B,) = ({x.shape[0]},), but got {got}. "
                            "Build it with torch.full((x.shape[0],), sigma).")
        if bool((sigma <= 0).any()):
            raise ValueError("D(x, sigma) was asked about sigma = 0: a denoiser is never evaluated at the data "
                             "itself (the step to sigma = 0 uses the previous evaluation).")
        return D(x, sigma)

    return denoiser


def toy_network(seed: int, dim: int = 2):
    """A raw network F(x_in, c_noise) with fixed random weights: nonlinear in both arguments."""
    g = torch.Generator().manual_seed(seed)
    W = torch.randn(dim, dim, generator=g) / math.sqrt(dim)
    b = 0.3 * torch.randn(dim, generator=g)
    u = torch.randn(dim, generator=g)

    def F(x_in, c_noise):
        if not (isinstance(c_noise, torch.Tensor) and tuple(c_noise.shape) == (x_in.shape[0],)):
            got = tuple(c_noise.shape) if isinstance(c_noise, torch.Tensor) else type(c_noise).__name__
            raise TypeError(f"F(x_in, c_noise) takes c_noise of shape (B,) = ({x_in.shape[0]},), got {got}.")
        c = c_noise.reshape(-1, 1).to(x_in.dtype)
        return torch.tanh(x_in @ W.T + b) * (1 + 0.5 * c) + c * u

    return F


def strict_eps_oracle(means, stds, weights, T: int = 1000):
    """The exact DDPM eps-predictor of a mixture on the linear schedule, insisting on t a LongTensor (B,)."""
    alpha_bar = make_alpha_bar(T)
    model = gmm_eps_model(means, stds, weights, alpha_bar)

    def eps_model(x, t):
        if not (isinstance(t, torch.Tensor) and t.dtype == torch.long and tuple(t.shape) == (x.shape[0],)):
            got = f"dtype {t.dtype}, shape {tuple(t.shape)}" if isinstance(t, torch.Tensor) else type(t).__name__
            raise TypeError(f"eps_model(x_t, t) takes t as a LongTensor of shape (B,) = ({x.shape[0]},), got {got}.")
        if bool((t < 0).any()) or bool((t >= T).any()):
            raise IndexError(f"eps_model was asked about step {int(t.min())}..{int(t.max())}, outside 0..{T - 1}.")
        return model(x, t)

    return eps_model


def probe_vp_denoiser(ns, eps_model, alpha_bar, x, sigma):
    """The learner's vp_eps_to_denoiser(eps_model, alpha_bar) evaluated at (x, sigma): raw output."""
    D = ns["vp_eps_to_denoiser"](eps_model, alpha_bar)
    if not callable(D):
        raise TypeError(f"vp_eps_to_denoiser should return a function D(x, sigma), but returned {type(D).__name__}.")
    return D(x, sigma)


# ---------------------------------------------------------------------------------------------
# Shared helpers (public and hidden tests): the known mistakes, computed in the grader
# ---------------------------------------------------------------------------------------------
def karras_variants(n, smin, smax, rho):
    """What the known mistakes of karras_sigmas return."""
    i = torch.arange(n, dtype=torch.float64)
    zero = torch.zeros(1, dtype=torch.float64)
    rho_on_sigma = (smax ** rho + i / (n - 1) * (smin ** rho - smax ** rho)).clamp(min=0) ** (1 / rho)
    over_n = (smax ** (1 / rho) + i / n * (smin ** (1 / rho) - smax ** (1 / rho))) ** rho
    return {
        "rho": (torch.cat([rho_on_sigma, zero]).float(),
                "the levels are evenly spaced in sigma^(1/rho), then raised to the power rho: you spaced "
                "sigma^rho and took the rho-th root (rho applied to sigma instead of sigma^(1/rho))."),
        "n": (torch.cat([over_n, zero]).float(),
              "the n-th level (index n - 1) must be exactly sigma_min: the ramp is i / (n - 1), not i / n."),
    }


def check_karras(got, n, smin, smax, rho, what):
    got = expect_tensor(got, what, shape=None, dtype=None)
    if tuple(got.shape) == (n,):
        raise Mismatch([f"{what} has shape ({n},), expected ({n + 1},).",
                        "Hint: after the n levels from sigma_max down to sigma_min comes the final 0 (the data): "
                        "append it, e.g. torch.cat([sigmas, torch.zeros(1)])."])
    expected = edm.karras_sigmas(n, smin, smax, rho)
    v = karras_variants(n, smin, smax, rho)
    expect_close(got.float(), expected, what, rtol=1e-4, atol=1e-6,
                 hints=[Hint(value, message) for value, message in v.values()]
                 + [Hint(expected.flip(0), "the levels go from sigma_max (noisiest) down to sigma_min, then 0.")])


def check_precond(got, sigma, sd, what):
    expect(isinstance(got, (tuple, list)) and len(got) == 4,
           f"{what} should return four tensors (c_skip, c_out, c_in, c_noise), got {type(got).__name__}"
           + (f" of length {len(got)}" if isinstance(got, (tuple, list)) else "") + ".")
    c_skip, c_out, c_in, c_noise = edm.edm_precond(sigma.double(), sd)
    total = sigma.double() ** 2 + sd ** 2
    hints = {
        "c_skip": [Hint(sd ** 2 / (sigma.double() + sd ** 2), "c_skip = sigma_data^2 / (sigma^2 + sigma_data^2): "
                        "you used sigma where sigma^2 belongs."),
                   Hint(sigma.double() ** 2 / total, "c_skip is sigma_data^2 over the total variance, not sigma^2: "
                        "at sigma -> 0 the denoiser must return x itself (c_skip -> 1).")],
        "c_out": [Hint(sigma.double() * sd / total, "c_out = sigma sigma_data / sqrt(sigma^2 + sigma_data^2): take the "
                       "square root of the total variance."),
                  Hint(total.sqrt(), "c_out is sigma sigma_data / sqrt(sigma^2 + sigma_data^2).")],
        "c_in": [Hint(1 / total, "c_in = 1 / sqrt(sigma^2 + sigma_data^2): take the square root (unit-variance input)."),
                 Hint(total.sqrt(), "c_in divides by the input's std sqrt(sigma^2 + sigma_data^2); it does not multiply.")],
        "c_noise": [Hint(sigma.double().log(), "c_noise = ln(sigma) / 4: you left out the 1/4."),
                    Hint(sigma.double() / 4, "c_noise = ln(sigma) / 4: take the logarithm of sigma.")],
    }
    for name, value, expected in zip(("c_skip", "c_out", "c_in", "c_noise"), got, (c_skip, c_out, c_in, c_noise)):
        expect_close(torch.as_tensor(value).double() if isinstance(value, torch.Tensor) else value, expected,
                     f"{name} of {what}", rtol=1e-4, atol=1e-6, hints=hints[name], dtype=torch.float64)


def denoiser_variants(F, x, sigma, sd):
    """The expected edm_denoiser output and the known mistakes' outputs."""
    s = sigma.double()
    total = s ** 2 + sd ** 2
    c_skip, c_out, c_in, c_noise = sd ** 2 / total, s * sd / total.sqrt(), 1 / total.sqrt(), s.log() / 4
    col = lambda c: c.reshape(-1, 1).float()
    expected = col(c_skip) * x + col(c_out) * F(col(c_in) * x, c_noise.float())
    hints = [
        Hint(col(c_skip) * x + col(c_out) * F(x, c_noise.float()),
             "F gets the scaled input c_in * x, not x itself (c_in makes the network's input unit-variance)."),
        Hint(col(c_skip) * x + col(c_out) * F(col(c_in) * x, s.float()),
             "F's second argument is c_noise = ln(sigma) / 4, not sigma."),
        Hint(col(c_out) * x + col(c_skip) * F(col(c_in) * x, c_noise.float()),
             "c_skip multiplies x (the skip connection) and c_out multiplies F's output: they are swapped."),
    ]
    return expected, hints


def loss_variants(F, x0, sigma, noise, sd):
    s = sigma.double()
    x = x0 + s.reshape(-1, 1).float() * noise
    D = edm.edm_denoiser(F, x, sigma, sd)
    sq = ((D - x0) ** 2).double()
    weight = (s ** 2 + sd ** 2) / (s * sd) ** 2
    expected = (weight * sq.sum(1)).mean()
    hints = [
        Hint((weight[:, None] * sq).mean(), "sum the squared error over each sample's dimensions, then take the mean "
             "over the batch (you took the mean over all elements, as F.mse_loss does)."),
        Hint(sq.sum(1).mean(), "the squared error is weighted by lambda(sigma) = (sigma^2 + sigma_data^2) / "
             "(sigma sigma_data)^2 (EDM Table 1)."),
        Hint((sq.sum(1) / weight).mean(), "the weight is lambda(sigma) = (sigma^2 + sigma_data^2) / (sigma sigma_data)^2 "
             "= 1 / c_out^2; you divided by it."),
        Hint((weight * ((edm.edm_denoiser(F, x0 + noise, sigma, sd) - x0) ** 2).double().sum(1)).mean(),
             "the noisy input is x0 + sigma * noise: scale the noise by sigma."),
    ]
    return expected, hints


def _run(step, D, x, sigmas):
    return samplers.sample_loop(step, D, x, sigmas)


def sampler_expected(kind, D, x, sigmas, s_churn=0.0):
    """The reference sampler's output (float64) and the known mistakes' outputs."""
    x64, sig = x.double(), sigmas.double()
    ref = {"euler": samplers.euler_sampler, "heun": samplers.heun_sampler, "dpmpp_2m": samplers.dpmpp_2m_sampler}[kind]
    expected = ref(D, x64, sig).float()
    bt = samplers.time_batch

    def euler_flip(D, x, s, s2, st):
        return x + (float(s2) - float(s)) * (D(x, bt(float(s), x)) - x) / float(s)

    def heun_at_x(D, x, s, s2, st):
        s, s2 = float(s), float(s2)
        d = (x - D(x, bt(s, x))) / s
        if s2 == 0:
            return x + (s2 - s) * d
        d2 = (x - D(x, bt(s2, x))) / s2
        return x + (s2 - s) * 0.5 * (d + d2)

    def dpm_variant(invert=False, first=False, flip_h=False):
        def step(D, x, s, s2, st):
            s, s2 = float(s), float(s2)
            den = D(x, bt(s, x))
            if s2 == 0:
                return den
            h = math.log(s / s2)
            d_hat = den
            if st.get("old") is not None and not first:
                r = st["h"] / h
                r = 1 / r if invert else r
                d_hat = (1 + 1 / (2 * r)) * den - 1 / (2 * r) * st["old"]
            hh = -h if flip_h else h
            out = (s2 / s) * x - math.expm1(-hh) * d_hat
            st["old"], st["h"] = den, h
            return out
        return step

    hints = []
    with torch.no_grad():
        if kind == "euler":
            hints = [
                Hint(_run(euler_flip, D, x64, sig).float(), "the slope is d = (x - D(x, sigma)) / sigma: yours has "
                     "the opposite sign (it points away from the data)."),
                Hint(_run(samplers.euler_step, D, x64, sig[:-1]).float(),
                     "the walk must end with the step from the last level to the final sigma = 0 (the last "
                     "entry of sigmas): your result is still noisy at sigma_min."),
            ]
        elif kind == "heun":
            hints = [
                Hint(samplers.euler_sampler(D, x64, sig).float(), "this is Euler's method: Heun corrects each step "
                     "(except the last) with the average of the slopes at both ends."),
                Hint(_run(heun_at_x, D, x64, sig).float(), "the second slope is evaluated at the Euler point "
                     "x_euler = x + (sigma_next - sigma) d and sigma_next, not at the starting x."),
            ]
        elif kind == "dpmpp_2m":
            hints = [
                Hint(_run(dpm_variant(invert=True), D, x64, sig).float(), "the ratio is r = h_{i-1} / h_i (previous "
                     "step over current step): yours is inverted."),
                Hint(_run(dpm_variant(first=True), D, x64, sig).float(), "every step is first order (DDIM): from the "
                     "second step on, combine D_i with the previous step's D_{i-1}."),
                Hint(_run(dpm_variant(flip_h=True), D, x64, sig).float(), "h = lambda_next - lambda = ln(sigma / "
                     "sigma_next) > 0 (lambda = -ln sigma): yours has the opposite sign."),
            ]
    return expected, hints


def check_sampler_output(got, expected, hints, what, tol=2e-3):
    got = expect_tensor(got, what, shape=tuple(expected.shape), dtype=None) if isinstance(got, torch.Tensor) else got
    if isinstance(got, torch.Tensor) and not bool(torch.isfinite(got).all()):
        raise Mismatch([f"{what} returned non-finite values (nan or inf).",
                        "Hint: the last step goes to sigma = 0, where the slope (x - D) / sigma is undefined: "
                        "no correction (and no evaluation of D) on the step to sigma = 0."])
    scale = float(expected.abs().max()) + 1.0
    expect_close(got.float() if isinstance(got, torch.Tensor) else got, expected, what, rtol=tol, atol=tol * scale,
                 hints=hints)


# ---------------------------------------------------------------------------------------------
# Public checks (also part of grading)
# ---------------------------------------------------------------------------------------------
MIX2 = dict(means=[[-1.0, 0.5], [1.5, -0.5]], stds=[0.3, 0.5], weights=[0.4, 0.6])
X3 = torch.tensor([[0.5, -1.0], [2.0, 0.3], [-1.2, 1.5]])
EPS3 = torch.tensor([[0.3, 0.8], [-1.1, 0.2], [0.4, -0.6]])
AB3 = torch.tensor([0.9, 0.5, 0.05])


@exercise("karras_sigmas")
def test_karras_sigmas_endpoints(sub, rng):
    """karras_sigmas(5, 0.002, 80): from 80 down to 0.002, then 0"""
    check_karras(sub.call("karras_sigmas", 5, 0.002, 80.0), 5, 0.002, 80.0, 7.0, "karras_sigmas(5, 0.002, 80.0)")


@exercise("x0_to_eps")
def test_x0_to_eps_roundtrip(sub, rng):
    """x0_to_eps recovers the noise of x_t = alpha x0 + sigma eps"""
    a, s = AB3.sqrt(), (1 - AB3).sqrt()
    xt = a[:, None] * X3 + s[:, None] * EPS3
    expect_close(sub.call("x0_to_eps", xt, X3, a, s), EPS3, "x0_to_eps(xt, x0, alpha, sigma)", rtol=1e-4, atol=1e-5,
                 hints=[Hint((xt - X3) / s[:, None], "x_t = alpha x0 + sigma eps: subtract alpha * x0, not x0.")])


@exercise("eps_to_x0")
def test_eps_to_x0_roundtrip(sub, rng):
    """eps_to_x0 recovers the data of x_t = alpha x0 + sigma eps"""
    a, s = AB3.sqrt(), (1 - AB3).sqrt()
    xt = a[:, None] * X3 + s[:, None] * EPS3
    expect_close(sub.call("eps_to_x0", xt, EPS3, a, s), X3, "eps_to_x0(xt, eps, alpha, sigma)", rtol=1e-4, atol=1e-5,
                 hints=[Hint(xt - s[:, None] * EPS3, "after removing sigma * eps, divide by alpha.")])


@exercise("v_target")
def test_v_target_definition(sub, rng):
    """v_target = alpha eps - sigma x0"""
    a, s = AB3.sqrt(), (1 - AB3).sqrt()
    expect_close(sub.call("v_target", X3, EPS3, a, s), a[:, None] * EPS3 - s[:, None] * X3,
                 "v_target(x0, eps, alpha, sigma)", rtol=1e-4, atol=1e-5,
                 hints=[Hint(a[:, None] * X3 - s[:, None] * EPS3, "v = alpha * eps - sigma * x0: you swapped eps and x0.")])


@exercise("v_to_x0")
def test_v_to_x0_vp(sub, rng):
    """v_to_x0 on a variance-preserving path recovers x0"""
    a, s = AB3.sqrt(), (1 - AB3).sqrt()
    xt = a[:, None] * X3 + s[:, None] * EPS3
    v = a[:, None] * EPS3 - s[:, None] * X3
    expect_close(sub.call("v_to_x0", xt, v, a, s), X3, "v_to_x0(xt, v, alpha, sigma)", rtol=1e-4, atol=1e-5,
                 hints=[Hint(a[:, None] * xt + s[:, None] * v, "x0 = alpha x_t - sigma v (over alpha^2 + sigma^2): "
                             "the sign of the v term is minus.")])


def v_to_x0_hints(xt, v, a, s):
    """The known mistakes of v_to_x0 (alpha, sigma of shape (B,)), for the public and the hidden checks."""
    A, S = a[:, None], s[:, None]
    return [
        Hint((A * xt + S * v) / (A ** 2 + S ** 2), "the v term has the wrong sign.",
             where="section 2: alpha x_t - sigma v = (alpha^2 + sigma^2) x0."),
        Hint(A * xt - S * v, "alpha x_t - sigma v is (alpha^2 + sigma^2) x0, not x0: that denominator is 1 only "
                             "on a variance-preserving path.",
             where="section 2, the identity under the definition of v: solve it for x0 on any path."),
        Hint((xt - S * v) / A, "v is not eps: you used the eps-to-x0 formula with v in place of eps.",
             where="section 2, the definition of v = alpha eps - sigma x0."),
    ]


@exercise("v_to_x0")
def test_v_to_x0_general_path(sub, rng):
    """v_to_x0 on a path with alpha^2 + sigma^2 != 1 (EDM's alpha = 1)"""
    a, s = torch.tensor([1.0, 1.0, 0.5]), torch.tensor([0.5, 2.0, 3.0])
    xt = a[:, None] * X3 + s[:, None] * EPS3
    v = a[:, None] * EPS3 - s[:, None] * X3
    expect_close(sub.call("v_to_x0", xt, v, a, s), X3, "v_to_x0(xt, v, alpha, sigma) with alpha^2 + sigma^2 != 1",
                 rtol=1e-4, atol=1e-5, hints=v_to_x0_hints(xt, v, a, s))


@exercise("edm_precond")
def test_edm_precond_values(sub, rng):
    """edm_precond at sigma = 0.5, 1, 4 with sigma_data = 0.5"""
    sigma = torch.tensor([0.5, 1.0, 4.0])
    check_precond(sub.call("edm_precond", sigma, 0.5), sigma, 0.5, "edm_precond(sigma, 0.5)")


@exercise("edm_denoiser")
def test_edm_denoiser_toy_network(sub, rng):
    """edm_denoiser on a small fixed network"""
    sigma = torch.tensor([0.1, 1.0, 10.0])
    F = Ref(toy_network, 0)
    expected, hints = denoiser_variants(build(F), X3, sigma, 0.5)
    expect_close(sub.call("edm_denoiser", F, X3, sigma, 0.5), expected, "edm_denoiser(F, x, sigma, 0.5)",
                 rtol=1e-4, atol=1e-5, hints=hints)


@exercise("edm_loss")
def test_edm_loss_toy_network(sub, rng):
    """edm_loss on a small fixed network"""
    sigma = torch.tensor([0.2, 1.0, 5.0])
    F = Ref(toy_network, 1)
    expected, hints = loss_variants(build(F), X3, sigma, EPS3, 0.5)
    expect_close(sub.call("edm_loss", F, X3, sigma, EPS3, 0.5), expected.float(),
                 "edm_loss(F, x0, sigma, noise, 0.5)", rtol=1e-4, atol=1e-5, hints=hints)


def _sampler_case(kind, n):
    D = Ref(mixture_denoiser, **MIX2)
    x = 20.0 * torch.randn(64, 2, generator=torch.Generator().manual_seed(0))
    sig = edm.karras_sigmas(n, 0.3, 20.0)  # sigma_min large enough that the last step to 0 matters
    expected, hints = sampler_expected(kind, build(D), x, sig)
    return D, x, sig, expected, hints


@exercise("euler_sampler")
def test_euler_sampler_mixture(sub, rng):
    """euler_sampler with a mixture's exact denoiser, 6 Karras levels"""
    D, x, sig, expected, hints = _sampler_case("euler", 6)
    check_sampler_output(sub.call("euler_sampler", D, x, sig), expected, hints, "euler_sampler(D, x, sigmas)")


@exercise("heun_sampler")
def test_heun_sampler_mixture(sub, rng):
    """heun_sampler (no churn) with a mixture's exact denoiser, 6 Karras levels"""
    D, x, sig, expected, hints = _sampler_case("heun", 6)
    check_sampler_output(sub.call("heun_sampler", D, x, sig), expected, hints, "heun_sampler(D, x, sigmas)")


@exercise("dpmpp_2m_sampler")
def test_dpmpp_2m_sampler_mixture(sub, rng):
    """dpmpp_2m_sampler with a mixture's exact denoiser, 6 Karras levels"""
    D, x, sig, expected, hints = _sampler_case("dpmpp_2m", 6)
    check_sampler_output(sub.call("dpmpp_2m_sampler", D, x, sig), expected, hints, "dpmpp_2m_sampler(D, x, sigmas)")


def vp_case(steps, x, means, stds, weights):
    """Inputs at DDPM steps' own sigmas, the expected (exact) denoised values and the known mistakes."""
    alpha_bar = make_alpha_bar(1000)
    sigma = edm.vp_sigmas(alpha_bar)[steps]  # (B,)
    eps_ref = Ref(strict_eps_oracle, means, stds, weights, 1000)
    exact = GMMDenoiser(means, stds, weights)
    expected = exact(x, sigma)
    eps_model = build(eps_ref)
    s = sigma[:, None]
    t_vp = (0.5 * (1 - alpha_bar).log()[None] - sigma.log()[:, None]).abs().argmin(1)
    hints = [
        Hint(x - s * eps_model(x, steps), "the eps-model was trained on x_t = sqrt(alpha_bar) x0 + ...: give it "
             "x / sqrt(1 + sigma^2), not x (scale the input back to the DDPM process)."),
        Hint(x + s * eps_model(x / (1 + s ** 2).sqrt(), steps), "x = x0 + sigma eps, so x0 = x - sigma eps: the sign "
             "of the eps term is minus."),
        Hint(x - s * eps_model(x / (1 + s ** 2).sqrt(), t_vp), "the step t is the one whose EDM level "
             "sigma_t = sqrt((1 - alpha_bar_t) / alpha_bar_t) is nearest, not sqrt(1 - alpha_bar_t) (DDPM's own std)."),
    ]
    return eps_ref, alpha_bar, sigma, expected, hints


@exercise("vp_eps_to_denoiser")
def test_vp_eps_to_denoiser_on_grid(sub, rng):
    """vp_eps_to_denoiser of a mixture's exact eps-model is the mixture's exact denoiser"""
    steps = torch.tensor([0, 50, 300, 700, 999])
    x = torch.tensor([[0.1, 0.2], [1.0, -0.5], [2.0, 1.0], [-5.0, 3.0], [40.0, -60.0]])
    eps_ref, alpha_bar, sigma, expected, hints = vp_case(steps, x, **MIX2)
    got = sub.probe("probe_vp_denoiser", eps_ref, alpha_bar, x, sigma)
    expect_close(got, expected, "D(x, sigma) = vp_eps_to_denoiser(eps_model, alpha_bar)(x, sigma) at the DDPM steps' "
                 "sigmas", rtol=1e-3, atol=1e-3, hints=hints)


# ---------------------------------------------------------------------------------------------
# Questions: predict, then run (issue 13)
# ---------------------------------------------------------------------------------------------
HEUN_NFE_WRONG = [  # (a wrong count, what it means); the feedback never prints the right count
    Hint(torch.tensor(20.0), "that is two evaluations on every step, the last one included.",
         where="section 4, Heun: what happens on the last step, to sigma = 0?"),
    Hint(torch.tensor(10.0), "that is Euler's count: one evaluation per step. Heun also evaluates D at the Euler point.",
         where="section 4, Heun: the corrector's slope d(x~_{i+1}, sigma_{i+1})."),
    Hint(torch.tensor(21.0), "count the steps: 11 levels (the final 0 included) make 10 steps, not 11.",
         where="section 1: n levels, then a final 0."),
    Hint(torch.tensor(18.0), "only the last step (to sigma = 0) skips the correction; the other nine take two evaluations.",
         where="section 4, Heun: the exception is for the step to sigma_N = 0 only."),
]

DDIM_WHY_NOT = {
    "a": "DDIM's update x0_hat + (sigma'/sigma)(x - x0_hat) and Euler's x + (sigma' - sigma)(x - x0_hat)/sigma are "
         "the same expression rearranged: neither can be more accurate than the other.",
    "c": "on the same levels the two updates are one formula; DDIM is a first-order method, exactly like Euler.",
    "d": "no noise is involved: DDIM with eta = 0 is deterministic, and so is Euler on the PF-ODE.",
}


@exercise("predict_heun_nfe")
def test_predict_heun_nfe(sub, rng):
    """predict_heun_nfe: network evaluations of heun_sampler on 10 steps ending at sigma = 0"""
    expect_scalar(sub.call("predict_heun_nfe"), 19, "predict_heun_nfe()", reveal=False, rtol=0, atol=1e-6,
                  hints=HEUN_NFE_WRONG)


@exercise("predict_ddim_is_euler")
def test_predict_ddim_is_euler(sub, rng):
    """predict_ddim_is_euler: DDIM against Euler on the same levels"""
    expect_choice(sub.call("predict_ddim_is_euler"), "b", "predict_ddim_is_euler()", DDIM_WHY_NOT,
                  where="section 6, the three updates written side by side (Song et al. 2020, eq. 12; Karras et al. 2022, section 3).")

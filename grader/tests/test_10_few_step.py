"""Hidden tests of notebook 10 (few-step generation: consistency models). Inputs are drawn at grading
time from ``rng``; expected answers come from closed forms (the exact denoiser and consistency
function of a Gaussian, Heun's step written from EDM's Algorithm 1) and from the course library
(the reference) on small networks with fixed weights."""
from __future__ import annotations

import math

import torch

from course import consistency as cm
from course.edm import GMMDenoiser
from grader.engine.api import Hint, Ref, expect, expect_close, expect_moments, exercise, generator, matches
from grader.public.nb10_few_step import (SIGMA_MIN, affine_consistency, check_loss, check_self_target_gradient,
                                          consistency_fn_mistakes, consistency_model, expect_per_sample,
                                          gaussian_consistency, gaussian_denoiser, heun_closed_form,
                                          pseudo_huber_mistakes, sample_variants, tanh_net, teacher_step_mistakes)


def points(rng, n=32, d=2, scale=1.0):
    return scale * torch.randn(n, d, generator=rng)


def levels(rng, n=32, lo=0.01, hi=50.0):
    """Noise levels log-uniform in [lo, hi]: (n,)."""
    return torch.exp(math.log(lo) + (math.log(hi) - math.log(lo)) * torch.rand(n, generator=rng))


def random_tanh_net(rng, d=2):
    return Ref(tanh_net, torch.randn(d, d, generator=rng), torch.randn(d, generator=rng),
               0.3 + float(torch.rand(1, generator=rng)))


def random_mixture(rng, k=3, d=2):
    means = 2 * torch.randn(k, d, generator=rng)
    stds = 0.2 + 0.4 * torch.rand(k, generator=rng)
    weights = torch.rand(k, generator=rng) + 0.2
    return means, stds, weights / weights.sum()


def seed_of(rng):
    return int(torch.randint(0, 10_000, (1,), generator=rng))


# -- consistency_fn ---------------------------------------------------------------------------
@exercise("consistency_fn")
def test_consistency_fn_random(sub, rng):
    """consistency_fn on random points, levels and sigma_data"""
    ref, x, sigma = random_tanh_net(rng), points(rng, scale=3.0), levels(rng)
    sigma_data = 0.5 + float(torch.rand(1, generator=rng))
    F = ref.function(*ref.args, **ref.kwargs)
    expected = cm.consistency_fn(F, x, sigma, sigma_data, SIGMA_MIN)
    got = sub.call("consistency_fn", ref, x, sigma, sigma_data, SIGMA_MIN)
    expect_close(got, expected, "consistency_fn(F, x, sigma, sigma_data, sigma_min)", rtol=1e-4, atol=1e-5,
                 hints=consistency_fn_mistakes(F, x, sigma, sigma_data, SIGMA_MIN))


@exercise("consistency_fn")
def test_consistency_fn_boundary_any_sigma_min(sub, rng):
    """consistency_fn keeps the boundary condition f(x, sigma_min) = x for another sigma_min"""
    ref, x = random_tanh_net(rng, 3), points(rng, 16, 3, scale=2.0)
    sigma_min = 0.01 + 0.1 * float(torch.rand(1, generator=rng))
    sigma = torch.full((16,), sigma_min)
    F = ref.function(*ref.args, **ref.kwargs)
    got = sub.call("consistency_fn", ref, x, sigma, 0.7, sigma_min)
    expect_close(got, x, f"consistency_fn(F, x, sigma = sigma_min = {sigma_min:.3f}, 0.7, sigma_min)",
                 rtol=1e-4, atol=1e-5, hints=consistency_fn_mistakes(F, x, sigma, 0.7, sigma_min))


@exercise("consistency_fn", weight=0.5)
def test_consistency_fn_images(sub, rng):
    """consistency_fn on images (B, C, H, W): the scalings broadcast over every dimension after the first"""
    x, sigma = torch.randn(3, 1, 2, 2, generator=rng), levels(rng, 3)
    F = lambda u, c: torch.tanh(u) + c.reshape(-1, 1, 1, 1)
    got = sub.call("consistency_fn", Ref(tanh_net, torch.eye(2), torch.zeros(2), 1.0), x, sigma, 0.5, SIGMA_MIN)
    expect_close(got, cm.consistency_fn(F, x, sigma, 0.5, SIGMA_MIN), "consistency_fn on (3, 1, 2, 2)",
                 rtol=1e-4, atol=1e-5)


# -- pseudo_huber -------------------------------------------------------------------------------
@exercise("pseudo_huber")
def test_pseudo_huber_random(sub, rng):
    """pseudo_huber on random points in 5 dimensions"""
    a, b = points(rng, 24, 5), points(rng, 24, 5)
    c = 0.05 + float(torch.rand(1, generator=rng))
    expected = ((a - b).pow(2).sum(1) + c ** 2).sqrt() - c
    got = sub.call("pseudo_huber", a, b, c)
    expect_per_sample(got, 24, "pseudo_huber(a, b, c)")
    expect_close(got, expected, f"pseudo_huber(a, b, c={c:.3f})",
                 hints=pseudo_huber_mistakes(a, b, c))


@exercise("pseudo_huber", weight=0.5)
def test_pseudo_huber_limits(sub, rng):
    """pseudo_huber is 0 for equal inputs, about ||a - b||^2 / (2c) for small and ||a - b|| - c for large differences"""
    a = points(rng, 8, 3)
    got = sub.call("pseudo_huber", a, a.clone(), 0.5)
    expect_close(got, torch.zeros(8), "pseudo_huber(a, a, 0.5)", atol=1e-6,
                 hints=[Hint(torch.full((8,), 0.5), "subtract c: the distance of a point to itself must be 0.")])
    b = a + 100.0 * torch.randn(8, 3, generator=rng)
    got = sub.call("pseudo_huber", a, b, 0.01)
    expect_close(got, ((a - b).pow(2).sum(1) + 1e-4).sqrt() - 0.01, "pseudo_huber(a, b far away, 0.01)",
                 rtol=1e-4, hints=pseudo_huber_mistakes(a, b, 0.01))


@exercise("pseudo_huber", weight=0.5)
def test_pseudo_huber_images(sub, rng):
    """pseudo_huber on images: one distance per image"""
    a, b = torch.randn(4, 1, 3, 3, generator=rng), torch.randn(4, 1, 3, 3, generator=rng)
    expected = ((a - b).pow(2).flatten(1).sum(1) + 0.09).sqrt() - 0.3
    expect_close(sub.call("pseudo_huber", a, b, 0.3), expected, "pseudo_huber on (4, 1, 3, 3)",
                 hints=pseudo_huber_mistakes(a, b, 0.3))


# -- teacher_step -----------------------------------------------------------------------------
@exercise("teacher_step")
def test_teacher_step_mixture_per_sample_levels(sub, rng):
    """teacher_step with the exact mixture denoiser and one pair of levels per sample"""
    means, stds, weights = random_mixture(rng)
    ref = Ref(GMMDenoiser, means, stds, weights)
    D = GMMDenoiser(means, stds, weights)
    s = levels(rng, 32, 0.05, 40.0)
    s_next = s * (0.3 + 0.6 * torch.rand(32, generator=rng))
    x = points(rng) * (1 + s[:, None])
    got = sub.call("teacher_step", ref, x, s, s_next)
    expect_close(got, heun_closed_form(D, x, s, s_next)[0], "teacher_step(D, x, sigma_from, sigma_to) with (B,) levels",
                 rtol=1e-4, atol=1e-4, hints=teacher_step_mistakes(D, x, s, s_next))


@exercise("teacher_step")
def test_teacher_step_gaussian_is_second_order(sub, rng):
    """teacher_step on a Gaussian: its error against the exact ODE solution falls as h^3 per step"""
    mu = torch.randn(2, generator=rng)
    s_data = 0.3 + 0.5 * float(torch.rand(1, generator=rng))
    ref = Ref(gaussian_denoiser, mu, s_data)
    x = points(rng, 16, scale=2.0)
    s0 = 1.0 + float(torch.rand(1, generator=rng))
    errors = []
    for h in (0.4, 0.2):
        s, s_next = torch.full((16,), s0), torch.full((16,), s0 - h)
        got = sub.call("teacher_step", ref, x, s, s_next)
        expect(hasattr(got, "shape") and tuple(got.shape) == (16, 2),
               f"teacher_step should return x's shape (16, 2); got {tuple(getattr(got, 'shape', ()))}.")
        exact = mu + (x - mu) * math.sqrt((s_data ** 2 + (s0 - h) ** 2) / (s_data ** 2 + s0 ** 2))
        errors.append(float((got.double() - exact.double()).abs().max()))
    ratio = errors[0] / max(errors[1], 1e-12)
    expect(ratio > 5.0,
           f"halving the step should cut one Heun step's error about 8-fold (local error O(h^3)); "
           f"yours went from {errors[0]:.3g} to {errors[1]:.3g} (ratio {ratio:.2f}).",
           "Hint: a ratio near 4 means a first-order step (Euler's, local error O(h^2)): "
           "add Heun's correction with the derivative at the Euler point.")


# -- cd_loss ----------------------------------------------------------------------------------
def loss_batch(rng, d, N, B=24):
    sigmas = cm.cm_sigmas(N)
    n = torch.randint(0, N - 1, (B,), generator=rng)
    return points(rng, B, d, 1.5), sigmas, n, torch.randn(B, d, generator=rng)


@exercise("cd_loss", weight=2.0)
def test_cd_loss_random(sub, rng):
    """cd_loss with small networks, the exact denoiser of a random mixture in 4 dimensions"""
    d, N = 4, int(torch.randint(8, 20, (1,), generator=rng))
    means, stds, weights = random_mixture(rng, 3, d)
    teacher = Ref(GMMDenoiser, means, stds, weights)
    refs = (Ref(consistency_model, seed_of(rng), d), Ref(consistency_model, seed_of(rng), d))
    x0, sigmas, n, noise = loss_batch(rng, d, N)
    got = sub.call("cd_loss", *refs, teacher, x0, sigmas, n, noise)
    check_loss(got, "cd", refs, x0, sigmas, n, noise, GMMDenoiser(means, stds, weights),
               f"cd_loss(f_model, f_target, D, x0, sigmas (N = {N}), n, noise)")


@exercise("cd_loss")
def test_cd_loss_target_detached(sub, rng):
    """cd_loss with f_target = f_model (theta^- = theta): the gradient flows only through f_model"""
    means, stds, weights = random_mixture(rng)
    x0, sigmas, n, noise = loss_batch(rng, 2, 12, 16)
    check_self_target_gradient(sub, "cd_loss", "cd", seed_of(rng), 2, x0, sigmas, n, noise,
                               Ref(GMMDenoiser, means, stds, weights))


@exercise("cd_loss")
def test_cd_loss_exact_consistency_is_small(sub, rng):
    """cd_loss of the exact consistency function of a Gaussian is near 0 (only Heun's error remains)"""
    mu, s_data = torch.randn(2, generator=rng), 0.5 + 0.3 * float(torch.rand(1, generator=rng))
    f = Ref(gaussian_consistency, mu, s_data)
    x0 = mu + s_data * torch.randn(256, 2, generator=rng)
    sigmas, n = cm.cm_sigmas(40), torch.randint(0, 39, (256,), generator=rng)
    got = sub.call("cd_loss", f, f, Ref(gaussian_denoiser, mu, s_data), x0, sigmas, n,
                   torch.randn(256, 2, generator=rng))
    expect(isinstance(got, (float, torch.Tensor)) and torch.as_tensor(got).numel() == 1,
           f"cd_loss should return one number; got {type(got).__name__} {tuple(getattr(got, 'shape', ()))}.")
    expect(float(got) < 0.02,
           f"with the exact consistency function as model and target, cd_loss should be near 0 "
           f"(only the Heun step's small error remains); yours is {float(got):.4g}.",
           "Hint: check which level each call uses: the model at sigmas[n + 1] on x0 + sigmas[n + 1] noise, "
           "the target at sigmas[n] on the teacher's step from there down to sigmas[n].")


# -- ct_loss ----------------------------------------------------------------------------------
@exercise("ct_loss", weight=2.0)
def test_ct_loss_random(sub, rng):
    """ct_loss with small networks in 3 dimensions"""
    d, N = 3, int(torch.randint(8, 20, (1,), generator=rng))
    refs = (Ref(consistency_model, seed_of(rng), d), Ref(consistency_model, seed_of(rng), d))
    x0, sigmas, n, noise = loss_batch(rng, d, N)
    got = sub.call("ct_loss", *refs, x0, sigmas, n, noise)
    check_loss(got, "ct", refs, x0, sigmas, n, noise, None, f"ct_loss(f_model, f_target, x0, sigmas (N = {N}), n, noise)")


@exercise("ct_loss")
def test_ct_loss_target_detached(sub, rng):
    """ct_loss with f_target = f_model (theta^- = theta): the gradient flows only through f_model"""
    x0, sigmas, n, noise = loss_batch(rng, 2, 12, 16)
    check_self_target_gradient(sub, "ct_loss", "ct", seed_of(rng), 2, x0, sigmas, n, noise)


# -- consistency_sample -------------------------------------------------------------------------
@exercise("consistency_sample")
def test_consistency_sample_multistep(sub, rng):
    """consistency_sample with three steps on a made-up consistency function"""
    a, b = 0.05 + 0.2 * float(torch.rand(1, generator=rng)), 0.02 * float(torch.rand(1, generator=rng))
    x_T = 80.0 * points(rng, 16)
    taus = sorted((0.2 + 2 * torch.rand(2, generator=rng)).tolist(), reverse=True)
    sig, seed = [80.0] + taus, seed_of(rng)
    expected, hints = sample_variants(affine_consistency(a, b), x_T, sig, seed)
    got = sub.call("consistency_sample", Ref(affine_consistency, a, b), x_T, sig, Ref(generator, seed))
    expect_close(got, expected, f"consistency_sample(f, x_T, {[round(v, 3) for v in sig]}, generator)",
                 rtol=1e-4, atol=1e-4, hints=hints)


@exercise("consistency_sample")
def test_consistency_sample_exact_gaussian(sub, rng):
    """consistency_sample with the exact consistency function of a Gaussian gives the Gaussian"""
    mu, s_data = 2 * torch.randn(2, generator=rng), 0.4 + 0.4 * float(torch.rand(1, generator=rng))
    x_T = 80.0 * torch.randn(4000, 2, generator=rng)
    got = sub.call("consistency_sample", Ref(gaussian_consistency, mu, s_data), x_T, torch.tensor([80.0, 1.0, 0.3]),
                   Ref(generator, seed_of(rng)))
    var = s_data ** 2 + SIGMA_MIN ** 2  # the exact f leaves sigma_min's blur
    expect_moments(got, mu, var * torch.eye(2), "consistency_sample(f_exact, x_T, [80, 1.0, 0.3])", n_sigma=6.0,
                   hints=[Hint(lambda m, c: float(c.diagonal().mean()) < 0.6 * var,
                               "the spread is too small: re-noise to tau with fresh noise before each further step.")])


@exercise("consistency_sample", weight=0.5)
def test_consistency_sample_uses_generator(sub, rng):
    """consistency_sample draws its noise from the generator it is given (reproducible)"""
    x_T = 80.0 * points(rng, 8)
    first, second = sub.probe("probe_sample_reproducible", Ref(affine_consistency, 0.1, 0.0), x_T,
                              [80.0, 1.0, 0.5], seed_of(rng))
    expect(matches(first, second),
           "two calls with equally seeded generators gave different samples.",
           "Hint: draw the noise with torch.randn(x.shape, generator=generator), so that runs are reproducible.")


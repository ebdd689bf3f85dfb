"""course.consistency (notebook 10): the parameterisation, the distance, the teacher's step, the two
losses and the sampler, checked against closed forms (a Gaussian's exact denoiser and consistency
function) and against notebook 09's Heun step."""
from __future__ import annotations

import math

import torch

from course import consistency as cm
from course.batching import append_dims
from course.edm import GMMDenoiser, edm_denoiser, karras_sigmas
from course.samplers import heun_step


def gaussian_denoiser(mu, s):
    return lambda x, sigma: mu + append_dims(s ** 2 / (s ** 2 + sigma ** 2), x) * (x - mu)


def gaussian_consistency(mu, s, sigma_min=cm.SIGMA_MIN):
    """The exact f of data N(mu, s^2 I): x - mu scales as sqrt(s^2 + sigma^2) along the PF-ODE."""
    return lambda x, sigma: mu + append_dims(math.sqrt(s ** 2 + sigma_min ** 2) / (s ** 2 + sigma ** 2).sqrt(), x) * (x - mu)


def net_F(seed=0, dim=2):
    g = torch.Generator().manual_seed(seed)
    W, b = torch.randn(dim, dim, generator=g), torch.randn(dim, generator=g)
    return lambda u, c_noise: torch.tanh(u @ W.T + b) + c_noise[:, None]


def test_consistency_fn_meets_the_boundary_condition_exactly():
    """Is f(x, sigma_min) = x for any network (c_skip = 1, c_out = 0 at sigma_min)?"""
    x = 3 * torch.randn(64, 2)
    for sigma_min in (0.002, 0.05):
        got = cm.consistency_fn(net_F(), x, torch.full((64,), sigma_min), 0.7, sigma_min)
        assert torch.allclose(got, x, rtol=0, atol=1e-6)


def test_consistency_fn_is_edm_far_from_sigma_min():
    """Do the consistency scalings agree with EDM's (09) where sigma >> sigma_min?"""
    x, sigma = torch.randn(64, 2), torch.full((64,), 20.0)
    got = cm.consistency_fn(net_F(), x, sigma, 0.7, cm.SIGMA_MIN)
    edm = edm_denoiser(net_F(), x, sigma, 0.7)
    assert torch.allclose(got, edm, rtol=1e-3, atol=1e-3)


def test_pseudo_huber_limits():
    """Is the pseudo-Huber distance 0 at a = b, ~ ||a - b||^2 / 2c for small and ~ ||a - b|| for large differences?"""
    a = torch.randn(16, 3, dtype=torch.float64)
    assert torch.allclose(cm.pseudo_huber(a, a, 0.5), torch.zeros(16, dtype=torch.float64))
    small = a + 1e-3 * torch.randn(16, 3, dtype=torch.float64)
    sq = ((a - small) ** 2).sum(1)
    assert torch.allclose(cm.pseudo_huber(a, small, 1.0), sq / 2, rtol=1e-2, atol=1e-9)
    far = a + 1e3 * torch.randn(16, 3, dtype=torch.float64)
    assert torch.allclose(cm.pseudo_huber(a, far, 1e-3), (a - far).norm(dim=1), rtol=1e-5)
    assert cm.pseudo_huber(torch.randn(4, 1, 3, 3), torch.randn(4, 1, 3, 3), 0.1).shape == (4,)


def test_teacher_step_is_09s_heun_step_per_sample():
    """Does teacher_step with a level per sample give 09's heun_step applied row by row?"""
    D = GMMDenoiser([[-1.0, 0.0], [1.0, 1.0]], [0.3, 0.2], [0.5, 0.5])
    x = 2 * torch.randn(6, 2)
    s = torch.tensor([5.0, 2.0, 1.0, 0.5, 0.2, 0.05])
    s_next = 0.7 * s
    got = cm.teacher_step(D, x, s, s_next)
    for i in range(6):
        row = heun_step(D, x[i:i + 1], float(s[i]), float(s_next[i]))
        assert torch.allclose(got[i:i + 1], row, rtol=1e-5, atol=1e-6)
    assert torch.allclose(cm.teacher_step(D, x, 3.0, 2.0), heun_step(D, x, 3.0, 2.0))


def test_teacher_step_is_second_order():
    """Does one Heun step's error on a Gaussian fall about 8-fold when the step halves?"""
    mu, s = torch.tensor([0.5, -1.0]), 0.6
    D, x = gaussian_denoiser(mu, s), 2 * torch.randn(32, 2, dtype=torch.float64)
    errors = []
    for h in (0.4, 0.2):
        got = cm.teacher_step(D, x, torch.full((32,), 1.5, dtype=torch.float64), torch.full((32,), 1.5 - h, dtype=torch.float64))
        exact = mu + (x - mu) * math.sqrt((s ** 2 + (1.5 - h) ** 2) / (s ** 2 + 1.5 ** 2))
        errors.append(float((got - exact).abs().max()))
    assert 6 < errors[0] / errors[1] < 12, errors  # O(h^3) locally: 8 as h -> 0


def test_cm_sigmas_ascending_karras():
    """Are the boundaries 09's Karras levels, ascending from sigma_min to sigma_max?"""
    sig = cm.cm_sigmas(18)
    assert sig.shape == (18,) and bool((sig[1:] > sig[:-1]).all())
    assert math.isclose(float(sig[0]), cm.SIGMA_MIN, rel_tol=1e-5) and math.isclose(float(sig[-1]), cm.SIGMA_MAX, rel_tol=1e-5)
    assert torch.allclose(sig, karras_sigmas(18, cm.SIGMA_MIN, cm.SIGMA_MAX)[:-1].flip(0))


def test_cd_loss_of_the_exact_consistency_function_is_only_heuns_error():
    """Is the CD loss of a Gaussian's exact f near 0, and smaller on a finer grid (Heun's error only)?"""
    torch.manual_seed(0)
    mu, s = torch.tensor([1.0, -0.5]), 0.5
    f, D = gaussian_consistency(mu, s), gaussian_denoiser(mu, s)
    x0 = mu + s * torch.randn(512, 2)
    noise = torch.randn(512, 2)
    losses = []
    for N in (10, 40):
        n = torch.randint(0, N - 1, (512,))
        losses.append(float(cm.cd_loss(f, f, D, x0, cm.cm_sigmas(N), n, noise)))
    assert losses[0] < 0.05 and losses[1] < losses[0] / 4, losses


def test_ct_loss_is_cd_with_the_one_sample_teacher():
    """Is CT the CD loss whose teacher denoises to the data point itself (Song et al. 2023, Theorem 2)?"""
    torch.manual_seed(1)
    f_model, f_target = gaussian_consistency(torch.zeros(2), 0.7), gaussian_consistency(torch.ones(2), 0.4)
    x0, noise, sig = torch.randn(64, 2), torch.randn(64, 2), cm.cm_sigmas(12)
    n = torch.randint(0, 11, (64,))
    one_sample = lambda x, sigma: x0
    ct = cm.ct_loss(f_model, f_target, x0, sig, n, noise)
    cd = cm.cd_loss(f_model, f_target, one_sample, x0, sig, n, noise)
    assert torch.allclose(ct, cd, rtol=1e-4)


def test_losses_do_not_differentiate_through_the_target():
    """With f_target = f_model, does the gradient flow only through the model's branch?"""
    torch.manual_seed(2)
    W = torch.randn(2, 2, requires_grad=True)
    f = lambda x, sigma: x @ W / append_dims(1 + sigma, x)
    x0, noise, sig = torch.randn(32, 2), torch.randn(32, 2), cm.cm_sigmas(10)
    n = torch.randint(0, 9, (32,))
    (g_ct,) = torch.autograd.grad(cm.ct_loss(f, f, x0, sig, n, noise), W)
    target = (x0 + append_dims(sig[n], x0) * noise) @ W.detach() / append_dims(1 + sig[n], x0)
    detached = cm.pseudo_huber(f(x0 + append_dims(sig[n + 1], x0) * noise, sig[n + 1]), target, cm.huber_c(x0)).mean()
    (g_ref,) = torch.autograd.grad(detached, W)
    assert torch.allclose(g_ct, g_ref, rtol=1e-5, atol=1e-7)


def test_consistency_sample_with_the_exact_function_gives_the_gaussian():
    """Does multistep sampling with a Gaussian's exact f give N(mu, s^2 + eps^2), reproducibly?"""
    mu, s = torch.tensor([1.0, 2.0]), 0.5
    f = gaussian_consistency(mu, s)
    x_T = cm.SIGMA_MAX * torch.randn(20000, 2, generator=torch.Generator().manual_seed(0))
    out = cm.consistency_sample(f, x_T, [cm.SIGMA_MAX, 1.0, 0.3], torch.Generator().manual_seed(1))
    assert torch.allclose(out.mean(0), mu, atol=0.02)
    assert torch.allclose(out.var(0), torch.full((2,), s ** 2 + cm.SIGMA_MIN ** 2), rtol=0.05)
    again = cm.consistency_sample(f, x_T, [cm.SIGMA_MAX, 1.0, 0.3], torch.Generator().manual_seed(1))
    assert torch.equal(out, again)
    one = cm.consistency_sample(f, x_T, [cm.SIGMA_MAX])
    assert torch.allclose(one, f(x_T, torch.full((20000,), cm.SIGMA_MAX)))


def test_improved_ct_schedules():
    """Does N(k) double from s0 + 1 to s1 + 1, and do the index probabilities form a distribution?"""
    ns = [cm.ict_n_scales(k, 6000, 10, 160) for k in range(6000)]
    assert ns[0] == 11 and ns[-1] == 161 and all(b >= a for a, b in zip(ns, ns[1:]))
    assert sorted(set(ns)) == [11, 21, 41, 81, 161]
    sig = cm.cm_sigmas(41)
    p = cm.ict_index_probs(sig)
    assert p.shape == (40,) and math.isclose(float(p.sum()), 1.0, rel_tol=1e-5) and bool((p >= 0).all())
    mode = float(sig[int(p.argmax())])
    assert 0.05 < mode < 1.5, mode  # log sigma ~ N(-1.1, 2^2): most mass at small and middle levels
    assert bool((cm.ict_weights(sig) > 0).all())


def test_heun_is_written_once():
    """Issue 14: 10's teacher step is 09's heun_step (one copy of Heun), and heun_step takes one pair
    of levels per sample, keeping the Euler point for samples whose step ends at sigma = 0."""
    import inspect

    assert "heun_step(" in inspect.getsource(cm.teacher_step)
    D = GMMDenoiser(torch.tensor([[-1.0, 0.0], [1.0, 0.5]]), torch.tensor([0.3, 0.5]), torch.tensor([0.4, 0.6]))
    x = 2 * torch.randn(5, 2, generator=torch.Generator().manual_seed(0))
    s, s_next = torch.tensor([3.0, 2.0, 1.0, 0.5, 0.2]), torch.tensor([2.0, 1.0, 0.0, 0.2, 0.0])
    got = heun_step(D, x, s, s_next)
    for i in range(5):
        one = heun_step(D, x[i:i + 1], float(s[i]), float(s_next[i]))
        assert torch.allclose(got[i:i + 1], one, atol=1e-6), i

"""course.sde and course.score against closed forms: marginals, samplers and likelihoods judged
with exact Gaussian-mixture scores (no training)."""
from __future__ import annotations

import math

import pytest
import torch

from course import data2d, gmm, score, sde
from course.flows import divergence

torch.set_num_threads(1)


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def test_vp_marginal_matches_the_integral_of_beta():
    """Is mean_coef = exp(-1/2 int beta) and std = sqrt(1 - mean_coef^2), with the right ends?"""
    t = torch.linspace(0, 1, 11)
    s = torch.linspace(0, 1, 10001)
    for ti, a, sd in zip(t, *sde.vp_marginal(t)):
        grid = s * ti
        integral = torch.trapz(sde.vp_beta(grid), grid)
        assert math.isclose(float(a), math.exp(-0.5 * float(integral)), rel_tol=1e-4, abs_tol=1e-7)
        assert math.isclose(float(sd), math.sqrt(1 - float(a) ** 2), rel_tol=1e-4, abs_tol=1e-6)
    a1, s1 = sde.vp_marginal(torch.tensor(1.0))
    assert float(a1) < 0.01 and abs(float(s1) - 1) < 1e-4


def test_forward_vp_sde_simulation_has_the_marginal_statistics():
    """Does Euler-Maruyama on the forward VP SDE reproduce N(mean_coef x0, std^2)?"""
    g = gen(1)
    x0 = torch.full((20000, 1), 2.0)
    x, n = x0.clone(), 500
    for i in range(n):
        t = torch.full((x.shape[0],), i / n)
        f, diff = sde.vp_sde(x, t)
        x = x + f / n + diff[:, None] * math.sqrt(1 / n) * torch.randn(x.shape, generator=g)
    a, s = sde.vp_marginal(torch.tensor(1.0))
    assert abs(float(x.mean()) - 2 * float(a)) < 0.03
    assert abs(float(x.std()) - float(s)) < 0.03


def test_vp_sde_and_ve_sde_coefficients():
    """Are the VP drift -beta x / 2 with g = sqrt(beta), and the VE g = sigma sqrt(2 log(smax/smin))?"""
    x, t = torch.randn(5, 2, generator=gen()), torch.rand(5, generator=gen(1))
    f, g = sde.vp_sde(x, t)
    beta = 0.1 + t * 19.9
    assert torch.allclose(f, -0.5 * beta[:, None] * x) and torch.allclose(g, beta.sqrt())
    f, g = sde.ve_sde(x, t, 0.01, 50.0)
    assert torch.equal(f, torch.zeros_like(x))
    assert torch.allclose(g, sde.ve_sigma(t, 0.01, 50.0) * math.sqrt(2 * math.log(5000.0)))


def test_vp_gmm_score_is_the_gradient_of_the_log_density():
    """Does the VP mixture oracle's score equal autograd of its log density at every t?"""
    mix = data2d.two_gaussians_mixture()
    x = torch.randn(32, 2, generator=gen()).requires_grad_(True)
    t = torch.rand(32, generator=gen(2))
    log_p = sde.vp_gmm_log_prob_fn(mix.means, mix.stds, mix.weights)(x, t)
    (grad,) = torch.autograd.grad(log_p.sum(), x)
    assert torch.allclose(sde.vp_gmm_score_fn(mix.means, mix.stds, mix.weights)(x.detach(), t), grad, atol=1e-5)


def test_ve_gmm_score_is_the_gradient_of_the_blurred_mixture_density():
    """Is the VE oracle's score grad log of the mixture with variances s_k^2 + sigma(t)^2?"""
    mix = data2d.unbalanced_three_mixture()
    x = (2 * torch.randn(32, 2, generator=gen())).requires_grad_(True)
    t = torch.rand(32, generator=gen(2))
    sigma = sde.ve_sigma(t, 0.01, 2.0)  # (32,)
    var = mix.stds[None] ** 2 + sigma[:, None] ** 2  # (32, K)
    sq = ((x[:, None, :] - mix.means[None]) ** 2).sum(-1)
    log_p = torch.logsumexp(mix.weights.log() - torch.log(2 * math.pi * var) - 0.5 * sq / var, dim=1)
    (grad,) = torch.autograd.grad(log_p.sum(), x)
    score_fn = sde.ve_gmm_score_fn(mix.means, mix.stds, mix.weights, sigma_max=2.0)
    assert torch.allclose(score_fn(x.detach(), t), grad, atol=1e-5)


def test_mode_weight_error_measures_mass_per_mode():
    """Data scores near zero; all mass in the heavy mode scores 0.3; shares sum to one."""
    from course.metrics import mode_shares, mode_weight_error

    mix = data2d.unbalanced_three_mixture()
    x = mix.sample(20000, gen(5))
    assert torch.allclose(mode_shares(x, mix), mix.weights, atol=0.01)
    assert mode_weight_error(x, mix) < 0.015
    heavy_only = mix.means[0] + mix.stds[0] * torch.randn(500, 2, generator=gen(6))
    assert abs(mode_weight_error(heavy_only, mix) - 0.3) < 1e-6


def test_pc_beats_em_at_equal_cost_when_the_ve_prior_is_off():
    """VE SDE with sigma_max = 2 on data about 4 across: N(0, sigma_max^2) is not p_1, so EM's
    mode weights stay off however many steps it takes; PC's Langevin steps repair them."""
    from course.metrics import mode_weight_error

    mix = data2d.unbalanced_three_mixture()
    ve = lambda x, t: sde.ve_sde(x, t, sigma_max=2.0)  # noqa: E731
    score_fn = sde.ve_gmm_score_fn(mix.means, mix.stds, mix.weights, sigma_max=2.0)
    g = gen(7)
    x_T = 2.0 * torch.randn(4000, 2, generator=g)
    em = mode_weight_error(sde.pc_sample(score_fn, x_T, ve, 200, 0.3, 0, generator=g), mix)
    pc = mode_weight_error(sde.pc_sample(score_fn, x_T, ve, 100, 0.3, 1, generator=g), mix)
    assert em > 0.03 and pc < 0.6 * em, (em, pc)


def test_reverse_and_pf_ode_drifts():
    """Do the reverse SDE step and the PF-ODE drift follow f - g^2 s and f - g^2 s / 2?"""
    x, t, z = torch.randn(6, 2, generator=gen()), torch.rand(6, generator=gen(1)), torch.randn(6, 2, generator=gen(2))
    score_fn = lambda y, s: -y  # noqa: E731
    f, g = sde.vp_sde(x, t)
    g = g[:, None]
    assert torch.allclose(sde.reverse_sde_step(score_fn, x, t, 0.01, z, sde.vp_sde),
                          x - (f + g ** 2 * x) * 0.01 + g * 0.1 * z)
    assert torch.allclose(sde.pf_ode_drift(score_fn, x, t, sde.vp_sde), f + 0.5 * g ** 2 * x)


@pytest.mark.parametrize("n_corrector", [0, 1])
def test_pc_sample_recovers_a_gaussian(n_corrector):
    """Do EM and PC sampling with the exact score reproduce N(mu, s^2 I)?"""
    mu, s = torch.tensor([[1.0, -0.5]]), 0.5
    score_fn = sde.vp_gmm_score_fn(mu, torch.tensor([s]), torch.ones(1))
    g = gen(3)
    x = sde.pc_sample(score_fn, torch.randn(5000, 2, generator=g), sde.vp_sde, 100, 0.16, n_corrector, generator=g)
    assert torch.allclose(x.mean(0), mu[0], atol=0.05)
    assert torch.allclose(x.var(0), torch.full((2,), s ** 2), rtol=0.1)


def test_pf_ode_sample_recovers_mixture_weights():
    """Does the probability-flow ODE with the exact score put the right mass in each mode?"""
    means = torch.tensor([[-2.0, 0.0], [2.0, 0.0]])
    score_fn = sde.vp_gmm_score_fn(means, torch.tensor([0.3, 0.3]), torch.tensor([0.25, 0.75]))
    x = sde.pf_ode_sample(score_fn, torch.randn(4000, 2, generator=gen(4)), sde.vp_sde, 50)
    assert abs(float((x[:, 0] < 0).float().mean()) - 0.25) < 0.03


def test_pf_ode_log_prob_matches_the_mixture_density():
    """Does the PF-ODE likelihood with the exact score match the true log density (< 0.01 nats)?"""
    mix = data2d.eight_gaussians_mixture()
    x = mix.sample(64, gen(5))
    score_fn = sde.vp_gmm_score_fn(mix.means, mix.stds, mix.weights)
    lp = sde.pf_ode_log_prob(score_fn, x, sde.vp_sde, 50)
    assert float((lp - mix.log_prob(x)).abs().mean()) < 0.01


def test_pf_ode_endpoint_divergence_is_exact():
    """Is the divergence the endpoint integrates the trace of the drift's Jacobian?"""
    A = torch.tensor([[1.0, 0.5], [0.0, 2.0]])
    score_fn = lambda y, t: -y @ A.T  # noqa: E731
    x = torch.randn(4, 2, generator=gen())
    drift = lambda y, t: sde.pf_ode_drift(score_fn, y, sde.time_batch(t, y), sde.vp_sde)  # noqa: E731
    beta = float(sde.vp_beta(torch.tensor(0.3)))
    assert torch.allclose(divergence(drift, x, 0.3), torch.full((4,), -beta + 0.5 * beta * 3.0))


def test_dsm_loss_is_smallest_at_the_exact_score():
    """Does the exact perturbed score beat a wrong one under DSM, and is the loss its closed form?"""
    mix = data2d.two_gaussians_mixture()
    g = gen(6)
    x0, noise = mix.sample(20000, g), torch.randn(20000, 2, generator=g)
    sigma = torch.full((20000,), 0.5)
    exact = score.perturbed_gmm_score_fn(mix.means, mix.stds, mix.weights)
    loss_exact = float(score.dsm_loss(exact, x0, sigma, noise))
    loss_wrong = float(score.dsm_loss(lambda x, s: 1.2 * exact(x, s), x0, sigma, noise))
    assert loss_exact < loss_wrong
    model = lambda x, s: -x  # noqa: E731
    expected = ((0.5 * -(x0 + 0.5 * noise) + noise) ** 2).mean()
    assert math.isclose(float(score.dsm_loss(model, x0, sigma, noise)), float(expected), rel_tol=1e-6)


def test_langevin_samples_a_gaussian():
    """Does Langevin dynamics with a small step sample N(mu, s^2 I)?"""
    mu = torch.tensor([1.0, 2.0])
    x = score.langevin_sample(lambda y: (mu - y) / 0.25, torch.zeros(4000, 2), 0.005, 600, generator=gen(7))
    assert torch.allclose(x.mean(0), mu, atol=0.05)
    assert torch.allclose(x.var(0), torch.full((2,), 0.25), rtol=0.1)


def test_annealed_langevin_recovers_mode_weights_where_plain_langevin_fails():
    """Does annealed Langevin find the 0.2 / 0.8 weights that plain Langevin misses?"""
    means, stds, weights = torch.tensor([[-2.5, 0.0], [2.5, 0.0]]), torch.tensor([0.4, 0.4]), torch.tensor([0.2, 0.8])
    g = gen(8)
    x_init = (torch.rand(2000, 2, generator=g) - 0.5) * 8
    plain = score.langevin_sample(lambda y: gmm.gmm_score(y, means, stds, weights), x_init, 0.01, 300, generator=g)
    annealed = score.annealed_langevin(score.perturbed_gmm_score_fn(means, stds, weights), x_init,
                                       score.geometric_sigmas(5.0, 0.05, 10), 30, 8e-4, generator=g)
    left = lambda x: float((x[:, 0] < 0).float().mean())  # noqa: E731
    assert abs(left(plain) - 0.2) > 0.15
    assert abs(left(annealed) - 0.2) < 0.05


def test_eps_score_conversions_invert_each_other():
    """Are eps_to_score and score_to_eps inverses, with score = -eps / std?"""
    eps, std = torch.randn(8, 2, generator=gen()), torch.rand(8, generator=gen(1)) + 0.1
    s = score.eps_to_score(eps, std)
    assert torch.allclose(s, -eps / std[:, None])
    assert torch.allclose(score.score_to_eps(s, std), eps, atol=1e-6)


def test_noise_conditional_score_shapes():
    """Does NoiseConditionalScore map (x (B, d), sigma (B,)) to (B, d), scaled by 1 / sigma?"""
    from course.nets import TimeMLP

    model = score.NoiseConditionalScore(TimeMLP(dim=2, hidden=16, depth=2, time_scale=1000.0), 0.05, 3.0)
    x, sigma = torch.randn(5, 2), torch.tensor([0.05, 0.1, 0.5, 1.0, 3.0])
    out = model(x, sigma)
    assert out.shape == (5, 2)
    assert torch.allclose(out * sigma[:, None], model.net(x, (sigma.log() - math.log(0.05)) / math.log(60.0)), atol=1e-5)

"""The rectified-flow toolkit (course.rectified_flow, course.velocity) against closed forms."""
from __future__ import annotations

import pytest
import torch

from course import rectified_flow as rf
from course import velocity
from course.data2d import eight_gaussians_mixture, two_gaussians_mixture
from course.gmm import noised_gmm_log_prob_and_score


@pytest.fixture
def gen():
    return torch.Generator().manual_seed(0)


def test_interpolate_ends_and_images(gen):
    """Is x_t the noise at t = 0, the data at t = 1, and does t broadcast over image dimensions?"""
    x0, x1 = torch.randn(4, 1, 3, 3, generator=gen), torch.randn(4, 1, 3, 3, generator=gen)
    t = torch.tensor([0.0, 1.0, 0.5, 0.25])
    xt = rf.interpolate(x0, x1, t)
    assert torch.allclose(xt[0], x0[0]) and torch.allclose(xt[1], x1[1])
    assert torch.allclose(xt[2], 0.5 * (x0[2] + x1[2]))
    assert torch.allclose(xt[3], 0.75 * x0[3] + 0.25 * x1[3])


def test_cfm_loss_is_zero_for_the_conditional_velocity(gen):
    """Is the flow matching loss 0 for a model that knows the pair's velocity x1 - x0?"""
    x0, x1 = torch.randn(1, 2, generator=gen).expand(8, 2), torch.randn(1, 2, generator=gen).expand(8, 2)
    model = lambda x, t: (x1 - x0)
    assert float(rf.cfm_loss(model, x0, x1, torch.rand(8, generator=gen))) == pytest.approx(0.0, abs=1e-12)


def test_euler_path_uses_the_left_grid(gen):
    """Does Euler use v at t_i = i / n, so that v = t integrates to (n - 1) / (2 n)?"""
    x0 = torch.randn(5, 2, generator=gen)
    n = 8
    path, vel, times = rf.euler_path(lambda x, t: t[:, None].expand_as(x), x0, n)
    assert path.shape == (n + 1, 5, 2) and vel.shape == (n, 5, 2)
    assert torch.allclose(times, torch.arange(n) / n)
    assert torch.allclose(rf.sample_ode(lambda x, t: t[:, None].expand_as(x), x0, n), x0 + (n - 1) / (2 * n))


def test_straightness_zero_for_straight_and_known_for_a_bend(gen):
    """Is S = 0 for a constant field, and S = mean_i ||mean_j v_j - v_i||^2 for a field of time only?"""
    x0 = torch.randn(16, 2, generator=gen)
    assert float(rf.straightness(lambda x, t: torch.ones_like(x), x0, 10)) == pytest.approx(0.0, abs=1e-10)
    n = 10
    ts = torch.arange(n) / n
    v_of_t = lambda t: torch.stack([torch.cos(3 * t), torch.sin(3 * t)], -1)  # (.., 2)
    expected = float(((v_of_t(ts).mean(0) - v_of_t(ts)) ** 2).sum(-1).mean())
    got = float(rf.straightness(lambda x, t: v_of_t(t), x0, n))
    assert got == pytest.approx(expected, rel=1e-5)


def test_reflow_pairs_keep_the_coupling(gen):
    """Are reflow pairs (x0, Euler end point of x0), row by row?"""
    x0 = torch.randn(6, 2, generator=gen)
    field = lambda x, t: -x + t[:, None]
    a, b = rf.reflow_pairs(field, x0, 20)
    assert a is x0 and torch.allclose(b, rf.sample_ode(field, x0, 20))


def test_logit_normal_t_statistics_and_reproducibility():
    """Is logit(t) ~ N(m, s^2), with draws reproducible from the generator?"""
    t = rf.logit_normal_t(50_000, 0.5, 1.5, generator=torch.Generator().manual_seed(1))
    u = torch.log(t) - torch.log1p(-t)
    assert ((t > 0) & (t < 1)).all()
    assert float(u.mean()) == pytest.approx(0.5, abs=0.03) and float(u.std()) == pytest.approx(1.5, abs=0.03)
    again = rf.logit_normal_t(50_000, 0.5, 1.5, generator=torch.Generator().manual_seed(1))
    assert torch.equal(t, again)


def test_conversions_recover_a_single_pair(gen):
    """On one straight path with v = x1 - x0, do the conversions return x0 and x1 exactly?"""
    x0, x1, t = torch.randn(10, 2, generator=gen), torch.randn(10, 2, generator=gen), torch.rand(10, generator=gen)
    xt, v = rf.interpolate(x0, x1, t), x1 - x0
    assert torch.allclose(velocity.velocity_to_x0(xt, t, v), x0, atol=1e-5)
    assert torch.allclose(velocity.velocity_to_x1(xt, t, v), x1, atol=1e-5)


@pytest.mark.parametrize("mixture", [eight_gaussians_mixture(), two_gaussians_mixture()])
def test_gmm_velocity_matches_the_score_route_and_gives_the_score(mixture, gen):
    """Does the exact velocity agree with v = (x + (1 - t) score) / t, and velocity_to_score invert it?"""
    x = 2 * torch.randn(200, 2, generator=gen, dtype=torch.float64)
    t = 0.02 + 0.96 * torch.rand(200, generator=gen, dtype=torch.float64)
    means, stds, weights = (a.double() for a in (mixture.means, mixture.stds, mixture.weights))
    v = velocity.gmm_marginal_velocity(x, t, means, stds, weights)
    _, score = noised_gmm_log_prob_and_score(x, t, 1 - t, means, stds, weights)
    assert torch.allclose(v, (x + (1 - t[:, None]) * score) / t[:, None], atol=1e-8)
    assert torch.allclose(velocity.velocity_to_score(x, t, v), score, atol=1e-8)


def test_gmm_velocity_at_the_ends():
    """At t = 0 is v = E[x1] - x (every particle heads for the mean), and at t = 1 is v = x?"""
    mix = two_gaussians_mixture()
    x = torch.randn(7, 2, generator=torch.Generator().manual_seed(3))
    v0 = velocity.gmm_marginal_velocity(x, torch.zeros(7), mix.means, mix.stds, mix.weights)
    mean = (mix.weights[:, None] * mix.means).sum(0)
    assert torch.allclose(v0, mean - x, atol=1e-6)
    # t = 1: x_t is the data itself and the noise is independent of it, so E[x1 - x0 | x1 = x] = x
    v1 = velocity.gmm_marginal_velocity(x, torch.ones(7), mix.means, mix.stds, mix.weights)
    assert torch.allclose(v1, x, atol=1e-6)


def test_exact_velocity_transports_noise_to_the_mixture():
    """Does Euler on the exact velocity carry N(0, I) onto the mixture's mean and covariance?"""
    mix = two_gaussians_mixture()
    x0 = torch.randn(8000, 2, generator=torch.Generator().manual_seed(4))
    v = lambda x, t: velocity.gmm_marginal_velocity(x, t, mix.means, mix.stds, mix.weights)
    x1 = rf.sample_ode(v, x0, 100)
    mean = (mix.weights[:, None] * mix.means).sum(0)
    second = sum(w * (torch.outer(m, m) + s ** 2 * torch.eye(2)) for m, s, w in zip(mix.means, mix.stds, mix.weights))
    cov = second - torch.outer(mean, mean)
    assert torch.allclose(x1.mean(0), mean, atol=0.03)
    assert torch.allclose(torch.cov(x1.T), cov, atol=0.06)


def test_time_conventions_round_trip():
    """Do the named conversions between notebook 05's and 06's times invert each other?"""
    t = torch.tensor([0.0, 0.3, 1.0])
    assert torch.allclose(velocity.flow_time_to_sde_time(t), torch.tensor([1.0, 0.7, 0.0]))
    assert torch.allclose(velocity.sde_time_to_flow_time(velocity.flow_time_to_sde_time(t)), t)
    assert velocity.path_marginal(torch.tensor(0.25)) == (torch.tensor(0.25), torch.tensor(0.75))
    u = rf.uniform_t(1000, generator=torch.Generator().manual_seed(0))
    assert u.shape == (1000,) and bool(((u >= 0) & (u < 1)).all())

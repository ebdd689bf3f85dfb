"""Tests of the DDPM toolkit in the course library: ``course.schedules``, ``course.ddpm``, ``course.oracles``.

Checked against closed forms: Gaussian conditioning for the posterior, exact chain moments for the
sampler under the exact noise predictor of Gaussian data, and the cosine formula of Nichol & Dhariwal.
"""
from __future__ import annotations

import math

import pytest
import torch

from course import ddpm, oracles, schedules

torch.set_num_threads(1)  # small tensors on a shared machine


@pytest.fixture
def cosine100():
    betas = schedules.cosine_beta_schedule(100)
    return betas, schedules.alpha_bar_from_betas(betas)


def test_linear_schedule_endpoints():
    """Does the linear schedule run from beta_start to beta_end in T float32 values?"""
    betas = schedules.linear_beta_schedule(1000)
    assert betas.shape == (1000,) and betas.dtype == torch.float32
    assert math.isclose(float(betas[0]), 1e-4, rel_tol=1e-5) and math.isclose(float(betas[-1]), 0.02, rel_tol=1e-5)


def test_cosine_schedule_matches_formula():
    """Does the cosine schedule's alpha_bar follow f(u)/f(0) at u = (t+1)/T, with the last beta clipped?"""
    T = 50
    betas = schedules.cosine_beta_schedule(T)
    alpha_bar = schedules.alpha_bar_from_betas(betas)
    u = torch.arange(1, T + 1, dtype=torch.float64) / T
    expected = schedules.cosine_alpha_bar(u)
    torch.testing.assert_close(alpha_bar[:-1].double(), expected[:-1], rtol=1e-5, atol=1e-7)
    assert float(betas.max()) == pytest.approx(0.999) and float(betas[-1]) == pytest.approx(0.999)
    assert float(schedules.cosine_beta_schedule(T, max_beta=0.5).max()) == pytest.approx(0.5)


def test_schedule_helpers(cosine100):
    """Are alpha_bar_prev, posterior_variance and betas_from_alpha_bar consistent?"""
    betas, alpha_bar = cosine100
    assert float(schedules.alpha_bar_prev(alpha_bar)[0]) == 1.0
    assert float(schedules.posterior_variance(betas, alpha_bar)[0]) == 0.0
    torch.testing.assert_close(schedules.betas_from_alpha_bar(alpha_bar), betas, rtol=1e-4, atol=1e-6)
    b, ab = schedules.make_schedule(200, "linear")
    assert float(b[-1]) == pytest.approx(0.1) and ab.shape == (200,)


def test_q_sample_marginal_moments(cosine100):
    """Does q_sample give x_t with mean sqrt(alpha_bar) x0 and variance 1 - alpha_bar?"""
    betas, alpha_bar = cosine100
    g = torch.Generator().manual_seed(0)
    x0 = torch.full((20000, 1), 2.0)
    t = torch.full((20000,), 30)
    xt = ddpm.q_sample(x0, t, torch.randn(20000, 1, generator=g), alpha_bar)
    assert float(xt.mean()) == pytest.approx(2 * float(alpha_bar[30].sqrt()), abs=0.03)
    assert float(xt.var()) == pytest.approx(float(1 - alpha_bar[30]), rel=0.05)


def test_q_posterior_is_gaussian_conditioning(cosine100):
    """Is q_posterior the conditional of x_{t-1} given x_t in the joint Gaussian q(x_{t-1}, x_t | x0)?"""
    betas, alpha_bar = cosine100
    g = torch.Generator().manual_seed(1)
    t = torch.tensor([0, 1, 17, 99])
    x0, xt = torch.randn(4, 3, generator=g), torch.randn(4, 3, generator=g)
    mean, var = ddpm.q_posterior(x0, xt, t, betas, alpha_bar)
    ab_prev = schedules.alpha_bar_prev(alpha_bar)[t][:, None].double()
    ab, beta = alpha_bar[t][:, None].double(), betas[t][:, None].double()
    cov12 = (1 - beta).sqrt() * (1 - ab_prev)  # Cov(x_{t-1}, x_t | x0)
    expected_mean = ab_prev.sqrt() * x0 + cov12 / (1 - ab) * (xt - ab.sqrt() * x0)
    expected_var = (1 - ab_prev) - cov12 ** 2 / (1 - ab)
    torch.testing.assert_close(mean.double(), expected_mean, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(var.double(), expected_var[:, 0], rtol=1e-4, atol=1e-6)


def test_predict_x0_inverts_q_sample(cosine100):
    """Does predict_x0 recover x0 from q_sample given the true noise?"""
    betas, alpha_bar = cosine100
    g = torch.Generator().manual_seed(2)
    x0, eps = torch.randn(8, 1, 4, 4, generator=g), torch.randn(8, 1, 4, 4, generator=g)
    t = torch.randint(0, 80, (8,), generator=g)
    torch.testing.assert_close(ddpm.predict_x0(ddpm.q_sample(x0, t, eps, alpha_bar), t, eps, alpha_bar), x0,
                               rtol=1e-3, atol=1e-3)


def test_p_sample_step_mean_is_x0_parameterised_posterior(cosine100):
    """Is the eps-parameterised mean the posterior mean at x0_hat, and is there no noise at t = 0?"""
    betas, alpha_bar = cosine100
    g = torch.Generator().manual_seed(3)
    model = lambda x, t: torch.tanh(x + t[:, None].float() / 100)
    xt, z = torch.randn(6, 2, generator=g), torch.randn(6, 2, generator=g)
    t = torch.tensor([0, 0, 5, 50, 98, 99])
    x0_hat = ddpm.predict_x0(xt, t, model(xt, t), alpha_bar)
    mean, beta_tilde = ddpm.q_posterior(x0_hat, xt, t, betas, alpha_bar)
    got = ddpm.p_sample_step(model, xt, t, z, betas, alpha_bar, "tilde")
    torch.testing.assert_close(got, mean + beta_tilde.sqrt()[:, None] * z, rtol=1e-4, atol=1e-4)
    got_beta = ddpm.p_sample_step(model, xt, t, z, betas, alpha_bar, "beta")
    torch.testing.assert_close(got_beta[:2], mean[:2], rtol=1e-4, atol=1e-5)


def test_ddpm_loss_is_minimised_by_the_oracle(cosine100):
    """Does the exact eps-predictor of Gaussian data beat a scaled copy of itself on the simple loss?"""
    betas, alpha_bar = cosine100
    g = torch.Generator().manual_seed(4)
    m, C = torch.tensor([0.5, -1.0]), torch.tensor([[0.5, 0.2], [0.2, 0.4]])
    x0 = m + torch.randn(20000, 2, generator=g) @ torch.linalg.cholesky(C).T
    t, eps = torch.randint(0, 100, (20000,), generator=g), torch.randn(20000, 2, generator=g)
    oracle = oracles.gaussian_eps_model(m, C, alpha_bar)
    best = ddpm.ddpm_loss(oracle, x0, t, eps, alpha_bar)
    for scale in (0.9, 1.1):
        assert best < ddpm.ddpm_loss(lambda x, s: scale * oracle(x, s), x0, t, eps, alpha_bar)


def test_gaussian_and_mixture_oracles_agree(cosine100):
    """Do the Gaussian oracle and the one-component mixture oracle give the same eps for C = s^2 I?"""
    betas, alpha_bar = cosine100
    g = torch.Generator().manual_seed(5)
    x, t = torch.randn(10, 2, generator=g), torch.randint(0, 100, (10,), generator=g)
    m = torch.tensor([1.0, 2.0])
    a = oracles.gaussian_eps(x, t, m, 0.09 * torch.eye(2), alpha_bar)
    b = oracles.gmm_eps(x, t, m[None], torch.tensor([0.3]), torch.tensor([1.0]), alpha_bar)
    torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_ideal_denoiser_recovers_training_points(cosine100):
    """Does the ideal eps of a finite set map a slightly noised training image back to itself?"""
    betas, alpha_bar = cosine100
    g = torch.Generator().manual_seed(6)
    data = torch.rand(5, 1, 4, 4, generator=g) * 2 - 1
    model = oracles.ideal_eps_model(data, alpha_bar)
    t = torch.full((5,), 3)
    xt = ddpm.q_sample(data, t, torch.randn(data.shape, generator=g), alpha_bar)
    torch.testing.assert_close(ddpm.predict_x0(xt, t, model(xt, t), alpha_bar), data, rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize("variance", ["beta", "tilde"])
def test_ddpm_sample_matches_exact_chain_moments(variance):
    """Does ddpm_sample under the Gaussian oracle have the exact chain's moments, and near (m, C) for T = 400?"""
    g = torch.Generator().manual_seed(7)
    m, C = torch.tensor([1.0, -1.0]), torch.tensor([[0.3, 0.1], [0.1, 0.2]])
    betas = schedules.linear_beta_schedule(12, 0.08, 0.6)
    alpha_bar = schedules.alpha_bar_from_betas(betas)
    sigma2 = betas.clone() if variance == "beta" else schedules.posterior_variance(betas, alpha_bar)
    sigma2[0] = 0
    mean, cov = oracles.gaussian_chain_moments(m, C, betas, alpha_bar, sigma2)
    x = ddpm.ddpm_sample(oracles.gaussian_eps_model(m, C, alpha_bar), torch.randn(20000, 2, generator=g), betas,
                         alpha_bar, generator=g, variance=variance)
    torch.testing.assert_close(x.mean(0).double(), mean, rtol=0, atol=0.02)
    torch.testing.assert_close(torch.cov(x.T).double(), cov, rtol=0, atol=0.02)
    betas, alpha_bar = schedules.make_schedule(400, "linear")
    sigma2 = betas.clone() if variance == "beta" else schedules.posterior_variance(betas, alpha_bar)
    sigma2[0] = 0
    mean, cov = oracles.gaussian_chain_moments(m, C, betas, alpha_bar, sigma2)
    torch.testing.assert_close(mean, m.double(), rtol=0, atol=1e-3)
    torch.testing.assert_close(cov, C.double(), rtol=0, atol=0.01)


def test_ddpm_sample_is_reproducible():
    """Does a seeded generator make ddpm_sample reproducible?"""
    betas, alpha_bar = schedules.make_schedule(20, "cosine")
    model = lambda x, t: 0.5 * x
    x_T = torch.randn(4, 1, 3, 3)
    a = ddpm.ddpm_sample(model, x_T, betas, alpha_bar, generator=torch.Generator().manual_seed(0))
    b = ddpm.ddpm_sample(model, x_T, betas, alpha_bar, generator=torch.Generator().manual_seed(0))
    assert torch.equal(a, b) and a.shape == x_T.shape


def test_learned_log_variance_interpolates(cosine100):
    """Does learned_log_variance give log beta at v = 1, log beta_tilde at v = 0, and stay finite at t = 0?"""
    betas, alpha_bar = cosine100
    t = torch.tensor([0, 1, 50])
    beta_tilde = schedules.posterior_variance(betas, alpha_bar)
    torch.testing.assert_close(ddpm.learned_log_variance(torch.ones(3, 2), t, betas, alpha_bar)[:, 0], betas[t].log())
    low = ddpm.learned_log_variance(torch.zeros(3, 2), t, betas, alpha_bar)[:, 0]
    torch.testing.assert_close(low[1:], beta_tilde[t[1:]].log())
    assert torch.isfinite(low).all() and float(low[0]) == pytest.approx(float(beta_tilde[1].log()))

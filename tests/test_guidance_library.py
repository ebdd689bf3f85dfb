"""Tests of ``course.guidance``: label dropout, CFG arithmetic, the guided DDIM sampler, and the
exact class-conditional mixture oracle they are graded against."""
from __future__ import annotations

import math

import torch

from course import guidance
from course.ddim import ddim_sample, ddim_timesteps
from course.gmm import GaussianMixture
from course.schedules import make_schedule


def test_drop_labels_drops_the_right_fraction_to_the_null_label():
    """Does drop_labels drop a fraction p_uncond, only to null_label, without touching y?"""
    y = torch.randint(0, 10, (50_000,), generator=torch.Generator().manual_seed(0))
    y_copy = y.clone()
    out = guidance.drop_labels(y, 0.2, 10, generator=torch.Generator().manual_seed(1))
    assert out.dtype == torch.int64 and out.shape == y.shape
    assert torch.equal(y, y_copy)
    changed = out != y
    assert (out[changed] == 10).all()
    assert abs(changed.float().mean().item() - 0.2) < 5 * math.sqrt(0.2 * 0.8 / 50_000)


def test_drop_labels_is_reproducible_with_a_generator():
    """Do equally seeded generators give the same dropped labels?"""
    y = torch.arange(100) % 7
    a = guidance.drop_labels(y, 0.5, 7, generator=torch.Generator().manual_seed(3))
    b = guidance.drop_labels(y, 0.5, 7, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b)


def test_cfg_combine_special_weights():
    """Is w = 0 the conditional prediction, w = -1 the unconditional one, and w = 2 eq. 6?"""
    cond, uncond = torch.randn(5, 3), torch.randn(5, 3)
    assert torch.allclose(guidance.cfg_combine(cond, uncond, 0.0), cond)
    assert torch.allclose(guidance.cfg_combine(cond, uncond, -1.0), uncond)
    assert torch.allclose(guidance.cfg_combine(cond, uncond, 2.0), cond + 2 * (cond - uncond))


def test_oracle_conditional_score_matches_the_class_mixture():
    """Is the oracle's conditional score that of the class's own (renormalised) mixture?"""
    ring = guidance.ring_of_classes(3, 2)
    x = torch.randn(40, 2)
    y = torch.arange(40) % 3
    a, s = torch.full((40,), 0.8), torch.full((40,), 0.6)
    log_p, score = ring.noised_log_prob_and_score(x, a, s, y)
    for c in range(3):
        mix = ring.class_mixture(c)
        rows = y == c
        noised = GaussianMixture(0.8 * mix.means, (0.64 * mix.stds ** 2 + 0.36).sqrt(), mix.weights)
        assert torch.allclose(score[rows], noised.score(x[rows]), atol=1e-5)
        assert torch.allclose(log_p[rows], noised.log_prob(x[rows]), atol=1e-5)


def test_oracle_classifier_is_bayes():
    """Is grad log p(y | x_t) the gradient of log softmax over classes of log p(x_t | c) p(c)?"""
    ring = guidance.ring_of_classes(3, 2)
    x = torch.randn(16, 2, requires_grad=True)
    y = torch.arange(16) % 3
    a, s = torch.full((16,), 0.7), torch.full((16,), 0.7)
    log_joint = torch.stack([ring.noised_log_prob_and_score(x, a, s, torch.full_like(y, c))[0]
                             for c in range(3)], 1) + ring.class_prior().log()  # (16, 3)
    log_post = torch.log_softmax(log_joint, 1).gather(1, y[:, None]).sum()
    (grad,) = torch.autograd.grad(log_post, x)
    assert torch.allclose(ring.grad_log_p_y(x.detach(), a, s, y), grad, atol=1e-4)


def test_classifier_guidance_with_the_exact_classifier_is_cfg():
    """Does classifier guidance at scale 1 + w equal CFG at weight w with exact scores?"""
    ring = guidance.ring_of_classes(3, 2)
    x, y = torch.randn(32, 2), torch.arange(32) % 3
    a, s = torch.full((32,), 0.5), torch.full((32,), 0.9)
    _, cond = ring.noised_log_prob_and_score(x, a, s, y)
    _, uncond = ring.noised_log_prob_and_score(x, a, s)
    guided = guidance.classifier_guided_score(uncond, ring.grad_log_p_y(x, a, s, y), 1 + 2.5)
    assert torch.allclose(guided, guidance.cfg_combine(cond, uncond, 2.5), atol=1e-4)


def test_guided_sample_w0_is_conditional_ddim_and_guidance_sharpens():
    """Is w = 0 plain conditional DDIM, and does w > 0 raise the Bayes accuracy of the samples?"""
    ring = guidance.ring_of_classes(3, 2)
    _, alpha_bar = make_schedule(1000)
    model = ring.eps_model(alpha_bar)
    gen = torch.Generator().manual_seed(0)
    x_T, y = torch.randn(900, 2, generator=gen), torch.arange(900) % 3
    timesteps = ddim_timesteps(1000, 25)
    plain = guidance.guided_sample(model, x_T, y, 0.0, timesteps, alpha_bar)
    assert torch.allclose(plain, ddim_sample(lambda x, t: model(x, t, y), x_T, timesteps, alpha_bar), atol=1e-5)

    def accuracy(x):
        zero, one = torch.zeros(len(x)), torch.ones(len(x))
        log_p = torch.stack([ring.noised_log_prob_and_score(x, one, zero, torch.full_like(y, c))[0]
                             for c in range(3)], 1)
        return (log_p.argmax(1) == y).float().mean().item()

    guided = guidance.guided_sample(model, x_T, y, 4.0, timesteps, alpha_bar)
    assert accuracy(guided) > accuracy(plain) + 0.05
    assert accuracy(guided) > 0.95


def test_eps_model_null_label_is_unconditional():
    """Does the oracle treat y = None and y = n_classes alike (unconditional)?"""
    ring = guidance.ring_of_classes(3, 2)
    _, alpha_bar = make_schedule(100)
    model = ring.eps_model(alpha_bar)
    x, t = torch.randn(8, 2), torch.full((8,), 40)
    assert torch.allclose(model(x, t), model(x, t, torch.full((8,), 3)), atol=1e-6)

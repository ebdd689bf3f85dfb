"""course.fourier_features: the Gaussian random Fourier time features of the given TimeMLP."""
from __future__ import annotations

import math

import torch

from course.fourier_features import GaussianFourierFeatures
from course.nets import TimeMLP, frozen_time_mlp


def test_features_are_sin_and_cos_of_two_pi_w_t():
    torch.manual_seed(0)
    gamma = GaussianFourierFeatures(7, scale=3.0)
    t = torch.tensor([0.0, 0.25, 1.0])
    out = gamma(t)
    angles = 2 * math.pi * t[:, None] * gamma.W[None, :]
    assert out.shape == (3, 7) and gamma.W.shape == (3,)
    torch.testing.assert_close(out[:, :3], torch.sin(angles))
    torch.testing.assert_close(out[:, 3:6], torch.cos(angles))
    assert torch.all(out[:, 6] == 0)  # an odd width gets a zero column
    assert not gamma.W.requires_grad and "W" in gamma.state_dict()


def test_the_frequencies_have_the_asked_scale():
    torch.manual_seed(1)
    assert abs(float(GaussianFourierFeatures(20_000, scale=8.0).W.std()) - 8.0) < 0.2


def test_time_mlp_saves_its_frequencies_and_a_load_restores_them():
    torch.manual_seed(0)
    a = TimeMLP(dim=2, hidden=16, depth=2, emb_dim=8)
    torch.manual_seed(1)
    b = TimeMLP(dim=2, hidden=16, depth=2, emb_dim=8)
    assert "time_features.W" in a.state_dict() and not torch.equal(a.time_features.W, b.time_features.W)
    b.load_state_dict(a.state_dict())
    x, t = torch.randn(4, 2), torch.tensor([0, 10, 500, 999])
    torch.testing.assert_close(a(x, t), b(x, t))


def test_frozen_time_mlp_is_deterministic_from_its_seed_and_leaves_the_global_rng_alone():
    state = torch.random.get_rng_state()
    a, b, c = frozen_time_mlp(3), frozen_time_mlp(3), frozen_time_mlp(4)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert torch.equal(a.time_features.W, b.time_features.W) and not torch.equal(a.time_features.W, c.time_features.W)
    x, t = torch.randn(5, 2), torch.rand(5) * 999
    torch.testing.assert_close(a(x, t), b(x, t))


def test_time_mlp_does_not_use_notebook_08s_exercise(monkeypatch):
    import course.embedding

    def stub(*args, **kwargs):
        raise NotImplementedError("timestep_embedding is an exercise of 08_latent_unet")

    monkeypatch.setattr(course.embedding, "timestep_embedding", stub)
    assert TimeMLP(time_scale=1000.0)(torch.zeros(3, 2), torch.rand(3)).shape == (3, 2)

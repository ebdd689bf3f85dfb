"""Gaussian random Fourier features of time: the time input of the course's 2D networks.

Tancik et al. 2020 ("Fourier features let networks learn high frequency functions in low
dimensional domains") map a low-dimensional input v through random frequencies before an MLP:

    gamma(v) = [sin(2 pi B v), cos(2 pi B v)],    B_ij ~ N(0, s^2)  (drawn once, then fixed),

which lets the network represent functions that vary quickly with v; the scale s sets the
bandwidth. Song et al. 2021 (score-SDE, "Score-based generative modeling through stochastic
differential equations") condition their networks on time the same way (``GaussianFourierProjection``,
s = 16, applied to log sigma).

This is not notebook 08's sinusoidal ``timestep_embedding`` (deterministic, geometrically spaced
frequencies, Vaswani et al. 2017): the given ``course.nets.TimeMLP`` uses these random features so that
the earlier notebooks' networks never depend on a later notebook's exercise.
"""
from __future__ import annotations

import math

import torch
from torch import nn


class GaussianFourierFeatures(nn.Module):
    """gamma(t') = [sin(2 pi W t'), cos(2 pi W t')] with W ~ N(0, s^2) (Tancik et al. 2020's Gaussian
    mapping; Song et al. 2021's time input): t (B,) -> features (B, dim).

    ``W`` (dim // 2 frequencies) is drawn once at construction from the global RNG (seed it first for
    a reproducible network) and stored as a buffer: it is saved in the state dict, so a checkpoint
    carries it, and it is never trained. An odd ``dim`` gets one zero column at the end. The input
    should span about [0, 1] (``course.nets.TimeMLP`` passes t' = t * time_scale / 1000).
    """

    def __init__(self, dim: int, scale: float = 1.0):
        super().__init__()
        self.dim = dim
        self.scale = scale
        self.register_buffer("W", torch.randn(dim // 2) * scale)  # (dim // 2,) frequencies, ~ N(0, s^2)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        angles = 2 * math.pi * t.float()[:, None] * self.W[None, :]  # (B, dim // 2)
        features = torch.cat([torch.sin(angles), torch.cos(angles)], dim=-1)  # (B, 2 * (dim // 2))
        if self.dim % 2:
            features = torch.cat([features, torch.zeros_like(features[:, :1])], dim=-1)
        return features

    def extra_repr(self) -> str:
        return f"dim={self.dim}, scale={self.scale:g}"

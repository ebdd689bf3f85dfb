"""2D toy data sets, generated in code (offline). Every sampler: ``f(n, generator=None) -> (n, 2)``.

Where a set has a known density (the Gaussian mixtures; the uniform checkerboard), it is exposed,
so experiments can report exact log-likelihood gaps.
"""
from __future__ import annotations

import math

import torch

from course.gmm import GaussianMixture


def _randn(*shape, generator=None):
    return torch.randn(*shape, generator=generator)


def _rand(*shape, generator=None):
    return torch.rand(*shape, generator=generator)


def eight_gaussians_mixture(radius: float = 2.0, std: float = 0.15) -> GaussianMixture:
    """Eight equal components on a circle."""
    angles = torch.arange(8, dtype=torch.float32) * (2 * math.pi / 8)
    means = radius * torch.stack([torch.cos(angles), torch.sin(angles)], dim=1)
    return GaussianMixture(means, torch.full((8,), std), torch.full((8,), 1 / 8))


def two_gaussians_mixture() -> GaussianMixture:
    """Two unequal components: the smallest mixture where the score is not linear."""
    means = torch.tensor([[-1.5, 0.0], [1.5, 0.5]])
    return GaussianMixture(means, torch.tensor([0.4, 0.6]), torch.tensor([0.3, 0.7]))


def unbalanced_three_mixture(std: float = 0.3) -> GaussianMixture:
    """Three components of weights 0.7, 0.2, 0.1: a mixture whose mode weights a sampler can get wrong."""
    means = torch.tensor([[-1.5, 0.0], [1.5, 0.0], [0.0, 2.0]])
    return GaussianMixture(means, torch.full((3,), std), torch.tensor([0.7, 0.2, 0.1]))


def eight_gaussians(n, generator=None):
    return eight_gaussians_mixture().sample(n, generator)


def moons(n, noise: float = 0.05, generator=None):
    """Two interleaving half circles (as scikit-learn's make_moons), centred and scaled."""
    n_top = n // 2
    theta = math.pi * _rand(n, generator=generator)
    top = torch.stack([torch.cos(theta), torch.sin(theta)], 1)
    bottom = torch.stack([1 - torch.cos(theta), 0.5 - torch.sin(theta)], 1)
    is_top = (torch.arange(n) < n_top)[:, None]
    x = torch.where(is_top, top, bottom) + noise * _randn(n, 2, generator=generator)
    x = x[torch.randperm(n, generator=generator)]
    return (x - torch.tensor([0.5, 0.25])) * 1.5


def circles(n, noise: float = 0.04, factor: float = 0.5, generator=None):
    """Two concentric circles of radii 2 and 2 * factor."""
    theta = 2 * math.pi * _rand(n, generator=generator)
    radius = torch.where(_rand(n, generator=generator) < 0.5, torch.tensor(2.0), torch.tensor(2.0 * factor))
    x = radius[:, None] * torch.stack([torch.cos(theta), torch.sin(theta)], 1)
    return x + noise * _randn(n, 2, generator=generator)


CHECKERBOARD_AREA = 8.0  # eight unit squares in [-2, 2]^2: uniform density 1/8, entropy ln 8


def checkerboard(n, generator=None):
    """Uniform on the 8 black squares of a 4x4 board on [-2, 2]^2 (density 1/8 there)."""
    x1 = _rand(n, generator=generator) * 4 - 2
    offset = torch.randint(0, 2, (n,), generator=generator).float() * 2
    x2 = _rand(n, generator=generator) - offset + torch.floor(x1) % 2
    return torch.stack([x1, x2], 1)


def swiss_roll(n, noise: float = 0.1, generator=None):
    """A 2D swiss roll, scaled to about [-2, 2]^2."""
    t = 1.5 * math.pi * (1 + 2 * _rand(n, generator=generator))
    x = torch.stack([t * torch.cos(t), t * torch.sin(t)], 1) / 7.0
    return x + noise * _randn(n, 2, generator=generator) / 2


def spirals(n, noise: float = 0.05, generator=None):
    """Two interleaved spirals."""
    t = torch.sqrt(_rand(n, generator=generator)) * 3 * math.pi
    sign = torch.where(_rand(n, generator=generator) < 0.5, torch.tensor(1.0), torch.tensor(-1.0))
    x = sign[:, None] * torch.stack([t * torch.cos(t), t * torch.sin(t)], 1) / (1.5 * math.pi)
    return x + noise * _randn(n, 2, generator=generator)


DATASETS = {
    "moons": moons,
    "circles": circles,
    "eight_gaussians": eight_gaussians,
    "checkerboard": checkerboard,
    "swiss_roll": swiss_roll,
    "spirals": spirals,
}


def sample(name: str, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Draw n points of the named set: one of ``DATASETS``."""
    if name not in DATASETS:
        raise KeyError(f"unknown 2D set {name!r}; choose one of {sorted(DATASETS)}")
    return DATASETS[name](n, generator=generator)

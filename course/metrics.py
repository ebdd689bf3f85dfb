"""Sample-quality metrics for point clouds: sliced Wasserstein distance and energy distance.

Always report a metric beside its *floor*, since finite samples never reach zero. Measure the floor
like the model: :func:`floor_and_spread` applies the very score function the model gets (same
reference sample, same projections, same size) to fresh data samples, and gives the spread too, so
a model "below the floor" is visibly within the metric's noise. (``data_floor``, two fresh samples
against each other, holds the noise of *two* samples: a model compared with one fixed reference can
sit about sqrt(2) below it.)
"""
from __future__ import annotations

from typing import Callable

import torch

from course.gmm import gmm_component_log_probs


def _quantiles(x: torch.Tensor, n: int) -> torch.Tensor:
    """n evenly spaced empirical quantiles of each column of x (M, P): (n, P)."""
    x_sorted, _ = torch.sort(x, dim=0)
    if x.shape[0] == n:
        return x_sorted
    q = (torch.arange(n, dtype=x.dtype, device=x.device) + 0.5) / n * x.shape[0] - 0.5
    lo = q.floor().clamp(0, x.shape[0] - 1).long()
    hi = (lo + 1).clamp(max=x.shape[0] - 1)
    w = (q - lo.to(q.dtype)).clamp(0, 1)[:, None]
    return x_sorted[lo] * (1 - w) + x_sorted[hi] * w


def sliced_wasserstein(x: torch.Tensor, y: torch.Tensor, n_projections: int = 256,
                       generator: torch.Generator | None = None) -> float:
    """Sliced 2-Wasserstein distance: sqrt of the mean over random directions of W2^2 in 1D.

    Each 1D W2 compares sorted projections (quantiles when the sizes differ).
    """
    x, y = x.detach().float().flatten(1).cpu(), y.detach().float().flatten(1).cpu()
    d = x.shape[1]
    dirs = torch.randn(d, n_projections, generator=generator)
    dirs = dirs / dirs.norm(dim=0, keepdim=True)  # (d, P)
    n = max(x.shape[0], y.shape[0])
    px, py = _quantiles(x @ dirs, n), _quantiles(y @ dirs, n)  # (n, P)
    return float(((px - py) ** 2).mean().sqrt())


def mode_shares(x: torch.Tensor, mixture) -> torch.Tensor:
    """The fraction of samples that each component of a Gaussian mixture explains best (highest
    likelihood N(x; mu_k, s_k^2 I), weights left out): (K,), summing to 1."""
    x = x.detach().float().flatten(1).cpu()
    K = len(mixture.weights)
    log_lik = gmm_component_log_probs(x, mixture.means, mixture.stds, torch.ones(K))  # (N, K)
    return torch.bincount(log_lik.argmax(1), minlength=K).float() / len(x)


def mode_weight_error(x: torch.Tensor, mixture) -> float:
    """Total variation between :func:`mode_shares` and the mixture's weights: 0 when a sampler puts
    the right share of its samples in every mode (up to sampling noise, about sqrt(K / N) / 2)."""
    return float(0.5 * (mode_shares(x, mixture) - mixture.weights).abs().sum())


def energy_distance(x: torch.Tensor, y: torch.Tensor, max_points: int = 2000) -> float:
    """Energy distance 2 E|X-Y| - E|X-X'| - E|Y-Y'| (Székely & Rizzo), a kernel metric (>= 0)."""
    x, y = x.detach().float().flatten(1).cpu()[:max_points], y.detach().float().flatten(1).cpu()[:max_points]
    xy = torch.cdist(x, y).mean()
    xx = torch.cdist(x, x).sum() / (x.shape[0] * (x.shape[0] - 1))
    yy = torch.cdist(y, y).sum() / (y.shape[0] * (y.shape[0] - 1))
    return float(2 * xy - xx - yy)


def mmd_rbf(x: torch.Tensor, y: torch.Tensor, bandwidth: float | None = None, max_points: int = 2000) -> float:
    """Unbiased squared MMD with a Gaussian kernel (median heuristic bandwidth by default)."""
    x, y = x.detach().float().flatten(1).cpu()[:max_points], y.detach().float().flatten(1).cpu()[:max_points]
    z = torch.cat([x, y])
    d2 = torch.cdist(z, z) ** 2
    if bandwidth is None:
        bandwidth = float(d2[d2 > 0].median().sqrt())
    k = torch.exp(-d2 / (2 * bandwidth ** 2))
    n, m = x.shape[0], y.shape[0]
    kxx = (k[:n, :n].sum() - k[:n, :n].diagonal().sum()) / (n * (n - 1))
    kyy = (k[n:, n:].sum() - k[n:, n:].diagonal().sum()) / (m * (m - 1))
    return float(kxx + kyy - 2 * k[:n, n:].mean())


def data_floor(sample_data: Callable[[int], torch.Tensor], n: int, metric=sliced_wasserstein,
               repeats: int = 3, **kwargs) -> float:
    """The metric between two independent data samples of size n, averaged over ``repeats``."""
    return sum(metric(sample_data(n), sample_data(n), **kwargs) for _ in range(repeats)) / repeats


def floor_and_spread(score: Callable[[torch.Tensor], float], sample_data: Callable[[int], torch.Tensor], n: int,
                     repeats: int = 8) -> tuple[float, float]:
    """The floor of ``score`` measured like with like: ``score(fresh data of size n)`` over ``repeats``
    independent samples, as (mean, standard deviation). Give ``score`` exactly the function used on the
    model's samples (same reference, same projections): then a model's score differs from the floor by
    more than about two standard deviations only where it really is worse (or, rarely, luckier)."""
    values = torch.tensor([float(score(sample_data(n))) for _ in range(repeats)])
    return float(values.mean()), float(values.std()) if repeats > 1 else 0.0


def score_and_spread(score: Callable[[torch.Tensor], float], draw: Callable[[int], torch.Tensor], n: int,
                     repeats: int = 8) -> tuple[float, float]:
    """A model's side of :func:`floor_and_spread`, computed the same way: ``score(draw(n))`` over
    ``repeats`` independent draws of n samples (fresh noise each time), as (mean, standard deviation).
    A model scored on one fixed noise draw inherits that draw's luck (every model fed the same draw
    shares it), while its floor averages several data samples: average both, over the same number of
    draws, and compare means. (The same computation as the floor's: one definition.)"""
    return floor_and_spread(score, draw, n, repeats)


def within_noise(value: float, floor: float, spread: float, k: float = 2.0) -> bool:
    """Is ``value`` within ``k`` standard deviations of the floor (indistinguishable from the data)?"""
    return abs(value - floor) <= k * spread


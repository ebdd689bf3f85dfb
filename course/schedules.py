"""Noise schedules of discrete-time diffusion (notebook 03; reused by 04, 07, 08).

Time convention (DDPM, Ho et al. 2020, with 0-based steps): T steps indexed t = 0..T-1;
``betas[t]`` is the variance added at step t, ``alphas = 1 - betas`` and
``alpha_bar[t] = prod(alphas[:t+1])``, so that x_t ~ N(sqrt(alpha_bar[t]) x0, (1 - alpha_bar[t]) I).
t = 0 is the first (least noisy) step, t = T-1 the last (almost pure noise). alpha_bar "before
step 0" is 1: ``alpha_bar_prev(alpha_bar)[0] == 1``. Every schedule is a float32 tensor of shape (T,).
``alpha`` is never alpha_bar.
"""
from __future__ import annotations

import math

import torch


def linear_beta_schedule(T: int, beta_start: float = 1e-4, beta_end: float = 0.02) -> torch.Tensor:
    """betas rising linearly from beta_start to beta_end (Ho et al. 2020, Sec. 4): (T,)."""
    return torch.linspace(beta_start, beta_end, T, dtype=torch.float64).float()


def cosine_alpha_bar(u: torch.Tensor, s: float = 0.008) -> torch.Tensor:
    """Nichol & Dhariwal 2021, eq. 17: f(u) / f(0), f(u) = cos^2((u + s) / (1 + s) * pi / 2), u in [0, 1]."""
    f = torch.cos((u + s) / (1 + s) * math.pi / 2) ** 2
    f0 = math.cos(s / (1 + s) * math.pi / 2) ** 2
    return f / f0


def cosine_beta_schedule(T: int, s: float = 0.008, max_beta: float = 0.999) -> torch.Tensor:
    """The cosine schedule (Nichol & Dhariwal 2021, eq. 17): (T,).

    betas[t] = 1 - abar((t+1)/T) / abar(t/T), clipped at ``max_beta`` to avoid the singularity
    at the end of the schedule (abar(1) = 0 would make the last beta 1).
    """
    u = torch.arange(T + 1, dtype=torch.float64) / T  # (T+1,) grid points 0, 1/T, ..., 1
    abar = cosine_alpha_bar(u, s)
    betas = 1 - abar[1:] / abar[:-1]  # (T,)
    return betas.clamp(max=max_beta).float()


def alphas_from_betas(betas: torch.Tensor) -> torch.Tensor:
    """alphas[t] = 1 - betas[t]: (T,)."""
    return 1 - betas


def alpha_bar_from_betas(betas: torch.Tensor) -> torch.Tensor:
    """alpha_bar[t] = prod_{s <= t} (1 - betas[s]) (Ho et al. 2020, eq. 4): (T,).

    The product is taken in float64 so that long schedules keep their small tail accurately.
    """
    return torch.cumprod(1 - betas.double(), dim=0).to(betas.dtype)


def betas_from_alpha_bar(alpha_bar: torch.Tensor) -> torch.Tensor:
    """Inverse of alpha_bar_from_betas: betas[t] = 1 - alpha_bar[t] / alpha_bar[t-1], alpha_bar[-1] = 1."""
    return 1 - alpha_bar / alpha_bar_prev(alpha_bar)


def alpha_bar_prev(alpha_bar: torch.Tensor) -> torch.Tensor:
    """alpha_bar shifted by one step, alpha_bar_prev[t] = alpha_bar[t-1], with alpha_bar_prev[0] = 1: (T,)."""
    return torch.cat([alpha_bar.new_ones(1), alpha_bar[:-1]])


def posterior_variance(betas: torch.Tensor, alpha_bar: torch.Tensor) -> torch.Tensor:
    """beta_tilde[t] = (1 - alpha_bar[t-1]) / (1 - alpha_bar[t]) betas[t] (Ho et al. 2020, eq. 7): (T,).

    beta_tilde[0] = 0: at the first step the posterior q(x_{-1} | x_0, x0) is a point mass.
    """
    return (1 - alpha_bar_prev(alpha_bar)) / (1 - alpha_bar) * betas


def snr(alpha_bar: torch.Tensor) -> torch.Tensor:
    """Signal-to-noise ratio alpha_bar / (1 - alpha_bar) of x_t (Kingma et al. 2021): (T,)."""
    return alpha_bar / (1 - alpha_bar)


def make_schedule(T: int, kind: str = "linear") -> tuple[torch.Tensor, torch.Tensor]:
    """(betas, alpha_bar) of a named schedule, "linear" (scaled to T as in Nichol & Dhariwal's
    code, so that betas run from 1e-4 to 0.02 when T = 1000) or "cosine"."""
    if kind == "linear":
        scale = 1000 / T
        betas = linear_beta_schedule(T, scale * 1e-4, min(scale * 0.02, 0.999))
    elif kind == "cosine":
        betas = cosine_beta_schedule(T)
    else:
        raise ValueError(f"unknown schedule {kind!r}: use 'linear' or 'cosine'")
    return betas, alpha_bar_from_betas(betas)


def make_alpha_bar(T: int, kind: str = "linear") -> torch.Tensor:
    """alpha_bar (T,) of the named schedule of :func:`make_schedule`."""
    return make_schedule(T, kind)[1]

"""Flow matching and rectified flow on the straight path (notebook 06).

Time convention (Liu et al. 2022; Lipman et al. 2023): t in [0, 1], **t = 0 is noise, t = 1 is
data**. x0 ~ N(0, I) is the noise, x1 the data, and the path and its velocity are

    x_t = (1 - t) x0 + t x1,        d x_t / dt = x1 - x0.

This is the opposite direction to notebook 05 (t = 0 data there); ``course.velocity`` holds the
named conversions. A velocity model is called as ``v_model(x, t)`` with t a float tensor (B,).

References: Liu, Gong & Liu 2022, *Flow Straight and Fast: Learning to Generate and Transfer Data
with Rectified Flow* (arXiv:2209.03003); Lipman et al. 2023, *Flow Matching for Generative
Modeling* (arXiv:2210.02747); Esser et al. 2024, *Scaling Rectified Flow Transformers for
High-Resolution Image Synthesis* (SD3, arXiv:2403.03206).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from course.batching import append_dims, time_batch  # noqa: F401  (append_dims re-exported for notebook 06)


def interpolate(x0: torch.Tensor, x1: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """x_t = (1 - t) x0 + t x1 (Liu et al. 2022, eq. 1): x0, x1 (B, ...), t (B,)."""
    t = append_dims(t, x0)
    return (1 - t) * x0 + t * x1


def target_velocity(x0: torch.Tensor, x1: torch.Tensor) -> torch.Tensor:
    """The conditional velocity of the straight path, d x_t / dt = x1 - x0."""
    return x1 - x0


def cfm_loss(v_model, x0: torch.Tensor, x1: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Conditional flow matching: mean over all elements of (v(x_t, t) - (x1 - x0))^2.

    Lipman et al. 2023, eq. 23 with sigma_min = 0; Liu et al. 2022, eq. 1.
    """
    return F.mse_loss(v_model(interpolate(x0, x1, t), t), target_velocity(x0, x1))


def euler_path(v_model, x0: torch.Tensor, n_steps: int):
    """Euler on dx/dt = v(x, t) from t = 0 to 1 on t_i = i / n_steps.

    Returns ``(path, velocities, times)``: the points (n_steps + 1, B, ...), x0 first; the
    velocities v(x_{t_i}, t_i) used by each step (n_steps, B, ...); the step times (n_steps,).
    """
    dt = 1.0 / n_steps
    times = torch.arange(n_steps, dtype=x0.dtype, device=x0.device) * dt  # (n_steps,)
    x, path, velocities = x0, [x0], []
    for t in times:
        v = v_model(x, time_batch(t, x))
        x = x + dt * v
        path.append(x)
        velocities.append(v)
    return torch.stack(path), torch.stack(velocities), times


def sample_ode(v_model, x0: torch.Tensor, n_steps: int) -> torch.Tensor:
    """Euler from t = 0 (noise x0) to t = 1: the end points x1_hat, with x0's shape."""
    path, _, _ = euler_path(v_model, x0, n_steps)
    return path[-1]


def straightness(v_model, x0: torch.Tensor, n_steps: int) -> torch.Tensor:
    """Liu et al. 2022's S(Z) = int_0^1 E ||(Z1 - Z0) - v(Z_t, t)||^2 dt (their eq. 6), on the Euler path.

    The squared Euclidean norm per sample, a mean over samples and over the n_steps grid points
    t_i = i / n_steps; Z1 is the Euler end point. 0 exactly when every path is a straight line
    travelled at constant speed. A 0-dim tensor.
    """
    path, velocities, _ = euler_path(v_model, x0, n_steps)
    chord = path[-1] - path[0]  # (B, ...)
    sq_norm = ((chord[None] - velocities) ** 2).flatten(2).sum(-1)  # (n_steps, B)
    return sq_norm.mean()


def reflow_pairs(v_model, x0: torch.Tensor, n_steps: int):
    """The coupling (x0, x1_hat) of a flow: each noise sample with its ODE end point (Liu et al. Alg. 1)."""
    return x0, sample_ode(v_model, x0, n_steps)


def logit_normal_t(n: int, m: float = 0.0, s: float = 1.0, generator: torch.Generator | None = None) -> torch.Tensor:
    """SD3's time sampler (Esser et al. 2024, eq. 19): t = sigmoid(u), u ~ N(m, s^2); shape (n,)."""
    u = m + s * torch.randn(n, generator=generator)
    return torch.sigmoid(u)


def uniform_t(n: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """The plain time sampler of rectified flow: t ~ U(0, 1), shape (n,)."""
    return torch.rand(n, generator=generator)


def pair_loss(v_model, pairs, t_sampler=uniform_t, generator: torch.Generator | None = None) -> torch.Tensor:
    """cfm_loss on a batch ``(x0, x1)`` with times drawn by ``t_sampler(n, generator=...)``.

    With independent pairs it trains 1-rectified flow; with ``reflow_pairs`` it trains the
    k+1-rectified flow (Liu et al. 2022, Algorithm 1).
    """
    x0, x1 = pairs
    t = t_sampler(x0.shape[0], generator=generator).to(x0.device)
    return cfm_loss(v_model, x0, x1, t)

"""Fixed-step ODE solvers for dx/dt = f(x, t) (notebook 01).

Time convention: t is a Python float that runs forward from t0 to t1; a negative dt integrates
backwards. Every method is one small step function with the signature ``step(f, x, t, dt)``; the
loop over the grid is written once, in :func:`integrate`.
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import torch

VectorField = Callable[[torch.Tensor, float], torch.Tensor]


def euler_step(f: VectorField, x: torch.Tensor, t: float, dt: float) -> torch.Tensor:
    """Explicit Euler: x_{n+1} = x_n + dt f(x_n, t_n) (first order)."""
    return x + dt * f(x, t)


def heun_step(f: VectorField, x: torch.Tensor, t: float, dt: float) -> torch.Tensor:
    """Heun's method (explicit trapezoid): average the slopes at both ends of an Euler step."""
    k1 = f(x, t)
    k2 = f(x + dt * k1, t + dt)
    return x + 0.5 * dt * (k1 + k2)


def rk4_step(f: VectorField, x: torch.Tensor, t: float, dt: float) -> torch.Tensor:
    """The classical fourth-order Runge-Kutta step."""
    k1 = f(x, t)
    k2 = f(x + 0.5 * dt * k1, t + 0.5 * dt)
    k3 = f(x + 0.5 * dt * k2, t + 0.5 * dt)
    k4 = f(x + dt * k3, t + dt)
    return x + dt / 6.0 * (k1 + 2 * k2 + 2 * k3 + k4)


def time_grid(t0: float, t1: float, n_steps: int) -> list[float]:
    """The uniform grid t0, t0 + dt, ..., t1 as Python floats (n_steps + 1 points)."""
    dt = (t1 - t0) / n_steps
    return [t0 + i * dt for i in range(n_steps)] + [float(t1)]


def integrate(f: VectorField, x0: torch.Tensor, t0: float, t1: float, n_steps: int,
              step=euler_step) -> torch.Tensor:
    """Solve from t0 to t1 in ``n_steps`` uniform steps; return the path (n_steps + 1, N, d), x0 first."""
    dt = (t1 - t0) / n_steps
    ts = time_grid(t0, t1, n_steps)
    path = [x0]
    x = x0
    for t in ts[:-1]:
        x = step(f, x, t, dt)
        path.append(x)
    return torch.stack(path)  # (n_steps + 1, N, d)


def convergence_order(step_sizes: Sequence[float], errors: Sequence[float]) -> float:
    """Least-squares slope p of log(error) = p log(h) + c: the measured order of a method."""
    log_h = np.log(np.asarray(step_sizes, dtype=np.float64))
    log_e = np.log(np.asarray(errors, dtype=np.float64))
    slope, _ = np.polyfit(log_h, log_e, 1)
    return float(slope)

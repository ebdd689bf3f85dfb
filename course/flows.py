"""Change of variables for flows (notebook 01; reused by the CNFs of notebook 02).

For an invertible map y = g(x):  log p_Y(y) = log p_X(g^{-1}(y)) + log |det d g^{-1}/dy|.
For an ODE flow dx/dt = f(x, t):  d log p(x_t)/dt = -div f(x_t, t)  (the instantaneous change of
variables, Chen et al. 2018, Theorem 1).
"""
from __future__ import annotations

from typing import Callable

import torch


def divergence(f, x: torch.Tensor, t: float, create_graph: bool = False) -> torch.Tensor:
    """Exact divergence sum_i d f_i / d x_i by autograd, one backward pass per dimension: (N,)."""
    with torch.enable_grad():
        x = x.detach().requires_grad_(True) if not x.requires_grad else x
        fx = f(x, t)
        div = torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
        for i in range(x.shape[1]):
            (grad_i,) = torch.autograd.grad(fx[:, i].sum(), x, create_graph=create_graph,
                                            retain_graph=True)
            div = div + grad_i[:, i]
    return div


def batch_jacobian(g: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """Per-sample Jacobian dg/dx of a map applied row-wise: (N, d_out, d_in)."""
    with torch.enable_grad():
        x = x.detach().requires_grad_(True)
        y = g(x)
        rows = []
        for i in range(y.shape[1]):
            (grad_i,) = torch.autograd.grad(y[:, i].sum(), x, retain_graph=True)
            rows.append(grad_i)
    return torch.stack(rows, dim=1)  # (N, d_out, d_in)


def jacobian_logdet(g: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """log |det dg/dx| for each sample: (N,)."""
    return torch.linalg.slogdet(batch_jacobian(g, x)).logabsdet


def pushforward_log_prob(y: torch.Tensor, g_inverse, base_log_prob) -> torch.Tensor:
    """log p_Y(y) = log p_X(g^{-1}(y)) + log |det d g^{-1}/dy|: (N,)."""
    x = g_inverse(y)
    return base_log_prob(x) + jacobian_logdet(g_inverse, y)


def standard_normal_log_prob(x: torch.Tensor) -> torch.Tensor:
    """log N(x; 0, I) per row: (N,)."""
    d = x.shape[-1]
    return -0.5 * (x ** 2).sum(-1) - 0.5 * d * torch.log(torch.tensor(2 * torch.pi, dtype=x.dtype))

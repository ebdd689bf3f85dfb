"""What a velocity on the straight path knows: x0, x1 and the score, and the exact velocity of a mixture.

Time convention of notebook 06 (rectified flow): t in [0, 1], t = 0 noise x0 ~ N(0, I), t = 1
data x1, x_t = (1 - t) x0 + t x1. The marginal velocity v(x, t) = E[x1 - x0 | x_t = x] determines
the two posterior means and the score:

    E[x0 | x_t] = x_t - t v,      E[x1 | x_t] = x_t + (1 - t) v,
    grad log p_t(x_t) = -E[x0 | x_t] / (1 - t) = -(x_t - t v) / (1 - t).

(x_t given x1 is N(t x1, (1 - t)^2 I), so Tweedie's formula gives the score from E[x0 | x_t].)
Inverting the last line, v = (x_t + (1 - t) score) / t.

Notebook 05 runs time the other way (t = 0 data, t = 1 noise): its time is ``tau = 1 - t``, and
the straight path is the marginal with ``mean_coef = 1 - tau``, ``std = tau`` in its terms.
"""
from __future__ import annotations

import torch

from course.batching import append_dims


# -- time conventions ------------------------------------------------------------------------
def flow_time_to_sde_time(t: torch.Tensor) -> torch.Tensor:
    """Notebook 06's t (0 = noise) -> notebook 05's tau (0 = data): tau = 1 - t."""
    return 1 - t


def sde_time_to_flow_time(tau: torch.Tensor) -> torch.Tensor:
    """Notebook 05's tau (0 = data) -> notebook 06's t (0 = noise): t = 1 - tau."""
    return 1 - tau


def path_marginal(t: torch.Tensor):
    """(mean_coef, std) of x_t given the data x1 on the straight path: (t, 1 - t)."""
    return t, 1 - t


# -- conversions -----------------------------------------------------------------------------
def velocity_to_x0(xt: torch.Tensor, t: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """The predicted noise E[x0 | x_t] = x_t - t v (one Euler step back to t = 0)."""
    return xt - append_dims(t, xt) * v


def velocity_to_x1(xt: torch.Tensor, t: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """The predicted data E[x1 | x_t] = x_t + (1 - t) v (one Euler step on to t = 1)."""
    return xt + (1 - append_dims(t, xt)) * v


def velocity_to_score(xt: torch.Tensor, t: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """grad log p_t(x_t) = -(x_t - t v) / (1 - t) (Tweedie: the predicted noise over the noise std); t < 1."""
    return -velocity_to_x0(xt, t, v) / (1 - append_dims(t, xt))


# -- the exact marginal velocity of a Gaussian mixture ---------------------------------------
def gmm_marginal_velocity(x: torch.Tensor, t: torch.Tensor, means: torch.Tensor, stds: torch.Tensor,
                          weights: torch.Tensor) -> torch.Tensor:
    """v(x, t) = E[x1 - x0 | x_t = x] for x1 ~ sum_k w_k N(mu_k, s_k^2 I), x0 ~ N(0, I): (B, d).

    Given the component k, (x1 - x0, x_t) is jointly Gaussian: x_t ~ N(t mu_k, c_k I) with
    c_k = t^2 s_k^2 + (1 - t)^2 and Cov(x1 - x0, x_t) = (t s_k^2 - (1 - t)) I, so
    E[x1 - x0 | x_t, k] = mu_k + (t s_k^2 - (1 - t)) / c_k (x_t - t mu_k). Averaged with the
    posterior responsibilities r_k(x_t). Finite on all of [0, 1] (unlike the score form at t = 0).
    """
    t_col = append_dims(t, x).to(x.dtype)  # (B, 1)
    var_t = t_col ** 2 * stds[None] ** 2 + (1 - t_col) ** 2  # (B, K)
    gain = (t_col * stds[None] ** 2 - (1 - t_col)) / var_t  # (B, K)
    diff = x[:, None, :] - t_col[:, :, None] * means[None]  # (B, K, d)
    d = x.shape[-1]
    comp = torch.log(weights)[None] - 0.5 * d * torch.log(var_t) - 0.5 * (diff ** 2).sum(-1) / var_t  # (B, K)
    resp = torch.softmax(comp, dim=1)  # (B, K)
    per_comp = means[None] + gain[:, :, None] * diff  # (B, K, d)
    return (resp[:, :, None] * per_comp).sum(1)


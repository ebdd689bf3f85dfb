"""Denoising diffusion probabilistic models (notebook 03; reused by 04, 07, 08).

Time convention (see ``course.schedules``): T steps t = 0..T-1, ``alpha_bar[t] = prod(alphas[:t+1])``,
x_t = sqrt(alpha_bar[t]) x0 + sqrt(1 - alpha_bar[t]) eps; alpha_bar before step 0 is 1.
``t`` is a LongTensor of shape (B,), one step per sample; ``model(x, t)`` predicts eps.
Schedules are tensors of shape (T,) on any device; they are moved to t's device when indexed.

References: Ho, Jain & Abbeel 2020 (DDPM): eq. 4 (q_sample), eq. 6-7 (posterior), eq. 11 and
Algorithm 2 (ancestral sampling), eq. 14 and Algorithm 1 (the simple loss);
Nichol & Dhariwal 2021 (improved DDPM): eq. 15 (learned interpolated variance), eq. 17 (cosine schedule).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from course.batching import append_dims, randn_like, time_batch
from course.schedules import alpha_bar_prev, posterior_variance


def gather(schedule: torch.Tensor, t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """The schedule entry of each sample's step, schedule[t] (B,), broadcast against x: (B, 1, ..., 1)."""
    return append_dims(schedule.to(t.device)[t], x)


def q_sample(x0: torch.Tensor, t: torch.Tensor, eps: torch.Tensor, alpha_bar: torch.Tensor) -> torch.Tensor:
    """Sample q(x_t | x0) by reparameterisation (Ho et al. 2020, eq. 4):
    x_t = sqrt(alpha_bar[t]) x0 + sqrt(1 - alpha_bar[t]) eps."""
    ab = gather(alpha_bar, t, x0)
    return ab.sqrt() * x0 + (1 - ab).sqrt() * eps


def q_posterior(x0: torch.Tensor, xt: torch.Tensor, t: torch.Tensor, betas: torch.Tensor,
                alpha_bar: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and variance of q(x_{t-1} | x_t, x0) (Ho et al. 2020, eq. 6-7).

    mean = sqrt(alpha_bar[t-1]) beta_t / (1 - alpha_bar[t]) x0 + sqrt(alpha_t) (1 - alpha_bar[t-1]) / (1 - alpha_bar[t]) x_t,
    variance = beta_tilde[t] = (1 - alpha_bar[t-1]) / (1 - alpha_bar[t]) beta_t.
    Returns (mean with x0's shape, variance of shape (B,)).
    """
    ab = gather(alpha_bar, t, x0)
    ab_prev = gather(alpha_bar_prev(alpha_bar), t, x0)
    beta = gather(betas, t, x0)
    coef_x0 = ab_prev.sqrt() * beta / (1 - ab)
    coef_xt = (1 - beta).sqrt() * (1 - ab_prev) / (1 - ab)
    mean = coef_x0 * x0 + coef_xt * xt
    variance = posterior_variance(betas, alpha_bar).to(t.device)[t]  # (B,)
    return mean, variance


def predict_x0(xt: torch.Tensor, t: torch.Tensor, eps: torch.Tensor, alpha_bar: torch.Tensor) -> torch.Tensor:
    """Invert q_sample for x0 given the noise (Ho et al. 2020, eq. 4 solved for x0):
    x0 = (x_t - sqrt(1 - alpha_bar[t]) eps) / sqrt(alpha_bar[t])."""
    ab = gather(alpha_bar, t, xt)
    return (xt - (1 - ab).sqrt() * eps) / ab.sqrt()


def ddpm_loss(model, x0: torch.Tensor, t: torch.Tensor, eps: torch.Tensor, alpha_bar: torch.Tensor) -> torch.Tensor:
    """The simple loss (Ho et al. 2020, eq. 14, Algorithm 1): mean over all elements of
    (eps - model(x_t, t))^2 with x_t = q_sample(x0, t, eps). A scalar."""
    xt = q_sample(x0, t, eps, alpha_bar)
    return F.mse_loss(model(xt, t), eps)


def p_mean_from_eps(xt: torch.Tensor, t: torch.Tensor, eps: torch.Tensor, betas: torch.Tensor,
                    alpha_bar: torch.Tensor) -> torch.Tensor:
    """Mean of p(x_{t-1} | x_t) from predicted noise (Ho et al. 2020, eq. 11):
    mu = (x_t - beta_t / sqrt(1 - alpha_bar[t]) eps) / sqrt(alpha_t)."""
    ab = gather(alpha_bar, t, xt)
    beta = gather(betas, t, xt)
    return (xt - beta / (1 - ab).sqrt() * eps) / (1 - beta).sqrt()


def p_variance(t: torch.Tensor, betas: torch.Tensor, alpha_bar: torch.Tensor, variance: str = "beta") -> torch.Tensor:
    """Reverse-step variance sigma_t^2 of shape (B,): beta_t ("beta", the upper bound of Ho et al.)
    or beta_tilde_t ("tilde", the lower bound); both are discussed in Ho et al. 2020, Sec. 3.2."""
    if variance == "beta":
        return betas.to(t.device)[t]
    if variance == "tilde":
        return posterior_variance(betas, alpha_bar).to(t.device)[t]
    raise ValueError(f"variance must be 'beta' or 'tilde', got {variance!r}")


def p_sample_step(model, xt: torch.Tensor, t: torch.Tensor, z: torch.Tensor, betas: torch.Tensor,
                  alpha_bar: torch.Tensor, variance: str = "beta") -> torch.Tensor:
    """One ancestral step x_t -> x_{t-1} (Ho et al. 2020, Algorithm 2, line 4):
    x_{t-1} = mu_theta(x_t, t) + sigma_t z, with no noise where t == 0."""
    eps = model(xt, t)
    mean = p_mean_from_eps(xt, t, eps, betas, alpha_bar)
    sigma = append_dims(p_variance(t, betas, alpha_bar, variance).sqrt(), xt)  # (B, 1, ...)
    nonzero = append_dims((t > 0).to(xt.dtype), xt)  # (B, 1, ...)
    return mean + nonzero * sigma * z


@torch.no_grad()
def ddpm_sample(model, x_T: torch.Tensor, betas: torch.Tensor, alpha_bar: torch.Tensor,
                generator: torch.Generator | None = None, variance: str = "beta") -> torch.Tensor:
    """Ancestral sampling from x_T through t = T-1, ..., 0 (Ho et al. 2020, Algorithm 2); returns x_0's sample.

    The noise z of each step is drawn with ``generator`` on the generator's device and moved to
    x_T's device (``course.batching.randn_like``), so a seed gives the same samples on every device.
    """
    x = x_T
    T = betas.shape[0]
    for step in range(T - 1, -1, -1):
        t = time_batch(step, x, torch.long)  # (B,)
        z = randn_like(x, generator)
        x = p_sample_step(model, x, t, z, betas, alpha_bar, variance)
    return x


def learned_log_variance(v: torch.Tensor, t: torch.Tensor, betas: torch.Tensor, alpha_bar: torch.Tensor) -> torch.Tensor:
    """Interpolated log variance (Nichol & Dhariwal 2021, eq. 15): v log beta_t + (1 - v) log beta_tilde_t.

    v is the network's output in [0, 1] (any shape with batch first, typically x's shape); the
    result has v's shape. As in the improved-DDPM code, log beta_tilde at t = 0 (where
    beta_tilde = 0) is replaced by its value at t = 1, which keeps the log finite.
    """
    beta_tilde = posterior_variance(betas, alpha_bar)
    beta_tilde_clipped = torch.cat([beta_tilde[1:2], beta_tilde[1:]])  # (T,)
    log_beta = gather(betas.log(), t, v)
    log_beta_tilde = gather(beta_tilde_clipped.log(), t, v)
    return v * log_beta + (1 - v) * log_beta_tilde

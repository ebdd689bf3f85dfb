"""Denoising diffusion implicit models (notebook 04): Song, Meng & Ermon 2020, arXiv:2010.02502.

Time convention (as notebook 03, ``course.ddpm``): T discrete steps t = 0..T-1, t = T-1 the
noisiest; ``alpha_bar[t] = prod(1 - betas[:t+1])`` is a tensor (T,); x_t ~ N(sqrt(alpha_bar[t]) x0,
(1 - alpha_bar[t]) I). The step t = -1 stands for the clean data: alpha_bar_{-1} = 1. ``model(x, t)``
predicts eps, with t a LongTensor (B,). In this module t and t_prev are Python ints.

One DDIM step (eq. 12) from x_t to x_{t_prev}, with x0_hat = (x_t - sqrt(1 - alpha_bar_t) eps) / sqrt(alpha_bar_t):

    x_{t_prev} = sqrt(alpha_bar_prev) x0_hat + sqrt(1 - alpha_bar_prev - sigma^2) eps + sigma z,
    sigma = eta sqrt((1 - alpha_bar_prev) / (1 - alpha_bar_t)) sqrt(1 - alpha_bar_t / alpha_bar_prev)  (eq. 16).

Which settings give which sampler:
- eta = 1 on every step t -> t - 1: DDPM's ancestral sampler with variance beta_tilde;
- eta = 0: the deterministic DDIM sampler, Euler's method on the probability-flow ODE
  d x_bar / d s = eps(x_bar / sqrt(1 + s^2), t(s)) in x_bar = x / sqrt(alpha_bar), s = sqrt((1 - alpha_bar) / alpha_bar)
  (Song et al. 2020, eqs. 14-15);
- any sub-sequence of steps (``ddim_timesteps``) with the same trained model: fast sampling.

Everything walks through :func:`ddim_walk`, the one loop; run backwards with eta = 0 it encodes
data into noise (:func:`ddim_invert`). For Gaussian data the exact eps-predictor is linear, so
:func:`gaussian_ddim_moments` gives the sampler's output distribution in closed form.
"""
from __future__ import annotations

import torch

from course.batching import append_dims, randn_like, time_batch
from course.ddpm import predict_x0


def ddim_timesteps(T: int, n_steps: int) -> torch.Tensor:
    """The n_steps sampling steps T-1, ..., 0, evenly spaced and rounded: a LongTensor (n_steps,).

    The "linear" sub-sequence tau of Song et al. 2020 (section 4.2 and appendix D.2), made to
    start at T-1 and end at 0 so that the walk covers the whole noise range.
    """
    if not 2 <= n_steps <= T:
        raise ValueError(f"n_steps must be between 2 and T = {T}, got {n_steps}")
    return torch.linspace(T - 1, 0, n_steps, dtype=torch.float64).round().long()


def alpha_bar_at(alpha_bar: torch.Tensor, t: int) -> torch.Tensor:
    """alpha_bar[t] as a 0-dim tensor, and 1 for t = -1 (the clean data)."""
    t = int(t)
    return alpha_bar[t] if t >= 0 else torch.ones((), dtype=alpha_bar.dtype, device=alpha_bar.device)


def ddim_sigma(t: int, t_prev: int, alpha_bar: torch.Tensor, eta: float) -> torch.Tensor:
    """The noise scale of one step t -> t_prev (eq. 16): a 0-dim tensor; eta = 1 is DDPM's, 0 none."""
    ab_t, ab_prev = alpha_bar_at(alpha_bar, t), alpha_bar_at(alpha_bar, t_prev)
    variance = (1 - ab_prev) / (1 - ab_t) * (1 - ab_t / ab_prev)  # beta_tilde of the jump t -> t_prev
    return eta * variance.clamp(min=0).sqrt()


def ddim_step(eps: torch.Tensor, xt: torch.Tensor, t: int, t_prev: int, alpha_bar: torch.Tensor,
              eta: float, z: torch.Tensor | None) -> torch.Tensor:
    """One generalized DDIM step from x_t to x_{t_prev} (Song et al. 2020, eq. 12).

    ``eps`` is the model's prediction at (x_t, t); ``z`` standard normal noise with x_t's shape
    (unused, and may be None, when eta = 0). With eta = 0 and t_prev > t the same formula runs
    the deterministic map backwards (inversion).
    """
    ab_t, ab_prev = alpha_bar_at(alpha_bar, t), alpha_bar_at(alpha_bar, t_prev)
    sigma = ddim_sigma(t, t_prev, alpha_bar, eta)
    if t >= 0:
        t_batch = time_batch(int(t), xt, torch.long)  # (B,)
        x0 = predict_x0(xt, t_batch, eps, alpha_bar)
    else:  # alpha_bar = 1: x_t is already clean
        x0 = xt
    direction = (1 - ab_prev - sigma ** 2).clamp(min=0).sqrt() * eps  # "direction pointing to x_t"
    x_prev = ab_prev.sqrt() * x0 + direction
    if z is not None and float(sigma) > 0:
        x_prev = x_prev + sigma * z
    return x_prev


def ddim_walk(model, x: torch.Tensor, path: list[int], alpha_bar: torch.Tensor, eta: float = 0.0,
              generator: torch.Generator | None = None) -> torch.Tensor:
    """The one loop: a ddim_step between each pair of consecutive steps of ``path`` (ints, -1 = data).

    The model is evaluated at the current point with the label of the noisier end of the step,
    max(t_from, t_to): the current step when sampling (descending), the target step when
    inverting (ascending; the model cannot be asked about t = -1). One z is drawn per step from
    ``generator`` (on the generator's own device, then moved to x's) when eta > 0.
    """
    with torch.no_grad():
        for t_from, t_to in zip(path[:-1], path[1:]):
            t_model = time_batch(max(t_from, t_to), x, torch.long)  # (B,)
            eps = model(x, t_model)
            z = randn_like(x, generator) if eta > 0 else None
            x = ddim_step(eps, x, t_from, t_to, alpha_bar, eta, z)
    return x


def ddim_sample(model, x_T: torch.Tensor, timesteps, alpha_bar: torch.Tensor, eta: float = 0.0,
                generator: torch.Generator | None = None) -> torch.Tensor:
    """Sample from noise x_T along the descending ``timesteps``, ending at the data (Algorithm: eq. 12)."""
    path = [int(t) for t in timesteps] + [-1]
    return ddim_walk(model, x_T, path, alpha_bar, eta, generator)


def ddim_invert(model, x0: torch.Tensor, timesteps, alpha_bar: torch.Tensor) -> torch.Tensor:
    """Encode data x0 to x_T by running the eta = 0 walk backwards (Song et al. 2020, section 5.4)."""
    path = [-1] + [int(t) for t in reversed(list(timesteps))]
    return ddim_walk(model, x0, path, alpha_bar, eta=0.0)


def slerp(z0: torch.Tensor, z1: torch.Tensor, alpha: float) -> torch.Tensor:
    """Spherical interpolation, row by row (Shoemake 1985; used for DDIM latents, section 5.3).

    slerp = sin((1 - alpha) theta) / sin(theta) z0 + sin(alpha theta) / sin(theta) z1, with theta
    the angle between the rows of z0 and z1 (all dimensions after the first flattened). Nearly
    parallel rows fall back to linear interpolation.
    """
    a, b = z0.flatten(1), z1.flatten(1)  # (N, D)
    cos_theta = (a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1))  # (N,)
    theta = torch.arccos(cos_theta.clamp(-1, 1))
    sin_theta = torch.sin(theta)
    safe = sin_theta > 1e-6
    w0 = torch.where(safe, torch.sin((1 - alpha) * theta) / sin_theta.where(safe, 1.0), 1 - alpha * torch.ones_like(theta))
    w1 = torch.where(safe, torch.sin(alpha * theta) / sin_theta.where(safe, 1.0), alpha * torch.ones_like(theta))
    return append_dims(w0, z0) * z0 + append_dims(w1, z0) * z1  # weights (N, 1, ...) over each row


def gaussian_ddim_moments(m: torch.Tensor, C: torch.Tensor, timesteps, alpha_bar: torch.Tensor, eta: float,
                          mean_T: torch.Tensor | None = None, cov_T: torch.Tensor | None = None,
                          sigma_fn=None):
    """Exact mean and covariance of ``ddim_sample`` driven by the exact eps-predictor of data N(m, C).

    That predictor is linear, eps*(x) = E_t (x - sqrt(ab_t) m) with E_t = sqrt(1 - ab_t) Sigma_t^{-1},
    Sigma_t = ab_t C + (1 - ab_t) I (``course.oracles.gaussian_eps``), so each step of eq. 12 is affine
    plus Gaussian noise: x_prev = A x + b + sigma z with
    A = sqrt(ab_prev / ab_t) I + k E_t,  b = -k sqrt(ab_t) E_t m,
    k = sqrt(1 - ab_prev - sigma^2) - sqrt(ab_prev (1 - ab_t) / ab_t).
    Propagates (mean, cov) from x_T ~ N(mean_T, cov_T) (default N(0, I)); float64 (d,), (d, d).
    ``sigma_fn(t, t_prev, alpha_bar, eta)`` gives each step's sigma (default :func:`ddim_sigma`; a notebook
    passes the learner's own, so this also runs where the library's is an exercise stub).
    With few steps the covariance comes out smaller than C: coarse deterministic steps shrink it.
    """
    m, C = m.double(), C.double()
    d = m.shape[0]
    eye = torch.eye(d, dtype=torch.float64)
    alpha_bar = alpha_bar.double()
    mean = torch.zeros(d, dtype=torch.float64) if mean_T is None else mean_T.double()
    cov = eye.clone() if cov_T is None else cov_T.double()
    path = [int(t) for t in timesteps] + [-1]
    for t, t_prev in zip(path[:-1], path[1:]):
        ab_t, ab_prev = alpha_bar_at(alpha_bar, t), alpha_bar_at(alpha_bar, t_prev)
        sigma = torch.as_tensor((sigma_fn or ddim_sigma)(t, t_prev, alpha_bar, eta), dtype=torch.float64)
        E = (1 - ab_t).sqrt() * torch.linalg.inv(ab_t * C + (1 - ab_t) * eye)  # (d, d)
        k = (1 - ab_prev - sigma ** 2).clamp(min=0).sqrt() - (ab_prev * (1 - ab_t) / ab_t).sqrt()
        A = (ab_prev / ab_t).sqrt() * eye + k * E
        b = -k * ab_t.sqrt() * (E @ m)
        mean = A @ mean + b
        cov = A @ cov @ A.T + sigma ** 2 * eye
    return mean, cov

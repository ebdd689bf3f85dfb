"""Closed-form oracles for discrete-time diffusion (notebook 03; reused by 04 and the graders).

When the data distribution is known exactly (a Gaussian N(m, C), a Gaussian mixture, or a
finite set of points), the best possible noise predictor is known too, so samplers can be
judged without training anything (the idea behind smalldiffusion's ``IdealDenoiser``).

Time convention (see ``course.schedules``): steps t = 0..T-1, x_t = sqrt(alpha_bar[t]) x0 +
sqrt(1 - alpha_bar[t]) eps. By Tweedie's formula the minimiser of the simple loss is
eps*(x_t, t) = E[eps | x_t] = -sqrt(1 - alpha_bar[t]) grad log p_t(x_t) (Ho et al. 2020, Sec. 3.2;
Song et al. 2021, eq. 4 in the VP case). Every oracle here is a callable ``model(x, t)`` with t a
LongTensor (B,), like a trained network.
"""
from __future__ import annotations

import torch

from course.batching import append_dims
from course.gmm import noised_gmm_log_prob_and_score
from course.schedules import alphas_from_betas
from course.score import score_to_eps


def score_to_eps_vp(score: torch.Tensor, alpha_bar_t: torch.Tensor) -> torch.Tensor:
    """eps = -sqrt(1 - alpha_bar_t) score on the discrete VP schedule; alpha_bar_t (B,), score (B, ...).

    ``course.score.score_to_eps`` with std = sqrt(1 - alpha_bar_t)."""
    return score_to_eps(score, (1 - alpha_bar_t).sqrt())


def gaussian_eps(x: torch.Tensor, t: torch.Tensor, m: torch.Tensor, C: torch.Tensor,
                 alpha_bar: torch.Tensor) -> torch.Tensor:
    """Exact eps-predictor for data N(m, C) in d dimensions: (B, d).

    x_t ~ N(sqrt(ab) m, Sigma_t), Sigma_t = ab C + (1 - ab) I, so
    eps*(x_t) = sqrt(1 - ab) Sigma_t^{-1} (x_t - sqrt(ab) m). With C = Q diag(lam) Q^T,
    Sigma_t^{-1} = Q diag(1 / (ab lam + 1 - ab)) Q^T: matrix products only, fast in a sampler loop.
    """
    lam, Q = torch.linalg.eigh(C.double())
    lam, Q = lam.to(x), Q.to(x)  # (d,), (d, d)
    ab = append_dims(alpha_bar.to(x.device, x.dtype)[t], x)  # (B, 1)
    diff = x - ab.sqrt() * m.to(x)  # (B, d)
    solved = ((diff @ Q) / (ab * lam + 1 - ab)) @ Q.T  # (B, d)
    return (1 - ab).sqrt() * solved


def gmm_eps(x: torch.Tensor, t: torch.Tensor, means: torch.Tensor, stds: torch.Tensor,
            weights: torch.Tensor, alpha_bar: torch.Tensor) -> torch.Tensor:
    """Exact eps-predictor for an isotropic Gaussian mixture (stds may be 0: a finite point set): (B, d).

    Uses ``course.gmm.noised_gmm_log_prob_and_score`` with mean_coef sqrt(ab), std sqrt(1 - ab).
    """
    ab = alpha_bar.to(x.device, x.dtype)[t]  # (B,)
    _, score = noised_gmm_log_prob_and_score(x, ab.sqrt(), (1 - ab).sqrt(), means.to(x), stds.to(x), weights.to(x))
    return score_to_eps_vp(score, ab)


def gaussian_eps_model(m, C, alpha_bar):
    """``model(x, t)``: the exact eps-predictor of data N(m, C) (see ``gaussian_eps``)."""
    m, C, alpha_bar = (torch.as_tensor(v, dtype=torch.float32) for v in (m, C, alpha_bar))
    return lambda x, t: gaussian_eps(x, t, m, C, alpha_bar)


def gmm_eps_model(means, stds, weights, alpha_bar):
    """``model(x, t)``: the exact eps-predictor of an isotropic Gaussian mixture (see ``gmm_eps``)."""
    means, stds, weights, alpha_bar = (torch.as_tensor(v, dtype=torch.float32) for v in (means, stds, weights, alpha_bar))
    return lambda x, t: gmm_eps(x, t, means, stds, weights, alpha_bar)


def ideal_eps_model(data: torch.Tensor, alpha_bar: torch.Tensor):
    """``model(x, t)``: the exact eps-predictor of the empirical distribution of ``data`` (N, ...).

    The optimum of the simple loss on a finite training set: it can only reproduce training
    points (memorisation). Works for images: inputs are flattened to (B, D) and reshaped back.
    """
    flat = data.reshape(data.shape[0], -1).float()  # (N, D)
    n = flat.shape[0]
    stds, weights = torch.zeros(n), torch.full((n,), 1.0 / n)

    def model(x, t):
        eps = gmm_eps(x.reshape(x.shape[0], -1), t, flat, stds, weights, alpha_bar)  # (B, D)
        return eps.reshape(x.shape)

    return model


def gaussian_chain_moments(m: torch.Tensor, C: torch.Tensor, betas: torch.Tensor, alpha_bar: torch.Tensor,
                           sigma2: torch.Tensor, mean_T: torch.Tensor | None = None,
                           cov_T: torch.Tensor | None = None, last_step: int = 0):
    """Exact mean and covariance of DDPM ancestral sampling driven by the Gaussian oracle.

    With eps* linear in x_t, each step x_{t-1} = mu(x_t) + sigma_t z is affine plus Gaussian noise:
    mu(x) = (x - beta_t / sqrt(1 - ab_t) eps*(x)) / sqrt(alpha_t) = A_t x + b_t with
    A_t = (I - beta_t Sigma_t^{-1}) / sqrt(alpha_t), b_t = beta_t Sigma_t^{-1} sqrt(ab_t) m / sqrt(alpha_t).
    So the output is exactly Gaussian; propagate (mean, cov) from x_T ~ N(mean_T, cov_T) (default
    N(0, I)) through steps t = T-1, ..., last_step, adding ``sigma2[t]`` I at each. ``sigma2`` of
    shape (T,) is the variance the sampler adds (the correct samplers have sigma2[0] = 0).
    Returns (mean (d,), cov (d, d)) in float64. As T grows they approach (m, C).
    """
    m, C = m.double(), C.double()
    d = m.shape[0]
    eye = torch.eye(d, dtype=torch.float64)
    mean = torch.zeros(d, dtype=torch.float64) if mean_T is None else mean_T.double()
    cov = eye.clone() if cov_T is None else cov_T.double()
    betas, alpha_bar, sigma2 = betas.double(), alpha_bar.double(), sigma2.double()
    alphas = alphas_from_betas(betas)
    for t in range(betas.shape[0] - 1, last_step - 1, -1):
        sigma_inv = torch.linalg.inv(alpha_bar[t] * C + (1 - alpha_bar[t]) * eye)
        A = (eye - betas[t] * sigma_inv) / alphas[t].sqrt()
        b = betas[t] * sigma_inv @ (alpha_bar[t].sqrt() * m) / alphas[t].sqrt()
        mean = A @ mean + b
        cov = A @ cov @ A.T + sigma2[t] * eye
    return mean, cov

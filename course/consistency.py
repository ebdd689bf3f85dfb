"""Consistency models: one network that jumps from any point of the PF-ODE to its end (notebook 10).

Time convention (EDM, as notebook 09): x_sigma = x0 + sigma n, n ~ N(0, I); sigma runs from
sigma_max (noise) down to sigma_min = epsilon (data, up to a tiny blur). A denoiser ``D(x, sigma)``
and a consistency function ``f(x, sigma)`` both take sigma as a float tensor (B,) and return an
estimate of the clean x0 with x's shape.

The consistency function f maps every point x_sigma of one PF-ODE trajectory to the trajectory's
point at sigma_min (Song et al. 2023, eq. 3); f(x, sigma_min) = x is its boundary condition.

Discretisation: ``sigmas`` is **ascending**, sigmas[0] = sigma_min < ... < sigmas[N-1] = sigma_max
(Song et al.'s t_1 < ... < t_N, indexed from 0); a loss compares the model at sigmas[n + 1] with
the target at sigmas[n], n in {0, ..., N - 2}. ``cm_sigmas`` builds them from 09's Karras schedule.

References: Song, Dhariwal, Chen & Sutskever 2023, *Consistency Models* (arXiv:2303.01469);
Song & Dhariwal 2023, *Improved Techniques for Training Consistency Models* (arXiv:2310.14189);
Karras, Aittala, Aila & Laine 2022, *Elucidating the Design Space of Diffusion-Based Generative
Models* (EDM, arXiv:2206.00364).
"""
from __future__ import annotations

import math

import torch

from course.batching import append_dims, randn_like, time_batch
from course.edm import edm_precond, karras_sigmas
from course.samplers import heun_step

SIGMA_MIN = 0.002  # epsilon, Song et al. 2023 (and EDM's sigma_min)
SIGMA_MAX = 80.0  # T, Song et al. 2023 (and EDM's sigma_max)


# ---------------------------------------------------------------------------------------------
# The parameterisation (Song et al. 2023, eq. 7 and appendix C)
# ---------------------------------------------------------------------------------------------
def boundary_scalings(sigma: torch.Tensor, sigma_data: float, sigma_min: float):
    """c_skip and c_out of Song et al. 2023, appendix C: EDM's with sigma shifted by sigma_min,

        c_skip = sigma_data^2 / ((sigma - sigma_min)^2 + sigma_data^2),
        c_out  = (sigma - sigma_min) sigma_data / sqrt(sigma^2 + sigma_data^2),

    so that c_skip(sigma_min) = 1 and c_out(sigma_min) = 0 exactly. Each shaped like sigma."""
    c_skip = sigma_data ** 2 / ((sigma - sigma_min) ** 2 + sigma_data ** 2)
    c_out = (sigma - sigma_min) * sigma_data / (sigma ** 2 + sigma_data ** 2).sqrt()
    return c_skip, c_out


def consistency_fn(F, x: torch.Tensor, sigma: torch.Tensor, sigma_data: float, sigma_min: float) -> torch.Tensor:
    """f(x, sigma) = c_skip(sigma) x + c_out(sigma) F(c_in(sigma) x, c_noise(sigma)) (Song et al. 2023, eq. 7).

    c_skip and c_out from :func:`boundary_scalings`; the network's input scaling c_in and its noise
    input c_noise are EDM's (``course.edm.edm_precond``), as in Song et al.'s code. x (B, ...),
    sigma (B,)."""
    sigma = time_batch(sigma, x)
    c_skip, c_out = boundary_scalings(sigma, sigma_data, sigma_min)
    _, _, c_in, c_noise = edm_precond(sigma, sigma_data)
    return append_dims(c_skip, x) * x + append_dims(c_out, x) * F(append_dims(c_in, x) * x, c_noise)


# ---------------------------------------------------------------------------------------------
# The distance and the teacher
# ---------------------------------------------------------------------------------------------
def pseudo_huber(a: torch.Tensor, b: torch.Tensor, c: float) -> torch.Tensor:
    """sqrt(||a - b||^2 + c^2) - c per sample (Song & Dhariwal 2023, section 3.3): (B,).

    The squared Euclidean norm sums over every dimension after the first. Close to ||a - b||^2 / (2c)
    for small differences and to ||a - b|| for large ones; 0 when a = b."""
    sq = ((a - b) ** 2).flatten(1).sum(1)  # (B,)
    return (sq + c ** 2).sqrt() - c


def huber_c(x: torch.Tensor) -> float:
    """Song & Dhariwal 2023's pseudo-Huber constant c = 0.00054 sqrt(d), d = the elements of one sample."""
    return 0.00054 * math.sqrt(x[0].numel())


def teacher_step(D, x: torch.Tensor, sigma_from, sigma_to) -> torch.Tensor:
    """One Heun step of the PF-ODE dx/dsigma = (x - D(x, sigma)) / sigma from sigma_from to sigma_to > 0
    (EDM Algorithm 1, lines 4-8): the ODE solver Phi of consistency distillation (Song et al. 2023,
    Algorithm 2). sigma_from and sigma_to are floats, 0-dim or (B,): one pair of levels per sample.

    It *is* 09's ``course.samplers.heun_step`` (Heun is written once, there):
    d = f(x, s), x_E = x + (s' - s) d, x' = x + (s' - s) (d + f(x_E, s')) / 2."""
    return heun_step(D, x, sigma_from, sigma_to)


def cm_sigmas(n: int, sigma_min: float = SIGMA_MIN, sigma_max: float = SIGMA_MAX, rho: float = 7.0) -> torch.Tensor:
    """The N boundaries t_1 < ... < t_N of Song et al. 2023 (their eq. 5 is EDM's Karras schedule),
    **ascending** from sigma_min to sigma_max: shape (n,)."""
    return karras_sigmas(n, sigma_min, sigma_max, rho)[:-1].flip(0)


# ---------------------------------------------------------------------------------------------
# The two losses
# ---------------------------------------------------------------------------------------------
def _pair(sigmas: torch.Tensor, n: torch.Tensor, x0: torch.Tensor):
    """(sigma_n, sigma_{n+1}) per sample, on x0's device and dtype: two (B,) tensors."""
    sigmas = sigmas.to(device=x0.device, dtype=x0.dtype)
    n = n.to(x0.device)
    return sigmas[n], sigmas[n + 1]


def cd_loss(f_model, f_target, D_teacher, x0: torch.Tensor, sigmas: torch.Tensor, n: torch.Tensor,
            noise: torch.Tensor) -> torch.Tensor:
    """Consistency distillation (Song et al. 2023, Algorithm 2), lambda = 1, pseudo-Huber distance:

        x_{n+1} = x0 + sigma_{n+1} noise,   x_hat_n = Phi(x_{n+1}; sigma_{n+1} -> sigma_n)  (one Heun step),
        loss = mean_b d(f_model(x_{n+1}, sigma_{n+1}), stopgrad f_target(x_hat_n, sigma_n)).

    ``sigmas`` ascending (N,), ``n`` a LongTensor (B,) with values in 0..N-2, ``noise`` like x0."""
    sigma, sigma_next = _pair(sigmas, n, x0)
    x_next = x0 + append_dims(sigma_next, x0) * noise
    with torch.no_grad():
        x_hat = teacher_step(D_teacher, x_next, sigma_next, sigma)
        target = f_target(x_hat, sigma)
    return pseudo_huber(f_model(x_next, sigma_next), target, huber_c(x0)).mean()


def ct_loss(f_model, f_target, x0: torch.Tensor, sigmas: torch.Tensor, n: torch.Tensor,
            noise: torch.Tensor) -> torch.Tensor:
    """Consistency training without a teacher (Song et al. 2023, Algorithm 3), lambda = 1, pseudo-Huber:
    the two points share one noise draw, x_n = x0 + sigma_n noise and x_{n+1} = x0 + sigma_{n+1} noise,

        loss = mean_b d(f_model(x_{n+1}, sigma_{n+1}), stopgrad f_target(x_n, sigma_n)).

    The same x0 and noise stand in for the teacher's ODE step (an unbiased one-sample estimate of the
    score, Song et al. 2023, Theorem 2)."""
    sigma, sigma_next = _pair(sigmas, n, x0)
    with torch.no_grad():
        target = f_target(x0 + append_dims(sigma, x0) * noise, sigma)
    pred = f_model(x0 + append_dims(sigma_next, x0) * noise, sigma_next)
    return pseudo_huber(pred, target, huber_c(x0)).mean()


# ---------------------------------------------------------------------------------------------
# Sampling (Song et al. 2023, Algorithm 1)
# ---------------------------------------------------------------------------------------------
def consistency_sample(f_model, x_T: torch.Tensor, sigmas_multistep, generator: torch.Generator | None = None,
                       sigma_min: float = SIGMA_MIN) -> torch.Tensor:
    """Multistep consistency sampling (Song et al. 2023, Algorithm 1).

    ``x_T`` is noise at sigmas_multistep[0] = T (x_T = T z); ``sigmas_multistep`` descending
    [T, tau_1, ..., tau_{K-1}] (a Python list or a tensor). One evaluation x = f(x_T, T), then for each
    tau: x_tau = x + sqrt(tau^2 - sigma_min^2) z (z from ``generator``), x = f(x_tau, tau).
    K evaluations of f in all."""
    sigmas = [float(s) for s in sigmas_multistep]
    x = f_model(x_T, time_batch(sigmas[0], x_T))
    for tau in sigmas[1:]:
        x_tau = x + math.sqrt(max(tau ** 2 - sigma_min ** 2, 0.0)) * randn_like(x, generator)
        x = f_model(x_tau, time_batch(tau, x))
    return x


# ---------------------------------------------------------------------------------------------
# Improved consistency training (Song & Dhariwal 2023): the schedules of N and of n
# ---------------------------------------------------------------------------------------------
def ict_n_scales(step: int, total_steps: int, s0: int = 10, s1: int = 1280) -> int:
    """The number of boundaries N(k) at training step k (Song & Dhariwal 2023, eq. 8, exponential
    curriculum): min(s0 2^floor(k / K'), s1) + 1 with K' = floor(K / (log2(s1 / s0) + 1))."""
    k_prime = max(1, math.floor(total_steps / (math.log2(s1 / s0) + 1)))
    return min(s0 * 2 ** (step // k_prime), s1) + 1


def ict_index_probs(sigmas: torch.Tensor, p_mean: float = -1.1, p_std: float = 2.0) -> torch.Tensor:
    """p(n) for n = 0..N-2 (Song & Dhariwal 2023, eq. 10): the mass that log sigma ~ N(p_mean, p_std^2)
    puts on [sigma_n, sigma_{n+1}], normalised; ``sigmas`` ascending (N,). Shape (N - 1,)."""
    cdf = 0.5 * (1 + torch.erf((sigmas.double().log() - p_mean) / (math.sqrt(2) * p_std)))
    p = cdf[1:] - cdf[:-1]
    return (p / p.sum()).to(sigmas.dtype)


def ict_weights(sigmas: torch.Tensor) -> torch.Tensor:
    """lambda(sigma_n) = 1 / (sigma_{n+1} - sigma_n) (Song & Dhariwal 2023, section 3.1): (N - 1,)."""
    return 1.0 / (sigmas[1:] - sigmas[:-1])

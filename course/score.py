"""Score matching and Langevin dynamics (notebook 05).

The score of a density is s(x) = grad_x log p(x). Denoising score matching (Vincent 2011) learns the
score of the data perturbed by Gaussian noise of scale sigma, x = x0 + sigma noise; Langevin
dynamics samples from p with the score alone; annealed Langevin runs it over decreasing noise
levels (Song & Ermon 2019, "Generative Modeling by Estimating Gradients of the Data Distribution",
NCSN, arXiv:1907.05600). ``score_model(x, sigma)`` takes sigma of shape (B,).

Conversions between parametrisations, for x_t = mean_coef x0 + std eps:
    score = -eps / std,    eps = -std score.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from course.batching import append_dims, randn_like, time_batch
from course.gmm import noised_gmm_log_prob_and_score


def dsm_loss(score_model, x0: torch.Tensor, sigma: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """Denoising score matching with the sigma^2 weighting (Song & Ermon 2019, eq. 2 and 6):

        mean of (sigma s(x0 + sigma noise, sigma) + noise)^2,

    since the target score of the perturbation kernel is -noise / sigma. A scalar.
    """
    sigma_b = append_dims(sigma, x0)  # (B, 1, ...)
    xt = x0 + sigma_b * noise
    return ((sigma_b * score_model(xt, sigma) + noise) ** 2).mean()


def langevin_step(score_fn, x: torch.Tensor, step_size, z: torch.Tensor) -> torch.Tensor:
    """One step of (unadjusted) Langevin dynamics: x + step_size score(x) + sqrt(2 step_size) z
    (Song & Ermon 2019, eq. 4). ``score_fn(x)`` takes x only; ``step_size`` a float or 0-dim tensor."""
    step_size = torch.as_tensor(step_size, dtype=x.dtype, device=x.device)
    return x + step_size * score_fn(x) + torch.sqrt(2 * step_size) * z


def langevin_sample(score_fn, x: torch.Tensor, step_size: float, n_steps: int,
                    generator: torch.Generator | None = None) -> torch.Tensor:
    """Run ``n_steps`` Langevin steps with a fixed step size from x; return the end points."""
    for _ in range(n_steps):
        x = langevin_step(score_fn, x, step_size, randn_like(x, generator))
    return x


def geometric_sigmas(sigma_max: float, sigma_min: float, n: int) -> torch.Tensor:
    """The NCSN noise levels sigma_1 > ... > sigma_n, a geometric sequence (n,)."""
    return torch.exp(torch.linspace(math.log(sigma_max), math.log(sigma_min), n))


def annealed_langevin(score_fn, x: torch.Tensor, sigmas: torch.Tensor, n_steps_each: int, step_lr: float,
                      generator: torch.Generator | None = None) -> torch.Tensor:
    """Annealed Langevin dynamics (Song & Ermon 2019, Algorithm 1): for each sigma_i, from the largest,
    ``n_steps_each`` Langevin steps with step size step_lr sigma_i^2 / sigma_L^2, using the score of
    the data perturbed at sigma_i; ``score_fn(x, sigma)`` takes sigma of shape (B,)."""
    for sigma in sigmas:
        step_size = step_lr * (sigma / sigmas[-1]) ** 2
        sigma_b = time_batch(sigma, x)  # (B,)
        x = langevin_sample(lambda y: score_fn(y, sigma_b), x, float(step_size), n_steps_each, generator)
    return x


def eps_to_score(eps: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """score = -eps / std for x_t = mean_coef x0 + std eps; ``std`` a scalar or (B,)."""
    return -eps / append_dims(std, eps)


def score_to_eps(score: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """eps = -std score, the inverse of :func:`eps_to_score` (std a scalar or (B,)).

    For the discrete DDPM schedule, where std = sqrt(1 - alpha_bar[t]), see
    ``course.oracles.score_to_eps_vp``."""
    return -append_dims(std, score) * score


def perturbed_gmm_score_fn(means, stds, weights):
    """score_fn(x, sigma): the exact score of a mixture perturbed by N(0, sigma^2 I), sigma (B,)."""
    def score_fn(x, sigma):
        sigma = time_batch(sigma, x)  # (B,)
        return noised_gmm_log_prob_and_score(x, torch.ones_like(sigma), sigma, means, stds, weights)[1]
    return score_fn


class NoiseConditionalScore(nn.Module):
    """s(x, sigma) = net(x, c(sigma)) / sigma, c = log-sigma mapped to [0, 1] (NCSNv2's output scaling).

    ``net`` is a time-conditioned network such as ``course.nets.TimeMLP(time_scale=1000)``.
    """

    def __init__(self, net: nn.Module, sigma_min: float, sigma_max: float):
        super().__init__()
        self.net = net
        self.log_min, self.log_max = math.log(sigma_min), math.log(sigma_max)

    def forward(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        sigma = time_batch(sigma, x)  # (B,)
        c = (torch.log(sigma) - self.log_min) / (self.log_max - self.log_min)  # (B,) in [0, 1]
        return self.net(x, c) / append_dims(sigma, x)

"""Isotropic Gaussian mixtures with known parameters: exact densities and scores.

p(x) = sum_k w_k N(x; mu_k, s_k^2 I), with means (K, d), stds (K,), weights (K,) summing to 1.
Exact quantities let tests and experiments judge samplers without a trained model.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch


def gmm_component_log_probs(x: torch.Tensor, means: torch.Tensor, stds: torch.Tensor,
                            weights: torch.Tensor) -> torch.Tensor:
    """log w_k + log N(x; mu_k, s_k^2 I) for every sample and component: (N, K)."""
    d = x.shape[-1]
    sq_dist = ((x[:, None, :] - means[None, :, :]) ** 2).sum(-1)  # (N, K)
    var = stds ** 2  # (K,)
    log_norm = -0.5 * d * torch.log(2 * math.pi * var)  # (K,)
    return torch.log(weights) + log_norm - 0.5 * sq_dist / var


def gmm_log_prob(x, means, stds, weights) -> torch.Tensor:
    """log p(x) by logsumexp over components: (N,)."""
    return torch.logsumexp(gmm_component_log_probs(x, means, stds, weights), dim=1)


def gmm_score(x, means, stds, weights) -> torch.Tensor:
    """grad_x log p(x) = sum_k r_k(x) (mu_k - x) / s_k^2, r the responsibilities: (N, d)."""
    resp = torch.softmax(gmm_component_log_probs(x, means, stds, weights), dim=1)  # (N, K)
    per_comp = (means[None, :, :] - x[:, None, :]) / (stds ** 2)[None, :, None]  # (N, K, d)
    return (resp[:, :, None] * per_comp).sum(1)


def noised_gmm_log_prob_and_score(x: torch.Tensor, mean_coef: torch.Tensor, std: torch.Tensor,
                                  means: torch.Tensor, stds: torch.Tensor, weights: torch.Tensor):
    """Exact log density and score of x_t = a x0 + s z, x0 ~ mixture, z ~ N(0, I), per sample.

    Every forward process of the course is of this form: DDPM (a = sqrt(alpha_bar_t),
    s = sqrt(1 - alpha_bar_t)), the VP SDE of 05 (its marginal), the linear path of 06
    (a = t, s = 1 - t). The noised mixture is again a mixture, with means a mu_k and variances
    a^2 s_k^2 + s^2. ``mean_coef`` and ``std`` have shape (B,), one pair per sample of x (B, d).
    Returns (log_prob (B,), score (B, d)).
    """
    d = x.shape[-1]
    a, s = mean_coef.reshape(-1, 1), std.reshape(-1, 1)  # (B, 1)
    mu = a[:, :, None] * means[None]  # (B, K, d)
    var = a ** 2 * stds[None] ** 2 + s ** 2  # (B, K)
    diff = x[:, None, :] - mu  # (B, K, d)
    comp = torch.log(weights)[None] - 0.5 * d * torch.log(2 * math.pi * var) - 0.5 * (diff ** 2).sum(-1) / var
    log_prob = torch.logsumexp(comp, dim=1)  # (B,)
    resp = torch.softmax(comp, dim=1)  # (B, K)
    score = -(resp[:, :, None] * diff / var[:, :, None]).sum(1)  # (B, d)
    return log_prob, score


@dataclass
class GaussianMixture:
    """A mixture that knows its parameters, so its density and score are exact."""

    means: torch.Tensor  # (K, d)
    stds: torch.Tensor  # (K,)
    weights: torch.Tensor  # (K,)

    @property
    def dim(self) -> int:
        return self.means.shape[1]

    def sample(self, n: int, generator: torch.Generator | None = None, return_labels: bool = False):
        k = torch.multinomial(self.weights, n, replacement=True, generator=generator)  # (n,)
        noise = torch.randn(n, self.dim, generator=generator)
        x = self.means[k] + self.stds[k, None] * noise
        return (x, k) if return_labels else x

    # The noise-free case (a = 1, s = 0) of the general formula, not 05's exercises gmm_log_prob and
    # gmm_score: those are stubbed in a bundle released before 05, while this class is used from 02 on.
    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        return self.noised(x, 1.0, 0.0)[0]

    def score(self, x: torch.Tensor) -> torch.Tensor:
        return self.noised(x, 1.0, 0.0)[1]

    def noised(self, x: torch.Tensor, mean_coef, std):
        """(log_prob, score) of a x0 + s z at x; a and s floats or (B,) tensors."""
        b = x.shape[0]
        a = torch.as_tensor(mean_coef, dtype=x.dtype).expand(b) if torch.as_tensor(mean_coef).dim() == 0 else mean_coef
        s = torch.as_tensor(std, dtype=x.dtype).expand(b) if torch.as_tensor(std).dim() == 0 else std
        return noised_gmm_log_prob_and_score(x, a, s, self.means, self.stds, self.weights)

    def entropy_mc(self, n: int = 200_000, generator: torch.Generator | None = None) -> float:
        """H = -E log p(x), Monte Carlo with n samples (no closed form for mixtures)."""
        return float(-self.log_prob(self.sample(n, generator)).mean())

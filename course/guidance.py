"""Conditional generation and guidance: classifier-free guidance (CFG) and classifier guidance.

Time convention: the DDPM one of notebook 03. Steps t = 0..T-1 (t = 0 is nearly clean data),
``alpha_bar[t]`` the cumulative product, x_t = sqrt(alpha_bar[t]) x0 + sqrt(1 - alpha_bar[t]) eps.
A conditional noise predictor is called as ``model(x, t, y)`` with t a LongTensor (B,) and y a
LongTensor (B,) of labels; ``model(x, t)`` (y = None), or the label ``null_label = n_classes``,
asks for the *unconditional* prediction, as in ``course.nets.TimeMLP``.

``cfg_combine`` and ``classifier_guided_score`` are pure arithmetic and hold for eps, scores and
velocities alike. ``ClassConditionalMixture`` is an exact oracle (a Gaussian mixture whose
components carry class labels), so guided samplers can be tested without training.

References: Ho & Salimans 2022, *Classifier-Free Diffusion Guidance* (arXiv:2207.12598);
Dhariwal & Nichol 2021, *Diffusion Models Beat GANs on Image Synthesis* (arXiv:2105.05233).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from course.batching import time_batch
from course.ddim import ddim_sample
from course.gmm import GaussianMixture, noised_gmm_log_prob_and_score
from course.oracles import score_to_eps_vp


def drop_labels(y: torch.Tensor, p_uncond: float, null_label: int,
                generator: torch.Generator | None = None) -> torch.Tensor:
    """Replace each label by ``null_label`` independently with probability ``p_uncond``.

    Ho & Salimans 2022, Algorithm 1 (c <- empty with probability p_uncond): one network learns
    both the conditional and the unconditional model. Returns a new LongTensor; y is unchanged.
    """
    drop = torch.rand(y.shape, generator=generator) < p_uncond  # (B,) bool, P(True) = p_uncond
    return torch.where(drop.to(y.device), torch.full_like(y, null_label), y)


def cfg_combine(pred_cond: torch.Tensor, pred_uncond: torch.Tensor, w: float) -> torch.Tensor:
    """(1 + w) pred_cond - w pred_uncond: Ho & Salimans 2022, eq. 6 (w = 0 is plain conditional).

    Linear, so it holds for eps, scores and velocities alike.
    """
    return (1 + w) * pred_cond - w * pred_uncond


def guided_eps_model(model, y: torch.Tensor, w: float):
    """The guided noise predictor eps~(x, t) = cfg_combine(model(x, t, y), model(x, t), w)."""

    def eps_guided(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return cfg_combine(model(x, t, y), model(x, t), w)

    return eps_guided


def guided_sample(model, x_T: torch.Tensor, y: torch.Tensor, w: float, timesteps, alpha_bar: torch.Tensor):
    """Deterministic DDIM (eta = 0) with classifier-free guidance: Ho & Salimans 2022, Algorithm 2.

    The loop is DDIM's (``course.ddim.ddim_sample``) run on the guided eps; ``timesteps`` is the
    descending sequence of ``ddim_timesteps``. Returns x_0 with x_T's shape (no gradients kept).
    """
    return ddim_sample(guided_eps_model(model, y, w), x_T, timesteps, alpha_bar, eta=0.0)


def classifier_guided_score(score: torch.Tensor, grad_log_p_y: torch.Tensor, scale: float) -> torch.Tensor:
    """grad log p(x) + scale * grad log p(y | x): Dhariwal & Nichol 2021, Algorithm 1 / eq. 10.

    With the exact classifier, scale = 1 + w gives the CFG combination of weight w.
    """
    return score + scale * grad_log_p_y


# ---------------------------------------------------------------------------------------------
# An exact oracle: a Gaussian mixture whose components carry class labels
# ---------------------------------------------------------------------------------------------
@dataclass
class ClassConditionalMixture:
    """p(x) = sum_k w_k N(mu_k, s_k^2 I), component k of class ``labels[k]``.

    p(x | y = c) is the mixture of class c's components (weights renormalised), so every noised
    conditional and unconditional score, and the noised classifier p(y | x_t), is exact.
    """

    means: torch.Tensor  # (K, d)
    stds: torch.Tensor  # (K,)
    weights: torch.Tensor  # (K,), summing to 1
    labels: torch.Tensor  # (K,) long, in 0..n_classes-1

    @property
    def n_classes(self) -> int:
        return int(self.labels.max()) + 1

    @property
    def mixture(self) -> GaussianMixture:
        return GaussianMixture(self.means, self.stds, self.weights)

    def class_mixture(self, c: int) -> GaussianMixture:
        keep = self.labels == c
        return GaussianMixture(self.means[keep], self.stds[keep], self.weights[keep] / self.weights[keep].sum())

    def sample(self, n: int, generator: torch.Generator | None = None):
        """(x (n, d), y (n,)): points and the class of the component each came from."""
        x, k = self.mixture.sample(n, generator, return_labels=True)
        return x, self.labels[k]

    def noised_log_prob_and_score(self, x: torch.Tensor, mean_coef: torch.Tensor, std: torch.Tensor,
                                  y: torch.Tensor | None = None):
        """(log p_t(x | y), grad log p_t(x | y)) of x_t = a x0 + s z, per sample: ((B,), (B, d)).

        ``y`` None, or entries equal to ``n_classes`` (the null label), give the unconditional ones.
        """
        mix = self.mixture
        log_p, score = noised_gmm_log_prob_and_score(x, mean_coef, std, mix.means, mix.stds, mix.weights)
        if y is None:
            return log_p, score
        log_p, score = log_p.clone(), score.clone()
        for c in range(self.n_classes):
            rows = y == c
            if rows.any():
                m = self.class_mixture(c)
                log_p[rows], score[rows] = noised_gmm_log_prob_and_score(
                    x[rows], mean_coef[rows], std[rows], m.means, m.stds, m.weights)
        return log_p, score

    def class_prior(self) -> torch.Tensor:
        """p(y = c) = sum of class c's component weights: (n_classes,)."""
        return torch.zeros(self.n_classes, dtype=self.weights.dtype).index_add_(0, self.labels, self.weights)

    def grad_log_p_y(self, x: torch.Tensor, mean_coef: torch.Tensor, std: torch.Tensor, y: torch.Tensor):
        """grad_x log p_t(y | x) = grad log p_t(x | y) - grad log p_t(x) (Bayes; the prior drops out)."""
        _, score_cond = self.noised_log_prob_and_score(x, mean_coef, std, y)
        _, score_uncond = self.noised_log_prob_and_score(x, mean_coef, std)
        return score_cond - score_uncond

    def eps_model(self, alpha_bar: torch.Tensor):
        """The exact noise predictor E[eps | x_t, y] = -sqrt(1 - alpha_bar[t]) grad log p_t(x_t | y).

        Called as ``model(x, t, y=None)`` with t a LongTensor (B,), like a trained ``TimeMLP``.
        """

        def model(x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
            t = time_batch(t, x, torch.long)  # (B,)
            ab = alpha_bar.to(x.device)[t].to(x.dtype)  # (B,)
            _, score = self.noised_log_prob_and_score(x, ab.sqrt(), (1 - ab).sqrt(), y)
            return score_to_eps_vp(score, ab)

        model.n_classes = self.n_classes  # as TimeMLP: the null label is n_classes
        return model


def ring_of_classes(n_classes: int = 3, per_class: int = 2, radius: float = 2.0,
                    std: float = 0.7) -> ClassConditionalMixture:
    """n_classes * per_class equal components on a circle, labels 0, 1, .., n_classes - 1 in turn.

    Neighbouring components belong to different classes and overlap, so the classes do too.
    """
    k = n_classes * per_class
    angles = torch.arange(k, dtype=torch.float32) * (2 * torch.pi / k)  # (K,)
    means = radius * torch.stack([torch.cos(angles), torch.sin(angles)], 1)  # (K, 2)
    return ClassConditionalMixture(means, torch.full((k,), std), torch.full((k,), 1 / k),
                                   torch.arange(k) % n_classes)

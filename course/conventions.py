"""The conventions card in code: the converters between this course's symbols and those of the papers
and libraries a learner meets next (Song et al.'s SDEs, SD3, diffusers, k-diffusion / EDM).

Each converter is one line of math; the card itself (``docs/CONVENTIONS.md``) says which notebook uses
which convention and names the converters that already live with their notebook's code
(``course.velocity.flow_time_to_sde_time``, ``course.edm.vp_sigmas``, ``course.score.eps_to_score``, ...).

Time, in one table (x0 data, noise n or eps):
- 03/04/07 (DDPM, DDIM), diffusers' DDPM-family schedulers: integer steps t = 0..T-1, t = 0 already one
  step of noise, ``alpha_bar[t] = prod(alphas[:t+1])`` (diffusers calls it ``alphas_cumprod[t]``).
- 05 (Song et al.): t in [0, 1], t = 0 data, t = 1 noise.
- 06 (rectified flow, Liu et al.): t in [0, 1], t = 0 *noise*, t = 1 data; SD3 and diffusers'
  FlowMatch schedulers run the other way (their t = 0 is data), so their t is 1 - ours.
- 09-10 (EDM, Karras et al.; k-diffusion): no clock, a noise level sigma, x = x0 + sigma n.
"""
from __future__ import annotations

import torch


def guidance_scale_from_w(w: float) -> float:
    """This course's CFG weight w ((1 + w) cond - w uncond, Ho & Salimans 2022) as diffusers'
    ``guidance_scale`` s (uncond + s (cond - uncond)): s = 1 + w. w = 0 (plain conditional) is s = 1."""
    return 1.0 + w


def w_from_guidance_scale(guidance_scale: float) -> float:
    """diffusers' ``guidance_scale`` s as this course's CFG weight: w = s - 1 (s = 7.5 is w = 6.5)."""
    return guidance_scale - 1.0


def alpha_bar_from_sigma(sigma: torch.Tensor) -> torch.Tensor:
    """EDM / k-diffusion's noise level as a VP ``alpha_bar``: x / sqrt(1 + sigma^2) has
    alpha_bar = 1 / (1 + sigma^2) (the inverse of ``course.edm.vp_sigmas``)."""
    return 1.0 / (1.0 + sigma ** 2)


def sd3_time_from_flow_time(t: torch.Tensor) -> torch.Tensor:
    """Notebook 06's t (0 = noise, 1 = data) as SD3's / diffusers' FlowMatch t (0 = data): 1 - t.
    A logit-normal with mean m on one clock has mean -m on the other."""
    return 1 - t


def flow_time_from_sd3_time(t_sd3: torch.Tensor) -> torch.Tensor:
    """SD3's / diffusers' FlowMatch t (0 = data) as notebook 06's t (0 = noise): 1 - t."""
    return 1 - t_sd3


def vp_continuous_time_from_step(t: torch.Tensor, T: int) -> torch.Tensor:
    """A DDPM step index t in 0..T-1 as Song et al.'s continuous VP time in (0, 1]: (t + 1) / T.
    With beta(s) = T beta_s this is the time at which the VP SDE has made t + 1 of the T steps."""
    return (t.to(torch.float64) + 1) / T

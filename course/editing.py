"""Image editing with a trained diffusion model: SDEdit and DDIM inversion followed by regeneration.

Time convention (as notebooks 03, 04 and 07, ``course.ddim``): T discrete steps t = 0..T-1, t = T-1
the noisiest; ``alpha_bar[t]`` the cumulative product, x_t = sqrt(alpha_bar[t]) x0 + sqrt(1 - alpha_bar[t]) eps;
the step t = -1 stands for the clean data (alpha_bar = 1). A noise predictor is ``model(x, t)`` (or
``model(x, t, y)`` for a conditional one, ``course.guidance``) with t a LongTensor (B,).

- :func:`sdedit`: noise a guide image part of the way, then denoise it (Meng et al. 2022, *SDEdit:
  Guided Image Synthesis and Editing with Stochastic Differential Equations*, arXiv:2108.01073),
  here with the deterministic DDIM sampler of notebook 04 for the way back. The start is given as a
  fraction ``t0`` of the diffusion: t0 = 0 returns the guide, t0 = 1 starts from (nearly) pure noise.
- :func:`invert_then_edit`: DDIM inversion of an image under the source condition, then DDIM
  sampling from the inverted noise under the target condition (Song et al. 2020, section 5.4;
  Mokady et al. 2023, *Null-text Inversion*, arXiv:2211.09794, on why inversion under strong
  classifier-free guidance fails: each inversion step uses eps at the wrong point, and guidance
  multiplies that error by 1 + w).
"""
from __future__ import annotations

import torch

from course.ddim import ddim_walk
from course.guidance import guided_eps_model


def sdedit_start_step(t0: float, T: int) -> int:
    """The step SDEdit starts from: round(t0 T) - 1, so t0 = 0 gives -1 (the clean guide), t0 = 1 gives T - 1."""
    if not 0.0 <= float(t0) <= 1.0:
        raise ValueError(f"t0 is a fraction of the diffusion in [0, 1], got {t0}")
    return int(round(float(t0) * T)) - 1


def sdedit_path(t0: float, timesteps, T: int) -> list[int]:
    """The steps SDEdit walks: its start step, then the sampler's ``timesteps`` below it, then -1 (the data).

    With t0 = 0 the path is [-1]: nothing to do, the guide is returned unchanged.
    """
    t_start = sdedit_start_step(t0, T)
    if t_start < 0:
        return [-1]
    return [t_start] + [int(t) for t in timesteps if int(t) < t_start] + [-1]


def sdedit(D_or_model, x_guide: torch.Tensor, t0: float, sampler_args: dict) -> torch.Tensor:
    """SDEdit (Meng et al. 2022, Algorithm 1, with DDIM's eta = 0 for the denoising).

    x_{t_s} = sqrt(alpha_bar[t_s]) x_guide + sqrt(1 - alpha_bar[t_s]) noise, t_s = round(t0 T) - 1,
    then DDIM steps along ``sampler_args["timesteps"]`` (the descending steps of the full sampler,
    those below t_s) down to the data. ``D_or_model(x, t)`` predicts eps; ``sampler_args`` holds
    ``alpha_bar`` (T,), ``timesteps`` and ``noise`` (x_guide's shape). t0 = 0 returns the guide.
    """
    alpha_bar, noise = sampler_args["alpha_bar"], sampler_args["noise"]
    path = sdedit_path(t0, sampler_args["timesteps"], len(alpha_bar))
    if path == [-1]:
        return x_guide.clone()
    ab = alpha_bar[path[0]]
    xt = ab.sqrt() * x_guide + (1 - ab).sqrt() * noise  # q(x_t | x_guide), eq. 4 of Ho et al. 2020
    return ddim_walk(D_or_model, xt, path, alpha_bar, eta=0.0)


def invert_then_edit(model, x: torch.Tensor, y_src: torch.Tensor, y_tgt: torch.Tensor, w_invert: float,
                     w_edit: float, timesteps, alpha_bar: torch.Tensor) -> torch.Tensor:
    """Encode x by DDIM inversion under (y_src, CFG weight w_invert), regenerate under (y_tgt, w_edit).

    ``timesteps`` is a descending sampler path (``ddim_timesteps``); the inversion walks it upwards
    from the data (t = -1) to ``timesteps[0]``, evaluating the guided eps at the noisier end of each
    step (as ``course.ddim.ddim_invert``), and the edit walks it down again. A path that starts below
    T - 1 inverts only part of the way: a gentler edit.
    """
    steps = [int(t) for t in timesteps]
    x_noisy = ddim_walk(guided_eps_model(model, y_src, w_invert), x, [-1] + steps[::-1], alpha_bar)
    return ddim_walk(guided_eps_model(model, y_tgt, w_edit), x_noisy, steps + [-1], alpha_bar)


def invert_then_edit_fixed_point(model, x: torch.Tensor, y_src: torch.Tensor, y_tgt: torch.Tensor,
                                 w_invert: float, w_edit: float, timesteps, alpha_bar: torch.Tensor,
                                 iterations: int = 5) -> torch.Tensor:
    """:func:`invert_then_edit` with each inversion step solved by fixed-point iteration.

    DDIM inversion assumes eps(x_{t'}) = eps(x_t) across one step. Solving the implicit step
    x_{t'} = step(eps(x_{t'}), x_t) by a few fixed-point iterations (Pan et al. 2023, *Effective Real
    Image Editing with Accelerated Iterative Diffusion Inversion*, arXiv:2309.04907; Garibi et al. 2024,
    *ReNoise*) makes the inversion exact enough that regeneration under the same guidance returns x,
    even under strong guidance.
    """
    from course.ddim import ddim_step

    eps_src = guided_eps_model(model, y_src, w_invert)
    steps = [int(t) for t in timesteps]
    path = [-1] + steps[::-1]
    with torch.no_grad():
        z = x
        for t_from, t_to in zip(path[:-1], path[1:]):
            t_batch = torch.full((z.shape[0],), t_to, dtype=torch.long, device=z.device)  # (B,)
            z_next = ddim_step(eps_src(z, t_batch), z, t_from, t_to, alpha_bar, 0.0, None)
            for _ in range(iterations):  # x_{t'} = step(eps(x_{t'}, t'), x_t)
                z_next = ddim_step(eps_src(z_next, t_batch), z, t_from, t_to, alpha_bar, 0.0, None)
            z = z_next
    return ddim_walk(guided_eps_model(model, y_tgt, w_edit), z, steps + [-1], alpha_bar)

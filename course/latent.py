"""Latent diffusion's glue: scale the autoencoder's latents to unit variance, encode and decode.

Rombach et al. 2022 (Sec. 4.3.2 and Appendix G) rescale the latents z = E(x) by a single scalar
1 / std(z) before training the diffusion model, so that the noise schedule designed for
unit-variance data fits them; samples are divided by the same scalar before decoding.
"""
from __future__ import annotations

import torch


def latent_scale(latents: torch.Tensor) -> float:
    """1 / std of every entry of the latents (one scalar for the whole tensor)."""
    return float(1.0 / latents.float().std())


@torch.no_grad()
def encode_dataset(vae, images: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
    """The posterior means mu = E(x) of a set of images, in batches: (N, latent_ch, h, w)."""
    device = next(vae.parameters()).device
    mus = [vae.encode(images[i:i + batch_size].to(device))[0] for i in range(0, len(images), batch_size)]
    return torch.cat(mus)


@torch.no_grad()
def decode_latents(vae, z_scaled: torch.Tensor, scale: float) -> torch.Tensor:
    """Undo the scaling and decode: images D(z / scale), clamped to [-1, 1]."""
    return vae.decode(z_scaled / scale).clamp(-1, 1)

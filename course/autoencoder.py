"""A small convolutional variational autoencoder (Kingma & Welling 2014) for digit images.

The first stage of latent diffusion (Rombach et al. 2022, Sec. 3.1): an encoder maps an image
(B, 1, H, W) to a Gaussian q(z | x) = N(mu, diag(exp(logvar))) on a latent (B, latent_ch, H/4, W/4);
a decoder maps z back to an image. A small KL weight ``beta`` keeps the latent space smooth
without blurring the reconstructions.
"""
from __future__ import annotations

import torch
from torch import nn


def reparameterize(mu: torch.Tensor, logvar: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """z = mu + exp(logvar / 2) eps: a sample of N(mu, exp(logvar)), differentiable in mu and logvar.

    The reparameterisation trick of Kingma & Welling 2014, Sec. 2.4.
    """
    return mu + torch.exp(0.5 * logvar) * eps


def kl_to_standard_normal(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, exp(logvar)) || N(0, I)) summed over every dimension but the batch: (B,).

    -1/2 sum(1 + logvar - mu^2 - exp(logvar)) (Kingma & Welling 2014, Appendix B).
    """
    return -0.5 * (1 + logvar - mu ** 2 - logvar.exp()).flatten(1).sum(1)


def vae_loss(x: torch.Tensor, x_rec: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor,
             beta: float) -> torch.Tensor:
    """The negative beta-ELBO: mean over the batch of [ sum (x - x_rec)^2 + beta KL(q(z|x) || N(0, I)) ].

    Reconstruction and KL are each summed over their dimensions per sample, then averaged over the batch.
    """
    rec = ((x - x_rec) ** 2).flatten(1).sum(1)  # (B,)
    return (rec + beta * kl_to_standard_normal(mu, logvar)).mean()


class ConvVAE(nn.Module):
    """Encoder: two stride-2 convolutions (H -> H/4) to mu and logvar; decoder: the mirror image."""

    def __init__(self, in_ch: int = 1, latent_ch: int = 2, hidden: int = 32):
        super().__init__()
        self.latent_ch = latent_ch
        self.encoder = nn.Sequential(
            nn.Conv2d(in_ch, hidden, 3, padding=1), nn.SiLU(),
            nn.Conv2d(hidden, hidden, 4, stride=2, padding=1), nn.SiLU(),  # H/2
            nn.Conv2d(hidden, 2 * hidden, 4, stride=2, padding=1), nn.SiLU(),  # H/4
            nn.Conv2d(2 * hidden, 2 * latent_ch, 1),
        )
        self.decoder = nn.Sequential(
            nn.Conv2d(latent_ch, 2 * hidden, 3, padding=1), nn.SiLU(),
            nn.ConvTranspose2d(2 * hidden, hidden, 4, stride=2, padding=1), nn.SiLU(),  # H/2
            nn.ConvTranspose2d(hidden, hidden, 4, stride=2, padding=1), nn.SiLU(),  # H
            nn.Conv2d(hidden, in_ch, 3, padding=1),
        )

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, in_ch, H, W) -> mu, logvar, each (B, latent_ch, H/4, W/4)."""
        mu, logvar = self.encoder(x).chunk(2, dim=1)
        return mu, logvar.clamp(-12, 8)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """(B, latent_ch, h, w) -> (B, in_ch, 4h, 4w)."""
        return self.decoder(z)

    def forward(self, x: torch.Tensor, eps: torch.Tensor | None = None):
        """Reconstruct x through a sampled latent: returns (x_rec, mu, logvar)."""
        mu, logvar = self.encode(x)
        eps = torch.randn_like(mu) if eps is None else eps
        return self.decode(reparameterize(mu, logvar, eps)), mu, logvar

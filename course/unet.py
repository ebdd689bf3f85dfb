"""A small UNet for images and latents: residual blocks, self-attention, skips by concatenation.

The denoising network of Ho et al. 2020 (Appendix B), itself the UNet of Ronneberger et al. 2015
with Wide-ResNet blocks and self-attention at low resolution, scaled down for 8x8 to 32x32 inputs.

Time convention: the network takes ``t`` of shape ``(B,)`` and embeds it with
``timestep_embedding``; pass integer steps 0..T-1 for DDPM/DDIM, or continuous times scaled to
about 0..1000 (e.g. ``1000 * t`` for flow matching's t in [0, 1]). With ``n_classes`` the label
embedding has ``n_classes + 1`` rows: index ``n_classes`` is the "no label" of classifier-free
guidance, and ``y=None`` means that null label.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from course.embedding import timestep_embedding


def group_norm(ch: int) -> nn.GroupNorm:
    """GroupNorm for any channel count: the most groups (up to 8) that divide ``ch`` with >= 4 channels each.

    Groups of several channels matter: a group of one channel would subtract, per channel, the very
    shift that ResBlock adds from the time embedding.
    """
    groups = next(g for g in (8, 4, 2, 1) if ch % g == 0 and (ch // g >= 4 or g == 1))
    return nn.GroupNorm(groups, ch)


class ResBlock(nn.Module):
    """h = conv(SiLU(norm(x))) + Linear(SiLU(emb)); h = conv(SiLU(norm(h))); return skip(x) + h.

    The residual block of Ho et al. 2020 (Appendix B): the time (and label) embedding ``emb``
    (B, emb_dim) is added to every pixel of the first conv's output, one shift per channel.
    ``skip`` is the identity when the channel counts agree, a 1x1 convolution otherwise.
    """

    def __init__(self, in_ch: int, out_ch: int, emb_dim: int):
        super().__init__()
        self.norm1 = group_norm(in_ch)
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, padding=1)
        self.emb_proj = nn.Linear(emb_dim, out_ch)
        self.norm2 = group_norm(out_ch)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, padding=1)
        self.skip = nn.Identity() if in_ch == out_ch else nn.Conv2d(in_ch, out_ch, 1)

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))  # (B, out_ch, H, W)
        h = h + self.emb_proj(F.silu(emb))[:, :, None, None]  # (B, out_ch, 1, 1) broadcast over pixels
        h = self.conv2(F.silu(self.norm2(h)))
        return self.skip(x) + h


class Attention2d(nn.Module):
    """Multi-head self-attention over the H*W pixels, with a residual connection.

    softmax(q k^T / sqrt(d)) v per head (Vaswani et al. 2017, eq. 1), q, k, v from 1x1
    convolutions of the normalised input; every pixel can look at every other one.
    """

    def __init__(self, ch: int, heads: int = 1):
        super().__init__()
        assert ch % heads == 0, "ch must be divisible by heads"
        self.heads = heads
        self.norm = group_norm(ch)
        self.qkv = nn.Conv2d(ch, 3 * ch, 1)
        self.proj = nn.Conv2d(ch, ch, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, C, H, W = x.shape
        d = C // self.heads
        qkv = self.qkv(self.norm(x)).reshape(B, 3, self.heads, d, H * W)  # (B, 3, nh, d, HW)
        q, k, v = qkv.unbind(1)  # each (B, nh, d, HW)
        scores = torch.einsum("bhdi,bhdj->bhij", q, k) / math.sqrt(d)  # (B, nh, HW queries, HW keys)
        weights = scores.softmax(dim=-1)  # each query's weights over the keys sum to one
        out = torch.einsum("bhij,bhdj->bhdi", weights, v)  # (B, nh, d, HW)
        return x + self.proj(out.reshape(B, C, H, W))


class UNet(nn.Module):
    """A UNet: ResBlocks at each resolution, a ResBlock-attention-ResBlock middle, skips by concatenation.

    Level i works at resolution H / 2^i with ``base_ch * ch_mult[i]`` channels. On the way down each
    level's output is kept; on the way up it is concatenated to the features of the same resolution
    (Ronneberger et al. 2015). H must be divisible by 2^(len(ch_mult) - 1).
    """

    def __init__(self, in_ch: int, base_ch: int = 32, ch_mult: Sequence[int] = (1, 2), emb_dim: int = 64,
                 n_classes: int | None = None):
        super().__init__()
        self.emb_dim = emb_dim
        self.n_classes = n_classes
        self.time_mlp = nn.Sequential(nn.Linear(emb_dim, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        self.label_emb = nn.Embedding(n_classes + 1, emb_dim) if n_classes else None
        chs = [base_ch * m for m in ch_mult]
        self.stem = nn.Conv2d(in_ch, base_ch, 3, padding=1)
        self.down_blocks, self.downsamples = nn.ModuleList(), nn.ModuleList()
        ch = base_ch
        for i, ch_out in enumerate(chs):
            self.down_blocks.append(ResBlock(ch, ch_out, emb_dim))
            last = i == len(chs) - 1
            self.downsamples.append(nn.Identity() if last else nn.Conv2d(ch_out, ch_out, 3, stride=2, padding=1))
            ch = ch_out
        self.mid1 = ResBlock(ch, ch, emb_dim)
        self.mid_attn = Attention2d(ch)
        self.mid2 = ResBlock(ch, ch, emb_dim)
        self.up_blocks, self.upsamples = nn.ModuleList(), nn.ModuleList()
        for i in reversed(range(len(chs))):
            self.up_blocks.append(ResBlock(ch + chs[i], chs[i], emb_dim))
            self.upsamples.append(nn.Identity() if i == 0 else
                                  nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"),
                                                nn.Conv2d(chs[i], chs[i - 1], 3, padding=1)))
            ch = chs[i - 1] if i > 0 else chs[0]
        self.out = nn.Sequential(group_norm(chs[0]), nn.SiLU(), nn.Conv2d(chs[0], in_ch, 3, padding=1))

    def embed(self, t: torch.Tensor, y: torch.Tensor | None, batch: int, device) -> torch.Tensor:
        """The time embedding, plus the label embedding (null label when y is None): (B, emb_dim)."""
        t = torch.as_tensor(t, device=device)
        t = t.expand(batch) if t.dim() == 0 else t
        emb = self.time_mlp(timestep_embedding(t, self.emb_dim))
        if self.label_emb is not None:
            if y is None:
                y = torch.full((batch,), self.n_classes, dtype=torch.long, device=device)
            emb = emb + self.label_emb(y)
        return emb

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        emb = self.embed(t, y, x.shape[0], x.device)  # (B, emb_dim)
        h = self.stem(x)  # (B, base_ch, H, W)
        skips = []
        for block, down in zip(self.down_blocks, self.downsamples):
            h = block(h, emb)
            skips.append(h)  # (B, chs[i], H / 2^i, W / 2^i)
            h = down(h)
        h = self.mid2(self.mid_attn(self.mid1(h, emb)), emb)
        for block, up in zip(self.up_blocks, self.upsamples):
            h = block(torch.cat([h, skips.pop()], dim=1), emb)  # concatenate along channels
            h = up(h)
        return self.out(h)

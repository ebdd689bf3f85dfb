"""ControlNet: spatial control of a frozen diffusion UNet through a trainable copy of its encoder.

Zhang, Rao & Agrawala 2023, *Adding Conditional Control to Text-to-Image Diffusion Models*
(arXiv:2302.05543): the base network's weights are locked; a trainable copy of its encoder reads
the noisy input plus a condition map c (edges, outlines, poses), and its features are added to the
base's skip connections and middle block through **zero convolutions**, 1x1 convolutions whose
weight and bias start at zero (their eq. 2-4):

    y_c = F(x; Theta) + Z(F(x + Z(c; Theta_z1); Theta_c); Theta_z2).

At the start every Z outputs 0, so the adapted network *is* the base network; the gradients of
the zero convolutions are not zero (they depend on the features they read), so training moves them.

The base is ``course.unet.UNet`` (notebook 08); its time convention is the base's (``forward(x, t,
cond, y=None)`` passes t and y through unchanged). The outline maps and the overlap measure of the
notebook's experiment are here too.
"""
from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn


class ZeroConv(nn.Module):
    """A 1x1 convolution ch_in -> ch_out whose weight and bias are initialised to zero (Zhang et al. 2023, eq. 3)."""

    def __init__(self, ch_in: int, ch_out: int):
        super().__init__()
        self.conv = nn.Conv2d(ch_in, ch_out, 1)
        nn.init.zeros_(self.conv.weight)
        nn.init.zeros_(self.conv.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class ControlAdapter(nn.Module):
    """A ControlNet around a frozen ``course.unet.UNet``: ``forward(x, t, cond, y=None)``.

    ``cond`` (B, cond_ch, H, W) has the base's input resolution. A zero convolution adds it to the
    copy's stem output; the copy (stem, down blocks, downsamples, first middle block, weights copied
    from the base) runs on x; one zero convolution per level adds its output to the base's kept skip
    feature, one more adds the copy's middle feature to the base's middle output.
    """

    def __init__(self, base: nn.Module, cond_ch: int):
        super().__init__()
        self.stem = copy.deepcopy(base.stem)  # the trainable copy, starting from the base's weights
        self.down_blocks = copy.deepcopy(base.down_blocks)
        self.downsamples = copy.deepcopy(base.downsamples)
        self.mid = copy.deepcopy(base.mid1)
        for p in self.parameters():
            p.requires_grad_(True)
        self.base = base
        for p in self.base.parameters():
            p.requires_grad_(False)  # the base stays locked
        base_ch = base.stem.out_channels
        level_chs = [block.conv2.out_channels for block in base.down_blocks]  # (chs[i], ...)
        self.cond_in = ZeroConv(cond_ch, base_ch)
        self.zero_skips = nn.ModuleList(ZeroConv(ch, ch) for ch in level_chs)
        self.zero_mid = ZeroConv(level_chs[-1], level_chs[-1])

    def control(self, x: torch.Tensor, cond: torch.Tensor, emb: torch.Tensor):
        """The copy's residuals: one per level (each the shape of the base's kept feature), and the middle one."""
        h = self.stem(x) + self.cond_in(cond)  # (B, base_ch, H, W)
        residuals = []
        for block, down, zero in zip(self.down_blocks, self.downsamples, self.zero_skips):
            h = block(h, emb)
            residuals.append(zero(h))  # (B, chs[i], H / 2^i, W / 2^i)
            h = down(h)
        return residuals, self.zero_mid(self.mid(h, emb))

    def forward(self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor, y: torch.Tensor | None = None):
        base = self.base
        emb = base.embed(t, y, x.shape[0], x.device)  # (B, emb_dim): the base's time + label embedding
        residuals, mid_residual = self.control(x, cond, emb)
        h = base.stem(x)
        kept = []
        for block, down, r in zip(base.down_blocks, base.downsamples, residuals):
            h = block(h, emb)
            kept.append(h + r)  # the skip connection carries the control
            h = down(h)
        h = base.mid2(base.mid_attn(base.mid1(h, emb)), emb) + mid_residual
        for block, up in zip(base.up_blocks, base.upsamples):
            h = up(block(torch.cat([h, kept.pop()], dim=1), emb))
        return base.out(h)


# ---------------------------------------------------------------------------------------------
# Outline maps and the overlap measure (the notebook's condition and its score)
# ---------------------------------------------------------------------------------------------
def ink_mask(images: torch.Tensor, threshold: float = 0.0) -> torch.Tensor:
    """Where the pen went: (N, 1, H, W) images in [-1, 1] -> a float mask of pixels above ``threshold``."""
    return (images > threshold).float()


def outline_map(images: torch.Tensor, threshold: float = 0.0) -> torch.Tensor:
    """The outline of the ink: dilate(ink) - erode(ink) with a 3x3 square, a band one pixel either side
    of every stroke edge (a morphological gradient, the edge map of this notebook). (N, 1, H, W) in {0, 1}."""
    ink = ink_mask(images, threshold)
    dilated = F.max_pool2d(ink, 3, stride=1, padding=1)
    eroded = -F.max_pool2d(-ink, 3, stride=1, padding=1)
    return (dilated - eroded).clamp(0, 1)


def outline_overlap(images: torch.Tensor, outlines: torch.Tensor) -> torch.Tensor:
    """Intersection over union of each image's outline with the given outline: (N,) in [0, 1]."""
    a = outline_map(images).flatten(1)
    b = (outlines > 0.5).float().flatten(1)
    inter, union = (a * b).sum(1), ((a + b) > 0).float().sum(1)
    return inter / union.clamp(min=1.0)

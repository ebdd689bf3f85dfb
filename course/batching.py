"""Per-sample values against a batch: the three small helpers every sampler and loss shares.

Shapes: a batch ``x`` is ``(B, ...)`` (points ``(B, d)`` or images ``(B, C, H, W)``); a per-sample
value (a time, a noise level, a schedule entry) is ``(B,)``.
"""
from __future__ import annotations

import torch


def append_dims(v, x: torch.Tensor) -> torch.Tensor:
    """A per-sample value v (B,) reshaped to (B, 1, ..., 1) so that it broadcasts against x (B, ...).

    A 0-dim tensor becomes (1, ..., 1); a Python number becomes a tensor of x's dtype and device."""
    if not isinstance(v, torch.Tensor):
        v = torch.as_tensor(v, dtype=x.dtype, device=x.device)
    return v.reshape(-1, *([1] * (x.dim() - 1)))


def time_batch(t, x: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
    """A Python number, 0-dim or (B,) time as a (B,) tensor on x's device (x's dtype unless given:
    pass ``torch.long`` for discrete steps)."""
    t = torch.as_tensor(t, dtype=dtype or x.dtype, device=x.device)
    return t.expand(x.shape[0]) if t.dim() == 0 else t


def randn_like(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Standard normal noise with x's shape and dtype, drawn from ``generator`` on the generator's own
    device (so a CPU generator gives the same numbers whatever device x is on), then moved to x's."""
    device = generator.device if generator is not None else x.device
    return torch.randn(x.shape, generator=generator, device=device, dtype=x.dtype).to(x.device)

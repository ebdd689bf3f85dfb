"""LoRA: low-rank adaptation of a frozen linear layer (Hu et al. 2021, arXiv:2106.09685).

A frozen weight W (out, in) is adapted by a low-rank update, h = W x + (alpha / r) B A x with
A (r, in) random and B (out, r) zero at the start (their section 4.1), so a freshly adapted model
computes exactly what the base did and only r (in + out) numbers per layer are trained. After
training the update can be merged, W' = W + (alpha / r) B A: no extra cost at inference.
"""
from __future__ import annotations

import math

import torch
from torch import nn


class LoRALinear(nn.Module):
    """``base(x) + (alpha / rank) x A^T B^T`` with ``base`` frozen, ``A`` (rank, in) random, ``B`` (out, rank) zero."""

    def __init__(self, base: nn.Linear, rank: int, alpha: float):
        super().__init__()
        self.base = base
        for p in self.base.parameters():
            p.requires_grad_(False)
        self.rank, self.alpha = rank, alpha
        self.scale = alpha / rank
        self.A = nn.Parameter(torch.randn(rank, base.in_features) / math.sqrt(base.in_features))
        self.B = nn.Parameter(torch.zeros(base.out_features, rank))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base(x) + self.scale * (x @ self.A.T) @ self.B.T  # (..., rank) then (..., out)

    def merge(self) -> nn.Linear:
        """A plain nn.Linear with weight W + (alpha / rank) B A and the base's bias."""
        merged = nn.Linear(self.base.in_features, self.base.out_features, bias=self.base.bias is not None)
        with torch.no_grad():
            merged.weight.copy_(self.base.weight + self.scale * self.B @ self.A)
            if self.base.bias is not None:
                merged.bias.copy_(self.base.bias)
        return merged.to(self.base.weight.device)


def _matches(name: str, names) -> bool:
    return any(name == n or name.endswith("." + n) for n in names)


def inject_lora(model: nn.Module, rank: int, alpha: float, names) -> nn.Module:
    """Freeze ``model`` and wrap each nn.Linear whose qualified name (``model.named_modules()``) is, or
    ends with ``.`` + , one of ``names`` in a :class:`LoRALinear`: in place; returns the model."""
    for p in model.parameters():
        p.requires_grad_(False)
    targets = [(name, m) for name, m in model.named_modules() if isinstance(m, nn.Linear) and _matches(name, names)]
    if not targets:
        raise ValueError(f"no nn.Linear named {list(names)} in the model")
    for name, linear in targets:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, LoRALinear(linear, rank, alpha))
    return model


def merge_lora(model: nn.Module) -> nn.Module:
    """Replace every LoRALinear of ``model`` by its merged nn.Linear (in place); returns the model."""
    for name, m in list(model.named_modules()):
        if isinstance(m, LoRALinear):
            parent_name, _, child = name.rpartition(".")
            parent = model.get_submodule(parent_name) if parent_name else model
            setattr(parent, child, m.merge())
    return model


def lora_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The trainable A and B of every LoRALinear in ``model``."""
    return [p for m in model.modules() if isinstance(m, LoRALinear) for p in (m.A, m.B)]

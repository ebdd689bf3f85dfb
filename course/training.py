"""One training loop for every notebook: minibatches, Adam, a tqdm bar, optional EMA."""
from __future__ import annotations

import copy
from typing import Callable, Sequence

import torch
from tqdm.auto import tqdm


class EMA:
    """Exponential moving average of a model's parameters (a copy you sample from)."""

    def __init__(self, model: torch.nn.Module, decay: float = 0.999):
        self.decay = decay
        self.model = copy.deepcopy(model).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        for p_ema, p in zip(self.model.parameters(), model.parameters()):
            p_ema.lerp_(p.detach(), 1 - self.decay)


def minibatch(data, batch_size: int, generator: torch.Generator | None = None):
    """A random minibatch of a tensor, or of a tuple of tensors sharing their first dimension."""
    tensors = data if isinstance(data, (tuple, list)) else (data,)
    idx = torch.randint(0, len(tensors[0]), (batch_size,), generator=generator)
    batch = tuple(t[idx.to(t.device)] for t in tensors)
    return batch if isinstance(data, (tuple, list)) else batch[0]


def train(model: torch.nn.Module, loss_fn: Callable, data, *, steps: int, batch_size: int = 256,
          lr: float = 1e-3, weight_decay: float = 0.0, grad_clip: float | None = 1.0,
          ema: EMA | None = None, generator: torch.Generator | None = None,
          lr_warmup: int = 0, cosine_decay: bool = False, desc: str = "training",
          progress: bool = True) -> list[float]:
    """Minimise ``loss_fn(model, batch)`` with Adam for ``steps`` steps; return the loss history.

    ``data`` is a tensor, a tuple of tensors (e.g. images and labels), or a callable
    ``data(batch_size) -> batch`` that draws fresh samples (for 2D sets).
    """
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)

    def lr_at(step: int) -> float:
        scale = 1.0
        if lr_warmup:
            scale = min(1.0, (step + 1) / lr_warmup)
        if cosine_decay:
            scale *= 0.5 * (1 + torch.cos(torch.tensor(torch.pi * step / steps))).item()
        return lr * scale

    losses: list[float] = []
    model.train()
    bar = tqdm(range(steps), desc=desc, disable=not progress, mininterval=0.5)
    for step in bar:
        for group in opt.param_groups:
            group["lr"] = lr_at(step)
        batch = data(batch_size) if callable(data) else minibatch(data, batch_size, generator)
        loss = loss_fn(model, batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(params, grad_clip)
        opt.step()
        if ema is not None:
            ema.update(model)
        losses.append(loss.item())
        if step % 50 == 0 or step == steps - 1:
            bar.set_postfix(loss=f"{sum(losses[-50:]) / len(losses[-50:]):.4f}")
    model.eval()
    return losses

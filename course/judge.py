"""A judge for generated digits: a small CNN trained in seconds on scikit-learn's 8x8 digits.

It scores class-conditional samples (does a "7" look like a 7: ``accuracy``) and compares sample
sets by the Fréchet distance between Gaussians fitted to its penultimate features (the FID recipe
of Heusel et al. 2017, with this judge in place of Inception). Images of any size H = W >= 8 are
area-downsampled to 8x8 first, so one judge serves every notebook.
"""
from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch import nn

from course.digits import load_digits
from course.pretrained import load


class DigitJudge(nn.Module):
    def __init__(self, width: int = 32, feature_dim: int = 128):
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv2d(1, width, 3, padding=1), nn.ReLU(),
            nn.Conv2d(width, 2 * width, 3, padding=1), nn.ReLU(),
            nn.MaxPool2d(2),  # (B, 2w, 4, 4)
        )
        self.fc = nn.Sequential(nn.Flatten(), nn.Linear(2 * width * 16, feature_dim), nn.ReLU())
        self.head = nn.Linear(feature_dim, 10)
        self.test_accuracy: float = float("nan")

    @staticmethod
    def prepare(images: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) in [-1, 1] -> (N, 1, 8, 8) on the judge's device, clamped to [-1, 1]."""
        x = images.detach().float()
        if x.shape[1] != 1:
            x = x.mean(1, keepdim=True)
        if x.shape[-1] != 8:
            x = F.adaptive_avg_pool2d(x, 8)
        return x.clamp(-1, 1)

    def features(self, images: torch.Tensor) -> torch.Tensor:
        return self.fc(self.conv(self.prepare(images).to(self.head.weight.device)))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(images))

    @torch.no_grad()
    def predict(self, images: torch.Tensor) -> torch.Tensor:
        return self(images).argmax(-1).cpu()

    @torch.no_grad()
    def accuracy(self, images: torch.Tensor, labels: torch.Tensor) -> float:
        """Fraction of images the judge classifies as their intended label."""
        return float((self.predict(images) == labels.cpu()).float().mean())

    @torch.no_grad()
    def frechet_distance(self, images_a: torch.Tensor, images_b: torch.Tensor) -> float:
        """Fréchet distance between the judge's feature distributions of two image sets."""
        return frechet_distance(self.features(images_a).cpu(), self.features(images_b).cpu())


def _sqrtm_psd(c: torch.Tensor) -> torch.Tensor:
    vals, vecs = torch.linalg.eigh(c)
    return (vecs * vals.clamp(min=0).sqrt()) @ vecs.T


def frechet_distance(feats_a: torch.Tensor, feats_b: torch.Tensor) -> float:
    """||mu_a - mu_b||^2 + Tr(C_a + C_b - 2 (C_a^1/2 C_b C_a^1/2)^1/2) between fitted Gaussians."""
    a, b = feats_a.double(), feats_b.double()
    mu_a, mu_b = a.mean(0), b.mean(0)
    c_a, c_b = torch.cov(a.T), torch.cov(b.T)
    s_a = _sqrtm_psd(c_a)
    cross = torch.linalg.eigvalsh(s_a @ c_b @ s_a).clamp(min=0).sqrt().sum()
    return float(((mu_a - mu_b) ** 2).sum() + torch.trace(c_a) + torch.trace(c_b) - 2 * cross)


def _shift(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Random shifts of up to one pixel (robustness to slightly off-centre samples)."""
    dx, dy = (int(v) for v in torch.randint(-1, 2, (2,), generator=generator))
    return torch.roll(F.pad(x, (1, 1, 1, 1), value=-1.0), shifts=(dy, dx), dims=(2, 3))[..., 1:-1, 1:-1]


def train_judge(steps: int = 400, batch_size: int = 128, seed: int = 0, progress: bool = False) -> DigitJudge:
    """Train the judge on the digits' training split; its held-out accuracy is ``test_accuracy``."""
    gen = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        judge = DigitJudge()
    x_train, y_train = load_digits(split="train")
    opt = torch.optim.Adam(judge.parameters(), lr=2e-3)
    judge.train()
    for step in range(steps):
        idx = torch.randint(0, len(x_train), (batch_size,), generator=gen)
        x = _shift(x_train[idx], gen)
        loss = F.cross_entropy(judge(x), y_train[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        if progress and step % 100 == 0:
            print(f"judge step {step}: loss {loss.item():.3f}")
    return _ready(judge)


def _ready(judge: DigitJudge) -> DigitJudge:
    """Freeze the judge and measure its held-out accuracy (``test_accuracy``)."""
    judge.eval()
    for p in judge.parameters():
        p.requires_grad_(False)
    judge.test_accuracy = judge.accuracy(*load_digits(split="test"))
    return judge


CHECKPOINT_NAME = "judge_digits8"  # checkpoints/judge_digits8.pt, read by course.pretrained


@functools.lru_cache(maxsize=1)
def get_judge() -> DigitJudge:
    """The course's digit judge, on the CPU: loaded from ``checkpoints/judge_digits8.pt`` (made by
    ``python scripts/train_checkpoints.py``, the same deterministic training), else trained here
    (about 10 s on 2 CPU cores). Its held-out accuracy is measured either way."""
    with torch.inference_mode(False):
        judge = DigitJudge()
        _, reason = load(CHECKPOINT_NAME, judge)
        return _ready(judge) if reason is None else train_judge()

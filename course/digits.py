"""scikit-learn's bundled 8x8 digits (1,797 images, 10 classes): the offline image set.

Images come back as float32 (N, 1, H, W) in [-1, 1]; labels as int64 (N,).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def load_digits(size: int = 8, split: str = "all", test_fraction: float = 0.2, seed: int = 0):
    """Return ``(images, labels)``; ``size`` > 8 upsamples bilinearly; ``split`` in all/train/test.

    The train/test split is a fixed permutation (``seed``), the same in every notebook.
    """
    from sklearn.datasets import load_digits as _sk_load_digits

    data = _sk_load_digits()
    x = torch.tensor(data.images, dtype=torch.float32)[:, None] / 16.0 * 2 - 1  # (N, 1, 8, 8)
    y = torch.tensor(data.target, dtype=torch.int64)
    if size != 8:
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False).clamp(-1, 1)
    if split != "all":
        perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
        n_test = int(len(x) * test_fraction)
        idx = perm[:n_test] if split == "test" else perm[n_test:]
        x, y = x[idx], y[idx]
    return x, y

#!/usr/bin/env python
"""Reproduce the small checkpoints shipped in ``checkpoints/`` with the project's own training code.

    python scripts/train_checkpoints.py

- ``checkpoints/judge_digits8.pt``: the digit judge (``course.judge.train_judge``, seed 0), used by
  notebooks 03, 07 and 08 to score generated digits. Nothing requires it: without the file the judge
  is trained on the spot, identically.
"""
from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from course.judge import CHECKPOINT, train_judge  # noqa: E402


def main() -> None:
    torch.set_num_threads(1)  # deterministic, and what the tests use
    judge = train_judge()
    CHECKPOINT.parent.mkdir(exist_ok=True)
    torch.save(judge.state_dict(), CHECKPOINT)
    print(f"wrote {CHECKPOINT} ({CHECKPOINT.stat().st_size // 1024} KiB); held-out accuracy {judge.test_accuracy:.3f}")


if __name__ == "__main__":
    main()

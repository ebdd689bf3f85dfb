"""Device choice, seeding and fast mode: the knobs every notebook turns the same way."""
from __future__ import annotations

import os
import random

import numpy as np
import torch


def apply_thread_setting() -> None:
    """Honour ``COURSE_THREADS=N`` (torch intra-op threads). The test suite sets 1: several
    processes share 2 cores there, and oversubscribed threads make tiny networks many times slower."""
    threads = os.environ.get("COURSE_THREADS")
    if threads and threads.isdigit() and int(threads) > 0:
        torch.set_num_threads(int(threads))


apply_thread_setting()


def small_model_threads() -> int:
    """Use one CPU thread for torch, unless ``COURSE_THREADS`` asks for another number; return the count.

    The notebooks' networks are small (2D MLPs, 8x8 and 16x16 images): splitting each tiny matrix
    product over several threads costs more in synchronisation than it gains, and on a 2-core laptop
    that also runs Jupyter it oversubscribes the CPU (notebook 08 ran 5-10x slower with the default).
    """
    threads = os.environ.get("COURSE_THREADS")
    torch.set_num_threads(int(threads) if threads and threads.isdigit() and int(threads) > 0 else 1)
    return torch.get_num_threads()


def device() -> torch.device:
    """CUDA if available, then Apple's MPS, then the CPU: one notebook runs unchanged on each."""
    if torch.cuda.is_available():
        return torch.device("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def seed_everything(seed: int = 0) -> torch.Generator:
    """Seed Python, NumPy and PyTorch; return a CPU ``torch.Generator`` seeded the same way.

    Pass the returned generator explicitly wherever randomness matters, so a cell can be re-run
    alone and give the same numbers.
    """
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def is_fast() -> bool:
    """True when ``COURSE_FAST=1``: every notebook then runs in seconds with small budgets."""
    return os.environ.get("COURSE_FAST", "0").strip().lower() in {"1", "true", "yes", "on"}


def budget(full, fast):
    """``full`` normally, ``fast`` under ``COURSE_FAST=1`` (training steps, sample sizes...)."""
    return fast if is_fast() else full


def record_metric(name: str, value, notebook: str | None = None) -> None:
    """Report a quality figure (a Wasserstein ratio, an accuracy...) to the benchmark.

    A no-op unless ``COURSE_METRICS_FILE`` is set (the benchmark sets it): then one JSON line
    ``{"notebook": ..., "name": ..., "value": ...}`` is appended to that file.
    """
    path = os.environ.get("COURSE_METRICS_FILE")
    if not path:
        return
    import json

    if hasattr(value, "item"):
        value = value.item()
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps({"notebook": notebook, "name": name, "value": value}) + "\n")

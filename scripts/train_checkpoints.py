#!/usr/bin/env python
"""Reproduce the small checkpoints shipped in ``checkpoints/`` with the project's own training code.

    python scripts/train_checkpoints.py                  # all of them (about 10 min on 2 cores)
    python scripts/train_checkpoints.py --only judge     # or 07_guidance, 08_latent_unet

- ``judge_digits8.pt``: the digit judge (``course.judge.train_judge``, seed 0), used by notebooks
  03, 07 and 08 to score generated digits. Without the file the judge is trained on the spot.
- ``07_ring_eps.pt``, ``07_digits_eps.pt``, ``08_vae.pt``, ``08_latent_flow.pt``,
  ``08_pixel_flow.pt``: the models notebooks 07 and 08 train. They are made by running the
  solution notebooks themselves in full mode, in a Jupyter kernel, with
  ``COURSE_SAVE_CHECKPOINTS`` set: each ``course.pretrained.load_or_train`` call saves what it
  trained, with its loss history and timings. The run also prints the notebooks' quality figures.
  ``11_dit.pt``, ``11_dit_adaln.pt``, ``11_dit_in_context.pt``, ``11_unet.pt``, ``11_text_dit.pt``: notebook
  11's class-conditional DiT, its adaLN and in-context variants, the UNet trained for the DiT's
  time, and the text-to-image DiT (``--only 11_transformers_text``, about 6 minutes on 2 cores).
  ``12_control_adapter.pt``, ``12_editor.pt``: notebook 12's ControlNet adapter on 08's frozen latent
  flow (with that base inside) and its in-context editor ("make it thicker"), ``--only 12_control_editing``
  (it starts from the 07 and 08 checkpoints, which it loads whenever they exist).
  ``04_ddim_eps.pt`` (04's eps-model, the EMA weights), ``05_ncsn.pt`` and ``05_vp_eps.pt`` (05's noise-conditional
  score network and VP eps-model): ``--only 04_ddim``, ``--only 05_score_sde``; these two notebooks also load
  them in fast mode, so their fast runs show trained models.
  ``02_cnf.pt`` (02's CNF), ``06_1rf.pt``, ``06_2rf.pt`` and ``06_distilled.pt`` (06's 1- and 2-rectified
  flows and its one-step generator): ``--only 02_neural_odes``, ``--only 06_rectified_flow``; these two
  notebooks also load them in fast mode.
  ``03_moons_eps.pt`` and ``03_digits_eps.pt`` (03's eps-models for two moons and for digits, the EMA
  weights): ``--only 03_ddpm``; notebook 03 also loads them in fast mode.
  Notebooks load these files only when asked (``PRETRAINED = True`` or ``COURSE_PRETRAINED=1``).

Results on another machine or torch version differ in the last digits, not in quality; the
timings saved with 08's models (seconds per training step) are those of the machine that ran it.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from course.judge import CHECKPOINT_NAME, train_judge  # noqa: E402
from course.pretrained import CHECKPOINT_DIR, save  # noqa: E402

NOTEBOOKS = ["02_neural_odes", "03_ddpm", "04_ddim", "05_score_sde", "06_rectified_flow", "07_guidance",
             "08_latent_unet", "11_transformers_text", "12_control_editing"]


def make_judge() -> None:
    torch.set_num_threads(1)  # deterministic, and what the tests use
    judge = train_judge()
    path = save(CHECKPOINT_NAME, judge, {"test_accuracy": judge.test_accuracy}, CHECKPOINT_DIR)
    print(f"wrote {path} ({path.stat().st_size // 1024} KiB); held-out accuracy {judge.test_accuracy:.3f}")


def run_notebook(nid: str, executed_dir: Path | None) -> None:
    """Run solutions/<nid>.ipynb in full mode, saving every model it trains to checkpoints/."""
    from grader.workflows.execute import execute_notebook

    with tempfile.NamedTemporaryFile(suffix=".jsonl", delete=False) as tmp:
        metrics_file = Path(tmp.name)
    os.environ.update(COURSE_SAVE_CHECKPOINTS=str(CHECKPOINT_DIR), COURSE_PRETRAINED="0",
                      COURSE_METRICS_FILE=str(metrics_file))
    output = executed_dir / f"{nid}.ipynb" if executed_dir else None
    try:
        seconds = execute_notebook(ROOT / "solutions" / f"{nid}.ipynb", fast=False, timeout=3600, output=output)
    finally:
        for key in ("COURSE_SAVE_CHECKPOINTS", "COURSE_PRETRAINED", "COURSE_METRICS_FILE"):
            os.environ.pop(key, None)
    print(f"{nid}: full mode in {seconds:.0f} s; checkpoints written to {CHECKPOINT_DIR}")
    for line in metrics_file.read_text().splitlines():
        m = json.loads(line)
        print(f"  {m['name']} = {m['value']:.4g}" if isinstance(m["value"], float) else f"  {m['name']} = {m['value']}")
    metrics_file.unlink()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", action="append", choices=["judge", *NOTEBOOKS], help="repeatable")
    parser.add_argument("--executed-dir", type=Path, help="also save the executed notebooks here")
    args = parser.parse_args()
    wanted = args.only or ["judge", *NOTEBOOKS]
    if args.executed_dir:
        args.executed_dir.mkdir(parents=True, exist_ok=True)
    if "judge" in wanted:
        make_judge()
    for nid in NOTEBOOKS:
        if nid in wanted:
            run_notebook(nid, args.executed_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())

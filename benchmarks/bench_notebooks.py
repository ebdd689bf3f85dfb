#!/usr/bin/env python
"""Benchmark the notebooks: fast-mode and full-mode execution time, grading time, and the quality
figures each notebook records with ``course.record_metric``. Prints a table (and writes JSON).

    python benchmarks/bench_notebooks.py                 # every notebook, fast mode + grading
    python benchmarks/bench_notebooks.py --full          # also full mode (minutes per notebook)
    python benchmarks/bench_notebooks.py --only 01_toy_flows --full

Targets on 2 CPU cores (issues): fast <= 60 s; full <= 3 min (01), 5 min (02-06), 8 min (07-08);
grading <= 30 s (45 s for 07-08). Timings on a shared machine are noisy: run on an idle one.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from grader.workflows.execute import execute_notebook  # noqa: E402
from grader.workflows.release import solution_notebooks  # noqa: E402
from grader.engine.grade import grade_notebook  # noqa: E402

FULL_TARGET = {"01": 180, "07": 480, "08": 480, "11": 480, "12": 480}  # 09, 10: the default 300 s
GRADE_TARGET = {"07": 45, "08": 45, "11": 45, "12": 45}  # others: the default 30 s


def bench(path: Path, full: bool) -> dict:
    nid = path.stem
    row = {"notebook": nid}
    row["fast_s"] = round(execute_notebook(path, fast=True, timeout=1800), 1)
    start = time.perf_counter()
    report = grade_notebook(path)
    row["grade_s"] = round(time.perf_counter() - start, 1)
    row["reference_score"] = f"{report['score']:g}/{report['max_score']:g}"
    if full:
        with tempfile.NamedTemporaryFile(suffix=".jsonl", delete=False) as tmp:
            metrics_file = tmp.name
        os.environ["COURSE_METRICS_FILE"] = metrics_file
        try:
            row["full_s"] = round(execute_notebook(path, fast=False, timeout=3600), 1)
        finally:
            os.environ.pop("COURSE_METRICS_FILE", None)
        lines = Path(metrics_file).read_text().splitlines()
        row["metrics"] = {m["name"]: m["value"] for m in map(json.loads, lines)}
        os.unlink(metrics_file)
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--full", action="store_true", help="also run full mode and collect quality metrics")
    parser.add_argument("--only", action="append", help="notebook id (repeatable)")
    parser.add_argument("--json", default=str(ROOT / "benchmarks" / "last_run.json"))
    args = parser.parse_args()
    rows = []
    for path in solution_notebooks():
        if args.only and path.stem not in args.only:
            continue
        print(f"benchmarking {path.stem} ...", flush=True)
        rows.append(bench(path, args.full))
    print(f"\nmachine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores\n")
    print(f"{'notebook':22} {'fast s':>7} {'full s':>7} {'grade s':>8}  reference  targets (fast/full/grade)")
    for r in rows:
        key = r["notebook"][:2]
        targets = f"60/{FULL_TARGET.get(key, 300)}/{GRADE_TARGET.get(key, 30)}"
        print(f"{r['notebook']:22} {r['fast_s']:7.1f} {r.get('full_s', float('nan')):7.1f} {r['grade_s']:8.1f}"
              f"  {r['reference_score']:>9}  {targets}")
    for r in rows:
        for name, value in (r.get("metrics") or {}).items():
            shown = f"{value:.4g}" if isinstance(value, (int, float)) else str(value)
            print(f"  {r['notebook']}: {name} = {shown}")
    Path(args.json).write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

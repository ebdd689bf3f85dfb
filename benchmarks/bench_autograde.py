"""Time ``course autograde`` on N synthetic submissions of notebook 01, with 1 and 2 workers.

    python benchmarks/bench_autograde.py [--n 4] [--workers 1 2] [--notebook 01_toy_flows]

Builds a throw-away course directory (``init-class``), hands in N submissions (alternately the
reference answers and the blank notebook), grades them all with each worker count (``force``:
every submission is regraded), and prints a table: wall time, seconds per submission, speedup,
and the mean time one grading process took. Grading is CPU-bound: expect a speedup close to
min(workers, free cores).
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from grader.workflows.autograde import Options, autograde  # noqa: E402
from grader.workflows.coursedir import init_class  # noqa: E402


def make_class(course_dir: Path, notebook: str, n: int) -> None:
    solution = nbformat.read(ROOT / "solutions" / f"{notebook}.ipynb", as_version=4)
    answers = {c.metadata["nbgrader"]["grade_id"]: c.source for c in solution.cells
               if (c.metadata.get("nbgrader") or {}).get("solution")}
    for i in range(n):
        nb = nbformat.read(course_dir / "release" / notebook / f"{notebook}.ipynb", as_version=4)
        if i % 2 == 0:  # even students: the reference answers; odd: the blank notebook
            for cell in nb.cells:
                gid = (cell.metadata.get("nbgrader") or {}).get("grade_id")
                if gid in answers and (cell.metadata.get("nbgrader") or {}).get("solution"):
                    cell.source = answers[gid]
        folder = course_dir / "submitted" / f"student{i:02d}" / notebook
        folder.mkdir(parents=True)
        nbformat.write(nb, folder / f"{notebook}.ipynb")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=4, help="submissions (default 4)")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--notebook", default="01_toy_flows")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="bench-autograde-"))
    try:
        course_dir = tmp / "course"
        t0 = time.monotonic()
        init_class(course_dir, only=[args.notebook], quiet=True)
        setup_s = time.monotonic() - t0
        make_class(course_dir, args.notebook, args.n)
        results = []
        for workers in args.workers:
            t0 = time.monotonic()
            rows = autograde(course_dir, workers=workers, opts=Options(seed=args.seed, force=True),
                             log=lambda *a: None)
            wall = time.monotonic() - t0
            per = [r["report"].get("seconds", 0.0) for r in rows]
            proc = [r["report"].get("process_seconds", 0.0) for r in rows]
            scores = sorted({r["score"] for r in rows})
            results.append((workers, len(rows), wall, statistics.mean(per), statistics.mean(proc), scores))
        base = results[0][2]
        print(f"autograde of {args.n} submissions of {args.notebook} (init-class took {setup_s:.1f} s)")
        print(f"{'workers':>7}  {'N':>3}  {'wall s':>7}  {'s/submission':>12}  {'speedup':>7}  "
              f"{'mean grading s':>14}  {'mean process s':>14}  scores")
        for workers, n, wall, mean, proc, scores in results:
            print(f"{workers:>7}  {n:>3}  {wall:>7.1f}  {wall / max(n, 1):>12.1f}  {base / wall:>7.2f}  "
                  f"{mean:>14.1f}  {proc:>14.1f}  {', '.join(f'{s:g}' for s in scores)}")
        print("grading s: grade_notebook inside the grading process; process s: the whole process "
              "(Python start, imports, grading); wall s also includes the gradebook writes.")
        print(f"machine: {os.cpu_count()} CPU(s), load average {os.getloadavg()[0]:.1f} at the end")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

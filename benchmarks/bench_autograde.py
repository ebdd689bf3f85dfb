"""Time ``course autograde`` on N synthetic submissions, cold and warm, with 1 and 2 workers.

    python benchmarks/bench_autograde.py [--n 6] [--workers 1 2] [--modes cold warm]
                                         [--notebook 01_toy_flows] [--blank-every 0]

Builds a throw-away course directory (``init-class``), hands in N submissions (the reference
answers: well-behaved submissions that run every test; ``--blank-every K`` makes every K-th one
the blank notebook), grades them all for each mode and worker count (``force``: every submission
is regraded) and prints, per run:

- submissions per minute (wall clock, gradebook writes included);
- the start-up share: of the grading processes' time, the part not spent grading: starting
  Python and importing torch, pytest and the grader (cold: every submission; warm: only the
  zygote's start, counted in each slot's first submission), plus starting the learner's sandboxed
  worker (cold: a new interpreter that imports torch; warm: a fork);
- the marginal cost of one more submission: the wall-clock time between completions once every
  slot has finished its first submission, ``(t_N - t_w) / (N - w)`` for w workers, which is
  what each further student adds to a class run (the zygotes' start is not in it);
- the CPU seconds per submission (every process of the run), which other programs' load does not
  inflate: on an idle machine the wall time per submission is about that / min(workers, cores);
- the extrapolated time of a class of 60 students x 8 notebooks at that marginal cost, plus the
  measured start of the run (this notebook's cost stands for every notebook's: say which).

Grading is CPU-bound: expect a speedup close to min(workers, free cores). Report the load
average printed at the end beside the figures.
"""
from __future__ import annotations

import argparse
import os
import resource
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


def make_class(course_dir: Path, notebook: str, n: int, blank_every: int = 0) -> None:
    solution = nbformat.read(ROOT / "solutions" / f"{notebook}.ipynb", as_version=4)
    answers = {c.metadata["nbgrader"]["grade_id"]: c.source for c in solution.cells
               if (c.metadata.get("nbgrader") or {}).get("solution")}
    for i in range(n):
        nb = nbformat.read(course_dir / "release" / notebook / f"{notebook}.ipynb", as_version=4)
        if not (blank_every and i % blank_every == blank_every - 1):  # else: the blank notebook
            for cell in nb.cells:
                gid = (cell.metadata.get("nbgrader") or {}).get("grade_id")
                if gid in answers and (cell.metadata.get("nbgrader") or {}).get("solution"):
                    cell.source = answers[gid]
        folder = course_dir / "submitted" / f"student{i:02d}" / notebook
        folder.mkdir(parents=True)
        nbformat.write(nb, folder / f"{notebook}.ipynb")


def _cpu() -> float:
    """CPU seconds of this process and every process it (and they) waited for: the grading
    processes, zygotes, supervisors and workers (each is reaped by its parent)."""
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def run(course_dir: Path, notebook: str, workers: int, warm: bool, seed: int) -> dict:
    done: list[float] = []
    t0 = time.monotonic()

    def log(line, *rest):
        if f" {notebook}: " in str(line):  # one submission graded
            done.append(time.monotonic() - t0)

    cpu0 = _cpu()
    rows = autograde(course_dir, workers=workers, opts=Options(seed=seed, force=True, warm=warm), log=log)
    wall = time.monotonic() - t0
    cpu = _cpu() - cpu0
    n = len(rows)
    done = sorted(done)[:n]
    grading = [r["report"].get("seconds", 0.0) for r in rows]
    process = [r["report"].get("process_seconds", 0.0) for r in rows]
    sandbox = [r["report"].get("sandbox_start_seconds", 0.0) for r in rows]
    startup = sum(p - g for p, g in zip(process, grading)) + sum(sandbox)
    w = min(workers, n)
    marginal = (done[-1] - done[w - 1]) / (n - w) if n > w and len(done) == n else float("nan")
    return {"mode": "warm" if warm else "cold", "workers": workers, "n": n, "wall": wall,
            "per_min": 60.0 * n / wall, "grading": statistics.mean(grading), "process": statistics.mean(process),
            "sandbox": statistics.mean(sandbox), "share": startup / max(sum(process), 1e-9),
            "marginal": marginal, "cpu": cpu / max(n, 1), "first": done[w - 1] if done else float("nan"),
            "scores": sorted({r["score"] for r in rows}),
            "modes": sorted({(r["report"].get("worker") or {}).get("mode", "?") for r in rows})}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=6, help="submissions (default 6)")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--modes", nargs="+", default=["cold", "warm"], choices=["cold", "warm"])
    parser.add_argument("--notebook", default="01_toy_flows")
    parser.add_argument("--blank-every", type=int, default=0)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="bench-autograde-"))
    try:
        course_dir = tmp / "course"
        t0 = time.monotonic()
        init_class(course_dir, only=[args.notebook], quiet=True)
        setup_s = time.monotonic() - t0
        make_class(course_dir, args.notebook, args.n, args.blank_every)
        load_before = os.getloadavg()[0]
        results = []
        for mode in args.modes:
            for workers in args.workers:
                results.append(run(course_dir, args.notebook, workers, mode == "warm", args.seed))
                print(f"  done: {mode} x{workers} ({results[-1]['wall']:.0f} s, load {os.getloadavg()[0]:.1f})",
                      flush=True)
        print(f"\nautograde of {args.n} submissions of {args.notebook} (init-class took {setup_s:.1f} s)")
        print(f"{'mode':>4} {'workers':>7} {'N':>3} {'wall s':>7} {'subs/min':>8} {'grading s':>9} "
              f"{'process s':>9} {'sandbox start s':>15} {'start-up share':>14} {'marginal s':>10} "
              f"{'60x8 min':>8} {'CPU s/sub':>9}  scores")
        for r in results:
            cls = (r["first"] + 480 * r["marginal"]) / 60.0
            print(f"{r['mode']:>4} {r['workers']:>7} {r['n']:>3} {r['wall']:>7.1f} {r['per_min']:>8.2f} "
                  f"{r['grading']:>9.1f} {r['process']:>9.1f} {r['sandbox']:>15.2f} {100 * r['share']:>13.0f}% "
                  f"{r['marginal']:>10.2f} {cls:>8.1f} {r['cpu']:>9.2f}  {', '.join(f'{s:g}' for s in r['scores'])}"
                  + ("" if r["modes"] == [r["mode"]] else f"  (graded: {', '.join(r['modes'])})"))
        print("grading s: grade_notebook in the grading process (its sandbox start included); process s: the "
              "whole grading process (warm: fork to report; a slot's first also waits for its zygote); "
              "sandbox start s: starting the learner's worker(s); marginal s: wall time per further "
              "submission once every slot is running; 60x8 min: first completion + 480 x marginal; CPU s/sub: "
              "CPU time of the whole run (every process) per submission, which the load of other programs "
              "does not inflate: on an idle machine, wall s per submission ~ CPU s/sub / min(workers, cores).")
        print(f"machine: {os.cpu_count()} CPU(s), load average {load_before:.1f} before, "
              f"{os.getloadavg()[0]:.1f} at the end")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""``course progress``: a learner's current score on every exercise of every notebook.

It grades the learner's own copies (``notebooks/NN_name.ipynb``) with the grader engine, in the
sandbox, with whatever tests are installed: in the course repository that is the public *and*
hidden tests (the instructor's grade); in a student bundle (``course bundle``), which has no
``grader/tests/``, the public tests only, so the scores are a preview of the real grade. The table
says which applies. Notebooks not yet released or not yet opened show as "not started".
"""
from __future__ import annotations

from pathlib import Path

from grader.engine import registry
from grader.engine.grade import GraderError, grade_notebook


def tests_available(notebook_id: str) -> str:
    return "public+hidden" if registry.spec_for(notebook_id).hidden_path.is_file() else "public only"


def progress(notebooks_dir: Path, only: list[str] | None = None, budget_s: float = 120.0,
             seed: int | None = 0) -> list[dict]:
    """One row per exercise: notebook, exercise, score, max_score, status, tests."""
    rows = []
    for spec in registry.notebooks():
        if only and spec.id not in only:
            continue
        path = Path(notebooks_dir) / f"{spec.id}.ipynb"
        tests = tests_available(spec.id)
        if not path.is_file():
            rows += [{"notebook": spec.id, "exercise": name, "score": 0.0, "max_score": float(points),
                      "status": "not started", "tests": tests} for name, points in spec.exercises.items()]
            continue
        try:
            report = grade_notebook(path, seed=seed, notebook_id=spec.id, budget_s=budget_s)
        except GraderError as exc:
            rows += [{"notebook": spec.id, "exercise": name, "score": 0.0, "max_score": float(points),
                      "status": f"unreadable: {str(exc).splitlines()[0]}", "tests": tests}
                     for name, points in spec.exercises.items()]
            continue
        for name, r in report["exercises"].items():
            rows.append({"notebook": spec.id, "exercise": name, "score": r["score"],
                         "max_score": r["max_score"], "status": r["status"], "tests": tests})
    return rows


def format_progress(rows: list[dict]) -> str:
    """The table, with a subtotal per notebook and the course total."""
    if not rows:
        return "No notebooks found."
    w_nb = max(len(r["notebook"]) for r in rows)
    w_ex = max([len(r["exercise"]) for r in rows] + [8])
    out = [f"{'notebook'.ljust(w_nb)}  {'exercise'.ljust(w_ex)}  {'score':>9}  status"]
    total = maximum = 0.0
    by_nb: dict[str, list[dict]] = {}
    for r in rows:
        by_nb.setdefault(r["notebook"], []).append(r)
    for nb, items in by_nb.items():
        for r in items:
            out.append(f"{nb.ljust(w_nb)}  {r['exercise'].ljust(w_ex)}  "
                       f"{r['score']:>4g}/{r['max_score']:<4g}  {r['status']}")
        s, m = sum(r["score"] for r in items), sum(r["max_score"] for r in items)
        total, maximum = total + s, maximum + m
        out.append(f"{nb.ljust(w_nb)}  {'subtotal'.ljust(w_ex)}  {s:>4g}/{m:<4g}  (tests: {items[0]['tests']})")
        out.append("")
    out.append(f"{'course'.ljust(w_nb)}  {'total'.ljust(w_ex)}  {total:>4g}/{maximum:<4g}")
    return "\n".join(out)

"""``course progress``: a learner's current score on every exercise of every notebook.

It grades the learner's own copies (``notebooks/NN_name.ipynb``) with the grader engine, in the
sandbox, with whatever tests are installed: in the course repository that is the public *and*
hidden tests (the instructor's grade); in a student bundle (``course bundle``), which has no
``grader/tests/``, the public tests only, so the scores are a preview of the real grade. The table
says which applies. A notebook is found as ``NN_name.ipynb`` or, failing that, as any notebook in the
folder that says it is ``NN_name`` (its metadata, or a name like ``NN_name-Copy1.ipynb``): the row
names the file graded. Only a notebook with no file at all shows as "not started", with the path
that was looked for; a folder that does not exist is an error, never a table of "not started".
"""
from __future__ import annotations

from pathlib import Path

from grader.engine import notebook as nbmod
from grader.engine import registry
from grader.engine.grade import GraderError
from grader.paths import NOTEBOOKS
from grader.workflows.answers import grade_with_repair
from grader.workflows.start import remembered_workdir


def tests_available(notebook_id: str) -> str:
    return "public+hidden" if registry.spec_for(notebook_id).hidden_path.is_file() else "public only"


def default_notebooks_dir() -> Path:
    """The learner's notebooks: the folder of ``course start`` (or $COURSE_WORKDIR) if there is one; else
    the repository's ``notebooks/``; in an installed bundle (where the package lives in site-packages)
    ``./notebooks`` if it exists, else the working directory."""
    if remembered_workdir() is not None:
        return remembered_workdir()
    if NOTEBOOKS.is_dir():
        return NOTEBOOKS
    here = Path.cwd() / "notebooks"
    return here if here.is_dir() else Path.cwd()


def find_notebook(notebooks_dir: Path, notebook_id: str) -> Path | None:
    """``NN_name.ipynb`` in the folder, else the newest notebook there that says it is ``NN_name``."""
    exact = Path(notebooks_dir) / f"{notebook_id}.ipynb"
    if exact.is_file():
        return exact
    found = []
    for path in Path(notebooks_dir).glob("*.ipynb"):
        try:
            nid = nbmod.notebook_id(nbmod.read_notebook(path), path)
        except nbmod.NotANotebook:
            nid = nbmod.notebook_id({}, path)
        if nid == notebook_id:
            found.append(path)
    return max(found, key=lambda p: p.stat().st_mtime) if found else None


def progress(notebooks_dir: Path, only: list[str] | None = None, budget_s: float = 120.0,
             seed: int | None = 0) -> list[dict]:
    """One row per exercise: notebook, exercise, score, max_score, status, tests, file."""
    notebooks_dir = Path(notebooks_dir)
    if not notebooks_dir.is_dir():
        raise FileNotFoundError(f"no folder {notebooks_dir}: pass the folder of your notebooks with --dir")
    rows = []
    for spec in registry.notebooks():
        if only and spec.id not in only:
            continue
        path = find_notebook(notebooks_dir, spec.id)
        tests = tests_available(spec.id)
        if path is None:
            missing = notebooks_dir / f"{spec.id}.ipynb"
            rows += [{"notebook": spec.id, "exercise": name, "score": 0.0, "max_score": float(points),
                      "status": f"not started (no {missing})", "tests": tests, "file": None}
                     for name, points in spec.exercises.items()]
            continue
        try:
            report = grade_with_repair(path, seed=seed, notebook_id=spec.id, budget_s=budget_s)
        except GraderError as exc:
            rows += [{"notebook": spec.id, "exercise": name, "score": 0.0, "max_score": float(points),
                      "status": f"could not be graded: {str(exc).splitlines()[0]}", "tests": tests,
                      "file": str(path)} for name, points in spec.exercises.items()]
            continue
        for name, r in report["exercises"].items():
            status = r["status"] + (" (answer cell found by name: see its feedback)" if r.get("repaired") else "")
            rows.append({"notebook": spec.id, "exercise": name, "score": r["score"],
                         "max_score": r["max_score"], "status": status, "tests": tests, "file": str(path)})
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
        graded = items[0].get("file")
        out.append(f"{nb.ljust(w_nb)}  {'subtotal'.ljust(w_ex)}  {s:>4g}/{m:<4g}  (tests: {items[0]['tests']})"
                   + (f"  [{Path(graded).name}]" if graded and Path(graded).name != f"{nb}.ipynb" else ""))
        out.append("")
    out.append(f"{'course'.ljust(w_nb)}  {'total'.ljust(w_ex)}  {total:>4g}/{maximum:<4g}")
    return "\n".join(out)

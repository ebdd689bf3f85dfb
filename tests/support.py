"""Helpers for the project's tests: notebooks with replaced answers, graded in the sandbox."""
from __future__ import annotations

import copy
import json
import tempfile
from pathlib import Path

import nbformat

from grader.engine.grade import grade_notebook

ROOT = Path(__file__).resolve().parents[1]
SOLUTIONS = ROOT / "solutions"
NOTEBOOKS = ROOT / "notebooks"


def with_answers(notebook: Path, answers: dict[str, str], out_dir: Path | None = None) -> Path:
    """A copy of ``notebook`` whose answer cells (by grade_id) hold the given sources."""
    nb = nbformat.read(notebook, as_version=4)
    nb = copy.deepcopy(nb)
    seen = set()
    for cell in nb.cells:
        gid = (cell.get("metadata", {}).get("nbgrader") or {}).get("grade_id")
        if gid in answers:
            cell.source = answers[gid]
            seen.add(gid)
    missing = set(answers) - seen
    assert not missing, f"no answer cell for {missing} in {notebook}"
    out_dir = Path(out_dir or tempfile.mkdtemp(prefix="variant-"))
    path = out_dir / notebook.name
    path.write_text(json.dumps(nb), encoding="utf-8")
    return path


def grade_with(notebook: Path, answers: dict[str, str], seed: int = 1234, **kwargs) -> dict:
    """Grade a copy of ``notebook`` with ``answers`` substituted."""
    return grade_notebook(with_answers(notebook, answers), seed=seed, **kwargs)


def feedback_text(report: dict, exercise: str) -> str:
    return "\n".join(report["exercises"][exercise]["feedback"])


def assert_wrong(report: dict, exercise: str, expected_hint: str | None = None) -> None:
    """The exercise lost points, and (if given) the feedback contains ``expected_hint``."""
    r = report["exercises"][exercise]
    text = feedback_text(report, exercise)
    assert r["score"] < r["max_score"], f"{exercise}: a wrong answer kept full marks.\n{text}"
    if expected_hint is not None:
        assert expected_hint.lower() in text.lower(), (
            f"{exercise}: feedback lacks {expected_hint!r}:\n{text}")


def assert_full(report: dict, exercise: str | None = None) -> None:
    names = [exercise] if exercise else list(report["exercises"])
    for name in names:
        r = report["exercises"][name]
        assert r["score"] == r["max_score"] and r["status"] == "passed", (
            f"{name}: expected full marks, got {r['score']}/{r['max_score']} ({r['status']}):\n"
            + "\n".join(r["feedback"]))

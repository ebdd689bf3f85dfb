"""Answer cells that lost their nbgrader metadata: found by the name they define, graded, flagged.

The grader finds an exercise's answer by its cell's nbgrader ``grade_id``. Some editors (and
copy-pasting an answer into a new cell) drop that metadata; the answer is then still in the
notebook, under the name the exercise asks for. :func:`grade_with_repair` looks, for every exercise
whose ``grade_id`` cell is missing, for the last code cell without a grade id that defines the
exercise's name at top level (``def name``, ``class name``, ``name = ...``), gives that cell the
metadata back (in a temporary copy: the learner's file is never changed), grades the copy, and
flags each such exercise in its feedback (``"repaired": true`` in the report, and a first line
saying what happened and how to fix the notebook).
"""
from __future__ import annotations

import ast
import tempfile
from pathlib import Path

import nbformat

from grader.engine import notebook as nbmod
from grader.engine import registry
from grader.engine.grade import grade_notebook

REPAIRED_NOTE = ("Your answer cell for {name} had lost its nbgrader metadata (an editor that strips it, or "
                 "the answer pasted into a new cell): the grader found it by the name it defines and "
                 "graded it. Put your code back into the original answer cell (from a fresh copy of the "
                 "notebook) so that every tool recognises it.")


def defined_names(source: str) -> set[str]:
    """Top-level names a cell binds (functions, classes, assignments, imports); IPython syntax allowed."""
    from IPython.core.inputtransformer2 import TransformerManager

    try:
        tree = ast.parse(TransformerManager().transform_cell(source))
    except SyntaxError:
        return set()
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                names.update(n.id for n in ast.walk(target) if isinstance(n, ast.Name))
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update((a.asname or a.name).split(".")[0] for a in node.names)
    return names


def repair(nb: nbformat.NotebookNode, exercises) -> list[str]:
    """Give stripped answer cells their grade ids back (in place); return the exercises repaired."""
    present = {(c.get("metadata", {}).get("nbgrader") or {}).get("grade_id") for c in nb.cells}
    repaired = []
    for name in exercises:
        if name in present:
            continue
        candidates = [c for c in nb.cells if c.get("cell_type") == "code"
                      and not (c.get("metadata", {}).get("nbgrader") or {}).get("grade_id")
                      and name in defined_names(c.source)]
        if not candidates:
            continue
        cell = candidates[-1]  # the last definition wins, as in the kernel
        cell.setdefault("metadata", {})["nbgrader"] = {
            "grade_id": name, "solution": True, "grade": False, "locked": False, "schema_version": 3}
        repaired.append(name)
    return repaired


def grade_with_repair(path: str | Path, notebook_id: str | None = None, **kwargs) -> dict:
    """``grade_notebook`` on ``path``, with stripped answer cells found by name and flagged."""
    try:
        nb = nbmod.read_notebook(path)
        nid = notebook_id or nbmod.notebook_id(nb, path)
        exercises = registry.spec_for(nid).exercises if nid else {}
    except (nbmod.NotANotebook, KeyError, ImportError):
        return grade_notebook(path, notebook_id=notebook_id, **kwargs)  # it raises the proper error
    repaired = repair(nb, exercises)
    if not repaired:
        return grade_notebook(path, notebook_id=notebook_id, **kwargs)
    with tempfile.TemporaryDirectory(prefix="grader-repaired-") as tmp:
        copy = Path(tmp) / Path(path).name
        nbformat.write(nb, copy)
        report = grade_notebook(copy, notebook_id=nid, **kwargs)
    for name in repaired:
        result = report["exercises"].get(name)
        if result is not None:
            result["repaired"] = True
            result["feedback"] = [REPAIRED_NOTE.format(name=name)] + list(result.get("feedback", []))
    report["repaired"] = [n for n in repaired if n in report["exercises"]]
    return report

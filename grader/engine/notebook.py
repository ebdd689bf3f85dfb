"""Reading a submitted notebook: which cells the grader runs, and a static look at each answer.

The grader runs, in notebook order, only
- the ``setup`` cell(s) (nbgrader grade_id starting with "setup": imports and given code), and
- each exercise's solution cell (nbgrader grade_id == the exercise name).
Demos, training runs, plots and the learner's own extra cells are *not* run, so grading is fast
and a slow experiment cannot cost marks. Helpers an answer needs belong inside its cell.
"""
from __future__ import annotations

import ast
import json
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

from grader.engine.registry import NOTEBOOK_ID
from grader.engine.submission import Cell


class NotANotebook(ValueError):
    """The file cannot be graded at all (missing, not JSON, not a notebook)."""


@dataclass
class ParsedNotebook:
    id: str | None
    cells: list[Cell]
    solution_sources: dict[str, str] = field(default_factory=dict)  # exercise -> source


def _grade_id(cell) -> str | None:
    return (cell.get("metadata", {}).get("nbgrader") or {}).get("grade_id")


def read_notebook(path: str | Path) -> nbformat.NotebookNode:
    path = Path(path)
    if not path.is_file():
        raise NotANotebook(f"no such file: {path}")
    try:
        with open(path, encoding="utf-8") as f:
            raw = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise NotANotebook(f"{path} is not a notebook (not valid JSON: {exc})") from None
    if not isinstance(raw, dict) or "cells" not in raw or "nbformat" not in raw:
        raise NotANotebook(f"{path} is not a Jupyter notebook (no cells)")
    try:
        nb = nbformat.reads(json.dumps(raw), as_version=4)
    except Exception as exc:  # nbformat raises several kinds
        raise NotANotebook(f"{path} is not a readable Jupyter notebook: {exc}") from None
    problem = metadata_problem(nb)
    if problem:
        raise NotANotebook(f"{path.name}: {problem}")
    return nb


def metadata_problem(nb) -> str | None:
    """None if the metadata the grader reads has the right types, else what is wrong (cell numbers from 1).

    nbformat does not check nbgrader's or the course's metadata: a ``grade_id`` that is a number,
    an ``nbgrader`` entry that is not a mapping, a cell whose source is not text would otherwise
    break the grader deep inside.
    """
    meta = nb.get("metadata")
    if not isinstance(meta, dict):
        return "the notebook's metadata is not a mapping"
    course = meta.get("course")
    if course is not None and (not isinstance(course, dict) or not isinstance(course.get("notebook", ""), str)):
        return "the notebook's metadata 'course' must be a mapping with a text 'notebook' (e.g. \"01_toy_flows\")"
    for i, cell in enumerate(nb.get("cells") or [], 1):
        if not isinstance(cell, dict) or not isinstance(cell.get("cell_type"), str):
            return f"cell {i} is not a notebook cell (no cell_type)"
        if not isinstance(cell.get("source", ""), str):
            return f"cell {i}'s source is not text"
        cmeta = cell.get("metadata", {})
        if not isinstance(cmeta, dict):
            return f"cell {i}'s metadata is not a mapping"
        nbg = cmeta.get("nbgrader")
        if nbg is None:
            continue
        if not isinstance(nbg, dict):
            return f"cell {i}'s nbgrader metadata is not a mapping (it is {type(nbg).__name__})"
        gid = nbg.get("grade_id")
        if gid is not None and not isinstance(gid, str):
            return (f"cell {i}'s nbgrader grade_id is {gid!r}, not text: grade ids name the exercise "
                    "(copy the cell from a fresh copy of the notebook)")
    return None


def notebook_id(nb: nbformat.NotebookNode, path: str | Path) -> str | None:
    """From the notebook's ``course.notebook`` metadata, else from its file name (``01_toy_flows*``)."""
    meta = (nb.get("metadata") or {}).get("course") or {}
    if isinstance(meta, dict) and isinstance(meta.get("notebook"), str) and NOTEBOOK_ID.match(meta["notebook"]):
        return meta["notebook"]
    stem = Path(path).stem
    for n in range(len(stem), 3, -1):
        if NOTEBOOK_ID.match(stem[:n]):
            return stem[:n]
    return None


def name_id(path: str | Path, known) -> str | None:
    """The course notebook a file's name names (the longest prefix of its stem in ``known``), or None."""
    stem = Path(path).stem
    for n in range(len(stem), 3, -1):
        if stem[:n] in known:
            return stem[:n]
    return None


def id_conflict(nb: nbformat.NotebookNode, path: str | Path, known) -> str | None:
    """Why the file name and the metadata of a notebook name two different course notebooks, or None."""
    meta = (nb.get("metadata") or {}).get("course") or {}
    meta_id = meta.get("notebook") if isinstance(meta, dict) else None
    file_id = name_id(path, known)
    if meta_id in known and file_id is not None and meta_id != file_id:
        return (f"{Path(path).name} is named like notebook {file_id} but its metadata says it is {meta_id}: "
                f"say which with --notebook-id {file_id} (or {meta_id})")
    return None


def parse(nb: nbformat.NotebookNode, exercises, path: str | Path) -> ParsedNotebook:
    """The cells the grader runs (setup and answer cells, in order) of a notebook already read
    with :func:`read_notebook` from ``path``, and each exercise's answer source."""
    cells, sources = [], {}
    for cell in nb.cells:
        if cell.get("cell_type") != "code":
            continue
        gid = _grade_id(cell)
        if gid is None:
            continue
        if gid.startswith("setup") or gid in exercises:
            cells.append(Cell(gid, cell.source))
            if gid in exercises:
                sources[gid] = cell.source
    return ParsedNotebook(notebook_id(nb, path), cells, sources)


def library_use(source: str, exercise: str) -> str | None:
    """Does this answer take ``exercise`` from the course library? Return the offending text.

    Catches ``from course... import <exercise>`` and ``<alias of a course module>.<exercise>``,
    whatever the alias. (The sandbox also watches, at run time, for calls into the library's
    implementation by any other route.)
    """
    from IPython.core.inputtransformer2 import TransformerManager

    try:
        tree = ast.parse(TransformerManager().transform_cell(source))
    except SyntaxError:
        return None
    course_aliases = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == "course" or alias.name.startswith("course."):
                    course_aliases.add((alias.asname or alias.name).split(".")[0])
        elif isinstance(node, ast.ImportFrom) and node.module and (
                node.module == "course" or node.module.startswith("course.")):
            for alias in node.names:
                if alias.name == exercise:
                    return f"from {node.module} import {exercise}"
                course_aliases.add(alias.asname or alias.name)
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr == exercise:
            root = node.value
            while isinstance(root, ast.Attribute):
                root = root.value
            if isinstance(root, ast.Name) and root.id in course_aliases:
                return ast.unparse(node)
    return None

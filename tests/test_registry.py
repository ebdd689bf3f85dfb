"""Is every notebook whole? A half-built notebook fails here instead of being skipped.

A notebook ``NN_name`` is whole when it has all six parts: the solution notebook
``solutions/NN_name.ipynb``, the released notebook ``notebooks/NN_name.ipynb``, the public module
``grader/public/nbNN_name.py`` (which imports and declares ``EXERCISES`` and ``LIBRARY``), the
hidden tests ``grader/tests/test_NN_name.py`` and the project tests ``tests/test_nbNN_name.py``.
The registry finds notebooks by their public module; these tests look at the files themselves,
so that a module the registry would pass over (a bad name, an import error) is caught too.
"""
from __future__ import annotations

import importlib
import re

import pytest

from grader.engine.registry import NOTEBOOK_ID, notebooks
from grader.paths import HIDDEN_DIR, NOTEBOOKS, PUBLIC_DIR, ROOT, SOLUTIONS

PUBLIC = sorted(p for p in PUBLIC_DIR.glob("nb*.py"))
SOLVED = sorted(SOLUTIONS.glob("*.ipynb"))


def _id(path) -> str:
    return path.stem[2:] if path.stem.startswith("nb") else path.stem


@pytest.mark.parametrize("public", PUBLIC, ids=[p.stem for p in PUBLIC])
def test_every_public_module_belongs_to_a_whole_notebook(public):
    """Does the public module have a notebook id, import, declare its exercises and library map, and
    come with a solution notebook, a released notebook, hidden tests and project tests?"""
    notebook_id = _id(public)
    assert NOTEBOOK_ID.match(notebook_id), (
        f"{public.name}: a public module is named nbNN_name.py (lower case); the registry would skip it. "
        "Work in progress goes in _wip_nbNN_name.py.")
    module = importlib.import_module(f"grader.public.{public.stem}")  # an import error fails here
    exercises = getattr(module, "EXERCISES", None)
    library = getattr(module, "LIBRARY", None)
    assert isinstance(exercises, dict) and exercises, f"{public.name}: no EXERCISES dict (exercise -> points)"
    assert all(isinstance(v, (int, float)) and v > 0 for v in exercises.values()), f"{public.name}: points must be > 0"
    assert isinstance(library, dict), f"{public.name}: no LIBRARY dict (exercise -> 'module:qualname')"
    assert set(library) <= set(exercises), f"{public.name}: LIBRARY names unknown exercises {set(library) - set(exercises)}"
    missing = [str(p.relative_to(ROOT)) for p in (
        SOLUTIONS / f"{notebook_id}.ipynb", NOTEBOOKS / f"{notebook_id}.ipynb",
        HIDDEN_DIR / f"test_{notebook_id}.py", ROOT / "tests" / f"test_nb{notebook_id}.py") if not p.is_file()]
    assert not missing, f"notebook {notebook_id} is half-built: missing {missing}"


@pytest.mark.parametrize("solution", SOLVED, ids=[p.stem for p in SOLVED])
def test_every_solution_notebook_has_a_public_module(solution):
    """Is every solution notebook graded (a public module by its id)?"""
    assert re.match(r"^\d\d_[a-z0-9_]+$", solution.stem), f"{solution.name}: notebooks are named NN_name.ipynb"
    assert (PUBLIC_DIR / f"nb{solution.stem}.py").is_file(), (
        f"solutions/{solution.name} has no public module grader/public/nb{solution.stem}.py: it would not be graded")


def test_the_registry_lists_exactly_the_public_modules():
    """Does the registry list every public module, and nothing else?"""
    assert [spec.id for spec in notebooks()] == [_id(p) for p in PUBLIC]

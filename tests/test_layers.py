"""Does the house keep its layers? ``course/`` is the library, ``grader/`` grades and distributes."""
from __future__ import annotations

import ast
from pathlib import Path

from grader.paths import GRADER_DIR, ROOT

COURSE_DIR = ROOT / "course"


def _imported_modules(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found = []
    for node in ast.walk(tree):  # every import, also those inside functions
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append(node.module)
    return found


def test_the_library_never_imports_the_grader():
    """Does any module of course/ import grader (directly or inside a function)?"""
    offenders = {str(p.relative_to(ROOT)): m for p in sorted(COURSE_DIR.rglob("*.py"))
                 for m in _imported_modules(p) if m.split(".")[0] == "grader"}
    assert not offenders, f"course/ must not import grader/ (grader imports course, one way): {offenders}"


def test_the_library_holds_no_workflow_modules():
    """Are the course workflows (release, bundle, autograde, ...) in grader/workflows, not in the library?"""
    workflows = {"cli", "autograde", "classroom", "bundle", "release", "progress", "execute"}
    stray = sorted(p.stem for p in COURSE_DIR.glob("*.py") if p.stem in workflows)
    assert not stray, f"workflow modules in course/: {stray} (they belong in grader/workflows/)"
    assert not any("nbgrader" in m for p in COURSE_DIR.rglob("*.py") for m in _imported_modules(p)), \
        "the library imports nbgrader: that is the workflows' concern"


def test_one_module_defines_the_project_paths():
    """Is the project root computed only in grader/paths.py inside the grader package?"""
    defining = [str(p.relative_to(ROOT)) for p in sorted(GRADER_DIR.rglob("*.py"))
                if "Path(__file__)" in p.read_text(encoding="utf-8") and p.name != "paths.py"]
    assert not defining, f"these grader modules locate files from __file__ instead of grader.paths: {defining}"

"""Where the project's parts live: the one definition of every path the grader and its workflows use.

In a checkout, ``ROOT`` is the repository; in an installed student bundle it is the folder that
holds the installed ``grader`` package's parent (``solutions/`` is then absent, as it should be).
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

GRADER_DIR = Path(__file__).resolve().parent  # grader/
ROOT = GRADER_DIR.parent  # the repository (or site-packages in an installed bundle)
SOLUTIONS = ROOT / "solutions"  # nbgrader source notebooks: the hidden reference
NOTEBOOKS = ROOT / "notebooks"  # the student notebooks, generated from SOLUTIONS
CHECKPOINTS = ROOT / "checkpoints"
PUBLIC_DIR = GRADER_DIR / "public"  # each notebook's manifest and public checks
HIDDEN_DIR = GRADER_DIR / "tests"  # each notebook's hidden tests
PYTEST_INI = GRADER_DIR / "engine" / "pytest.ini"


def ensure_scripts_on_path() -> None:
    """Put this interpreter's scripts directory (``.venv/bin``) on PATH.

    nbgrader runs helper commands (``alembic``, for its gradebook) by name; without an activated
    environment (``.venv/bin/python -m pytest``, ``.venv/bin/course``) they would not be found.
    """
    scripts = os.path.dirname(sys.executable)
    if scripts not in os.environ.get("PATH", "").split(os.pathsep):
        os.environ["PATH"] = scripts + os.pathsep + os.environ.get("PATH", "")

"""What a class's students receive (``course bundle OUT``): notebooks, library, public tests only.

The bundle is a pip-installable project (``pip install .`` in it)::

    OUT/notebooks/NN_name.ipynb    the released student notebooks (no solutions)
    OUT/course/                    the library
    OUT/grader/__init__.py         ``from grader import check``
    OUT/grader/engine/             the grading engine (sandbox, check(), course grade)
    OUT/grader/workflows/, cli.py  the `course` command (grade, progress, run)
    OUT/grader/public/             each notebook's manifest and PUBLIC tests
    OUT/checkpoints/               the pretrained weights (optional in every notebook)
    OUT/pyproject.toml, README.md

Never in it: ``solutions/`` (the reference answers) and ``grader/tests/`` (the hidden tests).
Without hidden tests, ``course grade`` and ``course progress`` in a bundle run the public tests
only (the engine skips a missing hidden module), so a learner's score there is a preview.
"""
from __future__ import annotations

import shutil
from pathlib import Path

from grader.paths import CHECKPOINTS, NOTEBOOKS, ROOT, SOLUTIONS
from grader.workflows.release import release, solution_notebooks

PACKAGES = ("course", "grader/engine", "grader/public", "grader/workflows")
FILES = ("grader/__init__.py", "grader/cli.py", "grader/paths.py", "pyproject.toml", "LICENSE")
FORBIDDEN = ("solutions", "grader/tests", "tests")
SOLUTION_MARKERS = ("### BEGIN SOLUTION", "### BEGIN HIDDEN TESTS")

README = """# Diffusion & flow models, by doing: your course notebooks

This folder is what your instructor gave you: the course notebooks (without solutions), the
course library, and the public part of the grader.

## Install (once)

```bash
python -m venv .venv && . .venv/bin/activate   # Python >= 3.10; Windows: .venv\\Scripts\\activate
pip install .                                   # the course library, its dependencies and the `course` command
```

## Work

```bash
jupyter lab notebooks/
```

Open `notebooks/01_toy_flows.ipynb`, run the setup cell, and fill in each answer cell (the cells
that say `raise NotImplementedError()`). Keep everything an answer needs (helper functions too)
*inside its answer cell*: the grader runs only the setup cell and the answer cells.

- `check("euler_step")`, in the notebook, runs that exercise's public checks at once and tells
  you what to fix (it also tells you when an answer uses something defined in another cell).
- `course grade notebooks/01_toy_flows.ipynb` grades a saved notebook in the sandbox, as the
  grader does, with the public tests (your instructor's grader adds hidden tests, so this score
  is a preview).
- `course progress` (from this folder, or `course progress --dir PATH` for your notebooks
  elsewhere) shows every exercise's current score, notebook by notebook.
- `course run notebooks/NN_name.ipynb` runs a whole notebook in fast mode (`--full`: full budgets).

The pretrained weights in `checkpoints/` are used by notebooks 07 and 08 when `PRETRAINED = True`
(found from `notebooks/` or through `COURSE_CHECKPOINTS=/path/to/checkpoints`).

Not in this folder, on purpose: the reference solutions and the hidden tests, and the
instructor's commands that need them (`course demo`, `course init-class`, `course autograde`).
Hand in your notebook as your instructor asks (nbgrader's `submit`, Gradescope, or your LMS).
"""


def _ignore(_dir, names):
    return [n for n in names if n == "__pycache__" or n.endswith((".pyc", ".pyo")) or n.startswith(".")]


def build_bundle(out: Path, force: bool = False, notebooks_dir: Path = NOTEBOOKS,
                 solutions_dir: Path = SOLUTIONS, only: list[str] | None = None) -> Path:
    """Write the student bundle to ``out``; return it. Refuses to overwrite unless ``force``.

    ``only``: the notebook ids to include (default: every notebook in solutions/ and notebooks/).
    """
    out = Path(out).resolve()
    if out.exists():
        if not force:
            raise FileExistsError(f"{out} exists (use --force to replace it)")
        if out == ROOT or ROOT.is_relative_to(out):
            raise ValueError(f"refusing to replace {out}: it holds the project")
        shutil.rmtree(out)
    out.mkdir(parents=True)
    for pkg in PACKAGES:
        shutil.copytree(ROOT / pkg, out / pkg, ignore=_ignore)
    for name in FILES:
        if (ROOT / name).is_file():
            shutil.copy(ROOT / name, out / name)
    # pretrained weights (PRETRAINED = True in notebooks 07 and 08, and the digit judge): no code
    (out / "checkpoints").mkdir()
    for ckpt in sorted(CHECKPOINTS.glob("*.pt")):
        shutil.copy(ckpt, out / "checkpoints" / ckpt.name)
    # the students' README (never the repository's: it names files the bundle does not have);
    # pyproject's readme must exist for `pip install .`
    (out / "README.md").write_text(README, encoding="utf-8")
    # the released student notebooks; a solution not released yet is released into the bundle only
    (out / "notebooks").mkdir()
    for nb in sorted(notebooks_dir.glob("[0-9][0-9]_*.ipynb")):
        if not only or nb.stem in only:
            shutil.copy(nb, out / "notebooks" / nb.name)
    missing = [s.stem for s in solution_notebooks(solutions_dir)
               if not (notebooks_dir / s.name).is_file() and (not only or s.stem in only)]
    if missing:
        release(out / "notebooks", solutions_dir, quiet=True, only=missing)
    problems = audit_bundle(out)
    if problems:
        shutil.rmtree(out)
        raise RuntimeError("the bundle would leak: " + "; ".join(problems))
    return out


def audit_bundle(out: Path) -> list[str]:
    """What must never be in a bundle: solutions, hidden tests, solution markers in a notebook."""
    out = Path(out)
    problems = [f"{name}/ is present" for name in FORBIDDEN if (out / name).exists()]
    for path in out.rglob("*"):
        if path.is_file() and path.suffix in (".ipynb", ".py"):
            text = path.read_text(encoding="utf-8", errors="replace")
            if path.suffix == ".ipynb" and any(m in text for m in SOLUTION_MARKERS):
                problems.append(f"{path.relative_to(out)} holds solution or hidden-test cells")
        if path.is_file() and path.name.startswith("test_") and "grader" in path.parts:
            problems.append(f"{path.relative_to(out)} looks like a hidden test module")
    return problems

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

Staged releases (``course bundle OUT --through NN``, or ``--class DIR`` reading the course
directory's ``published.json``, written by ``course publish DIR NN``): the bundle holds notebooks
01..NN, and the library keeps the reference implementations of the exercises of the notebooks
*before* NN only; those of NN and later are stubs (:mod:`grader.engine.strip`), later notebooks'
public modules and checkpoints are left out, and :func:`audit_bundle` refuses a bundle in which any
definition (library, public grader, notebook cell) has the normalised-AST fingerprint of one of
those references, any bytecode, or a checkpoint that is not a weights-only state dict.
Without hidden tests, ``course grade`` and ``course progress`` in a bundle run the public tests
only (the engine skips a missing hidden module), so a learner's score there is a preview.
"""
from __future__ import annotations

import json
import re
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


PUBLISHED_FILE = "published.json"


def _number(name: str) -> int | None:
    m = re.match(r"^(?:_wip_)?(?:nb)?(\d\d)_", name)
    return int(m.group(1)) if m else None


def read_published(course_dir: Path) -> str:
    """The ``through`` notebook of a course directory's ``published.json`` (``course publish``)."""
    path = Path(course_dir) / PUBLISHED_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: run `course publish {course_dir} NN` first")
    try:
        through = json.loads(path.read_text(encoding="utf-8"))["through"]
    except (ValueError, KeyError, TypeError):
        raise ValueError(f"{path} is not a publication record (expected {{\"through\": \"NN_name\"}})") from None
    return _resolve_through(through)


def _resolve_through(through: str | int) -> str:
    """``"4"``, ``"04"``, ``"04_ddim"`` -> ``"04_ddim"`` (a notebook of the course)."""
    from grader.engine import registry
    from grader.engine.strip import notebook_number

    n = notebook_number(str(through).zfill(2) if str(through).isdigit() else through)
    for spec in registry.notebooks():
        if notebook_number(spec.id) == n:
            return spec.id
    raise ValueError(f"no notebook {through!r} in this course")


def publish(course_dir: Path, through: str) -> str:
    """Record in ``course_dir/published.json`` that notebooks up to ``through`` are released, and the
    solutions of the notebooks before it published; return the notebook id."""
    from grader.workflows.atomic import atomic_write

    nid = _resolve_through(through)
    course_dir = Path(course_dir)
    if not course_dir.is_dir():
        raise FileNotFoundError(f"{course_dir} is not a directory")
    atomic_write(course_dir / PUBLISHED_FILE, json.dumps({"through": nid}, indent=1) + "\n")
    return nid


def build_bundle(out: Path, force: bool = False, notebooks_dir: Path = NOTEBOOKS,
                 solutions_dir: Path = SOLUTIONS, only: list[str] | None = None,
                 through: str | None = None, record: bool = True) -> Path:
    """Write the student bundle to ``out``; return it. Refuses to overwrite unless ``force``.

    ``only``: the notebook ids to include (default: every notebook in solutions/ and notebooks/).
    ``through``: a staged release (see the module's docstring); None ships everything.
    ``record``: with ``through``, record NN's public checks' values of the stubbed functions
    (:mod:`grader.workflows.replay`) so that its public checks work in the bundle.
    """
    if through is not None:
        through = _resolve_through(through)
        last = _number(through)
        keep = (lambda name: _number(name) is None or _number(name) <= last)
    else:
        keep = (lambda name: True)
    out = Path(out).resolve()
    if out.exists():
        if not force:
            raise FileExistsError(f"{out} exists (use --force to replace it)")
        if out == ROOT or ROOT.is_relative_to(out):
            raise ValueError(f"refusing to replace {out}: it holds the project")
        shutil.rmtree(out)
    out.mkdir(parents=True)
    for pkg in PACKAGES:
        if pkg != "course" or through is None:
            shutil.copytree(ROOT / pkg, out / pkg, ignore=_ignore)
    kept = []
    if through is not None:
        from grader.engine.strip import bundle_message, write_stripped

        stripped, kept = staged_targets(through)
        write_stripped(ROOT, out, stripped, bundle_message)
        for public in (out / "grader" / "public").glob("*nb*.py"):
            if not keep(public.name):
                public.unlink()
        if record:  # NN's public checks' values of the stubs, as test vectors (grader/workflows/replay.py)
            from grader.workflows.replay import INIT_HOOK, RECORD_DIR, record_public_checks, write_recording

            table = record_public_checks(through, [t.qualname for t in stripped], solutions_dir / f"{through}.ipynb")
            if table:
                write_recording(out / "grader" / "public" / RECORD_DIR / f"{through}.pt", table)
                with open(out / "grader" / "public" / "__init__.py", "a", encoding="utf-8") as f:
                    f.write(INIT_HOOK)
    for name in FILES:
        if (ROOT / name).is_file():
            shutil.copy(ROOT / name, out / name)
    # pretrained weights (PRETRAINED = True in notebooks 07 and 08, and the digit judge): no code
    (out / "checkpoints").mkdir()
    for ckpt in sorted(CHECKPOINTS.glob("*.pt")):
        if keep(ckpt.name):
            shutil.copy(ckpt, out / "checkpoints" / ckpt.name)
    # the students' README (never the repository's: it names files the bundle does not have);
    # pyproject's readme must exist for `pip install .`
    (out / "README.md").write_text(README, encoding="utf-8")
    # the released student notebooks; a solution not released yet is released into the bundle only
    (out / "notebooks").mkdir()
    for nb in sorted(notebooks_dir.glob("[0-9][0-9]_*.ipynb")):
        if (not only or nb.stem in only) and keep(nb.name):
            shutil.copy(nb, out / "notebooks" / nb.name)
    missing = [s.stem for s in solution_notebooks(solutions_dir)
               if not (notebooks_dir / s.name).is_file() and (not only or s.stem in only) and keep(s.name)]
    if missing:
        release(out / "notebooks", solutions_dir, quiet=True, only=missing)
    if through is not None:
        record_ = {"through": through,
                   "kept_for_earlier_notebooks": {t.qualname: f"an exercise of {t.notebook}, used by the library "
                                                  "from earlier notebooks on" for t in kept}}
        (out / "course-release.json").write_text(json.dumps(record_, indent=1) + "\n", encoding="utf-8")
    problems = audit_bundle(out, through=through)
    if problems:
        shutil.rmtree(out)
        raise RuntimeError("the bundle would leak: " + "; ".join(problems))
    return out


def staged_targets(through: str):
    """(stubbed, kept): the library definitions implementing the exercises of ``through`` and later
    notebooks, less those the earlier notebooks' building blocks need (kept, and named in the
    bundle's ``course-release.json``); see :func:`grader.engine.strip.plan`. ``stubbed`` also holds
    any other library definition with the fingerprint of a stubbed one."""
    from grader.engine.strip import earlier_qualnames, exercise_targets, plan, public_trees, read_trees

    return plan(read_trees(ROOT / "course"), exercise_targets(through, root=ROOT), through,
                protected=earlier_qualnames(through, ROOT), roots=public_trees(through))


def audit_bundle(out: Path, through: str | None = None) -> list[str]:
    """What must never be in a bundle: solutions, hidden tests, solution markers in a notebook,
    bytecode, checkpoints that are not weights-only; with ``through``, any definition whose
    normalised-AST fingerprint is a reference of an exercise of notebook ``through`` or later."""
    out = Path(out)
    problems = [f"{name}/ is present" for name in FORBIDDEN if (out / name).exists()]
    for path in out.rglob("*"):
        if path.is_file() and path.suffix in (".ipynb", ".py"):
            text = path.read_text(encoding="utf-8", errors="replace")
            if path.suffix == ".ipynb" and any(m in text for m in SOLUTION_MARKERS):
                problems.append(f"{path.relative_to(out)} holds solution or hidden-test cells")
        if path.is_file() and path.name.startswith("test_") and "grader" in path.parts:
            problems.append(f"{path.relative_to(out)} looks like a hidden test module")
        if path.suffix in (".pyc", ".pyo") or path.name == "__pycache__":
            problems.append(f"{path.relative_to(out)} is bytecode")
        if path.is_file() and path.suffix in (".pt", ".pth", ".ckpt", ".pkl", ".pickle"):
            problem = _checkpoint_problem(path)
            if problem:
                problems.append(f"{path.relative_to(out)} {problem}")
    if through is not None:
        from grader.engine.strip import find_fingerprints, reference_fingerprints

        prints = reference_fingerprints(staged_targets(through)[0])
        problems += [f"reference code: {hit}" for hit in find_fingerprints(out, prints)]
    return problems


def _checkpoint_problem(path: Path) -> str | None:
    """None for a weights-only checkpoint (tensors and plain values, ``torch.load(weights_only=True)``)."""
    import torch

    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickled code, a class, a function: refused by the weights-only unpickler
        return f"is not a weights-only checkpoint ({type(exc).__name__})"

    def plain(v) -> bool:
        if isinstance(v, dict):
            return all(isinstance(k, (str, int)) and plain(x) for k, x in v.items())
        if isinstance(v, (list, tuple)):
            return all(plain(x) for x in v)
        return v is None or isinstance(v, (torch.Tensor, str, int, float, bool))

    return None if plain(saved) else "holds something other than tensors and plain values"

"""The release pipeline: ``solutions/`` (nbgrader source) -> ``notebooks/`` (student versions).

It runs nbgrader's own ``generate_assignment`` in a throw-away nbgrader course directory, one
assignment per notebook (named after it, e.g. ``01_toy_flows``), then copies each released
notebook into ``notebooks/`` in a canonical JSON form, so rerunning the release changes nothing.
"""
from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import nbformat

from grader.paths import NOTEBOOKS, SOLUTIONS, ensure_scripts_on_path



def solution_notebooks(solutions_dir: Path = SOLUTIONS) -> list[Path]:
    return sorted(p for p in solutions_dir.glob("[0-9][0-9]_*.ipynb"))


def canonical_json(nb: nbformat.NotebookNode) -> str:
    """One stable text form for a notebook: sorted keys, one-space indent, trailing newline."""
    return json.dumps(nb, indent=1, sort_keys=True, ensure_ascii=False) + "\n"


def nbgrader_config(course_root: Path) -> "traitlets.config.Config":  # noqa: F821
    from traitlets.config import Config

    config = Config()
    config.CourseDirectory.root = str(course_root)
    config.CourseDirectory.course_id = "diffusion-course"
    config.Exchange.root = str(course_root / "exchange")
    config.ClearSolutions.code_stub = {"python": "# YOUR CODE HERE\nraise NotImplementedError()"}
    return config


def generate(course_root: Path, assignments: list[str], config=None) -> None:
    """Run nbgrader's generate_assignment for each assignment under ``course_root/source``
    (with ``config``, or the release's own throw-away configuration)."""
    from nbgrader.apps import NbGraderAPI

    ensure_scripts_on_path()
    api = NbGraderAPI(config=config if config is not None else nbgrader_config(course_root))
    for name in assignments:
        result = api.generate_assignment(name, force=True, create=True)
        if not result.get("success"):
            raise RuntimeError(f"nbgrader generate_assignment failed for {name}:\n{result.get('log', '')}\n"
                               f"{result.get('error', '')}")


def release(out_dir: Path = NOTEBOOKS, solutions_dir: Path = SOLUTIONS, quiet: bool = False,
            only: list[str] | None = None) -> list[Path]:
    """Generate every student notebook (or those named in ``only``) into ``out_dir``."""
    sources = [s for s in solution_notebooks(solutions_dir) if not only or s.stem in only]
    written = []
    with tempfile.TemporaryDirectory(prefix="course-release-") as tmp:
        course_root = Path(tmp)
        for src in sources:
            dest = course_root / "source" / src.stem / src.name
            dest.parent.mkdir(parents=True)
            shutil.copy(src, dest)
        generate(course_root, [s.stem for s in sources])
        out_dir.mkdir(parents=True, exist_ok=True)
        for src in sources:
            released = course_root / "release" / src.stem / src.name
            nb = nbformat.read(released, as_version=4)
            target = out_dir / src.name
            target.write_text(canonical_json(nb), encoding="utf-8")
            written.append(target)
            if not quiet:
                print(f"released {src.relative_to(solutions_dir.parent) if src.is_relative_to(solutions_dir.parent) else src} -> {target}")
    return written

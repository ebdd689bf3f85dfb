"""The release pipeline: ``solutions/`` (nbgrader source) -> ``notebooks/`` (student versions).

It runs nbgrader's own ``generate_assignment`` in a throw-away nbgrader course directory, one
assignment per notebook (named after it, e.g. ``01_toy_flows``), then copies each released
notebook into ``notebooks/`` in a canonical JSON form, so rerunning the release changes nothing.
"""
from __future__ import annotations

import json
import shutil
import subprocess
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


class ReleaseRefused(RuntimeError):
    """Some target notebooks hold a learner's answers: they were left as they are."""

    def __init__(self, kept: dict[Path, list[str]]):
        self.kept = kept
        lines = [f"{path} holds your answers ({', '.join(names)}): it was NOT overwritten."
                 for path, names in kept.items()]
        lines += ["Work in your own copy: `course start DIR` copies the student notebooks into DIR (move your",
                  "answered notebooks there first; `course start` never replaces a file). To replace these files",
                  "with blank stubs anyway, losing the answers: `course release --force`."]
        super().__init__("\n".join(lines))


def answer_sources(nb: nbformat.NotebookNode) -> dict[str, str]:
    """grade_id -> source of every answer cell (nbgrader ``solution`` cell) of a notebook."""
    found = {}
    for cell in nb.cells:
        meta = cell.get("metadata", {}).get("nbgrader") or {}
        if meta.get("solution") and meta.get("grade_id"):
            found[str(meta["grade_id"])] = cell.source
    return found


def _committed_version(path: Path) -> nbformat.NotebookNode | None:
    """The notebook as last committed to git (None outside a checkout or if never committed)."""
    try:
        done = subprocess.run(["git", "-C", str(path.parent), "show", f"HEAD:./{path.name}"],
                              capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if done.returncode != 0:
        return None
    try:
        return nbformat.reads(done.stdout, as_version=4)
    except Exception:  # noqa: BLE001 - a committed file that is not a notebook: no stubs to compare with
        return None


def learner_answers(path: Path, new_release: nbformat.NotebookNode) -> list[str]:
    """The answer cells of the existing notebook ``path`` that a learner has written: those whose source
    is neither the new release's stub nor the stub committed in git. An unreadable file counts as work."""
    try:
        existing = nbformat.read(path, as_version=4)
    except Exception:  # noqa: BLE001 - whatever it is, it is not ours to destroy
        return ["(the file is not a readable notebook)"]
    stubs = [answer_sources(new_release)]
    committed = _committed_version(path)
    if committed is not None:
        stubs.append(answer_sources(committed))
    return [name for name, source in answer_sources(existing).items()
            if all(source.strip() != s.get(name, "").strip() for s in stubs)]


def release(out_dir: Path = NOTEBOOKS, solutions_dir: Path = SOLUTIONS, quiet: bool = False,
            only: list[str] | None = None, force: bool = False) -> list[Path]:
    """Generate every student notebook (or those named in ``only``) into ``out_dir``.

    A target notebook whose answer cells hold a learner's work is never overwritten (unless ``force``):
    the others are written, then :class:`ReleaseRefused` names the files kept and how to proceed."""
    sources = [s for s in solution_notebooks(solutions_dir) if not only or s.stem in only]
    written, kept = [], {}
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
            answered = learner_answers(target, nb) if target.exists() and not force else []
            if answered:
                kept[target] = answered
                continue
            target.write_text(canonical_json(nb), encoding="utf-8")
            written.append(target)
            if not quiet:
                print(f"released {src.relative_to(solutions_dir.parent) if src.is_relative_to(solutions_dir.parent) else src} -> {target}")
    if kept:
        raise ReleaseRefused(kept)
    return written

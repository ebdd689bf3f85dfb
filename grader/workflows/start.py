"""``course start DIR``: the learner's own working copy of the student notebooks.

The repository's ``notebooks/`` is generated from ``solutions/`` and may be regenerated; a learner's
answers belong in a folder of their own. ``start`` copies every student notebook that is not there
yet (it never replaces a file), and remembers the folder, so that ``course progress`` (and the
README's commands) use it by default.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

from grader.paths import NOTEBOOKS


def _memo() -> Path:
    """Where the learner's working folder is remembered: $XDG_CONFIG_HOME/diffusion-course/workdir."""
    base = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return base / "diffusion-course" / "workdir"


def remembered_workdir() -> Path | None:
    """The folder of the last ``course start`` ($COURSE_WORKDIR first), if it still exists."""
    if os.environ.get("COURSE_WORKDIR"):
        return Path(os.environ["COURSE_WORKDIR"]).expanduser()
    try:
        folder = Path(_memo().read_text(encoding="utf-8").strip())
    except OSError:
        return None
    return folder if folder.is_dir() else None


def learner_notebooks_dir() -> Path:
    """Where the learner's notebooks are: the remembered working folder, else the repository's notebooks/."""
    return remembered_workdir() or NOTEBOOKS


def start(workdir: Path, notebooks_dir: Path = NOTEBOOKS) -> tuple[list[Path], list[Path]]:
    """Copy the student notebooks into ``workdir`` (never replacing a file); remember it.

    Returns (copied, kept): the notebooks copied now, and those already there, left untouched."""
    workdir = Path(workdir).expanduser().resolve()
    if workdir == notebooks_dir.resolve():
        raise ValueError(f"{workdir} is the generated notebooks/ folder: choose a folder of your own")
    workdir.mkdir(parents=True, exist_ok=True)
    copied, kept = [], []
    for nb in sorted(notebooks_dir.glob("[0-9][0-9]_*.ipynb")):
        target = workdir / nb.name
        if target.exists():
            kept.append(target)
            continue
        tmp = target.with_name(f".{target.name}.part")
        shutil.copyfile(nb, tmp)
        try:
            os.link(tmp, target)  # fails if target appeared meanwhile: never replace a learner's file
        except FileExistsError:
            kept.append(target)
        except OSError:  # a file system without hard links
            if target.exists():
                kept.append(target)
            else:
                os.replace(tmp, target)
                copied.append(target)
                continue
        else:
            copied.append(target)
        tmp.unlink(missing_ok=True)
    memo = _memo()
    memo.parent.mkdir(parents=True, exist_ok=True)
    memo.write_text(str(workdir) + "\n", encoding="utf-8")
    return copied, kept

"""Many gradings from one long-lived process, each forked from one warm zygote.

``course autograde`` keeps a zygote per worker slot (:mod:`grader.engine.zygote`); a process that
grades notebook after notebook itself (the project's tests, a regrading script) does the same with
:class:`WarmGrader`: the zygote imports torch and the engine once, and every grading runs in a
grading process forked from it, with sandboxes forked from it too, so each grading skips the
interpreter and torch start-up of a cold sandbox. Same reports as :func:`grade_notebook`; where a
zygote cannot start (macOS, ``COURSE_WARM=0``) or a grading gives no report, the grading runs cold
in this process instead.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

from grader.engine.grade import GraderError, grade_notebook
from grader.workflows.atomic import atomic_write

_PLAIN = (str, int, float, bool, type(None))


def grade_job(notebook: str, out: str, kwargs: dict) -> None:
    """In the forked grading process: grade and write the report (or the grader's error) to ``out``."""
    try:
        report = grade_notebook(notebook, **kwargs)
    except GraderError as exc:
        report = {"grader_error": str(exc)}
    atomic_write(Path(out), json.dumps(report) + "\n")


class WarmGrader:
    """``grade(path, **kwargs)`` = ``grade_notebook(path, **kwargs)``, forked from a warm zygote."""

    def __init__(self, wall_s: float = 900.0):
        from grader.workflows.autograde import _WarmSlot

        self.folder = Path(tempfile.mkdtemp(prefix="course-warm-grader-"))
        self.slot = _WarmSlot(self.folder, 0)
        self.wall_s = wall_s
        self.broken: str | None = None
        self.warm_gradings = 0
        self.cold_gradings = 0

    def grade(self, path: str | Path, **kwargs) -> dict:
        if self.broken is None and all(isinstance(v, _PLAIN) for v in kwargs.values()):
            out = self.folder / f"report-{self.slot.jobs + 1}.json"
            try:
                self.slot.grade({"notebook": str(path), "out": str(out), "kwargs": kwargs},
                                kwargs.get("budget_s", 300.0) + self.wall_s,
                                entry="grader.workflows.warm:grade_job")
            except (RuntimeError, OSError) as exc:  # the zygote could not start: cold from now on
                self.broken = str(exc)
            try:
                report = json.loads(out.read_text(encoding="utf-8"))
                out.unlink()
            except (OSError, ValueError):
                report = None
            if report is not None:
                if "grader_error" in report:
                    raise GraderError(report["grader_error"])
                self.warm_gradings += 1
                return report
        self.cold_gradings += 1
        return grade_notebook(path, **kwargs)

    def close(self) -> None:
        self.slot.close()
        shutil.rmtree(self.folder, ignore_errors=True)


def warm_available() -> bool:
    from grader.engine import zygote

    return zygote.available() and os.environ.get("COURSE_WARM") != "0"

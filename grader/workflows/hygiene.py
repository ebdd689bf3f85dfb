"""What autograde accepts from a handed-in folder, and how its text goes into spreadsheets.

A submission folder is the student's: anything in it may be hostile. Before a grading process
starts, :func:`handin_problem` refuses (a zero with the reason, for that submission only)

- a submission folder, or a student folder above it, that is a symbolic link;
- a notebook that is a symbolic link, or whose real path is outside the submission folder;
- a notebook larger than :data:`MAX_NOTEBOOK_BYTES` (``COURSE_MAX_NOTEBOOK_MB`` to change);
- a ``timestamp.txt`` that is not a time nbgrader can read (the rest of the class is graded; fix
  or delete the file and rerun: the submission is regraded because its input changed).

:func:`csv_cell` escapes spreadsheet formulas (OWASP's CSV injection rule): a cell that starts
with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return gets a leading apostrophe.
"""
from __future__ import annotations

import os
from pathlib import Path

MAX_NOTEBOOK_BYTES = int(float(os.environ.get("COURSE_MAX_NOTEBOOK_MB", "50")) * 1024 * 1024)
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value) -> str:
    """``value`` as CSV text that no spreadsheet evaluates."""
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(FORMULA_START) else text


def csv_row(values) -> list[str]:
    return [csv_cell(v) for v in values]


class csv_writer:
    """``csv.writer(f)`` whose rows are escaped with :func:`csv_row`."""

    def __init__(self, f, **kwargs):
        import csv

        kwargs.setdefault("lineterminator", "\n")
        self._writer = csv.writer(f, **kwargs)

    def writerow(self, row):
        return self._writer.writerow(csv_row(row))

    def writerows(self, rows):
        for row in rows:
            self.writerow(row)


def timestamp_problem(text: str | None) -> str | None:
    """None if nbgrader can read ``text`` (or there is none), else why not."""
    if not text:
        return None
    shown = text if len(text) <= 60 else text[:57] + "..."
    try:
        from nbgrader.utils import parse_utc

        parse_utc(text)
    except Exception as exc:  # noqa: BLE001 - dateutil raises several kinds (ParserError, OverflowError, ...)
        return (f"timestamp.txt is malformed ({shown!r}: {type(exc).__name__}): this submission was not "
                "graded; fix or delete timestamp.txt and rerun autograde")
    return None


def handin_problem(folder: Path, notebook: Path | None, submitted_root: Path | None = None,
                   max_bytes: int | None = None) -> str | None:
    """None if the handed-in ``notebook`` of ``folder`` may be read, else why not (see the module)."""
    folder = Path(folder)
    max_bytes = MAX_NOTEBOOK_BYTES if max_bytes is None else max_bytes
    for path in (folder, folder.parent):
        if path.is_symlink():
            return f"{path.name}/ is a symbolic link: hand in the files themselves"
    if submitted_root is not None:
        real = folder.resolve()
        if not real.is_relative_to(Path(submitted_root).resolve()):
            return "the submission folder resolves outside submitted/: refused"
    if notebook is None:
        return None
    notebook = Path(notebook)
    if notebook.is_symlink():
        return f"{notebook.name} is a symbolic link, not a notebook: hand in the notebook file itself"
    try:
        real = notebook.resolve(strict=True)
    except (OSError, RuntimeError):
        return f"{notebook.name} cannot be read"
    if not real.is_relative_to(folder.resolve()):
        return f"{notebook.name} resolves outside the submission folder: refused"
    if not real.is_file():
        return f"{notebook.name} is not a regular file"
    size = real.stat().st_size
    if size > max_bytes:
        return (f"{notebook.name} is {size / 2**20:.1f} MiB, over the {max_bytes / 2**20:g} MiB limit for a "
                "notebook: clear the outputs (Kernel > Restart & Clear Output), save, and hand it in again")
    return None


__all__ = ["MAX_NOTEBOOK_BYTES", "csv_cell", "csv_row", "csv_writer", "handin_problem", "timestamp_problem"]

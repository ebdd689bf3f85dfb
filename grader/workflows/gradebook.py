"""Scores into nbgrader's gradebook, through nbgrader's own API (:class:`nbgrader.api.Gradebook`).

Each exercise ``E`` of a notebook is scored by the graded nbgrader cell ``check_E``, whose
``auto_score`` we set, so ``nbgrader export`` and the formgrader show the sandboxed grader's
scores. Late penalties are nbgrader's: the submission's timestamp is recorded and nbgrader's
``AssignLatePenalties`` applies the configured ``LateSubmissionPlugin``.
"""
from __future__ import annotations

from pathlib import Path

from grader.paths import ensure_scripts_on_path
from grader.workflows.coursedir import GRADE_CELL_PREFIX, course_id, db_url, load_config


def gradebook(course_dir: Path):
    """nbgrader's Gradebook of ``course_dir`` (use as a context manager)."""
    from nbgrader.api import Gradebook

    ensure_scripts_on_path()
    return Gradebook(db_url(course_dir), course_id=course_id(course_dir))



def record_grades(course_dir: Path, student: str, assignment: str, report: dict,
                  timestamp: str | None = None, config=None) -> dict:
    """Upsert one submission's scores into the gradebook; return what nbgrader now holds.

    Idempotent: the student and submission rows are created once and updated after; each graded
    cell ``check_<exercise>`` gets ``auto_score`` = the exercise's score (clipped to the cell's
    points). Cells the report does not mention (an unreadable notebook) get zero.
    """
    import warnings

    notebook = assignment  # one notebook per assignment, named after it
    with gradebook(course_dir) as gb, warnings.catch_warnings():
        # nbgrader's add_submission builds rows before adding them to the session: SQLAlchemy warns, harmlessly
        warnings.filterwarnings("ignore", message=".*not in session.*")
        gb.update_or_create_student(student)
        kwargs = {"timestamp": timestamp} if timestamp else {}
        gb.update_or_create_submission(assignment, student, **kwargs)
        nb_row = gb.find_notebook(notebook, assignment)
        exercises = report.get("exercises", {})
        for cell in nb_row.grade_cells:
            grade = gb.find_grade(cell.name, notebook, assignment, student)
            name = cell.name[len(GRADE_CELL_PREFIX):] if cell.name.startswith(GRADE_CELL_PREFIX) else None
            result = exercises.get(name)
            score = 0.0 if result is None else float(result["score"])
            score = max(0.0, min(score, float(cell.max_score)))
            if grade.auto_score != score:
                grade.auto_score = score
                # nbgrader's own rule (SaveAutoGrades): a cell graded by hand before is flagged for review
                grade.needs_manual_grade = grade.manual_score is not None
        gb.db.commit()
    _assign_late_penalty(course_dir, student, assignment, config)
    with gradebook(course_dir) as gb:
        return _row(gb.find_submission(assignment, student))


def _row(sub) -> dict:
    """What nbgrader holds for one submission. ``score`` is nbgrader's (each cell's manual grade if
    set, else its auto grade); ``final_score`` = max(0, score - late penalty), as ``nbgrader export``."""
    penalty = sub.late_submission_penalty or 0.0
    manual = sum(1 for nb in sub.notebooks for g in nb.grades if g.manual_score is not None)
    return {"score": sub.score, "max_score": sub.max_score, "timestamp": sub.timestamp,
            "late_submission_penalty": penalty, "total_seconds_late": sub.total_seconds_late,
            "manual_grades": manual, "needs_manual_grade": bool(sub.needs_manual_grade),
            "final_score": max(0.0, (sub.score or 0.0) - penalty)}


def final_scores(course_dir: Path) -> dict[tuple[str, str], dict]:
    """(student, assignment) -> the gradebook's row (see :func:`_row`) for every submission."""
    out = {}
    with gradebook(course_dir) as gb:
        for assignment in gb.assignments:
            for sub in assignment.submissions:
                out[(sub.student.id, assignment.name)] = _row(sub)
    return out


def _assign_late_penalty(course_dir: Path, student: str, assignment: str, config=None) -> None:
    """nbgrader's AssignLatePenalties on the (single) notebook: penalty from the duedate and plugin."""
    import nbformat
    from nbgrader.preprocessors import AssignLatePenalties

    config = config if config is not None else load_config(course_dir)
    pre = AssignLatePenalties(config=config)  # its plugin: LateSubmissionPlugin, or the configured one
    resources = {"nbgrader": {"notebook": assignment, "assignment": assignment, "student": student,
                              "db_url": db_url(course_dir)}}
    pre.preprocess(nbformat.v4.new_notebook(), resources)

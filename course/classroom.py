"""The instructor's nbgrader course directory: create it, and write grades into its gradebook.

A course directory (``course init-class DIR``) is an ordinary nbgrader course::

    DIR/nbgrader_config.py        course id, code stub, exchange root (nbgrader's CLI reads it)
    DIR/source/<A>/<A>.ipynb      one assignment per course notebook, from solutions/
    DIR/release/<A>/<A>.ipynb     the student versions (nbgrader generate_assignment)
    DIR/gradebook.db              nbgrader's gradebook (assignments, notebooks, grade cells)
    DIR/submitted/<student>/<A>/  what students hand in (nbgrader collect, or copied by hand)
    DIR/autograded/<student>/<A>/ our per-submission grader reports (and a copy of the notebook)
    DIR/feedback/<student>/<A>/   feedback for the student (HTML and markdown)

Grades go into the gradebook through nbgrader's own API (:class:`nbgrader.api.Gradebook`): each
exercise ``E`` of a notebook is scored by the graded nbgrader cell ``check_E``, whose
``auto_score`` we set, so ``nbgrader export`` and the formgrader show the sandboxed grader's
scores. Late penalties are nbgrader's: the submission's timestamp is recorded and nbgrader's
``AssignLatePenalties`` applies the configured ``LateSubmissionPlugin``.
"""
from __future__ import annotations

import html
import os
import shutil
import tempfile
from pathlib import Path

from course.release import SOLUTIONS, solution_notebooks

COURSE_ID = "diffusion-course"
CONFIG_FILE = "nbgrader_config.py"
GRADE_CELL_PREFIX = "check_"

CONFIG_TEMPLATE = '''\
"""nbgrader configuration of this course directory (written by `course init-class`)."""
import os

c = get_config()  # noqa: F821 - provided by nbgrader / traitlets when this file is loaded
c.CourseDirectory.root = os.path.dirname(os.path.abspath(__file__))
c.CourseDirectory.course_id = {course_id!r}
c.Exchange.root = os.path.join(c.CourseDirectory.root, "exchange")
c.ClearSolutions.code_stub = {{"python": "# YOUR CODE HERE\\nraise NotImplementedError()"}}
# Late submissions: nbgrader compares timestamp.txt with the assignment's duedate.
# 'none' records the lateness only; 'zero' gives late submissions a score of zero.
c.LateSubmissionPlugin.penalty_method = {penalty!r}
'''


# ------------------------------------------------------------------------------------------------
# The course directory
# ------------------------------------------------------------------------------------------------
def load_config(course_dir: Path):
    """The traitlets Config of ``course_dir/nbgrader_config.py`` (as nbgrader's CLI loads it)."""
    from traitlets.config.loader import PyFileConfigLoader

    course_dir = Path(course_dir).resolve()
    config = PyFileConfigLoader(CONFIG_FILE, path=str(course_dir)).load_config()
    config.CourseDirectory.root = str(course_dir)  # wherever the directory was moved to
    return config


def db_url(course_dir: Path) -> str:
    """The gradebook's URL: the config's ``CourseDirectory.db_url``, else nbgrader's default."""
    config = load_config(course_dir) if (Path(course_dir) / CONFIG_FILE).is_file() else None
    if config is not None and "db_url" in config.CourseDirectory:
        return config.CourseDirectory.db_url
    return f"sqlite:///{Path(course_dir).resolve() / 'gradebook.db'}"


def course_id(course_dir: Path) -> str:
    config = load_config(course_dir) if (Path(course_dir) / CONFIG_FILE).is_file() else None
    if config is not None and "course_id" in config.CourseDirectory:
        return config.CourseDirectory.course_id
    return COURSE_ID


def gradebook(course_dir: Path):
    """nbgrader's Gradebook of ``course_dir`` (use as a context manager)."""
    from nbgrader.api import Gradebook

    from course.runtime import ensure_scripts_on_path

    ensure_scripts_on_path()
    return Gradebook(db_url(course_dir), course_id=course_id(course_dir))


def generate_assignments(course_dir: Path, names: list[str]) -> None:
    """nbgrader's generate_assignment for each name, with the course directory's own config."""
    from course.release import generate

    generate(Path(course_dir), names, config=load_config(course_dir))


def init_class(course_dir: Path, solutions_dir: Path = SOLUTIONS, only: list[str] | None = None,
               duedate: str | None = None, late_penalty: str = "none", quiet: bool = False) -> list[str]:
    """Create (or refresh) an nbgrader course directory from ``solutions_dir``; return the assignments.

    Each ``NN_name.ipynb`` becomes the assignment ``NN_name`` (source/ and release/, and its
    notebook and grade cells in the gradebook, via nbgrader's ``generate_assignment``). Rerunning it
    after a solution changed regenerates the release; existing submissions and grades are kept.
    """
    course_dir = Path(course_dir).resolve()
    course_dir.mkdir(parents=True, exist_ok=True)
    config_path = course_dir / CONFIG_FILE
    if not config_path.exists():
        config_path.write_text(CONFIG_TEMPLATE.format(course_id=COURSE_ID, penalty=late_penalty),
                               encoding="utf-8")
    sources = [s for s in solution_notebooks(Path(solutions_dir)) if not only or s.stem in only]
    if not sources:
        raise FileNotFoundError(f"no notebooks NN_name.ipynb in {solutions_dir}"
                                + (f" matching {only}" if only else ""))
    names = []
    for src in sources:
        dest = course_dir / "source" / src.stem / src.name
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(src, dest)
        names.append(src.stem)
    generate_assignments(course_dir, names)  # nbgrader: release/ and the gradebook rows
    if duedate:
        with gradebook(course_dir) as gb:
            for name in names:
                gb.update_or_create_assignment(name, duedate=duedate)
    if not quiet:
        for name in names:
            print(f"assignment {name}: source/{name}/, release/{name}/{name}.ipynb")
        print(f"nbgrader course directory ready: {course_dir}")
    return names


# ------------------------------------------------------------------------------------------------
# Writing grades (nbgrader's API)
# ------------------------------------------------------------------------------------------------
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
        sub = gb.find_submission(assignment, student)
        return {"score": sub.score, "max_score": sub.max_score, "timestamp": sub.timestamp,
                "late_submission_penalty": sub.late_submission_penalty,
                "total_seconds_late": sub.total_seconds_late}


def _assign_late_penalty(course_dir: Path, student: str, assignment: str, config=None) -> None:
    """nbgrader's AssignLatePenalties on the (single) notebook: penalty from the duedate and plugin."""
    import nbformat
    from nbgrader.preprocessors import AssignLatePenalties

    config = config if config is not None else load_config(course_dir)
    pre = AssignLatePenalties(config=config)  # its plugin: LateSubmissionPlugin, or the configured one
    resources = {"nbgrader": {"notebook": assignment, "assignment": assignment, "student": student,
                              "db_url": db_url(course_dir)}}
    pre.preprocess(nbformat.v4.new_notebook(), resources)


# ------------------------------------------------------------------------------------------------
# Feedback (never the hidden tests)
# ------------------------------------------------------------------------------------------------
HIDDEN_MARKERS = ("grader/tests", "grader\\tests", "/tests/test_", "def test_")


def public_lines(feedback: list[str]) -> list[str]:
    """The report's feedback with anything that could show hidden test code removed.

    The grader's messages are written for learners (test labels, hints, the learner's own
    traceback); a line that names the hidden tests' files or shows a test's source is dropped.
    """
    out = []
    for line in feedback:
        if any(m in line for m in HIDDEN_MARKERS):
            kept = [sub for sub in line.splitlines() if not any(m in sub for m in HIDDEN_MARKERS)]
            line = "\n".join(kept + ["(a detail from the grader's hidden tests is not shown)"])
        out.append(line)
    return out


def feedback_markdown(student: str, assignment: str, report: dict, gradebook_row: dict | None = None) -> str:
    rows = [f"# Feedback: {assignment} ({student})", "",
            f"**Score: {report['score']:g} / {report['max_score']:g}**"]
    if report.get("error"):
        rows += ["", f"The grader could not grade this submission: {report['error']}"]
    if gradebook_row and gradebook_row.get("late_submission_penalty"):
        rows += ["", f"Late by {gradebook_row['total_seconds_late']:.0f} s: penalty "
                     f"{gradebook_row['late_submission_penalty']:g} point(s)."]
    rows += ["", "| exercise | score | status |", "| --- | --- | --- |"]
    for name, r in report["exercises"].items():
        rows.append(f"| `{name}` | {r['score']:g} / {r['max_score']:g} | {r['status']} |")
    for name, r in report["exercises"].items():
        rows += ["", f"## `{name}`: {r['score']:g} / {r['max_score']:g} ({r['status']})", ""]
        for line in public_lines(r.get("feedback", [])):
            first, *rest = line.splitlines() or [""]
            rows.append(f"- {first}")
            if rest:
                rows += ["", "  ```", *("  " + s for s in rest), "  ```"]
    return "\n".join(rows) + "\n"


def feedback_html(student: str, assignment: str, report: dict, gradebook_row: dict | None = None) -> str:
    e = html.escape
    parts = ["<!DOCTYPE html>", "<html><head><meta charset='utf-8'>",
             f"<title>Feedback: {e(assignment)} ({e(student)})</title>",
             "<style>body{font-family:sans-serif;max-width:60em;margin:2em auto}"
             "td,th{border:1px solid #ccc;padding:.3em .6em}table{border-collapse:collapse}"
             ".passed{color:#176f2c}.failed,.error,.timeout{color:#a4161a}pre{background:#f6f6f6;padding:.5em}"
             "</style></head><body>",
             f"<h1>Feedback: {e(assignment)} ({e(student)})</h1>",
             f"<p><b>Score: {report['score']:g} / {report['max_score']:g}</b></p>"]
    if report.get("error"):
        parts.append(f"<p>The grader could not grade this submission: {e(report['error'])}</p>")
    if gradebook_row and gradebook_row.get("late_submission_penalty"):
        parts.append(f"<p>Late by {gradebook_row['total_seconds_late']:.0f} s: penalty "
                     f"{gradebook_row['late_submission_penalty']:g} point(s).</p>")
    parts.append("<table><tr><th>exercise</th><th>score</th><th>status</th></tr>")
    for name, r in report["exercises"].items():
        parts.append(f"<tr><td><code>{e(name)}</code></td><td>{r['score']:g} / {r['max_score']:g}</td>"
                     f"<td class='{e(r['status'])}'>{e(r['status'])}</td></tr>")
    parts.append("</table>")
    for name, r in report["exercises"].items():
        parts.append(f"<h2><code>{e(name)}</code>: {r['score']:g} / {r['max_score']:g} "
                     f"<span class='{e(r['status'])}'>({e(r['status'])})</span></h2><ul>")
        for line in public_lines(r.get("feedback", [])):
            first, *rest = line.splitlines() or [""]
            parts.append(f"<li>{e(first)}" + (f"<pre>{e(chr(10).join(rest))}</pre>" if rest else "") + "</li>")
        parts.append("</ul>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def write_feedback(course_dir: Path, student: str, assignment: str, report: dict,
                   gradebook_row: dict | None = None) -> Path:
    """feedback/<student>/<assignment>/<assignment>.html (nbgrader's place) and feedback.md."""
    folder = Path(course_dir) / "feedback" / student / assignment
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write(folder / f"{assignment}.html", feedback_html(student, assignment, report, gradebook_row))
    atomic_write(folder / "feedback.md", feedback_markdown(student, assignment, report, gradebook_row))
    return folder


def atomic_write(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` so that readers see the old file or the new one, never a part."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise

"""The instructor's nbgrader course directory: its layout, its configuration, and ``init-class``.

A course directory (``course init-class DIR``) is an ordinary nbgrader course::

    DIR/nbgrader_config.py        course id, code stub, exchange root (nbgrader's CLI reads it)
    DIR/source/<A>/<A>.ipynb      one assignment per course notebook, from solutions/
    DIR/release/<A>/<A>.ipynb     the student versions (nbgrader generate_assignment)
    DIR/gradebook.db              nbgrader's gradebook (assignments, notebooks, grade cells)
    DIR/submitted/<student>/<A>/  what students hand in (nbgrader collect, or copied by hand)
    DIR/autograded/<student>/<A>/ our per-submission grader reports (and a copy of the notebook)
    DIR/feedback/<student>/<A>/   feedback for the student (HTML and markdown)

Grades are written by :mod:`grader.workflows.gradebook`, feedback by :mod:`grader.workflows.feedback`.
"""
from __future__ import annotations

import shutil
from pathlib import Path

from grader.paths import SOLUTIONS
from grader.workflows.release import generate, solution_notebooks

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
{refuse}'''

# Appended to a course directory's config (also to an older one by a rerun of `init-class`).
REFUSE_MARKER = "# course: nbgrader autograde and generate_feedback are replaced by `course autograde`"
REFUSE_BLOCK = REFUSE_MARKER + '''
# nbgrader's own autograde would run whole notebooks outside the sandbox, put public-check scores in
# place of the hidden tests' and delete the grader's reports; its generate_feedback would replace
# the grader's feedback. Both refuse here, before touching anything, with a pointer to the course's
# commands (the formgrader, nbgrader export, release_feedback and collect work as usual).
from nbconvert.exporters import Exporter as _Exporter  # noqa: E402
from nbgrader.converters.base import NbGraderException as _NbGraderException  # noqa: E402

_COURSE_MESSAGE = {
    "Autograde": "this course is graded by `course autograde DIR` (the sandboxed grader with the hidden "
                 "tests; it writes nbgrader's gradebook, the feedback and course-grades.csv), not by "
                 "`nbgrader autograde`. One student: `course autograde DIR --student ID`.",
    "GenerateFeedback": "feedback is written by `course autograde DIR` into feedback/<student>/<assignment>/ "
                        "(HTML, feedback.md, timestamp.txt, submission_secret.txt), ready for "
                        "`nbgrader release_feedback`; `nbgrader generate_feedback` would replace it.",
}


class RefuseNbgraderConverter(_Exporter):
    """Stops nbgrader's autograde / generate_feedback before they convert (or delete) anything."""

    def __init__(self, *args, parent=None, **kwargs):
        kind = type(parent).__name__ if parent is not None else "Autograde"
        message = "refused: " + _COURSE_MESSAGE.get(kind, _COURSE_MESSAGE["Autograde"])
        if parent is not None:
            parent.log.error(message)
        raise _NbGraderException(message)


c.Autograde.exporter_class = RefuseNbgraderConverter
c.GenerateFeedback.exporter_class = RefuseNbgraderConverter
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


def generate_assignments(course_dir: Path, names: list[str]) -> None:
    """nbgrader's generate_assignment for each name, with the course directory's own config."""
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
    # the exchange the config names (release_assignment, submit, collect, release_feedback)
    (course_dir / "exchange").mkdir(exist_ok=True)
    config_path = course_dir / CONFIG_FILE
    if not config_path.exists():
        config_path.write_text(CONFIG_TEMPLATE.format(course_id=COURSE_ID, penalty=late_penalty,
                                               refuse=REFUSE_BLOCK), encoding="utf-8")
    elif REFUSE_MARKER not in config_path.read_text(encoding="utf-8"):
        with open(config_path, "a", encoding="utf-8") as f:  # an older course directory: add the refusal
            f.write("\n" + REFUSE_BLOCK)
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
        from grader.workflows.gradebook import gradebook

        with gradebook(course_dir) as gb:
            for name in names:
                gb.update_or_create_assignment(name, duedate=duedate)
    if not quiet:
        for name in names:
            print(f"assignment {name}: source/{name}/, release/{name}/{name}.ipynb")
        print(f"nbgrader course directory ready: {course_dir}")
    return names

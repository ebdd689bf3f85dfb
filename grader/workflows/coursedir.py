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
        from grader.workflows.gradebook import gradebook

        with gradebook(course_dir) as gb:
            for name in names:
                gb.update_or_create_assignment(name, duedate=duedate)
    if not quiet:
        for name in names:
            print(f"assignment {name}: source/{name}/, release/{name}/{name}.ipynb")
        print(f"nbgrader course directory ready: {course_dir}")
    return names

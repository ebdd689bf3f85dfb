"""nbgrader's own round trip through a course directory made by `course init-class`, with the exchange:

release_assignment -> (student) fetch_assignment, answers, renames the notebook, submit ->
collect -> `course autograde --student` -> release_feedback -> (student) fetch_feedback.

The student's renamed notebook (``my_work.ipynb``) is graded and listed under the assignment's
notebook name, and the feedback the grader wrote reaches the student through nbgrader. nbgrader's
own ``autograde`` and ``generate_feedback`` refuse and change nothing.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import nbformat

from grader import cli
from grader.engine.registry import spec_for

ROOT = Path(__file__).resolve().parents[1]
A = "01_toy_flows"
MAX = sum(spec_for(A).exercises.values())


def nbgrader(*args, cwd: Path, timeout=300) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    return subprocess.run([sys.executable, "-m", "nbgrader", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)


def test_release_submit_collect_autograde_release_and_fetch_feedback(tmp_path):
    course_dir, home = tmp_path / "course", tmp_path / "student"
    home.mkdir()
    assert cli.main(["init-class", str(course_dir), "--only", A]) == 0
    exchange = course_dir / "exchange"  # made by init-class
    student = [f"--Exchange.root={exchange}", f"--Exchange.cache={tmp_path / 'cache'}",
               "--CourseDirectory.course_id=diffusion-course"]
    done = nbgrader("release_assignment", A, cwd=course_dir)
    assert done.returncode == 0, done.stderr
    done = nbgrader("fetch_assignment", A, *student, cwd=home)
    assert done.returncode == 0, done.stderr

    # the student answers every exercise (01's reference answers) and renames the notebook
    solution = nbformat.read(ROOT / "solutions" / f"{A}.ipynb", as_version=4)
    full = {c.metadata["nbgrader"]["grade_id"]: c.source for c in solution.cells
            if (c.metadata.get("nbgrader") or {}).get("solution")}
    fetched = home / A / f"{A}.ipynb"
    nb = nbformat.read(fetched, as_version=4)
    for cell in nb.cells:
        gid = (cell.metadata.get("nbgrader") or {}).get("grade_id")
        if gid in full and not gid.startswith("setup"):
            cell.source = full[gid]
    nbformat.write(nb, home / A / "my_work.ipynb")
    fetched.unlink()
    done = nbgrader("submit", A, *student, cwd=home)
    assert done.returncode == 0, done.stderr

    done = nbgrader("collect", A, cwd=course_dir)
    assert done.returncode == 0, done.stderr
    (folder,) = (course_dir / "submitted").glob(f"*/{A}")
    user = folder.parent.name
    assert (folder / "my_work.ipynb").is_file() and (folder / "submission_secret.txt").is_file()

    assert cli.main(["autograde", str(course_dir), "--student", user, "--workers", "1", "--seed", "3"]) == 0
    graded = course_dir / "autograded" / user / A
    assert (graded / f"{A}.ipynb").is_file() and not (graded / "my_work.ipynb").exists()
    assert json.loads((graded / "grader-report.json").read_text())["score"] == MAX
    feedback = course_dir / "feedback" / user / A
    assert (feedback / "submission_secret.txt").read_text() == (folder / "submission_secret.txt").read_text()
    assert (feedback / "timestamp.txt").read_text() == (folder / "timestamp.txt").read_text().strip()

    # nbgrader's own autograde and generate_feedback refuse, and change nothing
    before = {p: p.read_bytes() for p in [*graded.rglob("*"), *feedback.rglob("*")] if p.is_file()}
    for command in ("autograde", "generate_feedback"):
        done = nbgrader(command, A, "--force", cwd=course_dir)
        assert done.returncode != 0 and "course autograde" in done.stderr, (command, done.stderr)
    assert {p: p.read_bytes() for p in [*graded.rglob("*"), *feedback.rglob("*")] if p.is_file()} == before

    done = nbgrader("release_feedback", A, cwd=course_dir)
    assert done.returncode == 0, done.stderr
    done = nbgrader("fetch_feedback", A, *student, cwd=home)
    assert done.returncode == 0, done.stderr
    (page,) = (home / A / "feedback").glob("*/my_work.html")
    assert f"Score: {MAX:g} / {MAX:g}" in page.read_text()


def test_the_docs_start_the_formgrader_the_nbgrader_09_way():
    """nbgrader 0.9 has no `nbgrader formgrader` command: the formgrader is a server extension."""
    for doc in (ROOT / "docs" / "INSTRUCTOR.md", ROOT / "README.md"):
        text = doc.read_text(encoding="utf-8")
        assert "nbgrader formgrader" not in text, doc
    text = (ROOT / "docs" / "INSTRUCTOR.md").read_text(encoding="utf-8")
    assert "jupyter server extension list" in text and "jupyter lab" in text
    assert "course-grades.csv" in text and "course gradescope" in text

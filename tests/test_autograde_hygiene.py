"""Autograde input hygiene (issue 11, class 8): what a submission folder holds is hostile input.

One course directory for notebook 01 and one ``autograde`` run over a class in which each hostile
submission is one attack: a notebook that is a symlink to the reference, a submission folder that
is a symlink out of ``submitted/``, a notebook over the size cap, a malformed ``timestamp.txt``,
student ids that are spreadsheet formulas. Each test checks one of them (each fails on the main
before this change); the valid submissions are graded in the same run. Then ``course grade`` on
notebooks with broken metadata, or whose name and metadata name different notebooks.
"""
from __future__ import annotations

import csv
import json
import os
import shutil
from pathlib import Path

import pytest

from grader import cli
from grader.workflows import hygiene
from grader.workflows.autograde import REPORT_FILE, autograde
from grader.workflows.coursedir import init_class

ROOT = Path(__file__).resolve().parents[1]
SOLUTION = ROOT / "solutions" / "01_toy_flows.ipynb"
A = "01_toy_flows"
GOOD_STAMP = "2026-01-10 11:00:00.000000 UTC"
FORMULA_IDS = ("=1+2", "+1+2", "-1+2", "@SUM(1)")


def empty_notebook() -> dict:
    """A notebook of assignment 01 with no answer cells: graded to zero at once (no sandbox)."""
    return {"cells": [], "metadata": {"course": {"notebook": A}}, "nbformat": 4, "nbformat_minor": 5}


def hand_in(course: Path, student: str, nb: dict | None = None, stamp: str | None = GOOD_STAMP) -> Path:
    folder = course / "submitted" / student / A
    folder.mkdir(parents=True)
    if nb is not None:
        (folder / f"{A}.ipynb").write_text(json.dumps(nb), encoding="utf-8")
    if stamp is not None:
        (folder / "timestamp.txt").write_text(stamp, encoding="utf-8")
    return folder


def report_of(course: Path, student: str) -> dict:
    return json.loads((course / "autograded" / student / A / REPORT_FILE).read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    base = tmp_path_factory.mktemp("hygiene")
    course = base / "course"
    init_class(course, only=[A], quiet=True)
    hand_in(course, "alice", empty_notebook())
    for sid in FORMULA_IDS:
        hand_in(course, sid, empty_notebook())
    # a notebook that is a symbolic link to the reference solution
    folder = hand_in(course, "mallory", None)
    os.symlink(SOLUTION, folder / f"{A}.ipynb")
    # a submission folder that is a symbolic link out of submitted/
    outside = base / "outside" / A
    outside.mkdir(parents=True)
    shutil.copy(SOLUTION, outside / f"{A}.ipynb")
    (course / "submitted" / "eve").mkdir(parents=True)
    os.symlink(outside, course / "submitted" / "eve" / A)
    # a notebook over the cap (the cap is lowered to 1 MiB for the test)
    big = empty_notebook()
    big["cells"] = [{"cell_type": "markdown", "metadata": {}, "source": "x" * (2 * 2**20)}]
    hand_in(course, "bigfile", big)
    # a malformed timestamp.txt
    hand_in(course, "late", empty_notebook(), stamp="the tenth of January, at noon-ish +99:99")
    log: list[str] = []
    mp = pytest.MonkeyPatch()
    mp.setattr(hygiene, "MAX_NOTEBOOK_BYTES", 2**20)
    try:
        rows = autograde(course, workers=2, csv_path=course / "class.csv", log=log.append)
    finally:
        mp.undo()
    return course, {r["student"]: r for r in rows}, log


def test_a_symlinked_notebook_is_refused_and_not_copied(graded):
    course, rows, _ = graded
    report = report_of(course, "mallory")
    assert report["score"] == 0 and "symbolic link" in report["error"]
    copied = course / "autograded" / "mallory" / A / f"{A}.ipynb"
    assert not copied.exists(), "the reference solution was copied into autograded/"


def test_a_submission_folder_linking_outside_is_refused(graded):
    course, rows, _ = graded
    report = report_of(course, "eve")
    assert report["score"] == 0 and "symbolic link" in report["error"]
    assert not (course / "autograded" / "eve" / A / f"{A}.ipynb").exists()


def test_a_notebook_over_the_size_cap_scores_zero_with_the_reason(graded):
    course, rows, _ = graded
    report = report_of(course, "bigfile")
    assert report["score"] == 0 and "MiB limit" in report["error"]
    assert set(report["exercises"]) and all(e["score"] == 0 for e in report["exercises"].values())


def test_a_malformed_timestamp_is_that_submissions_problem_only_and_reruns_work(graded):
    course, rows, log = graded
    assert "alice" in rows and "timestamp" not in rows["alice"]["error"]  # the run went on
    assert "timestamp.txt is malformed" in report_of(course, "late")["error"]
    # the fixed submission is regraded by the next run (its input changed); the others are kept
    (course / "submitted" / "late" / A / "timestamp.txt").write_text(GOOD_STAMP, encoding="utf-8")
    rows2 = {r["student"]: r for r in autograde(course, workers=1, csv_path=course / "class.csv",
                                                log=lambda *_: None)}
    assert not rows2["late"]["reused"] and "timestamp" not in rows2["late"]["error"]
    assert report_of(course, "late")["timestamp"] == GOOD_STAMP
    assert rows2["alice"]["reused"]


def test_every_csv_cell_is_formula_escaped(graded):
    course, rows, _ = graded
    with open(course / "class.csv", newline="", encoding="utf-8") as f:
        table = list(csv.reader(f))
    students = [row[0] for row in table[1:]]
    for sid in FORMULA_IDS:
        assert sid in rows  # graded
        assert "'" + sid in students and sid not in students
    for row in table:
        for cell in row:
            assert not cell.startswith(hygiene.FORMULA_START), cell
    assert hygiene.csv_cell("-the notebook could not be graded") == "'-the notebook could not be graded"
    assert hygiene.csv_cell("\tx") == "'\tx" and hygiene.csv_cell("\rx") == "'\rx"
    assert hygiene.csv_cell("alice") == "alice" and hygiene.csv_cell(3.5) == "3.5"


# ------------------------------------------------------------------------------------------------
# course grade: notebook metadata
# ------------------------------------------------------------------------------------------------
def _variant(tmp_path: Path, mutate, name: str = f"{A}.ipynb") -> Path:
    nb = json.loads(SOLUTION.read_text(encoding="utf-8"))
    mutate(nb)
    path = tmp_path / name
    path.write_text(json.dumps(nb), encoding="utf-8")
    return path


def _grade(capsys, *argv) -> tuple[int, str]:
    code = cli.main(["grade", *argv, "--quiet", "--exercise", "euler_step"])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def _answer_cell(nb, name="euler_step"):
    return next(c for c in nb["cells"] if (c["metadata"].get("nbgrader") or {}).get("grade_id") == name)


def test_integer_grade_id_is_a_clear_exit_2(tmp_path, capsys):
    path = _variant(tmp_path, lambda nb: _answer_cell(nb)["metadata"]["nbgrader"].update(grade_id=7))
    code, out = _grade(capsys, str(path))
    assert code == 2 and "grade_id is 7, not text" in out and "Traceback" not in out


def test_malformed_nbgrader_and_course_metadata_are_a_clear_exit_2(tmp_path, capsys):
    path = _variant(tmp_path, lambda nb: _answer_cell(nb)["metadata"].update(nbgrader="solution"))
    code, out = _grade(capsys, str(path))
    assert code == 2 and "nbgrader metadata is not a mapping" in out
    path = _variant(tmp_path, lambda nb: nb["metadata"].update(course=["01_toy_flows"]), "other.ipynb")
    code, out = _grade(capsys, str(path))
    assert code == 2 and "'course'" in out
    path = _variant(tmp_path, lambda nb: [c.pop("metadata") for c in nb["cells"]], "nometa.ipynb")
    code, out = _grade(capsys, str(path), "--notebook-id", A)
    assert code == 2 and "Traceback" not in out


def test_file_name_and_metadata_naming_different_notebooks_is_refused_unless_told(tmp_path, capsys):
    path = _variant(tmp_path, lambda nb: None, "03_ddpm.ipynb")  # an 01 solution saved as 03
    code, out = _grade(capsys, str(path))
    assert code == 2 and "--notebook-id" in out and "03_ddpm" in out and A in out
    code, out = _grade(capsys, str(path), "--notebook-id", A)
    assert code == 0 and "1/1" in out


def test_the_same_notebook_named_with_a_suffix_is_not_a_conflict(tmp_path, capsys):
    path = _variant(tmp_path, lambda nb: None, f"{A}-Copy1.ipynb")
    code, out = _grade(capsys, str(path))
    assert code == 0, out

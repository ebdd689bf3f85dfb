"""The instructor's workflow end to end on notebook 01: a class of synthetic students, some hostile.

One course directory (module fixture): ``course init-class``, ten submissions, one ``course
autograde --workers 2`` run; then the gradebook (nbgrader's API), ``nbgrader export`` (CSV, exact),
the feedback, the Gradescope files, the class CSV, and an idempotent rerun are checked.
"""
from __future__ import annotations

import csv
import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

from grader.engine.registry import spec_for

import nbformat
import pytest

from grader import cli
from grader.workflows.autograde import hidden_paths
from grader.workflows.feedback import public_lines
from grader.workflows.gradebook import gradebook

ROOT = Path(__file__).resolve().parents[1]
SOLUTION = ROOT / "solutions" / "01_toy_flows.ipynb"
A = "01_toy_flows"
EXERCISES = dict(spec_for(A).exercises)  # exercise -> points, from the notebook's manifest
MAX = float(sum(EXERCISES.values()))
DUE = "2026-01-10 12:00:00"
ON_TIME = "2026-01-10 11:00:00.000000 UTC"
LATE = "2026-01-11 12:00:00.000000 UTC"


def answer_sources(notebook: Path) -> dict[str, str]:
    nb = nbformat.read(notebook, as_version=4)
    return {c.metadata["nbgrader"]["grade_id"]: c.source for c in nb.cells
            if (c.metadata.get("nbgrader") or {}).get("solution") and c.metadata["nbgrader"].get("grade_id") in EXERCISES}


def hostile_cells(course_dir: Path, full: dict[str, str]) -> dict[str, dict[str, str]]:
    """Per hostile student, the answer cells that differ from full marks."""
    snoop = f'''
import glob, json
_targets = [{str(SOLUTION)!r}] + glob.glob({str(course_dir)!r} + "/source/*/*.ipynb") \\
    + glob.glob({str(course_dir)!r} + "/submitted/*/*/*.ipynb") + glob.glob({str(course_dir)!r} + "/autograded/*/*/*.ipynb")
_stolen = None
for _path in _targets:
    try:
        for _cell in json.load(open(_path))["cells"]:
            _src = "".join(_cell["source"])
            if _src.lstrip().startswith("def euler_step") and "NotImplementedError" not in _src:
                _stolen = _src
    except Exception:
        pass
if _stolen:
    exec(_stolen)
'''
    tamper = f'''
import sqlite3
for _attempt in ("sql", "overwrite"):
    try:
        if _attempt == "sql":
            _con = sqlite3.connect({str(course_dir / "gradebook.db")!r})
            _con.execute("UPDATE grade SET auto_score = 1000, manual_score = 1000")
            _con.commit()
        else:
            with open({str(course_dir / "gradebook.db")!r}, "w") as _f:
                _f.write("all gone")
    except Exception:
        pass
for _path in ({str(course_dir / "course-grades.csv")!r}, {str(course_dir / "autograded" / "full" / A / "grader-report.json")!r}):
    try:
        with open(_path, "w") as _f:
            _f.write("tampered")
    except Exception:
        pass
''' + full["euler_step"]
    hang = "while True:\n    pass\n" + full["euler_step"]
    crash = "import os\nos._exit(3)\n" + full["heun_step"]
    # asks for 1 GiB after 1 GiB (address space: the sandbox's RLIMIT_AS stops it at --memory-mb)
    hog = full["rk4_step"].replace('"""One classical fourth-order Runge-Kutta step."""',
                                   '"""RK4."""\n    hoard = []\n    while True:\n        hoard.append(torch.empty(1 << 28))')
    assert "os._exit" in crash and "hoard" in hog
    return {"hang": {"euler_step": hang}, "crash": {"heun_step": crash}, "hog": {"rk4_step": hog},
            "snoop": {"euler_step": snoop}, "tamper": {"euler_step": tamper}}


# student -> (answers from: "full" | "blank" | {exercise: source}, timestamp, expected per-exercise scores)
def roster(course_dir: Path) -> dict:
    full = answer_sources(SOLUTION)
    hostile = hostile_cells(course_dir, full)
    partial = {n: full[n] for n in ("euler_step", "heun_step", "rk4_step")}
    zero = dict.fromkeys(EXERCISES, 0.0)
    all_marks = {n: float(p) for n, p in EXERCISES.items()}
    return {
        "full": ({**full}, ON_TIME, all_marks),
        "blank": ({}, ON_TIME, zero),
        "partial": (partial, ON_TIME, {**zero, "euler_step": 1.0, "heun_step": 1.0, "rk4_step": 2.0}),
        "late": ({**full}, LATE, all_marks),
        # without euler_step, integrate's cell (`step=euler_step`) fails too, as in Jupyter
        "hang": ({**full, **hostile["hang"]}, ON_TIME, {**all_marks, "euler_step": 0.0, "integrate": 0.0}),
        "crash": ({**full, **hostile["crash"]}, ON_TIME, {**all_marks, "heun_step": 0.0}),
        "hog": ({**full, **hostile["hog"]}, ON_TIME, {**all_marks, "rk4_step": 0.0}),
        "snoop": ({**full, **hostile["snoop"]}, ON_TIME, {**all_marks, "euler_step": 0.0, "integrate": 0.0}),
        "tamper": ({**full, **hostile["tamper"]}, None, all_marks),
        "garbage": (None, ON_TIME, zero),
        # handed in as my_work.ipynb: graded, and listed under the assignment's notebook name
        "renamed": ({**full}, ON_TIME, all_marks),
        # euler_step's answer cell lost its nbgrader metadata: found by the name it defines, flagged
        "stripped": ({**full}, ON_TIME, all_marks),
    }


RENAMED = "my_work.ipynb"


def write_submission(course_dir: Path, student: str, answers: dict | None, timestamp: str | None) -> Path:
    folder = course_dir / "submitted" / student / A
    folder.mkdir(parents=True, exist_ok=True)
    if answers is None:
        (folder / f"{A}.ipynb").write_text("{this is not a notebook", encoding="utf-8")
    else:
        nb = nbformat.read(course_dir / "release" / A / f"{A}.ipynb", as_version=4)
        for cell in nb.cells:
            gid = (cell.metadata.get("nbgrader") or {}).get("grade_id")
            if gid in answers:
                cell.source = answers[gid]
                if student == "stripped" and gid == "euler_step":
                    cell.metadata = {}
        nbformat.write(nb, folder / (RENAMED if student == "renamed" else f"{A}.ipynb"))
    if timestamp:
        (folder / "timestamp.txt").write_text(timestamp, encoding="utf-8")
    return folder


# short timeouts for the hang (the setup cell imports torch: leave it time on a busy machine)
AUTOGRADE_ARGS = ["--workers", "2", "--seed", "7", "--budget", "150", "--call-timeout", "8",
                  "--cell-timeout", "20", "--results-json"]


@pytest.fixture(scope="module")
def graded_class(tmp_path_factory):
    course_dir = tmp_path_factory.mktemp("class") / "course"
    assert cli.main(["init-class", str(course_dir), "--only", A, "--duedate", f"{DUE} UTC",
                     "--late-penalty", "zero"]) == 0
    students = roster(course_dir)
    for student, (answers, stamp, _) in students.items():
        write_submission(course_dir, student, answers, stamp)
    assert cli.main(["autograde", str(course_dir), *AUTOGRADE_ARGS]) == 0
    return course_dir, students


def test_init_class_is_an_nbgrader_course(graded_class):
    course_dir, _ = graded_class
    from nbgrader.apps import NbGraderAPI

    from grader.workflows.coursedir import load_config

    api = NbGraderAPI(config=load_config(course_dir))
    assert api.get_source_assignments() == {A}
    listing = subprocess.run([sys.executable, "-m", "nbgrader", "db", "assignment", "list"], cwd=course_dir,
                             capture_output=True, text=True, timeout=120)
    assert listing.returncode == 0, listing.stderr
    assert f"{A} (due: {DUE})" in listing.stdout
    released = (course_dir / "release" / A / f"{A}.ipynb").read_text()
    assert "BEGIN SOLUTION" not in released and "raise NotImplementedError()" in released


def test_gradebook_holds_every_grade(graded_class):
    course_dir, students = graded_class
    with gradebook(course_dir) as gb:
        assert sorted(s.id for s in gb.students) == sorted(students)
        for student, (_, stamp, expected) in students.items():
            for name, points in EXERCISES.items():
                grade = gb.find_grade(f"check_{name}", A, A, student)
                assert grade.auto_score == pytest.approx(expected[name]), (student, name)
                assert grade.manual_score is None and not grade.needs_manual_grade
                assert grade.max_score == points
            sub = gb.find_submission(A, student)
            assert sub.score == pytest.approx(sum(expected.values())), student
            assert (sub.timestamp is None) == (stamp is None)
        late = gb.find_submission(A, "late")
        assert late.total_seconds_late == pytest.approx(86400)
        assert late.late_submission_penalty == pytest.approx(MAX)  # penalty_method 'zero'
        assert gb.find_submission(A, "full").late_submission_penalty == 0


def test_nbgrader_export_csv_is_exact_and_leaves_the_course_csv_alone(graded_class):
    course_dir, students = graded_class
    out = course_dir.parent / "export.csv"
    done = subprocess.run([sys.executable, "-m", "nbgrader", "export", "--to", str(out)], cwd=course_dir,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    rows = {r["student_id"]: r for r in csv.DictReader(out.open())}
    assert sorted(rows) == sorted(students)
    for student, (_, stamp, expected) in students.items():
        raw = sum(expected.values())
        penalty = raw if student == "late" else 0.0
        want = {"assignment": A, "duedate": DUE, "student_id": student, "last_name": "", "first_name": "",
                "email": "", "raw_score": str(raw), "late_submission_penalty": str(penalty),
                "score": str(max(0.0, raw - penalty)), "max_score": str(MAX),
                "timestamp": stamp.replace(".000000 UTC", "") if stamp else ""}
        assert rows[student] == want, student
    # nbgrader export's default file is grades.csv: the course's CSV has its own name
    ours = (course_dir / "course-grades.csv").read_bytes()
    done = subprocess.run([sys.executable, "-m", "nbgrader", "export"], cwd=course_dir,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert (course_dir / "grades.csv").is_file() and (course_dir / "course-grades.csv").read_bytes() == ours


def test_class_csv_and_gradescope_files(graded_class):
    course_dir, students = graded_class
    rows = {r["student"]: r for r in csv.DictReader((course_dir / "course-grades.csv").open())}
    assert sorted(rows) == sorted(students)
    for student, (_, _, expected) in students.items():
        raw = sum(expected.values())
        assert float(rows[student]["autograder_score"]) == pytest.approx(raw)
        # the gradebook's final score beside it (late penalty 'zero' for the late student)
        assert float(rows[student]["final_score"]) == pytest.approx(0.0 if student == "late" else raw), student
        assert float(rows[student]["late_penalty"]) == pytest.approx(raw if student == "late" else 0.0)
        for name in EXERCISES:
            assert float(rows[student][name]) == pytest.approx(expected[name]), (student, name)
        results = json.loads((course_dir / "autograded" / student / A / "results.json").read_text())
        assert results["score"] == pytest.approx(sum(expected.values()))
        assert [t["name"] for t in results["tests"]] == list(EXERCISES)
    assert "not be graded" in rows["garbage"]["error"]


def test_hostile_submissions_are_contained(graded_class):
    course_dir, _ = graded_class
    report = lambda s: json.loads((course_dir / "autograded" / s / A / "grader-report.json").read_text())  # noqa: E731
    assert report("hang")["exercises"]["euler_step"]["status"] in ("timeout", "error")
    crash = report("crash")["exercises"]["heun_step"]
    assert crash["status"] == "error" and "not defined" in " ".join(crash["feedback"])
    assert report("hog")["exercises"]["rk4_step"]["status"] in ("error", "timeout")
    snoop = report("snoop")["exercises"]["euler_step"]
    assert snoop["score"] == 0 and "not defined" in " ".join(snoop["feedback"])
    assert report("full")["score"] == MAX  # the tamperer could not overwrite it
    sql = sqlite3.connect(course_dir / "gradebook.db")
    assert sql.execute("SELECT max(auto_score) FROM grade").fetchone()[0] <= 2
    assert sql.execute("SELECT count(*) FROM grade WHERE manual_score IS NOT NULL").fetchone()[0] == 0
    hidden = hidden_paths(course_dir)
    for path in ("source", "release", "submitted", "autograded", "feedback", "gradebook.db"):
        assert str(course_dir.resolve() / path) in hidden
    assert str(ROOT / "solutions") in hidden and str(ROOT / "grader" / "tests") in hidden


def test_feedback_shows_scores_never_hidden_tests(graded_class):
    course_dir, students = graded_class
    hidden_source = (ROOT / "grader" / "tests" / "test_01_toy_flows.py").read_text()
    secret_lines = [ln.strip() for ln in hidden_source.splitlines() if len(ln.strip()) > 30
                    and not ln.strip().startswith(('"""', "#", "@exercise"))]
    for student, (_, _, expected) in students.items():
        folder = course_dir / "feedback" / student / A
        md, page = (folder / "feedback.md").read_text(), (folder / f"{A}.html").read_text()
        assert f"**Score: {sum(expected.values()):g} / {MAX:g}**" in md
        for name in EXERCISES:
            assert f"`{name}` | {expected[name]:g} / {EXERCISES[name]:g}" in md
            assert f"<code>{name}</code>" in page
        for secret in secret_lines:
            assert secret not in md and secret not in page, (student, secret)
        assert "grader/tests" not in md and "def test_" not in md
    assert "not written yet" in (course_dir / "feedback" / "blank" / A / "feedback.md").read_text()
    assert public_lines(["ok", 'File "/x/grader/tests/test_01.py", line 3\nsecret']) == [
        "ok", "secret\n(a detail from the grader's hidden tests is not shown)"]


def test_rerun_is_idempotent_and_regrades_changes(graded_class, capsys):
    course_dir, students = graded_class
    with gradebook(course_dir) as gb:
        before = {s: gb.find_submission(A, s).score for s in students}
    counts = _row_counts(course_dir)
    # an interrupted run: one report lost, one submission changed since
    (course_dir / "autograded" / "blank" / A / "grader-report.json").unlink()
    write_submission(course_dir, "partial", answer_sources(SOLUTION), ON_TIME)
    assert cli.main(["autograde", str(course_dir), *AUTOGRADE_ARGS]) == 0
    out = capsys.readouterr().out
    assert out.count("(unchanged, kept)") == len(students) - 2
    assert _row_counts(course_dir) == counts
    with gradebook(course_dir) as gb:
        after = {s: gb.find_submission(A, s).score for s in students}
    assert after == {**before, "partial": MAX}


def test_reports_say_how_the_code_was_isolated_and_weaker_isolation_is_flagged(graded_class):
    """Does every report name the sandbox its code ran in, and does autograde warn when a
    submission ran with limits only (here: isolation turned off for one regrade)?"""
    from grader.workflows.autograde import REPORT_FILE, Options, autograde

    course_dir, students = graded_class
    levels = {"namespaces+uid", "uid+limits", "limits", "not started"}
    for student, (answers, _, _) in students.items():
        if answers is None:
            continue  # garbage: no notebook to run
        report = json.loads((course_dir / "autograded" / student / A / REPORT_FILE).read_text())
        assert report.get("sandbox") in levels, (student, report.get("sandbox"))
    write_submission(course_dir, "blank", answer_sources(SOLUTION), ON_TIME)
    lines = []
    rows = autograde(course_dir, A, workers=1, opts=Options(isolate=False, seed=7, budget_s=150), log=lines.append)
    regraded = [r for r in rows if r["student"] == "blank"][0]
    # without namespaces, root drops to a fresh uid where the interpreter is readable by others
    # ("uid+limits", e.g. /usr/bin/python3), else it keeps limits only (a Python under /root): both honest
    assert regraded["report"]["sandbox"] in {"uid+limits", "limits"} and regraded["score"] == MAX
    assert any("ran with weaker isolation" in line and "limits" in line for line in lines), lines


def test_renamed_and_stripped_submissions_are_graded_under_the_assignment(graded_class):
    """A renamed notebook is graded and its autograded copy carries the assignment's notebook name
    (so the formgrader lists it); an answer cell without metadata is found by name and flagged."""
    course_dir, _ = graded_class
    graded = course_dir / "autograded" / "renamed" / A
    assert (graded / f"{A}.ipynb").is_file() and not (graded / RENAMED).exists()
    assert json.loads((graded / "grader-report.json").read_text())["score"] == MAX
    assert (course_dir / "feedback" / "renamed" / A / "my_work.html").is_file()  # fetch_feedback's name
    report = json.loads((course_dir / "autograded" / "stripped" / A / "grader-report.json").read_text())
    euler = report["exercises"]["euler_step"]
    assert euler["score"] == 1 and euler.get("repaired") and "lost its nbgrader metadata" in euler["feedback"][0]
    assert report["repaired"] == ["euler_step"]
    assert "lost its nbgrader metadata" in (course_dir / "feedback" / "stripped" / A / "feedback.md").read_text()


def test_feedback_folders_are_released_by_nbgrader(graded_class):
    """Feedback folders hold nbgrader's timestamp.txt and submission_secret.txt, so
    `nbgrader release_feedback` publishes each student's HTML where fetch_feedback looks."""
    from nbgrader.utils import notebook_hash

    course_dir, students = graded_class
    for student in students:
        for top in ("feedback", "autograded"):
            folder = course_dir / top / student / A
            assert (folder / "timestamp.txt").is_file() and (folder / "submission_secret.txt").is_file()
    done = subprocess.run([sys.executable, "-m", "nbgrader", "release_feedback", A], cwd=course_dir,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    outbound = course_dir / "exchange" / "diffusion-course" / "feedback"
    for student in students:
        secret = (course_dir / "feedback" / student / A / "submission_secret.txt").read_text()
        assert (outbound / f"{notebook_hash(secret=secret, notebook_id=A)}.html").is_file(), student


def test_nbgrader_autograde_and_generate_feedback_refuse_and_change_nothing(graded_class):
    course_dir, _ = graded_class

    def snapshot():
        return {p: p.read_bytes() for top in ("autograded", "feedback") for p in (course_dir / top).rglob("*")
                if p.is_file()}

    before = snapshot()
    for command in ("autograde", "generate_feedback"):
        done = subprocess.run([sys.executable, "-m", "nbgrader", command, A, "--force"], cwd=course_dir,
                              capture_output=True, text=True, timeout=120)
        assert done.returncode != 0, (command, done.stdout, done.stderr)
        assert "refused" in done.stderr and "course autograde" in done.stderr, done.stderr
    assert snapshot() == before


def test_regrade_one_student_shows_the_gradebook_final_score(graded_class, capsys):
    """`course autograde --student` regrades one student; a manual grade and a late penalty held by
    the gradebook appear beside the autograder's score in the console, the feedback and the CSV."""
    course_dir, _ = graded_class
    with gradebook(course_dir) as gb:
        gb.find_grade("check_euler_step", A, A, "full").manual_score = 0.5
        gb.db.commit()
    capsys.readouterr()
    assert cli.main(["autograde", str(course_dir), "--student", "full", *AUTOGRADE_ARGS]) == 0
    out = capsys.readouterr().out
    graded = [ln for ln in out.splitlines() if f" {A}: " in ln]
    assert len(graded) == 1 and graded[0].split()[0] == "full" and "kept" not in graded[0], out
    final = MAX - EXERCISES["euler_step"] + 0.5  # euler_step graded 0.5 by hand
    assert f"-> gradebook {final:g}" in graded[0]
    md = (course_dir / "feedback" / "full" / A / "feedback.md").read_text()
    assert f"Final score (gradebook): {final:g} / {MAX:g} (autograder: {MAX:g})" in md and "graded by hand" in md
    late = (course_dir / "feedback" / "late" / A / "feedback.md").read_text()
    assert f"Final score (gradebook): 0 / {MAX:g} (autograder: {MAX:g})" in late
    rows = {r["student"]: r for r in csv.DictReader((course_dir / "course-grades.csv").open())}
    assert float(rows["full"]["final_score"]) == final and rows["full"]["manual_grades"] == "1"
    assert float(rows["full"]["autograder_score"]) == MAX
    assert cli.main(["autograde", str(course_dir), "--student", "nobody"]) == 2


def _row_counts(course_dir: Path) -> dict:
    sql = sqlite3.connect(course_dir / "gradebook.db")
    return {t: sql.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
            for t in ("student", "submitted_assignment", "submitted_notebook", "grade", "comment")}


# ------------------------------------------------------------------------------------------------
# The student bundle and progress
# ------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    out = tmp_path_factory.mktemp("bundle") / "student"
    assert cli.main(["bundle", str(out), "--only", A]) == 0
    return out


def test_bundle_has_no_solutions_nor_hidden_tests(bundle):
    from grader.workflows.bundle import audit_bundle

    assert not (bundle / "solutions").exists() and not (bundle / "grader" / "tests").exists()
    assert not list(bundle.rglob("test_*.py")) and audit_bundle(bundle) == []
    for needed in ("course/__init__.py", "grader/__init__.py", "grader/engine/grade.py",
                   "grader/public/nb01_toy_flows.py", "notebooks/01_toy_flows.ipynb", "pyproject.toml", "README.md",
                   "checkpoints/08_latent_flow.pt", "checkpoints/judge_digits8.pt"):
        assert (bundle / needed).is_file(), needed
    try:  # exists: refused, not replaced
        refused = cli.main(["bundle", str(bundle), "--only", A])
    except FileExistsError:
        refused = 2
    assert refused == 2


def test_check_works_from_the_bundle(bundle):
    script = """
import grader, torch
from grader import check
assert grader.__file__.startswith(BUNDLE), grader.__file__
def euler_step(f, x, t, dt):
    return x + dt * f(x, t)
check("euler_step", namespace={"euler_step": euler_step})
try:
    check("euler_step", namespace={"euler_step": lambda f, x, t, dt: x + f(x, t)})
except AssertionError as exc:
    print("WRONG-CAUGHT", str(exc).splitlines()[0])
"""
    env = {**os.environ, "PYTHONPATH": str(bundle), "COURSE_FAST": "1"}
    done = subprocess.run([sys.executable, "-c", f"BUNDLE = {str(bundle)!r}\n" + script], cwd=bundle, env=env,
                          capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr
    assert "euler_step: all" in done.stdout and "WRONG-CAUGHT" in done.stdout


def test_bundle_is_pip_installable(bundle, tmp_path):
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                           "-w", str(tmp_path), str(bundle)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    import zipfile

    (wheel,) = tmp_path.glob("*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "grader/public/nb01_toy_flows.py" in names and "grader/workflows/autograde.py" in names and "grader/cli.py" in names
    assert not [n for n in names if n.startswith(("grader/tests", "solutions"))]
    shutil.rmtree(bundle / "build", ignore_errors=True)


def test_progress_in_the_bundle_uses_public_tests(bundle, tmp_path):
    mine = tmp_path / "notebooks"
    mine.mkdir()
    full = answer_sources(SOLUTION)
    nb = nbformat.read(bundle / "notebooks" / f"{A}.ipynb", as_version=4)
    for cell in nb.cells:
        gid = (cell.metadata.get("nbgrader") or {}).get("grade_id")
        if gid in ("euler_step", "rk4_step"):
            cell.source = full[gid]
    nbformat.write(nb, mine / f"{A}.ipynb")
    env = {**os.environ, "PYTHONPATH": str(bundle), "COURSE_FAST": "1"}
    done = subprocess.run([sys.executable, "-m", "grader.cli", "progress", "--dir", str(mine), "--only", A],
                          cwd=bundle, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    row = lambda name: next(ln for ln in lines if f" {name} " in ln)  # noqa: E731
    assert "   1/1 " in row("euler_step") and "passed" in row("euler_step")
    assert "   2/2 " in row("rk4_step")
    assert "   0/1 " in row("heun_step") and "error" in row("heun_step")
    assert f"3/{MAX:g}" in row("subtotal") and "(tests: public only)" in row("subtotal")

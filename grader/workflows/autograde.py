"""Batch autograding of a class: every ``submitted/<student>/<assignment>/`` of a course directory.

For each submission, in parallel (one grading *process* per submission, ``workers`` at a time):

1. the notebook is graded by the grader engine (``grade_notebook``) in its own process; the
   learner's code runs in the engine's sandbox with :class:`Policy` ``hidden`` covering the course
   directory's secrets (source/, release/, submitted/ (other students), autograded/, feedback/,
   gradebook.db) and the repository's (solutions/, grader/tests/, tests/, .git);
2. the report is written atomically to ``autograded/<student>/<assignment>/grader-report.json``
   with the sha256 of what was graded (notebook and timestamp), *before* any database write;
3. the main process alone writes the gradebook (nbgrader's API, idempotent upserts), then the
   feedback, the optional Gradescope ``results.json``, and at the end the class CSV.

A rerun reuses every report whose input is unchanged (``force`` regrades), so an interrupted run
loses nothing and duplicates nothing. A grading process that crashes or overruns its wall-clock
limit is killed; its submission is recorded as an error with zero and regraded by the next run.

Warm workers (Linux; ``Options.warm``, ``COURSE_WARM=0`` turns them off): each worker slot starts
one zygote (:mod:`grader.engine.zygote`) that imports torch, pytest and the engine once and forks
every grading process of the slot, and every sandbox those processes ask for, instead of starting
two new interpreters per submission; the sandbox is built by the same code as on the cold path.
Where a zygote cannot start (or refuses: a thread, an imported library module) the run says so
and grades with a fresh process per submission.
"""
from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

from grader.engine import registry
from grader.engine.grade import GraderError, grade_notebook
from grader.engine.report import build_report
from grader.engine.sandbox import Limits, Policy
from grader.paths import HIDDEN_DIR, ROOT
from grader.workflows.atomic import atomic_write
from grader.workflows.coursedir import load_config
from grader.workflows.feedback import write_feedback
from grader.workflows.gradebook import record_grades
from grader.workflows.gradescope import results_json
from grader.workflows.hygiene import csv_writer, handin_problem, timestamp_problem

REPORT_FILE = "grader-report.json"
CLASS_CSV = "course-grades.csv"  # not grades.csv: `nbgrader export` writes that one
HIDDEN_IN_COURSE = ("source", "release", "submitted", "autograded", "feedback", "exchange",
                    "gradebook.db", "gradebook.db-journal", "nbgrader_config.py")
HIDDEN_IN_REPO = ("solutions", "grader/tests", "tests", ".git", "course-class")


@dataclass
class HandIn:
    """One handed-in folder ``submitted/<student>/<assignment>/`` (not the engine's graded Submission)."""
    student: str
    assignment: str
    folder: Path
    notebook: Path | None  # None: no notebook handed in
    timestamp: str | None  # nbgrader's timestamp.txt, as written
    problem: str | None = None  # why it is refused before grading (grader.workflows.hygiene)

    def input_hash(self) -> str:
        h = hashlib.sha256()
        h.update((self.timestamp or "").encode())
        h.update(b"\0")
        h.update((self.problem or "").encode())
        h.update(b"\0")
        if self.notebook is not None and self.problem is None and self.notebook.is_file():
            h.update(self.notebook.read_bytes())
        return h.hexdigest()


@dataclass
class Options:
    budget_s: float = 300.0  # the engine's budget for one notebook
    limits: dict = field(default_factory=dict)  # overrides of grader.engine.sandbox.Limits
    seed: int | None = None
    isolate: bool = True
    wall_s: float | None = None  # kill a grading process after this (default budget + 120 s)
    results_json: bool = False  # Gradescope results.json per submission
    force: bool = False  # regrade even unchanged submissions
    warm: bool | None = None  # warm workers (a zygote per slot); None: where available (Linux)


# ------------------------------------------------------------------------------------------------
# Discovery and the sandbox policy
# ------------------------------------------------------------------------------------------------
def find_submissions(course_dir: Path, assignment: str | None = None,
                     student: str | None = None) -> list[HandIn]:
    """Every ``submitted/<student>/<assignment>/``, sorted by student then assignment."""
    course_dir = Path(course_dir)
    found = []
    for folder in sorted((course_dir / "submitted").glob("*/*")):
        if not folder.is_dir() or (assignment and folder.name != assignment):
            continue
        if student is not None and folder.parent.name != student:
            continue
        if folder.parent.name.startswith(".") or folder.name.startswith("."):
            continue
        nb = folder / f"{folder.name}.ipynb"
        if not (nb.is_file() or nb.is_symlink()):
            others = sorted(folder.glob("*.ipynb"))
            nb = others[0] if len(others) == 1 else None
        problem = handin_problem(folder, nb, course_dir / "submitted")
        stamp_file = folder / "timestamp.txt"
        stamp = None
        if problem is None and stamp_file.is_symlink():
            problem = "timestamp.txt is a symbolic link: refused"
        elif problem is None and stamp_file.is_file():
            with open(stamp_file, encoding="utf-8", errors="replace") as f:
                stamp = f.read(1000).strip() or None
            problem = timestamp_problem(stamp)
            if problem:
                stamp = None  # never handed to nbgrader (it would abort the class run)
        found.append(HandIn(folder.parent.name, folder.name, folder, nb, stamp, problem))
    return found


def hidden_paths(course_dir: Path) -> list[str]:
    """What the learner's process must not see (covered by empty tmpfs as root on Linux)."""
    course_dir = Path(course_dir).resolve()
    paths = [course_dir / name for name in HIDDEN_IN_COURSE]
    # anything else the instructor keeps in the course directory, unless the project lives there
    if course_dir.is_dir():
        for entry in course_dir.iterdir():
            if entry not in paths and not (ROOT == entry or ROOT.is_relative_to(entry)):
                paths.append(entry)
    paths += [ROOT / name for name in HIDDEN_IN_REPO]
    # an installed (non-editable) copy of the grader would carry its hidden tests along
    for entry in sys.path:
        tests = Path(entry or ".").resolve() / "grader" / "tests"
        if tests.is_dir() and tests != HIDDEN_DIR:
            paths.append(tests)
    seen, out = set(), []
    for p in paths:
        if str(p) not in seen:
            seen.add(str(p))
            out.append(str(p))
    return out


# ------------------------------------------------------------------------------------------------
# One submission, in its own process
# ------------------------------------------------------------------------------------------------
def error_report(notebook_id: str, message: str) -> dict:
    """A zero report for a submission that could not be graded at all."""
    try:
        exercises = registry.spec_for(notebook_id).exercises
    except KeyError:
        exercises = {}
    results = {name: {"score": 0.0, "max_score": float(points), "status": "error", "feedback": [message]}
               for name, points in exercises.items()}
    report = build_report(notebook_id, results)
    report["error"] = message
    return report


def grade_one(notebook: str, out: str, notebook_id: str, hidden: list[str], budget_s: float,
              limits: dict, seed: int | None, isolate: bool) -> None:
    """Grade one notebook (runs in the grading process) and write the report atomically."""
    from grader.engine.sandbox import limit_own_memory
    from grader.workflows.answers import grade_with_repair

    from grader.engine import zygote

    limit_own_memory()  # COURSE_GRADER_MEMORY_MB
    t0 = time.monotonic()
    try:
        report = grade_with_repair(notebook, seed=seed, notebook_id=notebook_id, limits=Limits(**limits),
                                   policy=Policy(isolate=isolate, hidden=hidden), budget_s=budget_s)
    except GraderError as exc:
        report = error_report(notebook_id, f"the notebook could not be graded: {str(exc).splitlines()[0]}")
    report["seconds"] = round(time.monotonic() - t0, 2)
    warm = zygote.client() is not None
    report["worker"] = {"mode": "warm" if warm else "cold", "pid": os.getpid(),
                        "zygote": os.getppid() if warm else None}
    atomic_write(Path(out), json.dumps(report, indent=1) + "\n")


class _Runner:
    """Starts grading processes and kills them on overrun or interruption."""

    def __init__(self):
        self.lock = threading.Lock()
        self.procs: set[subprocess.Popen] = set()
        self.stopping = False

    def grade(self, job: dict, wall_s: float) -> tuple[int | None, str]:
        """One submission in a fresh ``python -m grader.workflows.autograde JOB`` process."""
        return self.run([sys.executable, "-m", "grader.workflows.autograde", json.dumps(job)], wall_s)

    def run(self, argv: list[str], wall_s: float) -> tuple[int | None, str]:
        with self.lock:
            if self.stopping:
                return None, "interrupted"
            proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, start_new_session=True, cwd=str(ROOT))
            self.procs.add(proc)
        try:
            out, _ = proc.communicate(timeout=wall_s)
            return proc.returncode, out.decode("utf-8", errors="replace")[-2000:]
        except subprocess.TimeoutExpired:
            self._kill(proc)
            proc.communicate()
            return None, f"the grading process ran past {wall_s:g} s and was stopped"
        finally:
            with self.lock:
                self.procs.discard(proc)

    @staticmethod
    def _kill(proc: subprocess.Popen) -> None:
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(proc.pid, sig)  # its sandbox supervisors die with it (PDEATHSIG)
            except ProcessLookupError:
                return
            try:
                proc.wait(timeout=5)
                return
            except subprocess.TimeoutExpired:
                continue

    def stop_all(self) -> None:
        with self.lock:
            self.stopping = True
            procs = list(self.procs)
        for proc in procs:
            self._kill(proc)


class _WarmSlot:
    """One worker slot's zygote (grader.engine.zygote): started once, forks a grading process per
    submission (and that process's sandboxes). Used by one thread at a time."""

    def __init__(self, folder: Path, index: int):
        self.folder, self.index = folder, index
        self.proc: subprocess.Popen | None = None
        self.pid: int | None = None
        self.starts = 0
        self.jobs = 0
        self._fd = -1
        self._buf = b""

    def _line(self, timeout: float) -> dict | None:
        import select

        deadline = time.monotonic() + timeout
        while b"\n" not in self._buf:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            ready, _, _ = select.select([self._fd], [], [], min(remaining, 1.0))
            if ready:
                chunk = os.read(self._fd, 1 << 16)
                if not chunk:
                    return None
                self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        return json.loads(line)

    def start(self) -> None:
        from grader.engine import zygote

        self.close()
        r, w = os.pipe()
        path = [str(ROOT)] + ([os.environ["PYTHONPATH"]] if os.environ.get("PYTHONPATH") else [])
        env = {**os.environ, **zygote.THREAD_ENV, "PYTHONPATH": os.pathsep.join(path)}
        with open(self.folder / f"zygote-{self.index}.log", "ab") as log:
            self.proc = subprocess.Popen([sys.executable, "-m", "grader.engine.zygote", str(w)], pass_fds=(w,),
                                         stdin=subprocess.PIPE, stdout=log, stderr=subprocess.STDOUT,
                                         start_new_session=True, cwd=str(ROOT), env=env)
        os.close(w)
        self._fd, self._buf = r, b""
        hello = self._line(float(os.environ.get("COURSE_ZYGOTE_START_S", "300")))
        if not hello or "ready" not in hello or hello.get("tainted") or hello.get("threads") != 1:
            tail = (self.folder / f"zygote-{self.index}.log").read_text(errors="replace")[-500:]
            self.close()
            raise RuntimeError(f"the zygote did not start cleanly ({hello or tail.strip() or 'no answer'})")
        self.pid = hello["ready"]
        self.starts += 1

    def grade(self, job: dict, wall_s: float, entry: str | None = None) -> tuple[int | None, str] | None:
        """(exit status or None, output) as _Runner.run; None: the zygote refused (take the cold path).
        ``entry``: ``module:function`` called with ``job`` (default: grade_one)."""
        if self.proc is None or self.proc.poll() is not None:
            self.start()
        self.jobs += 1
        log = self.folder / f"job-{self.index}-{self.jobs}.log"
        try:
            message = {"op": "grade", "id": self.jobs, "job": job, "wall_s": wall_s, "log": str(log)}
            if entry:
                message["entry"] = entry
            self.proc.stdin.write((json.dumps(message) + "\n").encode())
            self.proc.stdin.flush()
        except OSError:
            self.close()
            return None
        reply = self._line(wall_s + 60.0)  # the zygote stops the process at wall_s
        output = ""
        try:
            output = log.read_text(encoding="utf-8", errors="replace")[-2000:]
            log.unlink()
        except OSError:
            pass
        if reply is None:  # the zygote itself died or hung: a fresh one next time
            self.close()
            return None, f"the warm grading slot stopped answering{': ' + output.strip()[-300:] if output.strip() else ''}"
        if str(reply.get("detail", "")).startswith("warm worker refused"):
            return None if reply.get("code") is None else (reply["code"], output)
        return reply.get("code"), (reply.get("detail") or output)

    def close(self) -> None:
        if self.proc is not None:
            try:
                self.proc.stdin.close()  # the zygote stops its children and exits
            except OSError:
                pass
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                _Runner._kill(self.proc)
            self.proc = None
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


class _WarmRunner(_Runner):
    """Grading processes forked by one zygote per worker slot; the cold path where a zygote cannot
    start or refuses (said once)."""

    def __init__(self, workers: int, log=print):
        import queue
        import tempfile

        super().__init__()
        self.folder = Path(tempfile.mkdtemp(prefix="course-warm-"))
        self.slots = [_WarmSlot(self.folder, i) for i in range(max(1, workers))]
        self.free: "queue.Queue[_WarmSlot]" = queue.Queue()
        for slot in self.slots:
            self.free.put(slot)
        self.log = log
        self.cold_jobs = 0
        self.broken: str | None = None

    def grade(self, job: dict, wall_s: float) -> tuple[int | None, str]:
        if self.stopping:
            return None, "interrupted"
        slot = self.free.get()
        try:
            if self.broken is None:
                try:
                    result = slot.grade(job, wall_s)
                except (RuntimeError, OSError) as exc:
                    with self.lock:
                        if self.broken is None:
                            self.broken = str(exc)
                            self.log(f"warning: no warm workers ({exc}); grading with a fresh process "
                                     "per submission")
                    result = None
                if result is not None:
                    return result
            with self.lock:
                self.cold_jobs += 1
            return super().grade(job, wall_s)
        finally:
            self.free.put(slot)

    @property
    def starts(self) -> int:
        return sum(s.starts for s in self.slots)

    def stop_all(self) -> None:
        super().stop_all()
        self.close()

    def close(self) -> None:
        import shutil

        for slot in self.slots:
            slot.close()
        shutil.rmtree(self.folder, ignore_errors=True)


def _report_path(course_dir: Path, sub: HandIn) -> Path:
    return Path(course_dir) / "autograded" / sub.student / sub.assignment / REPORT_FILE


def _load_report(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _grade_submission(course_dir: Path, sub: HandIn, opts: Options, hidden: list[str],
                      runner: _Runner) -> tuple[dict, bool]:
    """(report, reused): the stored report if its input is unchanged, else a fresh grading."""
    path = _report_path(course_dir, sub)
    digest = sub.input_hash()
    old = _load_report(path)
    if old and not opts.force and old.get("input_sha256") == digest and not old.get("grader_failure"):
        return old, True
    path.parent.mkdir(parents=True, exist_ok=True)
    if sub.problem is not None:
        report = error_report(sub.assignment, sub.problem)
    elif sub.notebook is None:
        report = error_report(sub.assignment, f"no notebook {sub.assignment}.ipynb was handed in")
    else:
        tmp_out = path.with_name(f".{REPORT_FILE}.{os.getpid()}.partial")
        tmp_out.unlink(missing_ok=True)
        job = {"notebook": str(sub.notebook), "out": str(tmp_out), "notebook_id": sub.assignment,
               "hidden": hidden, "budget_s": opts.budget_s, "limits": opts.limits, "seed": opts.seed,
               "isolate": opts.isolate}
        wall = opts.wall_s or opts.budget_s + 120.0
        t0 = time.monotonic()
        code, output = runner.grade(job, wall)
        process_s = round(time.monotonic() - t0, 2)  # grading plus the process's start (imports)
        report = _load_report(tmp_out) if code == 0 else None
        tmp_out.unlink(missing_ok=True)
        if report is None:
            detail = output.strip().splitlines()[-1] if output.strip() else f"exit status {code}"
            report = error_report(sub.assignment, f"the grader failed on this submission ({detail}); "
                                                  "it will be regraded by the next run")
            report["grader_failure"] = True
        report["process_seconds"] = process_s
    report.update({"student": sub.student, "assignment": sub.assignment, "timestamp": sub.timestamp,
                   "input_sha256": digest})
    atomic_write(path, json.dumps(report, indent=1) + "\n")  # before any database write
    if sub.problem is None and sub.notebook is not None and sub.notebook.is_file():  # for the formgrader's view
        # under the assignment's notebook name (a renamed submission too), as nbgrader's autograde does
        dest = path.with_name(f"{sub.assignment}.ipynb")
        if not dest.exists() or dest.read_bytes() != sub.notebook.read_bytes():
            atomic_write(dest, sub.notebook.read_text(encoding="utf-8", errors="replace"))
    return report, False


# ------------------------------------------------------------------------------------------------
# The batch
# ------------------------------------------------------------------------------------------------
def autograde(course_dir: Path, assignment: str | None = None, workers: int = 2, opts: Options | None = None,
              csv_path: Path | None = None, log=print, student: str | None = None) -> list[dict]:
    """Grade every submission of ``course_dir`` (or of one assignment); return one row per submission.

    ``student``: regrade that student's submissions only (always regraded, as with ``force``); the
    class CSV is still written for the whole class.
    """
    course_dir = Path(course_dir).resolve()
    opts = opts or Options()
    if not (course_dir / "nbgrader_config.py").is_file():
        raise FileNotFoundError(f"{course_dir} is not a course directory (run `course init-class` first)")
    known = {s.id for s in registry.notebooks()}
    subs = find_submissions(course_dir, assignment, student=student)
    if student is not None:
        if not subs:
            raise FileNotFoundError(f"no submission of student {student!r} in {course_dir / 'submitted'}"
                                    + (f" for {assignment}" if assignment else ""))
        opts = dataclasses.replace(opts, force=True)
    unknown = sorted({s.assignment for s in subs} - known)
    if unknown:
        log(f"skipping submissions of assignments without a grader: {', '.join(unknown)}")
    subs = [s for s in subs if s.assignment in known]
    if not (sys.platform.startswith("linux") and os.geteuid() == 0):
        log("warning: not root on Linux: the sandbox uses user namespaces if allowed, else limits only "
            "(hidden paths may be visible to learners' code); see docs/INSTRUCTOR.md")
    config = load_config(course_dir)
    hidden = hidden_paths(course_dir)
    from grader.engine import zygote

    warm = opts.warm if opts.warm is not None else (zygote.available() and os.environ.get("COURSE_WARM") != "0")
    todo = sum(1 for s in subs if s.problem is None and s.notebook is not None)
    runner = _WarmRunner(min(max(1, workers), max(1, todo)), log) if warm and todo else _Runner()
    rows = []
    t0 = time.monotonic()
    pool = ThreadPoolExecutor(max_workers=max(1, workers))
    try:
        futures = {pool.submit(_grade_submission, course_dir, s, opts, hidden, runner): s for s in subs}
        for future in as_completed(futures):
            sub = futures[future]
            report, reused = future.result()
            gb_row = record_grades(course_dir, sub.student, sub.assignment, report, sub.timestamp, config)
            write_feedback(course_dir, sub.student, sub.assignment, report, gb_row)
            write_nbgrader_files(course_dir, sub)  # timestamp.txt, submission_secret.txt (release_feedback)
            if opts.results_json:
                atomic_write(_report_path(course_dir, sub).with_name("results.json"),
                             json.dumps(results_json(report, report.get("seconds", 0.0)), indent=2) + "\n")
            row = {"student": sub.student, "assignment": sub.assignment, "score": report["score"],
                   "max_score": report["max_score"], "gradebook_score": gb_row["score"],
                   "late_penalty": gb_row["late_submission_penalty"], "final_score": gb_row["final_score"],
                   "reused": reused, "error": report.get("error", ""), "report": report}
            rows.append(row)
            log(f"{sub.student:>16} {sub.assignment}: {report['score']:g}/{report['max_score']:g}"
                + (f" -> gradebook {gb_row['final_score']:g}" if gb_row["final_score"] != report["score"] else "")
                + (" (unchanged, kept)" if reused else f" ({report.get('seconds', 0):.1f} s)")
                + (f"  [{report['error']}]" if report.get("error") else ""))
    except BaseException:
        runner.stop_all()
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown(wait=True)
    if isinstance(runner, _WarmRunner):
        runner.close()
        if runner.starts:
            log(f"warm workers: {runner.starts} zygote start(s) for {len(runner.slots)} slot(s)"
                + (f"; {runner.cold_jobs} submission(s) graded cold" if runner.cold_jobs else ""))
    rows.sort(key=lambda r: (r["student"], r["assignment"]))
    weaker = sorted({r["report"].get("sandbox") for r in rows} - {"namespaces+uid", "not started", None})
    if weaker:
        n = sum(r["report"].get("sandbox") in weaker for r in rows)
        log(f"warning: {n} submission(s) ran with weaker isolation than namespaces+uid ({', '.join(weaker)}): "
            "scores are protected by resource limits, not by hiding files; see docs/INSTRUCTOR.md")
    out = Path(csv_path) if csv_path else course_dir / CLASS_CSV
    atomic_write(out, class_csv(course_dir))
    log(f"graded {len(rows)} submission(s) in {time.monotonic() - t0:.1f} s with {workers} worker(s); "
        f"class CSV: {out}")
    return rows


def write_nbgrader_files(course_dir: Path, sub: HandIn) -> None:
    """What nbgrader's ``release_feedback`` and formgrader expect beside our files: ``timestamp.txt``
    and ``submission_secret.txt`` in ``autograded/`` and ``feedback/`` (nbgrader's autograde copies
    them from the submission; without a secret, from a hand-copied submission, one is made once)."""
    import secrets
    from datetime import datetime, timezone

    graded = Path(course_dir) / "autograded" / sub.student / sub.assignment
    folders = [graded, Path(course_dir) / "feedback" / sub.student / sub.assignment]
    secret_file = sub.folder / "submission_secret.txt"
    if secret_file.is_file() and not secret_file.is_symlink():  # as written: nbgrader hashes it raw
        secret = secret_file.read_text(encoding="utf-8", errors="replace")
    elif (graded / "submission_secret.txt").is_file():
        secret = (graded / "submission_secret.txt").read_text(encoding="utf-8")
    else:
        secret = secrets.token_hex(16)
    stamp = sub.timestamp
    if not stamp and (graded / "timestamp.txt").is_file():
        stamp = (graded / "timestamp.txt").read_text(encoding="utf-8").strip()
    stamp = stamp or datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f %Z")
    for folder in folders:
        folder.mkdir(parents=True, exist_ok=True)
        for name, text in (("timestamp.txt", stamp), ("submission_secret.txt", secret)):
            if not (folder / name).is_file() or (folder / name).read_text(encoding="utf-8") != text:
                atomic_write(folder / name, text)
    # a renamed notebook: nbgrader's fetch_feedback looks for the feedback under the handed-in name
    feedback = folders[1] / f"{sub.assignment}.html"
    if sub.notebook is not None and sub.notebook.stem != sub.assignment and feedback.is_file():
        atomic_write(folders[1] / f"{sub.notebook.stem}.html", feedback.read_text(encoding="utf-8"))


def class_csv(course_dir: Path) -> str:
    """One row per (student, assignment): the autograder's total and every exercise's score, from the
    stored reports, beside the gradebook's final score (manual grades, late penalty) from nbgrader."""
    from grader.workflows.gradebook import final_scores

    reports = []
    for path in sorted((Path(course_dir) / "autograded").glob(f"*/*/{REPORT_FILE}")):
        report = _load_report(path)
        if report:
            reports.append(report)
    try:
        finals = final_scores(course_dir)
    except Exception:  # noqa: BLE001 - a gradebook that cannot be read leaves those columns empty
        finals = {}
    exercises: list[str] = []
    for r in reports:
        for name in r["exercises"]:
            if name not in exercises:
                exercises.append(name)
    buf = io.StringIO()
    writer = csv_writer(buf)  # every cell formula-escaped
    writer.writerow(["student", "assignment", "timestamp", "autograder_score", "max_score", "late_penalty",
                     "manual_grades", "final_score", "error", *exercises])
    for r in sorted(reports, key=lambda r: (r["student"], r["assignment"])):
        gb = finals.get((r["student"], r["assignment"]), {})
        writer.writerow([r["student"], r["assignment"], r.get("timestamp") or "", f"{r['score']:g}",
                         f"{r['max_score']:g}", f"{gb['late_submission_penalty']:g}" if gb else "",
                         gb.get("manual_grades", ""), f"{gb['final_score']:g}" if gb else "", r.get("error", ""),
                         *(f"{r['exercises'][e]['score']:g}" if e in r["exercises"] else "" for e in exercises)])
    return buf.getvalue()


def main(argv: list[str]) -> int:
    """Entry point of one grading process: ``python -m grader.workflows.autograde JSON``."""
    job = json.loads(argv[0])
    grade_one(**job)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))


__all__ = ["Options", "HandIn", "autograde", "class_csv", "find_submissions", "hidden_paths"]

"""Warm workers (issue 12, item 5): one zygote per worker slot forks every grading process and
every sandbox, and a forked worker is as isolated as a cold one.

- the allow-list view, namespaces, uid, capabilities and no_new_privs of a warm worker pass the
  same probe as a cold one (tests/test_sandbox_isolation.py), with the stripped library in
  memory, no file descriptor of the zygote, and nothing left behind;
- two workers forked from one zygote cannot see or signal each other, their grading process or
  the zygote;
- a class run starts one zygote per slot whatever the number of submissions; a hanging answer
  costs one call timeout (the exercise's other tests are not run again), and answers that crash
  the worker (os._exit, a segfault, SystemExit, KeyboardInterrupt) score zero with a message
  while the zygote grades the next student as before.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from grader.engine import zygote
from grader.paths import ROOT, SOLUTIONS

pytestmark = pytest.mark.skipif(not zygote.available(), reason="warm workers need Linux (fork, namespaces)")

A = "01_toy_flows"
ENTRY = "tests.test_warm_workers:"

WARM_FACTS = r'''
import os, sys, threading

def warm_facts():
    import inspect
    import course.ode
    try:
        course.ode.integrate(lambda x, t: x, 1.0, 0.0, 0.1, 1)
        called = "ran"
    except RuntimeError as exc:
        called = str(exc)
    fds = {}
    for f in os.listdir("/proc/self/fd"):
        try:
            fds[f] = os.readlink("/proc/self/fd/" + f)
        except OSError:
            pass  # the listing's own
    return {"fds": fds, "threads": threading.active_count(),
            "source": inspect.getsource(course.ode.integrate), "called": called,
            "modules": sorted(m for m in sys.modules if m.startswith(("grader.tests", "solutions", "grader.public.nb0"))),
            "pid": os.getpid(), "ppid": os.getppid()}
'''


# -- run inside a grading process forked by the zygote (entry points of _WarmSlot.grade) ----------
def _sandbox(hidden=()):
    from grader.engine.sandbox import Limits, Policy, Sandbox

    return Sandbox(f"grader.public.nb{A}", Limits(), Policy(hidden=list(hidden)))


def _call(sb, name, *args, timeout=60):
    from grader.engine import codec

    reply = sb.request({"op": "call", "name": name, "args": codec.encode(list(args)),
                        "kwargs": codec.encode({}), "forbid": []}, timeout)
    return codec.decode(reply["value"]) if reply.get("ok") else reply


def probe_job(out: str, probe: str, facts: list, hidden: list) -> None:
    sb = _sandbox(hidden)
    try:
        for i, source in enumerate((probe, WARM_FACTS)):
            assert sb.request({"op": "run_cell", "id": f"probe{i}", "source": source}, 60).get("ok")
        result = {"isolation": sb.isolation, "resources": sb.resources, "warm": sb.warm,
                  "supervisor": sb.proc.pid, "warm_facts": _call(sb, "warm_facts"),
                  "facts": _call(sb, "facts", *facts), "grading_pid": os.getpid(),
                  "zygote_pid": os.getppid()}
    finally:
        sb.close()
    Path(out).write_text(json.dumps(result))


NEIGHBOUR = r'''
import os, signal, subprocess
_child = subprocess.Popen(["sleep", "4244.5"])

def alive():
    return _child.poll() is None

def attack(pids):
    seen = sorted(int(p) for p in os.listdir("/proc") if p.isdigit())
    hits = {}
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
            hits[str(pid)] = "killed"
        except OSError as exc:
            hits[str(pid)] = type(exc).__name__
    try:
        os.kill(-1, signal.SIGKILL)  # everything this worker may signal (its own children only)
    except OSError:
        pass
    return {"seen": seen, "hits": hits}
'''


def neighbours_job(out: str) -> None:
    from grader.engine.supervisor import descendants

    first, second = _sandbox(), _sandbox()
    try:
        for sb in (first, second):
            assert sb.request({"op": "run_cell", "id": "n", "source": NEIGHBOUR}, 60).get("ok")
        targets = [first.proc.pid, *descendants(first.proc.pid), os.getpid(), os.getppid()]
        attack = _call(second, "attack", targets)
        result = {"warm": [first.warm, second.warm], "targets": targets, "attack": attack,
                  "first_alive": _call(first, "alive")}
    finally:
        first.close()
        second.close()
    Path(out).write_text(json.dumps(result))


# -- the tests -------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def slot(tmp_path_factory):
    from grader.workflows.autograde import _WarmSlot

    s = _WarmSlot(tmp_path_factory.mktemp("warm"), 0)
    s.start()
    yield s
    s.close()


def _run(slot, tmp_path, entry, **job):
    out = tmp_path / "out.json"
    code, output = slot.grade({"out": str(out), **job}, 300, entry=ENTRY + entry)
    assert code == 0, output
    return json.loads(out.read_text())


@pytest.mark.skipif(os.geteuid() != 0, reason="the isolation probe's checks are written for root")
def test_a_warm_worker_is_as_isolated_as_a_cold_one(slot, tmp_path):
    from test_sandbox_isolation import (PROBE, PROJECT_FILES, _assert_contained, _digest, _ipc_keys, _leftovers,
                                        _mount_count)

    secret_dirs = [str(SOLUTIONS), str(tmp_path / "course-dir"), str(tmp_path / "other-copy"),
                   "/home", "/root", "/work"]
    (tmp_path / "course-dir").mkdir()
    (tmp_path / "course-dir" / "gradebook.db").write_text("secret")
    shutil.copytree(ROOT / "course", tmp_path / "other-copy")
    before_mounts, before = _mount_count(), _digest(PROJECT_FILES)
    result = _run(slot, tmp_path, "probe_job", probe=PROBE,
                  facts=[str(ROOT), secret_dirs, str(ROOT / "course" / "ode.py")],
                  hidden=[str(tmp_path / "course-dir")])
    assert result["warm"], "the sandbox was not forked by the zygote"
    assert result["zygote_pid"] == slot.pid
    _assert_contained(result, tmp_path)
    warm = result["warm_facts"]
    # the library in the worker's memory is the stripped one (the zygote never imported the real one)
    assert "not available while grading 01_toy_flows" in warm["called"], warm["called"]
    assert "not available while grading" in warm["source"] and "for " not in warm["source"], warm["source"]
    assert warm["modules"] == [f"grader.public.nb{A}"], warm["modules"]
    # no descriptor of the zygote's (its sockets, other pipes): as a cold worker, /dev/null, the output
    # pipe, the request and reply pipes, IPython's history database in the scratch folder
    fds = warm["fds"]
    assert fds["0"] == "/dev/null" and fds["1"] == fds["2"] and fds["1"].startswith("pipe:"), fds
    assert all(t.startswith(("pipe:", "/dev/null", "/tmp/work/")) for t in fds.values()), fds
    assert len({t for t in fds.values() if t.startswith("pipe:")}) == 3, fds
    assert warm["pid"] == 1 and warm["ppid"] == 0  # PID 1 of its own namespace
    assert not _leftovers() and _mount_count() == before_mounts
    assert "5eed11" not in _ipc_keys() and "5eed12" not in _ipc_keys()
    assert _digest(PROJECT_FILES) == before
    assert (tmp_path / "course-dir" / "gradebook.db").read_text() == "secret"


def test_two_warm_workers_cannot_see_or_signal_each_other(slot, tmp_path):
    result = _run(slot, tmp_path, "neighbours_job")
    assert result["warm"] == [True, True]
    attack = result["attack"]
    assert max(attack["seen"]) < 10, attack["seen"]  # only its own namespace's processes
    assert set(attack["hits"].values()) == {"ProcessLookupError"}, attack["hits"]
    assert result["first_alive"] is True
    assert not any("sleep 4244.5" in line for line in os.popen("ps -eo args").read().splitlines())


CRASHES = {  # exercise -> an answer that hangs or ends the worker
    "euler_step": "def euler_step(*args, **kwargs):\n    while True:\n        pass\n",
    "heun_step": "def heun_step(*args, **kwargs):\n    import os\n    os._exit(3)\n",
    "rk4_step": "def rk4_step(*args, **kwargs):\n    import ctypes\n    return ctypes.string_at(0)\n",
    "integrate": "def integrate(*args, **kwargs):\n    raise SystemExit(1)\n",
    "divergence": "def divergence(*args, **kwargs):\n    raise KeyboardInterrupt\n",
}
CALL_TIMEOUT = 6.0


@pytest.fixture(scope="module")
def warm_class(tmp_path_factory):
    from support import reference_answers, with_answers

    from grader.workflows.autograde import REPORT_FILE, Options, autograde
    from grader.workflows.coursedir import init_class

    course = tmp_path_factory.mktemp("warmclass") / "course"
    init_class(course, only=[A], quiet=True)
    reference = reference_answers(A)
    release = course / "release" / A / f"{A}.ipynb"
    for student, answers in (("a-crashy", {**reference, **CRASHES}), ("b-honest", reference),
                             ("c-honest", reference)):
        folder = course / "submitted" / student / A
        folder.mkdir(parents=True)
        with_answers(release, answers, folder)
    lines: list[str] = []
    autograde(course, A, workers=1, opts=Options(seed=3, budget_s=240, warm=True,
                                                 limits={"call_timeout": CALL_TIMEOUT}), log=lines.append)
    reports = {s: json.loads((course / "autograded" / s / A / REPORT_FILE).read_text())
               for s in ("a-crashy", "b-honest", "c-honest")}
    return reports, lines


def test_one_zygote_per_slot_forks_every_grading_process(warm_class):
    reports, lines = warm_class
    assert any("warm workers: 1 zygote start(s) for 1 slot(s)" in line for line in lines), lines
    workers = [r["worker"] for r in reports.values()]
    assert {w["mode"] for w in workers} == {"warm"}
    assert len({w["zygote"] for w in workers}) == 1  # torch imported once for the three
    assert len({w["pid"] for w in workers}) == 3  # a fresh grading process each
    assert {r["sandbox"] for r in reports.values()} == {"namespaces+uid"} or os.geteuid() != 0


def test_crashes_score_zero_with_a_message_and_the_next_student_is_graded(warm_class):
    reports, _ = warm_class
    crashy = reports["a-crashy"]["exercises"]
    for name in CRASHES:
        assert crashy[name]["score"] == 0, (name, crashy[name])
        assert crashy[name]["feedback"], name
    text = {name: "\n".join(crashy[name]["feedback"]) for name in CRASHES}
    assert "ended the process" in text["heun_step"] and "exited with status 3" in text["heun_step"]
    assert "ended the process" in text["rk4_step"] and "SIGSEGV" in text["rk4_step"], text["rk4_step"]
    assert "SystemExit" in text["integrate"] and "KeyboardInterrupt" in text["divergence"]
    for name, result in crashy.items():  # the other answers are still graded in full
        if name not in CRASHES:
            assert result["score"] == result["max_score"], (name, result)
    for student in ("b-honest", "c-honest"):  # graded after it by the same zygote
        assert reports[student]["score"] == reports[student]["max_score"], reports[student]


def test_a_hanging_answer_costs_one_call_timeout(warm_class):
    reports, _ = warm_class
    feedback = reports["a-crashy"]["exercises"]["euler_step"]["feedback"]
    text = "\n".join(feedback)
    assert f"did not return within {CALL_TIMEOUT:g} s" in text, text
    assert "not run:" in text, text  # the exercise's next test did not wait again
    assert text.count("not run:") == len([f for f in feedback if f.startswith("[")]) - 1, text


def test_a_zygote_that_holds_the_library_refuses_to_fork():
    """In this (test) process the library is imported: a zygote here would leak it, so it refuses."""
    import course.ode  # noqa: F401

    assert "course.ode" in zygote.tainted_modules()
    refused = zygote.Server(reply_fd=-1)._fork_ok()
    assert refused and "course" in refused


def test_without_a_zygote_the_class_is_graded_cold_and_said_so(tmp_path, monkeypatch):
    """A zygote that cannot start: the run warns and grades each submission in a fresh process."""
    from grader.workflows.autograde import REPORT_FILE, Options, autograde
    from grader.workflows.coursedir import init_class

    course = tmp_path / "course"
    init_class(course, only=[A], quiet=True)
    folder = course / "submitted" / "blank" / A
    folder.mkdir(parents=True)
    shutil.copy(course / "release" / A / f"{A}.ipynb", folder / f"{A}.ipynb")
    monkeypatch.setenv("COURSE_ZYGOTE_START_S", "0.001")
    lines: list[str] = []
    autograde(course, A, workers=1, opts=Options(seed=1, warm=True), log=lines.append)
    assert any("no warm workers" in line for line in lines), lines
    report = json.loads((course / "autograded" / "blank" / A / REPORT_FILE).read_text())
    assert report["worker"]["mode"] == "cold" and report["score"] == 0 and "error" not in report, report


def test_warm_grader_grades_warm_with_the_cold_report():
    """Does grader.workflows.warm.WarmGrader (the project tests' grading path) really grade in a forked
    process, not by silently falling back, and give the cold path's scores?"""
    from grader.engine.grade import grade_notebook
    from grader.paths import SOLUTIONS
    from grader.workflows.warm import WarmGrader, warm_available

    if not warm_available():
        pytest.skip("no warm workers on this platform")
    path = SOLUTIONS / "01_toy_flows.ipynb"
    grader = WarmGrader()
    try:
        warm = grader.grade(path, seed=5)
    finally:
        grader.close()
    assert (grader.warm_gradings, grader.cold_gradings, grader.broken) == (1, 0, None)
    cold = grade_notebook(path, seed=5)
    assert warm["score"] == cold["score"] == cold["max_score"]
    assert {k: v["score"] for k, v in warm["exercises"].items()} == {k: v["score"] for k, v in cold["exercises"].items()}

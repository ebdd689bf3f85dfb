"""One sandbox that holds for every user (issue 11, items 4, 6 and 7).

The learner's code runs as root's grader and as an ordinary user's (a fresh sandbox, and one forked
from a warm zygote as ``course autograde`` does) in new PID, IPC, mount and network namespaces, sees
only an allow list of the machine (no hidden tests, no solutions, no course directory, no other copy
of the project), cannot undo its mounts or keep a privilege,
leaves no process, IPC object or mount behind, and its memory (memfd included) is capped by a
cgroup where the machine has one. The grader reads replies of a few MB at most, parsed with
guards, and the report names the isolation that really applied.
"""
from __future__ import annotations

import hashlib
import json
import os
import pwd
import resource
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from grader.engine import protocol, sandbox
from grader.paths import HIDDEN_DIR, ROOT, SOLUTIONS

LINUX = sys.platform.startswith("linux")
USER = "gradeuser"
MARKER = "4243.5"  # a sleep argument no other process uses

# Run inside the sandbox; ``facts()`` returns what the learner's code could see and do.
PROBE = r'''
import ctypes, os, socket, subprocess

_libc = ctypes.CDLL(None, use_errno=True)

def _try(fn):
    try:
        fn()
        return "ok"
    except Exception as exc:
        return type(exc).__name__

def _write(path):
    with open(path, "w") as f:
        f.write("x")

def _listing(path):
    try:
        return sorted(os.listdir(path))
    except OSError as exc:
        return type(exc).__name__

def facts(root, secret_dirs, library_file):
    out = {"uid": os.getuid()}
    status = dict(line.split(":", 1) for line in open("/proc/self/status"))
    out["cap_eff"] = status["CapEff"].strip()
    out["cap_bnd"] = status["CapBnd"].strip()
    out["no_new_privs"] = status["NoNewPrivs"].strip()
    out["slash"] = _listing("/")
    out["root"] = _listing(root)
    out["hidden_tests"] = _listing(os.path.join(root, "grader", "tests"))
    out["secrets"] = {d: _listing(d) for d in secret_dirs}
    out["processes"] = sorted(int(p) for p in os.listdir("/proc") if p.isdigit())
    out["writes"] = {p: _try(lambda p=p: _write(p)) for p in (
        os.path.join(root, "course", "x.py"), os.path.join(root, "grader", "x.py"), "/x", "/usr/x",
        library_file)}
    out["scratch_write"] = _try(lambda: _write("/tmp/work/ok"))
    # undo the mounts: unmount the stripped library, remount / writable, in a fresh user namespace too
    out["umount"] = _libc.umount2(os.path.dirname(library_file).encode(), 2) == 0
    out["remount"] = _libc.mount(None, b"/", None, 32 | 4096, None) == 0
    if _libc.unshare(0x10000000 | 0x00020000) == 0:  # CLONE_NEWUSER | CLONE_NEWNS
        out["nested_umount"] = _libc.umount2(os.path.dirname(library_file).encode(), 2) == 0
        out["nested_remount_rw"] = _libc.mount(None, os.path.dirname(library_file).encode(), None,
                                               32 | 4096, None) == 0
    else:
        out["nested_umount"] = out["nested_remount_rw"] = False
    out["library_after"] = "not available while grading" in open(library_file).read()
    out["network"] = _try(lambda: socket.create_connection(("1.1.1.1", 80), timeout=2))
    # SysV shared memory and a message queue with fixed keys: they must die with the sandbox
    _libc.shmget.restype = ctypes.c_int
    out["shm"] = _libc.shmget(0x5eed11, 4096, 0o1000 | 0o666)
    out["msg"] = _libc.msgget(0x5eed12, 0o1000 | 0o666)
    # a detached process that would outlive a careless grader
    subprocess.Popen(["sleep", MARKER], start_new_session=True)
    return out
'''.replace("MARKER", repr(MARKER))

HARNESS = r'''
import json, sys
from grader.engine import codec
from grader.engine.sandbox import Limits, Policy, Sandbox
args = json.loads(sys.argv[1])
sb = Sandbox("grader.public.nb01_toy_flows", Limits(memory_mb=args["memory_mb"]), Policy(hidden=args["hidden"]))
try:
    assert sb.request({"op": "run_cell", "id": "probe", "source": args["probe"]}, 60).get("ok")
    reply = sb.request({"op": "call", "name": "facts", "args": codec.encode(args["facts"]),
                        "kwargs": codec.encode({}), "forbid": []}, 60)
    facts = codec.decode(reply["value"]) if reply.get("ok") else reply
    memfd = None
    if args["memfd_mb"]:
        code = ("import os\ndef fill(mb):\n    fd = os.memfd_create('x')\n    block = b'x' * (1 << 20)\n"
                "    for _ in range(mb):\n        os.write(fd, block)\n    return mb\n")
        assert sb.request({"op": "run_cell", "id": "memfd", "source": code}, 60).get("ok")
        try:
            memfd = sb.request({"op": "call", "name": "fill", "args": codec.encode([args["memfd_mb"]]),
                                "kwargs": codec.encode({}), "forbid": []}, 120)
        except Exception as exc:
            memfd = {"ok": False, "died": str(exc)}
    print(json.dumps({"isolation": sb.isolation, "resources": sb.resources, "facts": facts, "memfd": memfd,
                      "supervisor": sb.proc.pid}))
finally:
    sb.close()
'''


# -- what the host looks like ------------------------------------------------------------------
def _ipc_keys() -> str:
    return subprocess.run(["ipcs"], capture_output=True, text=True).stdout if shutil.which("ipcs") else ""


def _mount_count() -> int:
    return len(Path("/proc/self/mountinfo").read_text().splitlines())


def _leftovers() -> list[str]:
    out = subprocess.run(["ps", "-eo", "pid,args"], capture_output=True, text=True).stdout
    return [line for line in out.splitlines() if f"sleep {MARKER}" in line]


def _digest(paths) -> str:
    h = hashlib.sha256()
    for top in paths:
        for path in sorted([top] if top.is_file() else top.rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts:
                h.update(str(path).encode() + path.read_bytes())
    return h.hexdigest()


# what the learner's code tries to change (other files of a working tree may change meanwhile)
PROJECT_FILES = [ROOT / "course" / "ode.py", ROOT / "course" / "flows.py", ROOT / "grader" / "engine" / "worker.py",
                 HIDDEN_DIR / "test_01_toy_flows.py", SOLUTIONS / "01_toy_flows.ipynb"]


def _closed_ancestor(path: str) -> str | None:
    parts = os.path.abspath(path).split(os.sep)[1:]
    for i in range(1, len(parts)):
        ancestor = os.sep + os.sep.join(parts[:i])
        if not os.stat(ancestor).st_mode & 0o001:
            return ancestor
    return None


def _as_user_prefix() -> list[str]:
    """A command prefix that runs as USER, with the interpreter reachable (as root, a private mount
    namespace puts a 0755 tmpfs on a closed folder like /root and the interpreter back inside)."""
    pw = pwd.getpwnam(USER)
    staged = sorted({a for p in (sys.base_prefix, sys.prefix) if (a := _closed_ancestor(p))})
    script = (
        "import os, sys, tempfile\n"
        "from grader.engine import supervisor as s\n"
        "s.unshare(s.CLONE_NEWNS)\n"
        "s.mount(None, '/', None, s.MS_REC | s.MS_PRIVATE)\n"
        f"for top in {staged!r}:\n"
        f"    keep = [p for p in {[sys.base_prefix, sys.prefix]!r} if p.startswith(top + '/')]\n"
        "    stages = []\n"
        "    for p in keep:\n"
        "        st = tempfile.mkdtemp()\n"
        "        s.mount(p, st, None, s.MS_BIND | s.MS_REC)\n"
        "        stages.append((st, p))\n"
        "    s.mount('tmpfs', top, 'tmpfs', 0, 'mode=0755')\n"
        "    for st, p in stages:\n"
        "        os.makedirs(p, exist_ok=True)\n"
        "        s.mount(st, p, None, 8192)\n"
        f"os.setgroups([]); os.setgid({pw.pw_gid}); os.setuid({pw.pw_uid})\n"
        f"os.environ.update(HOME={pw.pw_dir!r}, USER={USER!r}, LOGNAME={USER!r})\n"
        "os.execv(sys.argv[1], sys.argv[1:])\n")
    return [sys.executable, "-c", script]


@pytest.fixture
def open_tmp():
    """A temporary folder every user can use (pytest's own lies under a 0700 folder)."""
    path = Path(tempfile.mkdtemp(prefix="sandbox-test-"))
    os.chmod(path, 0o777)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def gradeuser():
    if not LINUX or os.geteuid() != 0:
        pytest.skip("needs root to create and become an ordinary user")
    try:
        pwd.getpwnam(USER)
    except KeyError:
        subprocess.run(["useradd", "-m", USER], check=True)
    return USER


def _run_harness(prefix: list[str], tmp_path: Path, memfd_mb: int = 0, memory_mb: int = 3072) -> dict:
    secret_dirs = [str(SOLUTIONS), str(tmp_path / "course-dir"), str(tmp_path / "other-copy"),
                   "/home", "/root", "/work"]
    (tmp_path / "course-dir").mkdir(exist_ok=True)
    (tmp_path / "course-dir" / "gradebook.db").write_text("secret")
    shutil.copytree(ROOT / "course", tmp_path / "other-copy", dirs_exist_ok=True)
    args = {"probe": PROBE, "facts": [str(ROOT), secret_dirs, str(ROOT / "course" / "ode.py")],
            "hidden": [str(tmp_path / "course-dir")], "memfd_mb": memfd_mb, "memory_mb": memory_mb}
    before_mounts, before = _mount_count(), _digest(PROJECT_FILES)
    done = subprocess.run(prefix + [sys.executable, "-c", HARNESS, json.dumps(args)], cwd=ROOT,
                          capture_output=True, text=True, timeout=400,
                          env={**os.environ, "PYTHONPATH": str(ROOT), "COURSE_THREADS": "1"})
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["stderr"] = done.stderr
    # nothing left behind, nothing changed
    assert not _leftovers(), _leftovers()
    assert _mount_count() == before_mounts
    assert "5eed11" not in _ipc_keys() and "5eed12" not in _ipc_keys(), _ipc_keys()
    assert _digest(PROJECT_FILES) == before
    assert not (ROOT / "course" / "x.py").exists() and not (ROOT / "grader" / "x.py").exists()
    assert (tmp_path / "course-dir" / "gradebook.db").read_text() == "secret"
    return result


def _assert_contained(result: dict, tmp_path: Path) -> None:
    facts = result["facts"]
    assert result["isolation"] == "namespaces+uid", result
    assert facts["uid"] != 0 and facts["cap_eff"] == "0000000000000000", facts
    assert facts["cap_bnd"] == "0000000000000000" and facts["no_new_privs"] == "1", facts
    # the allow list: the project holds only what the worker needs
    assert set(facts["root"]) <= {".venv", "course", "grader", "checkpoints"}, facts["root"]
    assert facts["hidden_tests"] == [], facts["hidden_tests"]
    for d, listing in facts["secrets"].items():
        assert listing in ("FileNotFoundError", []) or d in ("/root", "/work"), (d, listing)
    assert facts["secrets"][str(SOLUTIONS)] == "FileNotFoundError"
    assert facts["secrets"][str(tmp_path / "course-dir")] == "FileNotFoundError"
    assert facts["secrets"][str(tmp_path / "other-copy")] == "FileNotFoundError"
    # system folders, plus the first folder of each path the worker needs (the project and the
    # interpreter live wherever the machine put them: /work, /check, /home, /opt...)
    needed = {Path(p).resolve().parts[1] for p in (ROOT, sys.prefix, sys.base_prefix, sys.executable)
              if len(Path(p).resolve().parts) > 1}
    system = {"usr", "bin", "sbin", "lib", "lib32", "lib64", "libx32", "etc", "dev", "proc", "sys", "tmp"}
    assert set(facts["slash"]) <= system | needed, (facts["slash"], needed)
    # read-only everywhere but the scratch, and it cannot be undone
    assert all(v != "ok" for v in facts["writes"].values()), facts["writes"]
    assert facts["scratch_write"] == "ok"
    assert not facts["umount"] and not facts["remount"], facts
    assert not facts["nested_umount"] and not facts["nested_remount_rw"], facts
    assert facts["library_after"]
    # its own PID namespace, no network
    assert len(facts["processes"]) <= 4, facts["processes"]
    assert result["supervisor"] not in facts["processes"] or len(facts["processes"]) <= 4
    assert facts["network"] != "ok"


@pytest.mark.skipif(not LINUX, reason="namespaces are Linux only")
def test_sandbox_as_this_user(open_tmp):
    """As whoever runs the tests (root here): the full isolation, then nothing left behind."""
    tmp_path = open_tmp
    result = _run_harness([], tmp_path)
    if result["isolation"] != "namespaces+uid":
        pytest.skip(f"no namespaces on this machine: {result['stderr'][-300:]}")
    _assert_contained(result, tmp_path)


@pytest.mark.skipif(not LINUX, reason="namespaces are Linux only")
def test_sandbox_as_an_ordinary_user(gradeuser, open_tmp):
    """As an ordinary user: the same isolation through user namespaces, or a skip saying why not."""
    tmp_path = open_tmp
    result = _run_harness(_as_user_prefix(), tmp_path)
    if result["isolation"] != "namespaces+uid":
        pytest.skip(f"the kernel refuses user namespaces to {USER}: {result['stderr'][-300:]}")
    _assert_contained(result, tmp_path)


@pytest.mark.skipif(not LINUX, reason="cgroups are Linux only")
def test_memfd_memory_is_counted(tmp_path):
    """2 GiB written to a memfd (not counted by RLIMIT_AS) ends a sandbox capped at 1.5 GiB."""
    result = _run_harness([], tmp_path, memfd_mb=2048, memory_mb=1536)
    if result["resources"] == "rlimits":
        pytest.skip("no cgroup available here: memory is limited by RLIMIT_AS only (the grader warned)")
    assert "no cgroup" not in result["stderr"]
    memfd = result["memfd"]
    assert not memfd.get("ok"), memfd


def test_grader_warns_when_it_has_no_cgroup(monkeypatch, capsys):
    monkeypatch.setattr(sandbox, "make_cgroups", lambda *a: ([], "rlimits"))
    monkeypatch.setattr(sandbox, "_warned", set())
    with sandbox.Sandbox("grader.public.nb01_toy_flows") as sb:
        assert sb.resources == "rlimits"
    if LINUX:
        assert "no cgroup for the sandbox" in capsys.readouterr().err


# -- the reply channel (item 7) ----------------------------------------------------------------
def test_reply_frames_are_capped_and_parsed_with_guards():
    r, w = os.pipe()
    protocol.write_frame(w, b"x" * 100)
    with pytest.raises(protocol.FrameTooLarge):
        protocol.read_frame(r, limit=50)
    os.close(r)
    os.close(w)
    with pytest.raises(ValueError):
        sandbox.parse_reply(b"[" * 300_000 + b"]" * 300_000)
    with pytest.raises(ValueError):
        sandbox.parse_reply(b"[" * 100_000 + b"]" * 100_000)  # deep: RecursionError becomes ValueError
    with pytest.raises(ValueError):
        sandbox.parse_reply(b'["not an envelope"]')
    assert sandbox.parse_reply(b'{"ok": true}') == {"ok": True}


def test_a_forged_huge_reply_costs_the_grader_little(tmp_path):
    """The learner writes its own frame of tiny JSON lists to the reply pipe: the call fails, the
    grader's memory stays small."""
    from grader.engine.grade import grade_notebook
    from support import reference_answers, with_answers

    forge = ('import os, struct\n'
             'def euler_step(f, x, t, dt):\n'
             '    body = b\'{"ok": true, "value": [\' + b"[]," * 15_000_000 + b"[]]}"\n'
             '    for fd in range(3, 64):\n'
             '        try:\n'
             '            os.write(fd, struct.pack(">Q", len(body)) + body)\n'
             '        except OSError:\n'
             '            pass\n'
             '    return x\n')
    notebook = with_answers(SOLUTIONS / "01_toy_flows.ipynb", {**reference_answers("01_toy_flows"),
                                                             "euler_step": forge}, tmp_path)
    code = ("import json, resource, sys\nfrom grader.engine.grade import grade_notebook\n"
            f"r = grade_notebook({str(notebook)!r}, exercise='euler_step', seed=1)\n"
            "print(json.dumps([r['score'], resource.getrusage(resource.RUSAGE_SELF).ru_maxrss]))\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=400)
    assert done.returncode == 0, done.stderr[-2000:]
    score, peak_kb = json.loads(done.stdout.strip().splitlines()[-1])
    assert score == 0
    assert peak_kb < 1_500_000, f"the grading process peaked at {peak_kb / 1024:.0f} MiB"


# -- course grade hides what autograde hides; as an ordinary user too ------------------------
SNOOP = '''
import glob, os
_seen = glob.glob("ROOT/solutions/*.ipynb") + glob.glob("ROOT/grader/tests/*.py")
if _seen:
    raise RuntimeError("LEAK " + open(_seen[0]).read()[:200])
'''


def _grade_cli(prefix: list[str], notebook: Path, out: Path) -> tuple[dict, int]:
    code = ("import json, resource, sys\nfrom grader import cli\n"
            f"code = cli.main(['grade', {str(notebook)!r}, '--seed', '2', '--json', {str(out)!r}])\n"
            "print(json.dumps([code, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, "
            "resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss]))\n")
    done = subprocess.run(prefix + [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                          timeout=500, env={**os.environ, "PYTHONPATH": str(ROOT), "COURSE_THREADS": "1"})
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    _, peak_self, _ = json.loads(done.stdout.strip().splitlines()[-1])
    return json.loads(out.read_text()), peak_self


@pytest.mark.parametrize("who", ["this user", "an ordinary user"])
def test_course_grade_hides_solutions_and_hidden_tests(who, open_tmp, request):
    from support import reference_answers, with_answers

    prefix = []
    if who == "an ordinary user":
        request.getfixturevalue("gradeuser")
        prefix = _as_user_prefix()
    answers = reference_answers("01_toy_flows")
    answers["euler_step"] = SNOOP.replace("ROOT", str(ROOT)) + answers["euler_step"]
    notebook = with_answers(SOLUTIONS / "01_toy_flows.ipynb", answers, open_tmp)
    os.chmod(notebook, 0o644)
    out = open_tmp / "report.json"
    before = _digest(PROJECT_FILES)
    report, peak_kb = _grade_cli(prefix, notebook, out)
    if report["sandbox"] != "namespaces+uid":
        pytest.skip(f"no namespaces for {who} here (sandbox: {report['sandbox']})")
    assert report["score"] == report["max_score"], json.dumps(report["exercises"], indent=1)[:3000]
    assert "LEAK" not in json.dumps(report)
    assert _digest(PROJECT_FILES) == before
    assert not _leftovers()
    assert peak_kb < 2_000_000, f"the grading process peaked at {peak_kb / 1024:.0f} MiB"


# -- warm workers (a zygote per slot) as an ordinary user: a real class run -------------------
# The hostile answer of predict_euler_halving: at cell time it reads the hidden tests, the solutions and
# the course directory, writes into the project and the course directory, tries to unmount the stripped
# library and to remount / writable (also from a nested user namespace), kills a process of the same user
# outside the sandbox and every process it may signal, leaves SysV IPC objects and a detached process;
# then the exercise hands what it saw to the grader in its exception (the feedback keeps 500 characters).
WARM_HOSTILE = r'''
import ctypes, json, os, signal, socket, subprocess
_libc = ctypes.CDLL(None, use_errno=True)

def _short(exc):  # FileNotFoundError -> FNFE (the feedback keeps 500 characters of the message)
    return "".join(c for c in type(exc).__name__ if c.isupper())

def _try(fn):
    try:
        fn()
        return "ok"
    except Exception as exc:
        return _short(exc)

def _ls(path):
    try:
        return len(os.listdir(path))
    except OSError as exc:
        return _short(exc)

def _write(path):
    with open(path, "a") as f:
        f.write("x")

_status = dict(line.split(":", 1) for line in open("/proc/self/status"))
_f = {"uid": os.getuid(), "pid": os.getpid(), "map": open("/proc/self/uid_map").read().split(),
      "caps": [_status["CapEff"].strip(), _status["CapBnd"].strip(), _status["NoNewPrivs"].strip()],
      "warm": "grader.engine.zygote" in open("/proc/self/cmdline").read().replace("\0", " ")}
_f["read"] = [_try(lambda p=p: open(p).read(100)) for p in SECRETS]
_f["ls"] = [_ls(p) for p in FOLDERS]
_f["slash"] = sorted(os.listdir("/"))
_f["root"] = sorted(os.listdir(ROOT))
_f["write"] = [_try(lambda p=p: _write(p)) for p in TARGETS]
_lib = os.path.dirname(LIBRARY).encode()
_f["umount"] = _libc.umount2(_lib, 2) == 0
_f["remount"] = _libc.mount(None, b"/", None, 32 | 4096, None) == 0
if _libc.unshare(0x10000000 | 0x00020000) == 0:  # CLONE_NEWUSER | CLONE_NEWNS
    _f["nested"] = [_libc.umount2(_lib, 2) == 0, _libc.mount(None, _lib, None, 32 | 4096, None) == 0]
else:
    _f["nested"] = [False, False]
_f["stripped"] = "not available while grading" in open(LIBRARY).read()
_f["net"] = _try(lambda: socket.create_connection(("1.1.1.1", 80), timeout=2))
_f["kill"] = _try(lambda: os.kill(VICTIM, signal.SIGKILL))
_f["killall"] = _try(lambda: os.kill(-1, signal.SIGKILL))
_f["procs"] = len([p for p in os.listdir("/proc") if p.isdigit()])
_libc.shmget.restype = ctypes.c_int
_f["ipc"] = [_libc.shmget(0x5eed21, 4096, 0o1000 | 0o666) >= 0, _libc.msgget(0x5eed22, 0o1000 | 0o666) >= 0]
subprocess.Popen(["sleep", "MARKER"], start_new_session=True)
_FACTS = json.dumps(_f, separators=(",", ":"))

def predict_euler_halving():
    raise RuntimeError("FACTS" + _FACTS + "END")
'''

WARM_CLASS = r'''
import json, sys
from grader.workflows.autograde import Options, autograde
course, a = sys.argv[1], sys.argv[2]
lines = []
autograde(course, a, workers=1, opts=Options(seed=3, budget_s=240, warm=True), log=lines.append)
print(json.dumps(lines))
'''


def _tree_digest(top: Path) -> dict[str, str]:
    return {str(p.relative_to(top)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(top.rglob("*")) if p.is_file()}


@pytest.mark.skipif(not LINUX, reason="warm workers and namespaces are Linux only")
def test_warm_workers_as_an_ordinary_user(gradeuser, open_tmp):
    """``course autograde`` as an ordinary user grades through warm zygotes (a supervisor forked per
    sandbox, in user namespaces): the reference scores full marks, a hostile submission is contained as
    on the cold path (test_sandbox_as_an_ordinary_user), the reports say namespaces+uid and warm, nothing
    of the project or the course directory changes and nothing is left behind."""
    import sqlite3

    from support import reference_answers, with_answers

    from grader.workflows.coursedir import init_class

    a = "01_toy_flows"
    marker = "4246.5"
    # where the kernel refuses user namespaces the hostile code would run unconfined: skip before it runs
    userns = subprocess.run(_as_user_prefix() + [sys.executable, "-c", "from grader.engine import supervisor as s\n"
                                                 "s.unshare(s.CLONE_NEWUSER | s.CLONE_NEWPID | s.CLONE_NEWNS)"],
                            cwd=ROOT, capture_output=True, text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT)})
    if userns.returncode != 0:
        pytest.skip(f"the kernel refuses user namespaces to {gradeuser}: {userns.stderr.strip()[-300:]}")
    course = open_tmp / "course"
    init_class(course, only=[a], quiet=True)
    pw = pwd.getpwnam(gradeuser)
    victim = subprocess.Popen(_as_user_prefix() + [shutil.which("sleep"), "4247.5"])  # the user's own process
    try:
        reference = reference_answers(a)
        library = ROOT / "course" / "ode.py"
        hostile = (WARM_HOSTILE.replace("MARKER", marker)
                   .replace("SECRETS", repr([str(HIDDEN_DIR / "test_01_toy_flows.py"), str(SOLUTIONS / f"{a}.ipynb"),
                                             str(course / "submitted" / "b-honest" / a / f"{a}.ipynb"),
                                             str(course / "nbgrader_config.py")]))
                   .replace("FOLDERS", repr([str(HIDDEN_DIR), str(SOLUTIONS), str(course), "/home"]))
                   .replace("TARGETS", repr([str(ROOT / "course" / "x.py"), str(library), str(course / "gradebook.db"),
                                             str(course / "release" / a / f"{a}.ipynb"), "/x"]))
                   .replace("LIBRARY", repr(str(library))).replace("ROOT", repr(str(ROOT)))
                   .replace("VICTIM", str(victim.pid)))
        release = course / "release" / a / f"{a}.ipynb"
        for student, answers in (("a-hostile", {**reference, "predict_euler_halving": hostile}),
                                 ("b-honest", reference)):
            folder = course / "submitted" / student / a
            folder.mkdir(parents=True)
            with_answers(release, answers, folder)
        for path in [course, *course.rglob("*")]:
            os.chown(path, pw.pw_uid, pw.pw_gid)
        kept = {name: _tree_digest(course / name) for name in ("source", "release", "submitted")}
        config = (course / "nbgrader_config.py").read_bytes()
        before_mounts, before = _mount_count(), _digest(PROJECT_FILES)
        done = subprocess.run(_as_user_prefix() + [sys.executable, "-c", WARM_CLASS, str(course), a], cwd=ROOT,
                              capture_output=True, text=True, timeout=900,
                              env={**os.environ, "PYTHONPATH": str(ROOT), "COURSE_THREADS": "1"})
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        lines = json.loads(done.stdout.strip().splitlines()[-1])
        reports = {s: json.loads((course / "autograded" / s / a / "grader-report.json").read_text())
                   for s in ("a-hostile", "b-honest")}
        if {r["sandbox"] for r in reports.values()} != {"namespaces+uid"}:
            pytest.skip(f"the kernel refuses user namespaces to {gradeuser}: "
                        f"{[r['sandbox'] for r in reports.values()]} {lines[-3:]}")
        # warm: one zygote forked both grading processes (the honest one after the hostile one), and their
        # sandboxes' supervisors too
        assert any("warm workers: 1 zygote start(s) for 1 slot(s)" in line for line in lines), lines
        assert not any("no warm workers" in line or "graded cold" in line for line in lines), lines
        workers = [r["worker"] for r in reports.values()]
        assert {w["mode"] for w in workers} == {"warm"} and len({w["zygote"] for w in workers}) == 1, workers
        assert victim.poll() is None, "the hostile submission killed a process outside its sandbox"
    finally:
        victim.kill()
        victim.wait()
    honest, hostile_report = reports["b-honest"], reports["a-hostile"]
    assert honest["score"] == honest["max_score"], json.dumps(honest["exercises"], indent=1)[:3000]
    for name, result in hostile_report["exercises"].items():
        if name != "predict_euler_halving":
            assert result["score"] == result["max_score"], (name, result)
    text = "\n".join(hostile_report["exercises"]["predict_euler_halving"]["feedback"])
    assert hostile_report["exercises"]["predict_euler_halving"]["score"] == 0 and "FACTS" in text, text
    facts = json.loads(text.split("FACTS", 1)[1].split("END", 1)[0])
    # the sandbox was forked by the zygote (its worker is the zygote's interpreter, not a new one) ...
    assert facts["warm"] is True, facts
    # ... and holds exactly what the cold path's probe asserts for an ordinary user
    # its own PID namespace; a user namespace that maps its uid alone (nobody is root in it)
    assert facts["pid"] == 1 and facts["uid"] != 0 and facts["map"] == [str(facts["uid"]), "0", "1"], facts
    assert facts["caps"] == ["0000000000000000", "0000000000000000", "1"], facts
    assert facts["read"] == ["FNFE"] * 4, facts  # hidden tests, solutions, the course directory: not there
    assert facts["ls"][0] in (0, "FNFE") and facts["ls"][1:3] == ["FNFE"] * 2, facts  # grader/tests: empty
    assert facts["ls"][3] in (0, "FNFE"), facts  # /home
    assert set(facts["root"]) <= {".venv", "course", "grader", "checkpoints"}, facts
    needed = {Path(p).resolve().parts[1] for p in (ROOT, sys.prefix, sys.base_prefix, sys.executable)
              if len(Path(p).resolve().parts) > 1}
    system = {"usr", "bin", "sbin", "lib", "lib32", "lib64", "libx32", "etc", "dev", "proc", "sys", "tmp"}
    assert set(facts["slash"]) <= system | needed, facts
    assert "ok" not in facts["write"], facts
    assert not facts["umount"] and not facts["remount"] and facts["nested"] == [False, False], facts
    assert facts["stripped"] is True, facts
    assert facts["net"] != "ok" and facts["kill"] == "PLE", facts
    assert facts["procs"] <= 4, facts
    # nothing left behind, nothing changed
    assert not any(f"sleep {marker}" in line for line in subprocess.run(
        ["ps", "-eo", "args"], capture_output=True, text=True).stdout.splitlines())
    assert "5eed21" not in _ipc_keys() and "5eed22" not in _ipc_keys(), _ipc_keys()
    assert _mount_count() == before_mounts and _digest(PROJECT_FILES) == before
    assert not (ROOT / "course" / "x.py").exists()
    assert {name: _tree_digest(course / name) for name in kept} == kept
    assert (course / "nbgrader_config.py").read_bytes() == config
    db = sqlite3.connect(course / "gradebook.db")
    assert db.execute("SELECT count(*) FROM sqlite_master WHERE type = 'trigger'").fetchone()[0] == 0
    assert db.execute("SELECT count(*) FROM grade WHERE manual_score IS NOT NULL").fetchone()[0] == 0

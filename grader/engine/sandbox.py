"""The grader's handle on one sandboxed worker: start it, send requests, enforce time, kill it.

Nothing from the worker is unpickled: replies are JSON envelopes, at most ``Limits.reply_mb`` long
and parsed with size and depth guards, whose values the codec turns into fresh tensors and
numbers. The worker's stdout and stderr are drained by a thread and capped, so a learner who
prints 50 MB costs a little time and no memory.

What the worker may see is an allow list (:func:`allow_list`): the interpreter and its packages,
the system's libraries, the public grader and the course library *as the graded notebook may see
it* (:mod:`grader.engine.stripped`). Where the supervisor cannot build that view (no namespaces),
the stripped library still comes first on the worker's ``sys.path``; as root the worker then still
runs as a fresh unprivileged uid where that uid can read the interpreter and the packages (the
report says "uid+limits": file permissions do the hiding), else the report says "limits".

In a grading process forked by a zygote (:mod:`grader.engine.zygote`, ``course autograde`` on
Linux) the supervisor is forked by the zygote instead of started as a new interpreter
(``Sandbox.warm``); it runs the same isolation code, in the same order, and the report names the
level it built in the same way.
"""
from __future__ import annotations

import json
import os
import random
import re
import resource
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from grader.engine import protocol
from grader.engine.supervisor import ISOLATION_FAILED
from grader.paths import HIDDEN_DIR
from grader.paths import ROOT as PROJECT_ROOT



@dataclass
class Limits:
    """Per-sandbox limits. Times in seconds, sizes in MiB."""

    call_timeout: float = 20.0  # one call or probe
    cell_timeout: float = 30.0  # one cell of the notebook
    start_timeout: float = 60.0  # importing torch and friends
    memory_mb: int = 3072
    cpu_s: int = 900
    fsize_mb: int = 64
    tmp_mb: int = 256
    nproc: int = 256
    shm_mb: int = 64  # /dev/shm (POSIX shared memory)
    output_kb: int = 64  # kept from the learner's stdout/stderr
    reply_mb: int = 8  # the largest reply frame the grader reads


@dataclass
class Policy:
    """What the learner's process may see: only the allow list (see :func:`allow_list`), less the
    ``hidden`` paths inside it (the hidden tests are always among them)."""

    isolate: bool = True
    hidden: list[str] = field(default_factory=list)


class SandboxError(Exception):
    """Base for what can go wrong on the learner's side of the fence."""


class WorkerDied(SandboxError):
    def __init__(self, detail: str):
        super().__init__(detail)
        self.detail = detail


class WorkerTimeout(SandboxError):
    pass


SYSTEM_PATHS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/opt/conda")
ETC_FILES = ("ld.so.cache", "ld.so.conf", "ld.so.conf.d", "localtime", "passwd", "group", "nsswitch.conf",
             "alternatives", "mime.types")
DEVICES = ("null", "zero", "full", "random", "urandom")
ISOLATION_LEVELS = ("namespaces+uid", "uid+limits", "limits")
MAX_CONTAINERS = 200_000  # JSON arrays and objects in one reply (tensors cross as strings)


def hidden_always() -> list[str]:
    """Paths the learner never sees: the hidden tests, and any other installed copy of them."""
    paths = [str(HIDDEN_DIR)]
    for entry in sys.path:
        tests = os.path.join(os.path.realpath(entry or "."), "grader", "tests")
        if os.path.isdir(tests) and tests not in paths:
            paths.append(tests)
    return paths


def _entry(path: str, dst: str | None = None) -> list:
    """A bind of ``path`` (a symlink is recreated as a symlink)."""
    if os.path.islink(path) and dst is None:
        return ["symlink", os.readlink(path), path]
    return ["bind", path, dst or path]


def allow_list(library: Path | None = None) -> list[list]:
    """What the worker's root filesystem holds (``["bind"|"symlink", source, destination]``): the
    system's programs and libraries, the interpreter and its packages, the public grader, the
    checkpoints, and the library ``library`` (a stripped copy) at the real library's place.
    Not the project's other files, not the solutions, not a course directory, not /home."""
    from grader.engine.stripped import PACKAGE, library_dir

    entries = [_entry(p) for p in SYSTEM_PATHS if os.path.lexists(p)]
    entries += [_entry(os.path.join("/etc", f)) for f in ETC_FILES if os.path.lexists(os.path.join("/etc", f))]
    entries += [_entry(os.path.join("/dev", d)) for d in DEVICES if os.path.exists(os.path.join("/dev", d))]
    if os.path.isdir("/sys/devices/system/cpu"):
        entries.append(_entry("/sys/devices/system/cpu"))
    root = os.path.realpath(PROJECT_ROOT)
    python = {os.path.realpath(p) for p in (sys.prefix, sys.base_prefix, os.path.dirname(os.path.realpath(sys.executable)))}
    for entry in sys.path:  # installed packages elsewhere (a user site, say); not a script's folder
        real = os.path.realpath(entry) if entry else ""
        if os.path.basename(real) in ("site-packages", "dist-packages") and os.path.isdir(real):
            python.add(real)
    python = {p for p in python if p != "/" and os.path.isdir(p)}
    outer = [p for p in python if not any(p != q and p.startswith(q + os.sep) for q in python)]
    entries += [_entry(p, p) for p in sorted(outer)]
    grader = os.path.join(root, "grader")
    entries.append(_entry(grader))
    checkpoints = os.path.join(root, "checkpoints")
    if os.path.isdir(checkpoints):
        entries.append(_entry(checkpoints))
    real_library = str(library_dir())
    # a folder already bound as itself is not bound again (the interpreter in /usr, an installed
    # grader inside site-packages): a second mount at the same place would hide the first one,
    # which then could not be made read-only
    same = [e[2].rstrip("/") for e in entries if e[0] == "bind" and e[1] == e[2]]
    kept, seen = [], set()
    for e in entries:
        dst = e[2].rstrip("/")
        if e[0] == "bind" and e[1] == e[2] and (dst in seen or any(dst.startswith(q + "/") for q in same if q)):
            continue
        seen.add(dst)
        kept.append(e)
    entries = kept
    if library is not None:
        entries.append(["bind", str(Path(library) / PACKAGE), real_library])
    elif real_library not in seen and not any(real_library.startswith(q + "/") for q in same if q):
        entries.append(_entry(real_library))
    return entries


def _unreadable_to_others(path: str) -> str | None:
    """The first folder on the way to ``path`` that another uid cannot enter, or ``path`` itself if
    it cannot read it; None when every uid can reach and read it."""
    import stat as st

    real = os.path.realpath(path)
    parts = real.split(os.sep)
    for i in range(2, len(parts) + 1):
        here = os.sep.join(parts[:i]) or os.sep
        try:
            mode = os.stat(here).st_mode
        except OSError:
            return None  # not there: nothing to say about it
        last = i == len(parts)
        need = st.S_IXOTH if not last else (st.S_IROTH | (st.S_IXOTH if st.S_ISDIR(mode) else 0))
        if mode & need != need:
            return here
    return None


def uid_drop_blocker(extra: list[str] = ()) -> str | None:
    """Why the learner's code could not run as another uid without namespaces (None if it can):
    the interpreter, its standard library and the installed packages must be readable by any uid
    (a Python under /root, mode 0700, is not)."""
    import sysconfig

    if os.name != "posix" or not hasattr(os, "geteuid") or os.geteuid() != 0:
        return "not running as root"
    need = [sys.executable, os.path.realpath(sys.executable), sysconfig.get_paths()["stdlib"],
            sysconfig.get_paths()["platstdlib"], *extra]
    need += [e for e in sys.path if os.path.basename(os.path.realpath(e or ".")) in ("site-packages", "dist-packages")
             and os.path.isdir(e)]
    for path in need:
        blocked = _unreadable_to_others(path)
        if blocked:
            return (f"the interpreter or its packages ({path}) are not readable by another uid "
                    f"({blocked} is closed to others), so the learner's code runs as root")
    return None


def notebook_of(module: str | None) -> str | None:
    """``grader.public.nb03_ddpm`` -> ``03_ddpm``."""
    match = re.fullmatch(r"grader\.public\.nb(\d\d_[a-z0-9_]+)", module or "")
    return match.group(1) if match else None


_CGROUP_V1 = ("memory", "pids")


def _own_cgroup(controller: str | None) -> str | None:
    try:
        with open("/proc/self/cgroup") as f:
            for line in f:
                _, controllers, path = line.rstrip("\n").split(":", 2)
                if (controller is None and controllers == "") or controller in controllers.split(","):
                    return path
    except OSError:
        pass
    return None


def make_cgroups(tag: str, memory_mb: int, nproc: int) -> tuple[list[str], str]:
    """Cgroups that cap the whole sandbox's memory (shared memory, memfd and tmpfs included) and
    process count: ``(directories, "cgroup v2" | "cgroup v1")``, or ``([], "rlimits")``."""
    if not sys.platform.startswith("linux"):
        return [], "rlimits"
    memory = str(memory_mb << 20)
    for base in ("/sys/fs/cgroup", "/sys/fs/cgroup/unified"):  # cgroup v2
        try:
            with open(os.path.join(base, "cgroup.controllers")) as f:
                if not {"memory", "pids"} <= set(f.read().split()):
                    continue
        except OSError:
            continue
        parents = []
        if os.geteuid() == 0:
            parents.append(os.path.join(base, "course-grader"))
        own = _own_cgroup(None)
        if own is not None:
            parents.append(os.path.join(base, own.lstrip("/")))
        for parent in parents:
            path = os.path.join(parent, tag)
            try:
                os.makedirs(parent, exist_ok=True)
                try:
                    with open(os.path.join(parent, "cgroup.subtree_control"), "w") as f:
                        f.write("+memory +pids")
                except OSError:
                    pass
                os.mkdir(path)
                with open(os.path.join(path, "memory.max"), "w") as f:
                    f.write(memory)
                with open(os.path.join(path, "memory.swap.max"), "w") as f:
                    f.write("0")
                with open(os.path.join(path, "pids.max"), "w") as f:
                    f.write(str(nproc))
                return [path], "cgroup v2"
            except OSError:
                remove_cgroups([path])
    made = []  # cgroup v1: one directory per controller
    for controller in _CGROUP_V1:
        own = _own_cgroup(controller)
        base = os.path.join("/sys/fs/cgroup", controller)
        if own is None or not os.path.isdir(base):
            break
        path = os.path.join(base, own.lstrip("/"), f"course-grader-{tag}")
        try:
            os.mkdir(path)
            made.append(path)
            if controller == "memory":
                with open(os.path.join(path, "memory.limit_in_bytes"), "w") as f:
                    f.write(memory)
            else:
                with open(os.path.join(path, "pids.max"), "w") as f:
                    f.write(str(nproc))
        except OSError:
            break
    else:
        return made, "cgroup v1"
    remove_cgroups(made)
    return [], "rlimits"


def remove_cgroups(paths: list[str]) -> None:
    for path in paths:
        for _ in range(50):
            try:
                os.rmdir(path)
                break
            except FileNotFoundError:
                break
            except OSError:  # still emptying
                time.sleep(0.02)


def limit_own_memory(mb: int | None = None) -> None:
    """Cap this (grading) process's address space: ``mb``, or $COURSE_GRADER_MEMORY_MB (default 8192)."""
    mb = mb or int(os.environ.get("COURSE_GRADER_MEMORY_MB", "8192"))
    try:
        soft, hard = resource.getrlimit(resource.RLIMIT_AS)
        want = mb << 20
        if hard != resource.RLIM_INFINITY:
            want = min(want, hard)
        if soft == resource.RLIM_INFINITY or soft > want:
            resource.setrlimit(resource.RLIMIT_AS, (want, hard))
    except (ValueError, OSError):
        pass


_warned: set[str] = set()
_isolation_failed: str | None = None  # why namespaces could not be built in this process, if so


def _warn_once(text: str) -> None:
    if text not in _warned:
        _warned.add(text)
        sys.stderr.write(f"grader: warning: {text}\n")


def parse_reply(frame: bytes) -> dict:
    """A reply envelope, with guards: a JSON object, at most MAX_CONTAINERS arrays and objects."""
    if frame.count(b"[") + frame.count(b"{") > MAX_CONTAINERS:
        raise ValueError("a reply with too many nested values")
    try:
        reply = json.loads(frame.decode("utf-8"))
    except RecursionError:
        raise ValueError("a reply nested too deeply") from None
    if not isinstance(reply, dict):
        raise ValueError("a reply that is not an envelope")
    return reply


class _Drain(threading.Thread):
    """Reads a pipe to its end, keeping the first ``cap`` bytes and counting the rest."""

    def __init__(self, stream, cap: int):
        super().__init__(daemon=True)
        self.stream, self.cap = stream, cap
        self.kept = bytearray()
        self.total = 0

    def run(self):
        while True:
            chunk = self.stream.read1(1 << 16) if hasattr(self.stream, "read1") else self.stream.read(1 << 16)
            if not chunk:
                return
            self.total += len(chunk)
            room = self.cap - len(self.kept)
            if room > 0:
                self.kept += chunk[:room]

    def text(self) -> str:
        out = self.kept.decode("utf-8", errors="replace")
        if self.total > len(self.kept):
            out += f"\n... [{self.total - len(self.kept)} more bytes of output dropped]"
        return out


class Sandbox:
    """One worker process behind a supervisor. Use as a context manager, or call ``close``."""

    def __init__(self, module: str | None, limits: Limits | None = None, policy: Policy | None = None):
        self.module = module
        self.limits = limits or Limits()
        self.policy = policy or Policy()
        self.proc: subprocess.Popen | None = None
        self.isolation = "none"  # "namespaces+uid", "uid+limits" or "limits", as the supervisor built it
        self.warm = False  # forked by a zygote (grader.engine.zygote) rather than a new interpreter
        self.resources = "rlimits"  # "cgroup v2", "cgroup v1" or "rlimits"
        self._scratch = None
        self._uid_blocker: str | None = None
        self._cgroups: list[str] = []
        try:
            self.start()
        except BaseException:
            self.kill()  # nothing left behind by a sandbox that did not start
            raise

    def start(self) -> None:
        global _isolation_failed
        isolate = self.policy.isolate and _isolation_failed is None
        try:
            self._start(isolate)
        except WorkerDied:
            if not isolate or self.proc is None or self.proc.returncode != ISOLATION_FAILED:
                raise
            _isolation_failed = self._drain.text().strip() or "isolation unavailable"
            self.kill()
            self._start(False)
        if self.isolation == "uid+limits":
            _warn_once(f"the learner's code runs without namespaces "
                       f"({_isolation_failed or 'not requested'}) as an unprivileged uid: only file "
                       "permissions hide files outside the sandbox (the hidden tests must be root-only); "
                       "see docs/INSTRUCTOR.md")
        elif self.policy.isolate and self.isolation != "namespaces+uid":
            _warn_once(f"the learner's code runs with resource limits only, not in namespaces "
                       f"({_isolation_failed or 'not available here'}): files outside the sandbox are "
                       "visible to it; see docs/INSTRUCTOR.md")
        if self._uid_blocker and self.isolation == "limits" and os.name == "posix" and os.geteuid() == 0:
            _warn_once(f"the learner's code runs as root without namespaces: {self._uid_blocker}; "
                       "install Python where every user can read it (e.g. /usr or a virtual environment "
                       "outside /root); see docs/INSTRUCTOR.md")
        if self.resources == "rlimits" and sys.platform.startswith("linux"):
            _warn_once("no cgroup for the sandbox: its memory is limited by RLIMIT_AS only (shared memory "
                       "and memfd are not counted); see docs/INSTRUCTOR.md")

    def _start(self, isolate: bool) -> None:
        from grader.engine.stripped import stripped_library

        req_r, req_w = os.pipe()
        resp_r, resp_w = os.pipe()
        self._scratch = tempfile.mkdtemp(prefix="grader-sandbox-")
        notebook = notebook_of(self.module)
        library = stripped_library(notebook) if notebook else None
        tag = os.path.basename(self._scratch)
        if isolate:
            self._cgroups, self.resources = make_cgroups(tag, self.limits.memory_mb, self.limits.nproc)
        unisolated_library = [str(library)] if library else []
        drop_uid = False
        if hasattr(os, "geteuid") and os.geteuid() == 0 and sys.platform.startswith("linux"):
            # should namespaces be missing: the worker runs as another uid, so its copy of the
            # stripped library must be readable by it (the cache lives in root's home)
            self._uid_blocker = uid_drop_blocker([str(PROJECT_ROOT)])
            drop_uid = self._uid_blocker is None
            if drop_uid and library is not None:
                from grader.engine.stripped import PACKAGE

                copy = os.path.join(self._scratch, "library")
                shutil.copytree(Path(library) / PACKAGE, os.path.join(copy, PACKAGE))
                for dirpath, dirnames, filenames in os.walk(copy):
                    os.chmod(dirpath, 0o755)
                    for name in filenames:
                        os.chmod(os.path.join(dirpath, name), 0o644)
                unisolated_library = [copy]
        config = {
            "req_fd": req_r, "resp_fd": resp_w,
            "memory_mb": self.limits.memory_mb, "cpu_s": self.limits.cpu_s,
            "fsize_mb": self.limits.fsize_mb, "tmp_mb": self.limits.tmp_mb, "shm_mb": self.limits.shm_mb,
            "nproc": self.limits.nproc,
            "uid": random.SystemRandom().randrange(200_000, 1_200_000),
            "isolate": isolate,
            "binds": allow_list(library),
            "hidden": hidden_always() + [h for h in self.policy.hidden if h not in hidden_always()],
            "scratch": self._scratch,
            "cgroups": self._cgroups,
            "python": sys.executable,
            "pythonpath": [str(PROJECT_ROOT)],
            # no mounts: the stripped library must come first on sys.path
            "pythonpath_unisolated": unisolated_library + [str(PROJECT_ROOT)],
            "drop_uid": drop_uid,
        }
        from grader.engine import zygote

        # warm: a supervisor forked by this grading process's zygote (same code, no new interpreter)
        self.proc = zygote.start_supervisor(config, req_r, resp_w)
        self.warm = self.proc is not None
        if self.proc is None:
            env = {k: v for k, v in os.environ.items() if k in ("PATH", "LANG", "LC_ALL", "SYSTEMROOT")}
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "grader.engine.supervisor", json.dumps(config)],
                pass_fds=(req_r, resp_w), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT, start_new_session=True, cwd=self._scratch,
                env={**env, "PYTHONPATH": str(PROJECT_ROOT)},
            )
        os.close(req_r)
        os.close(resp_w)
        self._req, self._resp = req_w, resp_r
        self._drain = _Drain(self.proc.stdout, self.limits.output_kb * 1024)
        self._drain.start()
        reply = self.request({"op": "hello", "module": self.module}, self.limits.start_timeout)
        if not reply.get("ok"):
            raise WorkerDied(f"the sandbox did not start: {reply}")
        # what the supervisor built, told to the worker before any learner code ran
        self.isolation = reply.get("sandbox") if reply.get("sandbox") in ISOLATION_LEVELS else "limits"
        if not isolate:
            self.resources = "rlimits"
            if self.isolation == "namespaces+uid":
                self.isolation = "limits"

    # -- requests ----------------------------------------------------------------------------------
    def request(self, message: dict, timeout: float) -> dict:
        """Send one request and wait for its reply envelope (values still encoded)."""
        if self.proc is None or self.proc.poll() is not None:
            raise WorkerDied(self._death_note())
        try:
            protocol.write_frame(self._req, json.dumps(message).encode("utf-8"))
        except (BrokenPipeError, OSError):
            raise WorkerDied(self._death_note()) from None
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self.kill()
                raise WorkerTimeout(f"no answer within {timeout:g} s")
            ready, _, _ = select.select([self._resp], [], [], min(remaining, 0.25))
            if ready:
                break
            if self.proc.poll() is not None:
                # a last look: the reply may have landed just before the exit
                ready, _, _ = select.select([self._resp], [], [], 0)
                if ready:
                    break
                raise WorkerDied(self._death_note())
        try:
            frame = protocol.read_frame(self._resp, deadline=deadline + 5, limit=self.limits.reply_mb << 20)
            return parse_reply(frame)
        except protocol.ChannelTimeout:
            self.kill()
            raise WorkerTimeout(f"no answer within {timeout:g} s") from None
        except (protocol.ChannelClosed, protocol.FrameTooLarge, ValueError, UnicodeDecodeError) as exc:
            if isinstance(exc, protocol.ChannelClosed):  # ending: let it say how
                try:
                    self.proc.wait(timeout=2)
                except subprocess.TimeoutExpired:
                    pass
            self.kill()
            raise WorkerDied(self._death_note(str(exc) or type(exc).__name__)) from None

    # -- lifecycle -----------------------------------------------------------------------------
    def _death_note(self, extra: str = "") -> str:
        if self.proc is not None:
            try:
                self.proc.wait(timeout=2)
            except subprocess.TimeoutExpired:
                pass
        code = self.proc.returncode if self.proc is not None else None
        if code is not None and code < 0:
            reason = f"killed by signal {signal.Signals(-code).name}"
        elif code is not None and 128 < code < 128 + signal.NSIG and code - 128 in signal.valid_signals():
            reason = f"killed by signal {signal.Signals(code - 128).name}"  # the worker, as its supervisor says
        elif code is not None:
            reason = f"exited with status {code}"
        else:
            reason = "stopped answering"
        tail = self._drain.text()[-600:].strip() if getattr(self, "_drain", None) else ""
        note = f"the learner's process {reason}"
        if extra:
            note += f" ({extra})"
        if "MemoryError" in tail or "can't allocate memory" in tail:
            note += "; it ran out of memory"
        return note

    def kill(self) -> None:
        """Stop the worker and every process it started, then release the pipes, the cgroups and
        the scratch folder."""
        if self.proc is None:
            remove_cgroups(self._cgroups)
            self._cgroups = []
            if self._scratch:
                shutil.rmtree(self._scratch, ignore_errors=True)
                self._scratch = None
            return
        if self.proc.poll() is None:
            try:
                self.proc.send_signal(signal.SIGTERM)  # the supervisor kills its descendants
                self.proc.wait(timeout=5)
            except (subprocess.TimeoutExpired, ProcessLookupError):
                pass
            if self.proc.poll() is None:
                try:
                    if hasattr(self.proc, "kill_group"):  # warm: through the zygote, its parent
                        self.proc.kill_group()
                    else:
                        os.killpg(self.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.proc.wait()
        for fd in (self._req, self._resp):
            try:
                os.close(fd)
            except OSError:
                pass
        self._req = self._resp = -1
        self._drain.join(timeout=2)
        remove_cgroups(self._cgroups)
        self._cgroups = []
        if self._scratch:
            shutil.rmtree(self._scratch, ignore_errors=True)
            self._scratch = None

    close = kill

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

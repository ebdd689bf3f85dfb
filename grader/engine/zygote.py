"""Warm workers: one fork server (a *zygote*) per worker slot of a class run.

Started once per slot of ``course autograde`` (``python -m grader.engine.zygote REPLY_FD``), the
zygote imports torch, numpy, IPython, pytest and the grader's engine, and nothing else: never
the course library, a notebook's public module (which imports the library), the grader's tests
or the solutions (:func:`tainted_modules` is checked at start, before every fork, and again in
every forked worker). It stays single-threaded (``OMP_NUM_THREADS=1`` and friends, no torch
operation run, no IPython shell made), so the processes forked from it can create user and PID
namespaces, which the kernel refuses to a multi-threaded process.

It forks two kinds of processes, each of which would otherwise start a fresh interpreter:

- a *grading process* per submission (``{"op": "grade", ...}`` on its stdin): it imports the
  notebook's public module and tests (the real library, which the grader needs) in its own memory,
  runs pytest, writes the report, and exits. The zygote stops it after ``wall_s``;
- a *sandbox supervisor* whenever a grading process asks for a sandbox (over a private socket
  pair, with the pipes' ends passed as file descriptors): the supervisor runs exactly the cold
  path's code (:func:`grader.engine.supervisor.run`: cgroup, subreaper, PID and user namespaces,
  then a fork that builds the allow-list root with the graded notebook's stripped library,
  locks it down and drops every privilege), except that the worker then continues in the forked
  interpreter (:func:`grader.engine.supervisor.continue_as_worker`) instead of ``exec``-ing a new
  one. Its file descriptors are closed but the pipes, its environment, ``sys.path`` and import
  caches reset as ``exec`` would.

A sandbox supervisor is forked from the zygote, never from a grading process: the grading
process holds the reference library and the hidden tests; the zygote holds neither. What a
forked worker's memory can hold beyond a fresh interpreter's is what the zygote imported (public
packages and the engine) and the file paths of the submissions this slot graded (never their
contents). A supervisor whose grading process has ended is stopped, and if the zygote dies every
process it forked is killed (``PR_SET_PDEATHSIG``).
"""
from __future__ import annotations

import json
import os
import select
import signal
import socket
import subprocess
import sys
import time
import traceback
from dataclasses import dataclass, field

TAINT = ("course", "solutions", "grader.public", "grader.tests")
# what the zygote imports before it forks anything (not the library, not a public module)
PRELOAD = ("torch", "numpy", "pytest", "nbformat", "IPython.core.interactiveshell",
           "grader.engine.supervisor", "grader.engine.worker", "grader.engine.codec",
           "grader.engine.sandbox", "grader.engine.grade", "grader.workflows.answers",
           "grader.workflows.autograde")
THREAD_ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
              "NUMEXPR_NUM_THREADS": "1", "VECLIB_MAXIMUM_THREADS": "1", "PYTHONHASHSEED": "0"}
PR_SET_PDEATHSIG = 1
SPAWN_TIMEOUT = 30.0

_client: "Client | None" = None  # set in a grading process forked from a zygote
_server: "Server | None" = None
_base_path: list[str] = []  # the zygote's sys.path without the project and its start folder


def available() -> bool:
    """Whether warm workers can run here (Linux: fork, namespaces from a forked process)."""
    return sys.platform.startswith("linux") and hasattr(os, "fork") and hasattr(socket, "send_fds")


def tainted_modules() -> list[str]:
    """Imported modules a zygote must never hold (the library, public modules, tests, solutions)."""
    return sorted(m for m in sys.modules if any(m == t or m.startswith(t + ".") for t in TAINT))


def thread_count() -> int:
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        return 1


def close_fds_except(keep: set[int]) -> None:
    prev = 0
    for fd in sorted(keep):
        if fd > prev:
            os.closerange(prev, fd)
        prev = fd + 1
    os.closerange(prev, 1 << 20)


def forget_server_state() -> None:
    """In a forked child: drop the zygote's bookkeeping (jobs, sockets) from this process."""
    global _server
    _server = None


def client() -> "Client | None":
    """The zygote's channel, in a grading process it forked (else None: the cold path)."""
    return _client


def base_path() -> list[str]:
    return list(_base_path)


# ------------------------------------------------------------------------------------------------
# The grading process's side: ask the zygote for a sandbox supervisor
# ------------------------------------------------------------------------------------------------
class ZygoteGone(OSError):
    pass


class Client:
    """A grading process's private channel to its zygote (a SOCK_SEQPACKET socket pair)."""

    def __init__(self, sock: socket.socket):
        self.sock = sock
        self.exits: dict[int, int] = {}
        self.replies: list[dict] = []
        self.gone = False

    def _receive(self, timeout: float) -> bool:
        if self.gone:
            return False
        ready, _, _ = select.select([self.sock], [], [], max(0.0, timeout))
        if not ready:
            return False
        try:
            data = self.sock.recv(1 << 16)
        except OSError:
            data = b""
        if not data:
            self.gone = True
            return False
        message = json.loads(data.decode())
        if "exited" in message:
            self.exits[int(message["exited"])] = int(message["code"])
        else:
            self.replies.append(message)
        return True

    def pump(self, timeout: float = 0.0) -> None:
        while self._receive(timeout):
            timeout = 0.0

    def spawn(self, config: dict, fds: list[int]) -> int:
        """Fork a supervisor in the zygote with ``fds`` (request read end, reply write end, output
        write end); its pid, or ZygoteGone."""
        try:
            socket.send_fds(self.sock, [json.dumps({"op": "spawn", "config": config}).encode()], fds)
        except OSError as exc:
            self.gone = True
            raise ZygoteGone(f"the zygote is gone ({exc})") from None
        deadline = time.monotonic() + SPAWN_TIMEOUT
        while not self.replies:
            if self.gone or time.monotonic() > deadline:
                raise ZygoteGone("the zygote did not answer")
            self._receive(deadline - time.monotonic())
        reply = self.replies.pop(0)
        if "pid" not in reply:
            raise ZygoteGone(reply.get("error", "the zygote refused"))
        return int(reply["pid"])

    def signal(self, pid: int, sig: int) -> None:
        if self.gone:
            return
        try:
            self.sock.send(json.dumps({"op": "signal", "pid": pid, "sig": int(sig)}).encode())
        except OSError:
            self.gone = True


class RemoteProcess:
    """A supervisor forked by the zygote, with the part of ``subprocess.Popen``'s interface that
    :class:`grader.engine.sandbox.Sandbox` uses. Signals go through the zygote (its parent, which
    alone can tell it is still that process), and so does its exit status."""

    def __init__(self, client: Client, pid: int, stdout):
        self.client, self.pid, self.stdout = client, pid, stdout

    @property
    def returncode(self) -> int | None:
        code = self.client.exits.get(self.pid)
        if code is None and self.client.gone:
            return -signal.SIGKILL  # the zygote is gone: so is everything it forked
        return code

    def poll(self) -> int | None:
        self.client.pump(0)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            if deadline is not None and time.monotonic() >= deadline:
                raise subprocess.TimeoutExpired(f"supervisor {self.pid}", timeout)
            self.client.pump(0.1 if deadline is None else min(0.1, max(0.0, deadline - time.monotonic())))
        return self.returncode

    def send_signal(self, sig: int) -> None:
        if self.poll() is None:
            self.client.signal(self.pid, sig)

    def kill_group(self) -> None:
        self.send_signal(signal.SIGKILL)


def start_supervisor(config: dict, req_r: int, resp_w: int):
    """A supervisor forked by this process's zygote, as a :class:`RemoteProcess`, or None (not a
    zygote's grading process, or the zygote refused: the caller takes the cold path)."""
    if _client is None or _client.gone:
        return None
    out_r, out_w = os.pipe()
    try:
        pid = _client.spawn({**config, "base_path": base_path()}, [req_r, resp_w, out_w])
    except ZygoteGone as exc:
        os.close(out_r)
        os.close(out_w)
        sys.stderr.write(f"grader: warning: no warm worker ({exc}); starting a fresh one\n")
        return None
    os.close(out_w)
    return RemoteProcess(_client, pid, os.fdopen(out_r, "rb", buffering=0))


# ------------------------------------------------------------------------------------------------
# The zygote
# ------------------------------------------------------------------------------------------------
@dataclass
class Job:
    id: object
    pid: int
    ctl: socket.socket
    wall_s: float
    started: float = field(default_factory=time.monotonic)
    supervisors: set = field(default_factory=set)
    detail: str = ""


def _prctl_pdeathsig(sig: int) -> None:
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, ctypes.c_ulong(sig), 0, 0, 0)
    except Exception:  # noqa: BLE001
        pass


def _reset_signals() -> None:
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)


class Server:
    def __init__(self, reply_fd: int):
        self.reply_fd = reply_fd
        self.jobs: dict[int, Job] = {}  # grading pid -> job
        self.owner: dict[int, Job] = {}  # supervisor pid -> its grading job
        self.pending = b""
        self.closing = False

    # -- talking to the autograde process -----------------------------------------------------
    def say(self, message: dict) -> None:
        os.write(self.reply_fd, (json.dumps(message) + "\n").encode())

    def read_commands(self) -> None:
        data = os.read(0, 1 << 16)
        if not data:
            self.closing = True
            return
        self.pending += data
        while b"\n" in self.pending:
            line, self.pending = self.pending.split(b"\n", 1)
            if line.strip():
                self.command(json.loads(line))

    def command(self, message: dict) -> None:
        if message.get("op") == "grade":
            self.fork_grading(message)
        elif message.get("op") == "ping":
            self.say({"pong": os.getpid(), "threads": thread_count(), "tainted": tainted_modules()})

    def _fork_ok(self) -> str | None:
        taint = tainted_modules()
        if taint:
            return f"the zygote has imported {', '.join(taint[:5])}"
        if thread_count() != 1:
            return f"the zygote has {thread_count()} threads"
        return None

    # -- grading processes -----------------------------------------------------------------------
    def fork_grading(self, message: dict) -> None:
        refused = self._fork_ok()
        if refused:
            self.say({"id": message["id"], "code": None, "detail": f"warm worker refused: {refused}"})
            return
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:  # the grading process
            code = 1
            try:
                mine.close()
                code = _grading_process(theirs, message)
            except BaseException:  # noqa: BLE001
                traceback.print_exc()
            finally:
                try:
                    sys.stdout.flush()
                    sys.stderr.flush()
                finally:
                    os._exit(code)
        theirs.close()
        self.jobs[pid] = Job(message["id"], pid, mine, float(message.get("wall_s") or 420.0))

    def from_grading(self, job: Job) -> None:
        try:
            data, fds, _, _ = socket.recv_fds(job.ctl, 1 << 20, 8)
        except OSError:
            data, fds = b"", []
        if not data:
            for fd in fds:
                os.close(fd)
            return
        message = json.loads(data.decode())
        if message.get("op") == "spawn":
            self.fork_supervisor(job, message["config"], fds)
        elif message.get("op") == "signal":
            for fd in fds:
                os.close(fd)
            pid, sig = int(message["pid"]), int(message["sig"])
            if pid in job.supervisors:  # still this job's, and not reaped: the pid is its own
                try:
                    os.killpg(pid, sig) if sig == signal.SIGKILL else os.kill(pid, sig)
                except ProcessLookupError:
                    pass

    def fork_supervisor(self, job: Job, config: dict, fds: list[int]) -> None:
        refused = self._fork_ok()
        if refused or len(fds) != 3:
            for fd in fds:
                os.close(fd)
            self._tell(job, {"error": refused or "three file descriptors expected"})
            return
        req_r, resp_w, out_w = fds
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:  # the sandbox supervisor
            try:
                _supervisor_process(config, req_r, resp_w, out_w)
            except BaseException as exc:  # noqa: BLE001
                try:
                    os.write(2, f"sandbox: could not start the supervisor: {exc}\n".encode())
                except OSError:
                    pass
            os._exit(70)
        for fd in fds:
            os.close(fd)
        job.supervisors.add(pid)
        self.owner[pid] = job
        self._tell(job, {"pid": pid})

    @staticmethod
    def _tell(job: Job, message: dict) -> None:
        try:
            job.ctl.send(json.dumps(message).encode())
        except OSError:
            pass

    # -- children ending -------------------------------------------------------------------------
    def reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            code = os.waitstatus_to_exitcode(status)
            if pid in self.owner:
                job = self.owner.pop(pid)
                job.supervisors.discard(pid)
                self._tell(job, {"exited": pid, "code": code})
            elif pid in self.jobs:
                job = self.jobs.pop(pid)
                self._stop_supervisors(job)
                job.ctl.close()
                self.say({"id": job.id, "code": code, "detail": job.detail, "pid": pid})

    def _stop_supervisors(self, job: Job) -> None:
        """A grading process ended: its sandboxes go too (the supervisor kills the worker's tree)."""
        for pid in list(job.supervisors):
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass

    def enforce_walls(self) -> None:
        now = time.monotonic()
        for job in self.jobs.values():
            if not job.detail and now - job.started > job.wall_s:
                job.detail = f"the grading process ran past {job.wall_s:g} s and was stopped"
                for pid in [job.pid, *job.supervisors]:
                    try:
                        os.killpg(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass

    def serve(self) -> None:
        while not (self.closing and not self.jobs):
            fds = ([] if self.closing else [0]) + [j.ctl for j in self.jobs.values()]
            try:
                ready, _, _ = select.select(fds, [], [], 0.05)
            except InterruptedError:
                ready = []
            for r in ready:
                if r == 0:
                    self.read_commands()
                else:
                    job = next((j for j in self.jobs.values() if j.ctl is r), None)
                    if job is not None:
                        self.from_grading(job)
            self.reap()
            self.enforce_walls()
            if self.closing:  # the autograde process is gone or done: stop what is left
                for job in self.jobs.values():
                    for pid in [job.pid, *job.supervisors]:
                        try:
                            os.killpg(pid, signal.SIGKILL)
                        except ProcessLookupError:
                            pass


def _grading_process(ctl: socket.socket, message: dict) -> int:
    """In the forked grading process: grade one submission as ``python -m grader.workflows.autograde``
    would, with sandboxes forked by the zygote."""
    global _client
    os.setsid()
    _prctl_pdeathsig(signal.SIGKILL)
    _reset_signals()
    server = _server
    forget_server_state()
    log = os.open(message["log"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.dup2(log, 1)
    os.dup2(log, 2)
    keep = {0, 1, 2, ctl.fileno()}
    close_fds_except(keep)
    del server
    _client = Client(ctl)
    import importlib

    module, _, function = message.get("entry", "grader.workflows.autograde:grade_one").partition(":")
    getattr(importlib.import_module(module), function)(**message["job"])
    return 0


def _supervisor_process(config: dict, req_r: int, resp_w: int, out_w: int) -> None:
    """In the forked supervisor: the cold path's supervisor, with the worker served in-process."""
    os.setsid()  # a group of its own (the grader kills the group), as Popen(start_new_session) does
    _reset_signals()
    forget_server_state()
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.dup2(out_w, 1)
    os.dup2(out_w, 2)
    close_fds_except({0, 1, 2, req_r, resp_w})
    os.chdir(config["scratch"])
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "LANG", "LC_ALL", "SYSTEMROOT")}
    os.environ.clear()
    os.environ.update(env)
    from grader.engine import supervisor

    supervisor.run({**config, "req_fd": req_r, "resp_fd": resp_w}, warm=True)


def main(argv: list[str]) -> int:
    """``python -m grader.engine.zygote REPLY_FD``: preload, say ready, serve until stdin closes."""
    global _server, _base_path
    import importlib

    from grader.paths import ROOT

    reply_fd = int(argv[0])
    _prctl_pdeathsig(signal.SIGKILL)  # the autograde process gone: so is the zygote
    here = {os.path.realpath(os.getcwd()), os.path.realpath(str(ROOT))}
    _base_path = [p for p in sys.path if p and os.path.realpath(p) not in here]
    t0 = time.monotonic()
    for name in PRELOAD:
        importlib.import_module(name)
    import torch

    torch.set_num_threads(1)
    _server = Server(reply_fd)
    _server.say({"ready": os.getpid(), "threads": thread_count(), "tainted": tainted_modules(),
                 "seconds": round(time.monotonic() - t0, 2)})
    _server.serve()
    return 0


if __name__ == "__main__":  # the state lives in the module proper, where the sandbox finds it
    from grader.engine import zygote as _zygote

    sys.exit(_zygote.main(sys.argv[1:]))

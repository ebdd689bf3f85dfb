"""The grader's handle on one sandboxed worker: start it, send requests, enforce time, kill it.

Nothing from the worker is unpickled: replies are JSON envelopes whose values the codec turns into
fresh tensors and numbers. The worker's stdout and stderr are drained by a thread and capped, so
a learner who prints 50 MB costs a little time and no memory.
"""
from __future__ import annotations

import json
import os
import random
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

from grader.engine import codec, protocol
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
    output_kb: int = 64  # kept from the learner's stdout/stderr


@dataclass
class Policy:
    """What the learner's process may see. ``hidden`` paths are covered where mounts are possible."""

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


def _default_expose() -> list[str]:
    """What the worker must reach: the project, the environment and the real interpreter."""
    paths = {str(PROJECT_ROOT), sys.prefix, sys.base_prefix, os.path.dirname(os.path.realpath(sys.executable))}
    return sorted(p for p in paths if os.path.isdir(p) and p != "/")


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
        self.isolation = "none"
        self._scratch = None
        self.start()

    def start(self) -> None:
        req_r, req_w = os.pipe()
        resp_r, resp_w = os.pipe()
        self._scratch = tempfile.mkdtemp(prefix="grader-sandbox-")
        config = {
            "req_fd": req_r, "resp_fd": resp_w,
            "memory_mb": self.limits.memory_mb, "cpu_s": self.limits.cpu_s,
            "fsize_mb": self.limits.fsize_mb, "tmp_mb": self.limits.tmp_mb, "nproc": self.limits.nproc,
            "uid": random.SystemRandom().randrange(200_000, 1_200_000),
            "isolate": self.policy.isolate,
            "expose": _default_expose(),
            "hidden": self.policy.hidden,
            "scratch": self._scratch,
            "pythonpath": [str(PROJECT_ROOT)],
        }
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
        uid = reply.get("uid")
        self.isolation = "namespaces+uid" if uid not in (None, os.getuid()) else (
            "limits" if not self.policy.isolate else "namespaces-or-limits")

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
            frame = protocol.read_frame(self._resp, deadline=deadline + 5)
            return json.loads(frame.decode("utf-8"))
        except protocol.ChannelTimeout:
            self.kill()
            raise WorkerTimeout(f"no answer within {timeout:g} s") from None
        except (protocol.ChannelClosed, protocol.FrameTooLarge, ValueError, UnicodeDecodeError) as exc:
            self.kill()
            raise WorkerDied(self._death_note(str(exc) or type(exc).__name__)) from None

    def decode_value(self, reply: dict):
        return codec.decode(reply.get("value"))

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

    def output(self) -> str:
        return self._drain.text() if getattr(self, "_drain", None) else ""

    def kill(self) -> None:
        """Stop the worker and every process it started, then release the pipes."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            try:
                self.proc.send_signal(signal.SIGTERM)  # the supervisor kills its descendants
                self.proc.wait(timeout=5)
            except (subprocess.TimeoutExpired, ProcessLookupError):
                pass
            if self.proc.poll() is None:
                try:
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
        if self._scratch:
            shutil.rmtree(self._scratch, ignore_errors=True)
            self._scratch = None

    close = kill

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

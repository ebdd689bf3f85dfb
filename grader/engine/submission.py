"""A learner's submission as the tests see it: ``sub.call("euler_step", f, x, 0.1, 0.01)``.

Two implementations share one contract:

- :class:`SandboxSubmission` (grading): the learner's cells run in a sandboxed worker; a call
  that hangs or kills the worker fails alone, and the worker is restarted with the good cells.
- :class:`InProcessSubmission` (``check()`` in a notebook): calls the learner's own functions
  directly, with the same encoding of results, so public checks behave as in grading.

Either way a test gets back plain tensors and numbers, or a :class:`LearnerFailure` saying what
went wrong in the learner's code.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

from grader.engine import codec
from grader.engine.sandbox import Limits, Policy, Sandbox, SandboxError, WorkerDied, WorkerTimeout

# kinds of LearnerFailure and the exercise status each one gives
STATUS_OF_KIND = {
    "missing": "error", "notimplemented": "error", "exception": "error", "crash": "error",
    "badtype": "failed", "library": "failed", "timeout": "timeout",
}


class LearnerFailure(Exception):
    """The learner's code did not produce a value: ``kind`` says why, ``message`` says it kindly."""

    def __init__(self, kind: str, message: str, detail: str = ""):
        super().__init__(message)
        self.kind, self.message, self.detail = kind, message, detail

    @property
    def status(self) -> str:
        return STATUS_OF_KIND.get(self.kind, "error")


@dataclass
class Cell:
    id: str  # the nbgrader grade_id: an exercise name, or "setup"
    source: str


def _failure_from_envelope(envelope: dict, what: str) -> LearnerFailure:
    kind = envelope.get("kind", "exception")
    message = envelope.get("message", "")
    tb = envelope.get("traceback", "")
    if kind == "missing":
        return LearnerFailure(kind, f"{what} is not defined: {message}. Did its cell run without errors?")
    if kind == "notimplemented":
        return LearnerFailure(kind, f"{what} is not written yet: it raises NotImplementedError. "
                                    "Replace `raise NotImplementedError()` with your code.", tb)
    if kind == "badtype":
        return LearnerFailure(kind, f"{what} returned {message}, which is not a tensor, number, "
                                    "tuple, list or dict of those.")
    if kind == "library":
        return LearnerFailure(kind, f"{what} calls the course library's own implementation "
                                    f"({message}) instead of computing the answer: it scores zero. "
                                    "Write the computation yourself.")
    exc_type = envelope.get("exc_type", "Exception")
    text = f"{what} raised {exc_type}: {message}".rstrip(": ")
    return LearnerFailure(kind, text, tb)


class Submission:
    """What every test uses: ``call`` a learner's function, or ``probe`` through a helper."""

    module_name: str
    library: dict[str, str]  # exercise -> "module:qualname" of the library's implementation
    current_exercise: str | None = None
    test_timeout: float | None = None  # the running test's ``exercise(timeout=...)``, if any

    def call(self, name: str, *args, timeout: float | None = None, **kwargs):
        """Call the learner's ``name(*args, **kwargs)``; ``codec.Ref`` args are built inside."""
        return self._run("call", name, args, kwargs, timeout, what=f"{name}(...)")

    def probe(self, name: str, *args, timeout: float | None = None, **kwargs):
        """Run ``public_module.name(namespace, *args, **kwargs)`` next to the learner's code."""
        return self._run("probe", name, args, kwargs, timeout, what=f"your code (checked by {name})")

    def _forbid(self) -> list[str]:
        spec = self.library.get(self.current_exercise or "")
        return [spec] if spec else []

    def _run(self, op, name, args, kwargs, timeout, what):
        raise NotImplementedError

    def _unwrap(self, envelope: dict, what: str):
        if envelope.get("ok"):
            try:
                return codec.decode(envelope.get("value"))
            except (ValueError, TypeError, KeyError) as exc:
                raise LearnerFailure("badtype", f"{what} returned something malformed ({exc}).") from None
        raise _failure_from_envelope(envelope, what)


class SandboxSubmission(Submission):
    """The learner's cells, run in a :class:`Sandbox`; restarted after a crash or a hang."""

    def __init__(self, cells: list[Cell], module_name: str, library: dict[str, str] | None = None,
                 limits: Limits | None = None, policy: Policy | None = None, budget_s: float = 300.0):
        self.cells = cells
        self.module_name = module_name
        self.library = library or {}
        self.limits = limits or Limits()
        self.policy = policy or Policy()
        self.deadline = time.monotonic() + budget_s
        self.cell_errors: dict[str, str] = {}  # cell id -> what went wrong when it ran
        self.bad_cells: set[str] = set()  # cells that hang or kill the worker: never re-run
        self.sandbox: Sandbox | None = None
        self.restarts = 0
        # exercise (or function) -> why it is not called again: a call that hung or ended the
        # process costs its time once, not once per test
        self.given_up: dict[str, str] = {}
        self._stale = False  # the worker was stopped: start a fresh one at the next request
        self.start_seconds = 0.0  # spent starting workers (the benchmark's start-up share)
        self._boot()

    def _boot(self) -> None:
        while True:
            if self.sandbox is not None:
                self.sandbox.close()
                self.restarts += 1
            t0 = time.monotonic()
            self.sandbox = Sandbox(self.module_name, self.limits, self.policy)
            self.start_seconds += time.monotonic() - t0
            try:
                for cell in self.cells:
                    if cell.id in self.bad_cells:
                        continue
                    timeout = min(self.limits.cell_timeout, max(1.0, self.deadline - time.monotonic()))
                    reply = self.sandbox.request({"op": "run_cell", "id": cell.id, "source": cell.source}, timeout)
                    if reply.get("ok"):
                        self.cell_errors.pop(cell.id, None)
                    else:
                        err = _failure_from_envelope(reply, f"the cell {cell.id!r}")
                        self.cell_errors[cell.id] = err.message + ("\n" + err.detail if err.detail else "")
                return
            except WorkerTimeout:
                self.bad_cells.add(cell.id)
                self.cell_errors[cell.id] = (f"the cell {cell.id!r} did not finish within {timeout:g} s "
                                             "(an endless loop? training at the top level?)")
            except WorkerDied as exc:
                self.bad_cells.add(cell.id)
                self.cell_errors[cell.id] = f"running the cell {cell.id!r} ended the process: {exc.detail}"

    @property
    def isolation(self) -> str:
        return self.sandbox.isolation if self.sandbox else "none"

    def _run(self, op, name, args, kwargs, timeout, what):
        key = self.current_exercise or name
        if key in self.given_up:  # it hung before: not called again (a hang costs one timeout)
            raise LearnerFailure("timeout", f"not run: {self.given_up[key]}")
        remaining = self.deadline - time.monotonic()
        if remaining <= 1:
            raise LearnerFailure("timeout", "the notebook's grading time budget was used up before this test.")
        timeout = min(timeout or self.test_timeout or self.limits.call_timeout, remaining)
        request = {"op": op, "name": name, "args": codec.encode(list(args)),
                   "kwargs": codec.encode(dict(kwargs)), "forbid": self._forbid()}
        if self._stale:
            self._stale = False
            self._boot()
        try:
            envelope = self.sandbox.request(request, timeout)
        except WorkerTimeout:
            self._stop()
            self.given_up[key] = (f"{what} did not return within {timeout:g} s in an earlier test "
                                  "(an endless loop, or far too much work?)")
            raise LearnerFailure("timeout", f"{what} did not return within {timeout:g} s "
                                            "(an endless loop, or far too much work?).") from None
        except WorkerDied as exc:
            self._stop()
            raise LearnerFailure("crash", f"{what} ended the process: {exc.detail}.") from None
        except SandboxError as exc:  # pragma: no cover - defensive
            self._stop()
            raise LearnerFailure("crash", f"{what} broke the sandbox: {exc}.") from None
        if not envelope.get("ok") and envelope.get("kind") == "missing" and name in self.cell_errors:
            raise LearnerFailure("missing", f"{name} is not defined, because its cell failed: "
                                            f"{self.cell_errors[name]}")
        return self._unwrap(envelope, what)

    def _stop(self) -> None:
        """Stop the worker now (a hang holds no CPU meanwhile); a fresh one starts when needed."""
        if self.sandbox is not None:
            self.sandbox.kill()
        self._stale = True

    def close(self) -> None:
        if self.sandbox is not None:
            self.sandbox.close()
            self.sandbox = None


class InProcessSubmission(Submission):
    """The notebook's own namespace, called directly (for ``check()``); no isolation."""

    def __init__(self, namespace: dict, module_name: str, library: dict[str, str] | None = None):
        from grader.engine.worker import Worker

        self.namespace = namespace
        self.module_name = module_name
        self.library = library or {}
        self._worker = Worker()
        self._worker.bind(module_name, _NamespaceShell(namespace))

    def _run(self, op, name, args, kwargs, timeout, what):
        request = {"op": op, "name": name, "args": codec.encode(list(args)),
                   "kwargs": codec.encode(dict(kwargs)), "forbid": self._forbid()}
        handler = self._worker.op_call if op == "call" else self._worker.op_probe
        envelope = handler(request)
        return self._unwrap(envelope, what)

    def close(self) -> None:
        pass


class _NamespaceShell:
    def __init__(self, namespace: dict):
        self.user_ns = namespace

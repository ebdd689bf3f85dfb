"""The sandbox worker: runs the learner's cells and answers calls, inside the limits.

Started by the supervisor (already isolated, limited and unprivileged), it reads request frames
from one pipe and writes reply frames to another. Everything it sends back is plain data (see
codec); the grader decides what is right. Requests:

- ``{"op": "hello", "module": M}``: import the notebook's public module M (factories, probes).
- ``{"op": "run_cell", "id": ..., "source": ...}``: execute one cell in an IPython shell.
- ``{"op": "call", "name": ..., "args": ..., "kwargs": ..., "forbid": [...]}``: call a learner function.
- ``{"op": "probe", "name": ..., ...}``: call ``M.<name>(namespace, *args, **kwargs)``.

Factories and probes are taken from a snapshot of M made at "hello", before any learner code runs
(:func:`bind_public_module`): replacing M's attributes later, or the code of its functions, changes
nothing the grader asked for.
"""
from __future__ import annotations

import builtins
import importlib
import inspect
import json
import os
import sys
import traceback
import types

MAX_TRACEBACK = 4000


def bind_public_module(module) -> dict:
    """A private copy of the public module's callables, immune to later changes of the module.

    Every plain function is re-created from its code object (so swapping a function's
    ``__code__`` later changes nothing); those defined in the module get a copy of the module's
    globals in which every such function is the re-created one, so a probe's helpers (``_jiggle``,
    a factory it calls) are the snapshot's too. Other callables (classes, builtins) are kept as
    the objects they were. Made before any learner code runs."""
    if module is None:
        return {}
    namespace = dict(vars(module))
    bound = {}
    for name, value in namespace.items():
        if isinstance(value, types.FunctionType):
            own = value.__module__ == module.__name__
            copy = types.FunctionType(value.__code__, namespace if own else value.__globals__, value.__name__,
                                      value.__defaults__, value.__closure__)
            copy.__kwdefaults__ = dict(value.__kwdefaults__) if value.__kwdefaults__ else None
            copy.__dict__.update(value.__dict__)
            copy.__qualname__ = value.__qualname__
            bound[name] = copy
        elif callable(value):
            bound[name] = value
    namespace.update(bound)
    return bound


def _format_exception(exc: BaseException) -> str:
    """The traceback with the engine's own frames removed, cut to MAX_TRACEBACK characters."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__)
              if "grader/engine" not in f.filename.replace(os.sep, "/")]
    lines = traceback.format_list(frames) + traceback.format_exception_only(type(exc), exc)
    text = "".join(lines)
    return text if len(text) <= MAX_TRACEBACK else "...\n" + text[-MAX_TRACEBACK:]


class Worker:
    """Answers requests; ``req_fd``/``resp_fd`` are only needed to :meth:`serve` (a sandbox)."""

    def __init__(self, req_fd: int | None = None, resp_fd: int | None = None):
        from grader.engine import codec, protocol

        self.codec, self.protocol = codec, protocol
        self.req_fd, self.resp_fd = req_fd, resp_fd
        self.public: dict = {}  # the public module's callables, bound at hello (see bind_public_module)
        self.shell = None

    def bind(self, module_name: str | None, shell) -> None:
        """Import the notebook's public module and snapshot its callables; ``shell`` holds ``user_ns``."""
        module = importlib.import_module(module_name) if module_name else None
        self.public = bind_public_module(module)
        self.shell = shell

    def _public(self, name: str):
        if name not in self.public:
            raise NameError(f"the notebook's public module has no factory or probe {name!r}")
        return self.public[name]

    # -- plumbing ------------------------------------------------------------------------------
    def reply(self, message: dict) -> None:
        """Send a JSON envelope; a returned value inside it is already codec-encoded."""
        self.protocol.write_frame(self.resp_fd, json.dumps(message).encode("utf-8"))

    def serve(self) -> None:
        while True:
            try:
                request = json.loads(self.protocol.read_frame(self.req_fd).decode("utf-8"))
            except self.protocol.ChannelClosed:
                return
            op = request.get("op")
            handler = getattr(self, f"op_{op}", None)
            if handler is None:
                self.reply({"ok": False, "kind": "internal", "message": f"unknown op {op!r}"})
                continue
            self.reply(handler(request))

    # -- operations ----------------------------------------------------------------------------
    def op_hello(self, request: dict) -> dict:
        import torch
        from IPython.core.interactiveshell import InteractiveShell

        torch.set_num_threads(1)
        shell = InteractiveShell.instance(history_length=0, colors="NoColor")
        shell.history_manager.enabled = False
        self.bind(request.get("module"), shell)
        return {"ok": True, "pid": os.getpid(), "uid": os.getuid(),
                "sandbox": os.environ.pop("COURSE_SANDBOX_ISOLATION", "limits")}  # set by the supervisor

    def op_run_cell(self, request: dict) -> dict:
        result = self.shell.run_cell(request["source"], store_history=False, silent=False)
        sys.stdout.flush()
        error = result.error_before_exec or result.error_in_exec
        if error is None:
            return {"ok": True}
        return {"ok": False, "kind": "exception", "exc_type": type(error).__name__,
                "message": str(error)[:500], "traceback": _format_exception(error)}

    def _resolve(self, kind, payload):
        if kind == "learner":
            if payload not in self.shell.user_ns:
                raise NameError(f"name {payload!r} is not defined")
            return self.shell.user_ns[payload]
        factory, args, kwargs = payload
        return self._public(factory)(*args, **kwargs)

    @staticmethod
    def _forbidden_functions(specs) -> list:
        """The library functions (or a class's ``forward``) this call must not reach."""
        found = []
        for spec in specs or []:
            module_name, _, qualname = spec.partition(":")
            try:
                obj = importlib.import_module(module_name)
                for part in qualname.split("."):
                    obj = getattr(obj, part)
            except Exception:  # the library moved: nothing to watch
                continue
            fn = obj if hasattr(obj, "__code__") or hasattr(obj, "__wrapped__") else getattr(obj, "forward", None)
            fn = inspect.unwrap(fn) if fn is not None else None  # past decorators such as @torch.no_grad()
            if fn is not None and hasattr(fn, "__code__"):
                found.append((fn, spec))
        return found

    def _invoke(self, request: dict, fn) -> dict:
        """Call ``fn`` with the decoded arguments while the library's own implementation of the
        exercise is booby-trapped: its code object is swapped for one that raises and leaves a
        mark, so any route to it (an alias, importlib, getattr) is caught, at no run-time cost.
        Functions with closures cannot be swapped and are watched by a profile hook instead."""
        traps = self._forbidden_functions(request.get("forbid"))
        # a function made from the implementation's code object (a copy that a swap cannot reach)
        # is watched too; a stub of the stripped library has nothing worth copying
        watched = {f.__code__: spec for f, spec in traps if not _is_stub(f.__code__)}
        swapped = [(f, f.__code__, spec) for f, spec in traps if not f.__code__.co_freevars]
        hit: list[str] = []

        def profiler(frame, event, arg):
            if event == "call" and frame.f_code in watched:
                hit.append(watched[frame.f_code])

        try:
            args = self.codec.decode(request.get("args", []), resolve=self._resolve)
            kwargs = self.codec.decode(request.get("kwargs", {"__dict__": []}), resolve=self._resolve)
        except NameError as exc:
            return {"ok": False, "kind": "missing", "message": str(exc)}
        try:
            for f, _, _ in swapped:
                f.__code__ = _tripwire.__code__
            if watched:
                sys.setprofile(profiler)
            try:
                value = fn(*args, **kwargs)
            finally:
                sys.setprofile(None)
                for f, code, spec in swapped:
                    f.__code__ = code
                if builtins.__dict__.pop("__course_library_hit__", False) and swapped:
                    hit.append(swapped[0][2])
        except NotImplementedError as exc:
            return {"ok": False, "kind": "notimplemented", "message": str(exc),
                    "traceback": _format_exception(exc)}
        except BaseException as exc:  # SystemExit and KeyboardInterrupt included
            if hit:
                return {"ok": False, "kind": "library", "message": hit[0]}
            return {"ok": False, "kind": "exception", "exc_type": type(exc).__name__,
                    "message": str(exc)[:500], "traceback": _format_exception(exc)}
        if hit:
            return {"ok": False, "kind": "library", "message": hit[0]}
        try:
            encoded = self.codec.encode(value)
        except self.codec.EncodeError as exc:
            return {"ok": False, "kind": "badtype", "message": str(exc)}
        return {"ok": True, "value": encoded}

    def op_call(self, request: dict) -> dict:
        name = request["name"]
        if name not in self.shell.user_ns:
            return {"ok": False, "kind": "missing", "message": f"name {name!r} is not defined"}
        return self._invoke(request, self.shell.user_ns[name])

    def op_probe(self, request: dict) -> dict:
        try:
            probe = self._public(request["name"])
        except NameError as exc:
            return {"ok": False, "kind": "internal", "message": str(exc)}
        return self._invoke(request, lambda *a, **k: probe(self.shell.user_ns, *a, **k))


def _is_stub(code) -> bool:
    """A stub of the stripped library (see grader.engine.stripped): it only raises."""
    return any(isinstance(c, str) and "not available while grading" in c for c in code.co_consts)


def _tripwire(*args, **kwargs):
    """Stands in for a library function the learner must not call (see Worker._invoke)."""
    import builtins  # this code runs with the library module's globals: import here, not at the top

    builtins.__course_library_hit__ = True
    raise RuntimeError("this answer calls the course library's own implementation of the exercise")


def main() -> None:
    req_fd, resp_fd = int(sys.argv[1]), int(sys.argv[2])
    os.set_inheritable(req_fd, False)
    os.set_inheritable(resp_fd, False)
    Worker(req_fd, resp_fd).serve()


if __name__ == "__main__":
    main()

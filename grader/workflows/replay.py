"""Recorded answers of stripped library functions, so a staged bundle's public checks still work.

A staged bundle (``course bundle OUT --through NN``) ships the exercises of notebook NN as stubs
(:mod:`grader.workflows.strip`). NN's public checks compute some expected values with those very
functions (``schedules.cosine_beta_schedule(10)``). At bundle time, with the whole library,
:func:`record_public_checks` runs NN's public checks on the reference answers, exactly as
``check()`` runs them (same seeds), and records each call of a stripped function made on the way
(by the checks, by the argument factories, by the library itself): a digest of its arguments and
its result -- tensors and plain values, saved weights-only. In the bundle, :func:`install` (run by
``grader/public/__init__.py``) puts a replayer in front of each stub: a call with recorded
arguments gets the recorded result (and the generators it was given are left in the state the
original left them), any other call reaches the stub and raises. So the bundle holds test vectors
of the public checks, which the checks print anyway, and no code.

What it cannot replay: a call whose arguments depend on the learner's answer, or on the random
seed of ``course grade`` (its rng differs from ``check()``'s on each run), or whose result must
carry gradients (an input that requires grad: a recorded tensor has no graph); such a call
reaches the stub and raises, and that public check fails in the bundle (the instructor's grading
is unaffected). The cure is in the notebook's public module: hand the learner's code its own
answer (``LearnerRef``) or a factory that is not an exercise, not the library's exercise.
"""
from __future__ import annotations

import hashlib
import importlib
import inspect
import sys
import zlib
from pathlib import Path

import torch

RECORD_DIR = "_recorded"  # under grader/public/ in the bundle


# ------------------------------------------------------------------------------------------------
# Digests of arguments
# ------------------------------------------------------------------------------------------------
def _feed(h, obj, depth: int = 0) -> None:
    if depth > 8:
        h.update(b"<deep>")
        return
    if obj is None or isinstance(obj, (bool, int, float, str, complex)):
        h.update(f"{type(obj).__name__}:{obj!r};".encode())
    elif isinstance(obj, torch.Tensor):
        t = obj.detach().cpu().contiguous()
        h.update(f"T{t.dtype}{tuple(t.shape)}{obj.requires_grad};".encode())
        h.update(t.numpy().tobytes() if t.dtype != torch.bfloat16 else t.float().numpy().tobytes())
    elif isinstance(obj, torch.Generator):
        h.update(b"G")
        h.update(obj.get_state().numpy().tobytes())
    elif isinstance(obj, (list, tuple)):
        h.update(f"{type(obj).__name__}[{len(obj)}".encode())
        for x in obj:
            _feed(h, x, depth + 1)
        h.update(b"]")
    elif isinstance(obj, dict):
        h.update(f"dict{{{len(obj)}".encode())
        for k in sorted(obj, key=repr):
            _feed(h, k, depth + 1)
            _feed(h, obj[k], depth + 1)
        h.update(b"}")
    elif isinstance(obj, torch.nn.Module):
        h.update(f"M{type(obj).__qualname__}".encode())
        _feed(h, dict(obj.state_dict()), depth + 1)
        _feed(h, {k: v for k, v in vars(obj).items() if not k.startswith("_")}, depth + 1)
    elif isinstance(obj, torch.dtype) or isinstance(obj, torch.device):
        h.update(f"{obj};".encode())
    elif inspect.isfunction(obj) or inspect.ismethod(obj):
        fn = obj.__func__ if inspect.ismethod(obj) else obj
        h.update(f"F{fn.__module__}.{fn.__qualname__}".encode())
        if inspect.ismethod(obj):
            _feed(h, obj.__self__, depth + 1)
        _feed(h, [c.cell_contents for c in (fn.__closure__ or ()) if _has_contents(c)], depth + 1)
        _feed(h, fn.__defaults__, depth + 1)
    elif callable(obj) and not hasattr(obj, "__dict__"):
        h.update(f"C{getattr(obj, '__qualname__', type(obj).__qualname__)};".encode())
    elif hasattr(obj, "__dict__"):
        h.update(f"O{type(obj).__module__}.{type(obj).__qualname__}".encode())
        _feed(h, {k: v for k, v in vars(obj).items()}, depth + 1)
    else:
        h.update(f"?{type(obj).__qualname__};".encode())


def _has_contents(cell) -> bool:
    try:
        cell.cell_contents
        return True
    except ValueError:
        return False


def digest(args: tuple, kwargs: dict) -> str:
    h = hashlib.sha256()
    _feed(h, (tuple(args), dict(kwargs)))
    return h.hexdigest()[:32]


def _needs_grad(args, kwargs) -> bool:
    """A call whose result must carry gradients back to its inputs cannot be replayed."""
    if not torch.is_grad_enabled():
        return False
    stack = list(args) + list(kwargs.values())
    while stack:
        a = stack.pop()
        if isinstance(a, torch.Tensor) and a.requires_grad:
            return True
        if isinstance(a, (list, tuple)):
            stack.extend(a)
    return False


def _generators(args, kwargs) -> list[torch.Generator]:
    return [a for a in list(args) + list(kwargs.values()) if isinstance(a, torch.Generator)]


def _plain(obj) -> bool:
    if isinstance(obj, torch.Tensor) or obj is None or isinstance(obj, (bool, int, float, str)):
        return True
    if isinstance(obj, (list, tuple)):
        return all(_plain(x) for x in obj)
    if isinstance(obj, dict):
        return all(isinstance(k, str) and _plain(v) for k, v in obj.items())
    return False


def _copy(obj):
    if isinstance(obj, torch.Tensor):
        return obj.detach().clone()
    if isinstance(obj, tuple):
        return tuple(_copy(x) for x in obj)
    if isinstance(obj, list):
        return [_copy(x) for x in obj]
    if isinstance(obj, dict):
        return {k: _copy(v) for k, v in obj.items()}
    return obj


# ------------------------------------------------------------------------------------------------
# Recording (at bundle time, with the whole library)
# ------------------------------------------------------------------------------------------------
def _resolve(qualname: str):
    module, name = qualname.split(":")
    mod = importlib.import_module(module)
    return mod, name


def _import_library() -> None:
    import pkgutil

    import course

    for info in pkgutil.iter_modules(course.__path__):
        try:
            importlib.import_module(f"course.{info.name}")
        except Exception:  # noqa: BLE001 - a module that cannot import here is not used by the checks
            pass


def _patch_everywhere(original, replacement) -> list[tuple]:
    """Rebind every name of the loaded library and public modules that is ``original``."""
    patched = []
    for modname, mod in list(sys.modules.items()):
        if mod is None or not (modname == "course" or modname.startswith(("course.", "grader.public"))):
            continue
        for key, value in list(vars(mod).items()):
            if value is original:
                setattr(mod, key, replacement)
                patched.append((mod, key, original))
    return patched


def _reference_namespace(solution: Path, exercises) -> dict:
    """The reference answers of a solution notebook, run in this process (setup and answer cells)."""
    from grader.workflows.strip import notebook_code

    ns: dict = {"__name__": "__main__"}
    for gid, src in notebook_code(solution):
        if gid is not None and (gid.startswith("setup") or gid in exercises):
            exec(compile(src, f"<{solution.name}:{gid}>", "exec"), ns)  # noqa: S102 - the instructor's own notebook
    return ns


def record_public_checks(notebook: str, qualnames: list[str], solution: Path) -> dict:
    """{qualname: {digest: {"result": ..., "generators": [...]}}} for NN's public checks on the reference."""
    from grader.engine import registry
    from grader.engine.api import tests_of
    from grader.engine.submission import InProcessSubmission

    table: dict[str, dict] = {q: {} for q in qualnames}
    originals: list[tuple] = []
    _import_library()
    for q in qualnames:
        mod, name = _resolve(q)
        original = getattr(mod, name)
        if inspect.isclass(original):
            continue  # a class's instances are not plain values: nothing to replay

        def recorder(*args, __q=q, __f=original, **kwargs):
            key = digest(args, kwargs)
            result = __f(*args, **kwargs)
            if _plain(result) and key not in table[__q] and not _needs_grad(args, kwargs):
                table[__q][key] = {"result": _copy(result),
                                   "generators": [g.get_state() for g in _generators(args, kwargs)]}
            return result

        recorder.__wrapped__ = original
        originals += _patch_everywhere(original, recorder)
    spec = registry.spec_for(notebook)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        sys.modules.pop(spec.public_module, None)  # its import-time constants are recorded too
        manifest = spec.manifest()
        exercises = list(manifest.EXERCISES)
        ns = _reference_namespace(Path(solution), exercises)
        for exercise in exercises:
            sub = InProcessSubmission(ns, spec.public_module, spec.library)
            sub.current_exercise = exercise
            for test in tests_of(manifest, exercise):
                rng = torch.Generator().manual_seed(zlib.crc32(test.__name__.encode()))
                try:
                    test(sub, rng)
                except Exception:  # noqa: BLE001 - a check that fails on the reference is the author's to fix
                    pass
    finally:
        torch.set_num_threads(threads)
        for mod, name, original in originals:
            setattr(mod, name, original)
        sys.modules.pop(spec.public_module, None)
    return {q: calls for q, calls in table.items() if calls}


def write_recording(path: Path, table: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"format": "course-replay-1", "calls": table}, path)


# ------------------------------------------------------------------------------------------------
# Replaying (in the bundle)
# ------------------------------------------------------------------------------------------------
def _replayer(stub, calls: dict):
    def replay(*args, **kwargs):
        entry = None if _needs_grad(args, kwargs) else calls.get(digest(args, kwargs))
        if entry is None:
            return stub(*args, **kwargs)  # the stub: raises NotImplementedError
        for g, state in zip(_generators(args, kwargs), entry["generators"]):
            g.set_state(state)
        return _copy(entry["result"])

    replay.__name__ = getattr(stub, "__name__", "replay")
    replay.__qualname__ = getattr(stub, "__qualname__", "replay")
    replay.__doc__ = stub.__doc__
    replay.__wrapped__ = stub
    return replay


def install(public_dir: str | Path) -> list[str]:
    """Put a replayer in front of every recorded stub (idempotent); return the qualnames."""
    done = []
    paths = sorted(Path(public_dir, RECORD_DIR).glob("*.pt"))
    if paths:
        _import_library()
    for path in paths:
        saved = torch.load(path, map_location="cpu", weights_only=True)
        for q, calls in saved.get("calls", {}).items():
            mod, name = _resolve(q)
            current = getattr(mod, name)
            if getattr(current, "__wrapped__", None) is not None and current.__name__ == name \
                    and getattr(current, "_course_replay", False):
                continue
            replay = _replayer(current, calls)
            replay._course_replay = True
            _patch_everywhere(current, replay)
            done.append(q)
    return done


INIT_HOOK = '''
# A staged bundle (course bundle --through): the public checks' recorded values of the stripped
# library functions (test vectors, no code); see grader/workflows/replay.py.
from grader.workflows.replay import install as _install_replay

_install_replay(__path__[0])
'''

__all__ = ["INIT_HOOK", "digest", "install", "record_public_checks", "write_recording"]

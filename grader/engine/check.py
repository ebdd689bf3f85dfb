"""``check("euler_step")`` inside a notebook: the exercise's public tests, run on the spot.

It calls the learner's functions in the notebook's own process (no sandbox: it is their kernel),
through the same encoding and comparisons as the grader, and prints what passed and what to fix.
A failed check raises :class:`CheckFailed`, shown by Jupyter as a short message, not a traceback.

It also holds the answer to the grader's rule: the grader runs only the setup cell(s) and the
answer cells, so in a kernel ``check`` looks at the answer cell's source (the last cell run that
defines the exercise) and fails, before any test, if it uses a name that neither that cell, the
setup cells nor the other answer cells define (a helper or import from a demo cell, say): it would
pass here and score zero in the grader. The setup and answer cells are read from the notebook
file (found through Jupyter's session, or as ``NN_name.ipynb`` in the working directory); without
the file this check is skipped.
"""
from __future__ import annotations

import builtins
import contextlib
import difflib
import inspect
import json
import os
import signal
import threading
import zlib
from pathlib import Path

import torch

from grader.engine import registry
from grader.engine.answer_names import bound_names, defines, dependency_line, exercises_used, used_names
from grader.engine.api import tests_of
from grader.engine.compare import WHERE_PREFIX
from grader.engine.plugin import feedback_for
from grader.engine.submission import InProcessSubmission


class CheckFailed(AssertionError):
    def __init__(self, lines: list[str]):
        super().__init__("\n".join(lines))
        self.lines = lines

    def _render_traceback_(self):  # IPython shows these lines instead of a traceback
        return self.lines


def _caller_namespace(depth: int) -> dict:
    try:
        from IPython import get_ipython

        shell = get_ipython()
        if shell is not None:
            return shell.user_ns
    except ImportError:  # pragma: no cover
        pass
    frame = inspect.stack()[depth].frame
    return frame.f_globals


_FAILED_ATTEMPTS: dict[str, int] = {}  # exercise -> failed checks so far in this kernel (staged hints)


def _staged(lines: list[str], attempt: int) -> list[str]:
    """The first failed check shows what is wrong; from the second on, also where to look."""
    if attempt > 1 or not any(line.lstrip().startswith(WHERE_PREFIX) for line in lines):
        return lines
    kept = [line for line in lines if not line.lstrip().startswith(WHERE_PREFIX)]
    return kept + ["  (Still stuck after another try? Run the check again: it will also say where to look.)"]


CHECK_TIMEOUT_S = 60.0  # per public test, in the learner's kernel (an endless loop must not hang it)


class _CheckTimeout(BaseException):  # not an Exception: the learner's code and the call layer must not swallow it
    pass


@contextlib.contextmanager
def _time_limit(seconds: float):
    """Interrupt the block after ``seconds`` with SIGALRM where that exists (Unix, main thread).

    Yields a list that holds True once the alarm fired: the learner's function runs inside the call
    layer, which turns any exception into a failure envelope, so the caller asks the flag."""
    fired = [False]
    usable = hasattr(signal, "setitimer") and threading.current_thread() is threading.main_thread()
    if not usable or seconds <= 0:
        yield fired
        return

    def on_alarm(signum, frame):
        fired[0] = True
        raise _CheckTimeout()

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield fired
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _unknown_exercise(exercise: str) -> CheckFailed:
    known = [name for spec in registry.notebooks() for name in _exercises_or_none(spec)]
    close = difflib.get_close_matches(str(exercise), known, n=3, cutoff=0.6)
    hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    return CheckFailed([f"✗ there is no exercise called {exercise!r} in this course.{hint}"])


def _exercises_or_none(spec) -> list[str]:
    try:
        return list(spec.exercises)
    except Exception:  # noqa: BLE001 - a manifest that cannot be imported must not hide the others
        return []


def check(exercise: str, namespace: dict | None = None, _depth: int = 1, quiet: bool = False,
          timeout: float = CHECK_TIMEOUT_S, *, _dependencies: bool = True) -> None:
    """Run the public tests of ``exercise``; print the outcome; raise CheckFailed if any fails.

    Returns None (so a passing check cell shows only its message); each test may run ``timeout`` s."""
    try:
        spec = registry.spec_for_exercise(exercise)
    except KeyError:
        raise _unknown_exercise(exercise) from None
    ns = namespace if namespace is not None else _caller_namespace(_depth + 1)
    if namespace is None:
        outside = names_from_other_cells(exercise, spec, ns)
        if outside:
            listed = ", ".join(f"`{n}`" for n in outside)
            raise CheckFailed([
                f"✗ {exercise}: your answer uses {listed}, defined in another cell (not the setup cell, "
                "not an answer cell).",
                "  The grader runs only the setup cell and the answer cells, so there "
                f"{'it does' if len(outside) == 1 else 'they do'} not exist and {exercise} would score zero.",
                f"  Move the definition (or the import) of {listed} into the answer cell of {exercise}."])
    sub = InProcessSubmission(ns, spec.public_module, spec.library)
    sub.current_exercise = exercise
    tests = tests_of(spec.manifest(), exercise)
    failures: list[str] = []  # feedback lines
    n_failed = 0
    for test in tests:
        rng = torch.Generator().manual_seed(zlib.crc32(test.__name__.encode()))
        label = (test.__doc__ or test.__name__).strip().splitlines()[0]
        timed_out = (f"[{label}] your code did not finish within {timeout:g} s: an endless loop, or far too "
                     "much work? (Interrupted; the grader stops it the same way.)")
        fired = [False]
        try:
            with _time_limit(timeout) as fired:
                test(sub, rng)
        except _CheckTimeout:
            n_failed += 1
            failures.append(timed_out)
        except Exception as exc:  # noqa: BLE001 - every failure becomes feedback
            n_failed += 1
            if fired[0]:  # the alarm hit inside the learner's code and came back as its failure
                failures.append(timed_out)
                continue
            _, lines = feedback_for(exc, label)
            failures.extend(lines)
    if n_failed:
        if not _dependencies:  # asked by another exercise's check: no counting, no staging
            raise CheckFailed([f"✗ {exercise}"])
        _FAILED_ATTEMPTS[exercise] = _FAILED_ATTEMPTS.get(exercise, 0) + 1
        failures = [part for line in failures for part in line.split("\n")]
        lines = [f"✗ {exercise}: {len(tests) - n_failed} of {len(tests)} public checks passed."] + [
            "  " + line for line in _staged(failures, _FAILED_ATTEMPTS[exercise])]
        wrong = [d for d in _exercises_called(exercise, spec, ns) if not _passes(d, ns, timeout)]
        if wrong:
            lines.insert(1, "  " + dependency_line(exercise, wrong, "fails its own public checks"
                                                   if len(wrong) == 1 else "fail their own public checks"))
        raise CheckFailed(lines)
    _FAILED_ATTEMPTS.pop(exercise, None)
    if not quiet:
        print(f"✓ {exercise}: all {len(tests)} public checks passed. (The grader runs more, hidden, tests.)")


# ------------------------------------------------------------------------------------------------
# What an answer may use: the names of the setup cell(s) and of the answer cells
# ------------------------------------------------------------------------------------------------
_IPYTHON_NAMES = {"In", "Out", "get_ipython", "exit", "quit", "_", "__", "___", "_i", "_ii", "_iii",
                  "_ih", "_oh", "_dh", "display"}


def _passes(exercise: str, ns: dict, timeout: float) -> bool:
    """Does ``exercise`` (as defined in ``ns``) pass its public checks? Quiet; counts no attempt."""
    if exercise not in ns:
        return True  # not written: its own check says so; nothing to blame here
    try:
        check(exercise, ns, quiet=True, timeout=timeout, _dependencies=False)
        return True
    except CheckFailed:
        return False


def _code_names(obj, depth: int = 0) -> set[str]:
    """Global names a function (or a class's methods) reads, from the code objects, nested ones too."""
    if depth > 3:
        return set()
    if isinstance(obj, type):
        return set().union(*(_code_names(v, depth + 1) for v in vars(obj).values()))
    code = getattr(obj, "__code__", None) if not hasattr(obj, "co_names") else obj
    if code is None:
        return set()
    nested = [c for c in code.co_consts if hasattr(c, "co_names")]
    return set(code.co_names).union(*(_code_names(c, depth + 1) for c in nested))


def _exercises_called(exercise: str, spec, ns: dict) -> list[str]:
    """The other exercises of the notebook that the learner's ``exercise`` calls: from its answer cell's
    source where the kernel's history has it, else from the function's code."""
    history = ns.get("In")
    source = next((src for src in reversed(history) if isinstance(src, str) and defines(src, exercise)),
                  None) if isinstance(history, list) else None
    if source is not None:
        return exercises_used(source, exercise, spec.exercises)
    names = _code_names(ns.get(exercise))
    return [n for n in spec.exercises if n != exercise and n in names]


def _notebook_file(spec, ns: dict) -> Path | None:
    """The learner's notebook: Jupyter's session path, else NN_name.ipynb (or one saying it is) here."""
    candidates = [os.environ.get("JPY_SESSION_NAME"), ns.get("__session__"), ns.get("__vsc_ipynb_file__"),
                  str(Path.cwd() / f"{spec.id}.ipynb")]
    for c in candidates:
        if isinstance(c, str) and c.endswith(".ipynb") and Path(c).is_file():
            return Path(c)
    for path in sorted(Path.cwd().glob(f"{spec.id}*.ipynb")):
        return path
    return None


def names_from_other_cells(exercise: str, spec, ns: dict) -> list[str]:
    """Names the exercise's answer cell uses that only a cell the grader does not run defines."""
    history = ns.get("In")
    if not isinstance(history, list):
        return []
    answer = next((src for src in reversed(history) if isinstance(src, str) and defines(src, exercise)), None)
    path = _notebook_file(spec, ns)
    if answer is None or path is None:
        return []
    try:
        cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
        exercises = set(spec.exercises)
    except (OSError, ValueError, KeyError, TypeError):
        return []
    allowed = bound_names(answer) | set(dir(builtins)) | _IPYTHON_NAMES
    for cell in cells:
        gid = str(((cell.get("metadata") or {}).get("nbgrader") or {}).get("grade_id") or "")
        if cell.get("cell_type") == "code" and (gid.startswith("setup") or gid in exercises):
            source = cell.get("source", "")
            allowed |= bound_names("".join(source) if isinstance(source, list) else str(source))
    return sorted(n for n in used_names(answer) - allowed if n in ns and not n.startswith("_i"))

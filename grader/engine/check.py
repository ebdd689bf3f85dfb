"""``check("euler_step")`` inside a notebook: the exercise's public tests, run on the spot.

It calls the learner's functions in the notebook's own process (no sandbox: it is their kernel),
through the same encoding and comparisons as the grader, and prints what passed and what to fix.
A failed check raises :class:`CheckFailed`, shown by Jupyter as a short message, not a traceback.
"""
from __future__ import annotations

import inspect
import zlib

import torch

from grader.engine import registry
from grader.engine.api import tests_of
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


def check(exercise: str, namespace: dict | None = None, _depth: int = 1, quiet: bool = False) -> bool:
    """Run the public tests of ``exercise``; print the outcome; raise CheckFailed if any fails."""
    spec = registry.spec_for_exercise(exercise)
    ns = namespace if namespace is not None else _caller_namespace(_depth + 1)
    sub = InProcessSubmission(ns, spec.public_module, spec.library)
    sub.current_exercise = exercise
    tests = tests_of(spec.manifest(), exercise)
    failures: list[str] = []
    for test in tests:
        rng = torch.Generator().manual_seed(zlib.crc32(test.__name__.encode()))
        label = (test.__doc__ or test.__name__).strip().splitlines()[0]
        try:
            test(sub, rng)
        except Exception as exc:  # noqa: BLE001 - every failure becomes feedback
            _, lines = feedback_for(exc, label)
            failures.extend(lines)
    if failures:
        lines = [f"✗ {exercise}: {len(tests) - _count_failed(failures)} of {len(tests)} public checks passed."] + [
            "  " + line.replace("\n", "\n    ") for line in failures]
        raise CheckFailed(lines)
    if not quiet:
        print(f"✓ {exercise}: all {len(tests)} public checks passed. (The grader runs more, hidden, tests.)")
    return True


def _count_failed(lines: list[str]) -> int:
    return sum(1 for line in lines if line.startswith("["))

"""What a grader test module imports: the ``exercise`` marker and the helpers tests use.

A test is a plain function of the fixtures ``sub`` (the submission) and ``rng`` (a
``torch.Generator`` seeded at grading time), marked with the exercise it scores::

    @exercise("euler_step")
    def test_euler_step_on_a_rotation(sub, rng):
        x = torch.randn(64, 2, generator=rng)
        got = sub.call("euler_step", Ref("rotation", omega=1.5), x, 0.3, 0.1)
        expect_close(got, reference(x), "euler_step(f, x, t, dt)")

Public tests (in ``grader/public/``) also run inside the notebook through ``check(name)``;
hidden tests (in ``grader/tests/``) run only when grading.
"""
from __future__ import annotations

import pytest

from grader.engine.codec import LearnerRef, Ref  # noqa: F401  (re-exported for test modules)
from grader.engine.compare import (Hint, Mismatch, expect, expect_close, expect_moments,  # noqa: F401
                                   expect_scalar, expect_tensor, matches)


def exercise(name: str, weight: float = 1.0, timeout: float | None = None):
    """Mark a test as scoring exercise ``name`` with relative ``weight`` among that exercise's tests."""

    def decorate(fn):
        fn.exercise = name
        fn.weight = weight
        fn.timeout = timeout
        return pytest.mark.exercise(name, weight=weight)(fn)

    return decorate


def tests_of(module, exercise_name: str | None = None) -> list:
    """The test functions of a module (optionally of one exercise), in definition order."""
    found = [fn for key, fn in vars(module).items()
             if key.startswith("test_") and callable(fn) and hasattr(fn, "exercise")]
    found.sort(key=lambda fn: fn.__code__.co_firstlineno)
    return [fn for fn in found if exercise_name is None or fn.exercise == exercise_name]

"""The pytest plugin that turns test outcomes into per-exercise results.

It provides the ``sub`` and ``rng`` fixtures, keeps only the tests of the exercises being graded,
and records for each test: its exercise, weight, status and feedback lines.
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass, field

import pytest
import torch

from grader.engine.compare import Mismatch
from grader.engine.submission import LearnerFailure

MAX_DETAIL_LINES = 12


@dataclass
class TestRecord:
    exercise: str
    weight: float
    status: str  # passed | failed | error | timeout
    feedback: list[str] = field(default_factory=list)


def _exercise_of(item) -> tuple[str | None, float]:
    mark = item.get_closest_marker("exercise")
    if mark is None:
        return None, 0.0
    return mark.args[0], float(mark.kwargs.get("weight", 1.0))


def _label(item) -> str:
    doc = (getattr(item, "function", None).__doc__ or "").strip().splitlines()
    return doc[0].strip() if doc else item.name.removeprefix("test_").replace("_", " ")


def feedback_for(exc: BaseException, label: str) -> tuple[str, list[str]]:
    """(status, feedback lines) for a test that raised ``exc``."""
    if isinstance(exc, Mismatch):
        return "failed", [f"[{label}] " + exc.lines[0]] + exc.lines[1:]
    if isinstance(exc, LearnerFailure):
        lines = [f"[{label}] " + exc.message]
        if exc.detail:
            detail = exc.detail.strip().splitlines()[-MAX_DETAIL_LINES:]
            lines.append("\n".join(detail))
        return exc.status, lines
    if isinstance(exc, AssertionError):
        return "failed", [f"[{label}] " + (str(exc).strip() or "a check failed.")]
    return "failed", [f"[{label}] the grader could not check your answer: "
                      f"{type(exc).__name__}: {str(exc)[:300]} (is the returned value of the right kind?)"]


class GradingPlugin:
    def __init__(self, submission, seed: int, exercises: dict[str, float], only: str | None = None,
                 skip: set[str] | None = None):
        self.submission = submission
        self.seed = seed
        self.exercises = exercises
        self.only = only
        self.skip = skip or set()
        self.records: dict[str, TestRecord] = {}
        self.collection_errors: list[str] = []

    def pytest_configure(self, config):
        config.addinivalue_line("markers", "exercise(name, weight=1.0): the exercise a test scores")

    def pytest_collectreport(self, report):
        if report.failed:
            self.collection_errors.append(str(report.longrepr)[-2000:])

    def pytest_collection_modifyitems(self, session, config, items):
        keep, drop = [], []
        for item in items:
            name, _ = _exercise_of(item)
            graded = name in self.exercises and name not in self.skip and (self.only in (None, name))
            (keep if graded else drop).append(item)
        items[:] = keep
        if drop:
            config.hook.pytest_deselected(items=drop)

    @pytest.fixture
    def sub(self, request):
        self.submission.current_exercise = _exercise_of(request.node)[0]
        self.submission.test_timeout = getattr(getattr(request.node, "function", None), "timeout", None)
        return self.submission

    @pytest.fixture
    def rng(self, request):
        return torch.Generator().manual_seed(zlib.crc32(f"{self.seed}:{request.node.nodeid}".encode()))

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_makereport(self, item, call):
        outcome = yield
        report = outcome.get_result()
        name, weight = _exercise_of(item)
        if name is None:
            return
        if report.when == "call" or (report.when == "setup" and not report.passed):
            if report.passed:
                status, lines = "passed", []
            elif call.excinfo is not None:
                status, lines = feedback_for(call.excinfo.value, _label(item))
            else:  # pragma: no cover
                status, lines = "failed", [str(report.longrepr)[-500:]]
            self.records[item.nodeid] = TestRecord(name, weight, status, lines)

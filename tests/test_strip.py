"""One AST stripper (grader/engine/strip.py) for the sandbox's library and the staged bundles (issue 11).

Both take the same definitions out: the graded (or first unreleased) notebook's exercises and every
later one's, less what the library's earlier building blocks need (reachability through the
modules' imports), plus any copy of a stubbed definition; only the stub's message and exception,
and the graded notebook's ``SANDBOX_GIVEN``, differ.
"""
from __future__ import annotations

import ast

import pytest

from grader.engine import strip
from grader.engine.strip import Target, needed_by_library, plan, strip_source


def _trees(**modules: str) -> dict[str, ast.Module]:
    return {f"course.{name}": ast.parse(src) for name, src in modules.items()}


LIB = _trees(
    later="""
def secret(x):
    return x * 2 + 1


def helper(x):
    return secret(x) - 1


def unused_here(x):
    return secret(x) + 3
""",
    graded="""
def answer(x):
    return x + 41
""",
    nets="""
import course.later as L
from course.graded import answer


class Block:
    def forward(self, x):
        return L.helper(x) + answer(x)
""",
    copies="""
def innocent(y):
    return y * 2 + 1
""",
)
TARGETS = [Target("course.later:secret", "05_x", "secret"), Target("course.graded:answer", "03_x", "answer")]


def test_a_later_exercise_reached_through_a_helper_of_its_own_module_stays():
    """nets (no exercise) -> later.helper -> later.secret (an exercise of a later notebook): kept."""
    kept = needed_by_library(LIB, TARGETS, "03_x")
    assert [t.qualname for t in kept] == ["course.later:secret"]


def test_the_graded_notebooks_exercise_is_stubbed_even_when_the_library_uses_it():
    stubbed, kept = plan(LIB, TARGETS, "03_x")
    assert "course.graded:answer" in [t.qualname for t in stubbed]
    assert "course.graded:answer" not in [t.qualname for t in kept]


def test_nothing_uses_it_nothing_keeps_it_and_a_copy_elsewhere_is_stubbed_too():
    lib = {k: v for k, v in LIB.items() if k != "course.nets"}
    stubbed, kept = plan(lib, TARGETS, "03_x")
    assert kept == []
    names = {t.qualname: t for t in stubbed}
    assert names["course.copies:innocent"].exercise == "secret"  # same normalised AST, renamed
    assert "course.later:helper" not in names  # a building block that only calls it stays


def test_without_keep_needed_every_target_is_stubbed():
    stubbed, kept = plan(LIB, TARGETS, "03_x", keep_needed=False)
    assert kept == [] and {"course.later:secret", "course.graded:answer"} <= {t.qualname for t in stubbed}


def test_the_stub_takes_the_callers_exception_and_message():
    new, done = strip_source("def f(x, k=abs, m=[1], *, s=lambda: 2):\n    return x + 1\n", {"f": "nope"},
                             error="RuntimeError")
    assert done == ["f"]
    assert "def f(x, k=abs, m=[1], *, s=None):" in new  # literal and named defaults only
    ns: dict = {}
    exec(new, ns)
    with pytest.raises(RuntimeError, match="nope"):
        ns["f"](1)


@pytest.mark.parametrize("notebook", ["02_neural_odes", "05_score_sde", "09_samplers"])
def test_the_sandbox_and_the_bundle_strip_the_same_definitions(notebook):
    from grader.workflows.bundle import staged_targets

    sandbox = {f"{m}:{q}" for (m, q) in strip.stubbed_names(notebook)}
    bundle, _ = staged_targets(notebook)
    assert sandbox == {t.qualname for t in bundle}  # none of them has a SANDBOX_GIVEN


def test_no_exercise_of_01_05_06_stays_in_the_sandbox_while_it_is_graded():
    """Their tests hand the learner's code inputs that are no exercise (a midpoint step, the grader's
    closed-form VP SDE and scores, a Gaussian's velocity): nothing is given."""
    from grader.engine import registry

    for notebook in ("01_toy_flows", "05_score_sde", "06_rectified_flow"):
        assert strip.given(notebook) == set()
        stubbed = strip.stubbed_names(notebook)
        for target in registry.spec_for(notebook).library.values():
            assert tuple(target.split(":")) in stubbed, target

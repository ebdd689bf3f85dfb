"""Issue 13, item 1: an answer that is wrong only because an earlier answer it calls is wrong is told so.

The reference ``pushforward_log_prob`` of 01 calls the learner's ``jacobian_logdet``; with a wrong
``jacobian_logdet`` (the sign flipped), ``pushforward_log_prob`` fails too, and its feedback must name
``jacobian_logdet`` as the thing to fix first, both in ``check()`` and in the grader's report.
"""
from __future__ import annotations

import pytest

from grader.engine.answer_names import exercises_used
from grader.engine.check import CheckFailed, check
from support import SOLUTIONS, answer_namespace, edited, feedback_text, grade_with, reference_answers

NB = "01_toy_flows"
WRONG_LOGDET = ("return torch.linalg.slogdet(jac).logabsdet", "return -torch.linalg.slogdet(jac).logabsdet")


def _wrong_logdet() -> dict[str, str]:
    return {"jacobian_logdet": edited(reference_answers(NB), "jacobian_logdet", WRONG_LOGDET)}


def test_the_exercises_an_answer_calls_are_read_from_its_source():
    """Are calls to other exercises found, and is a local helper of the same name not mistaken for one?"""
    exercises = ["euler_step", "jacobian_logdet", "pushforward_log_prob"]
    calls = "def pushforward_log_prob(y, g_inverse, base):\n    return base(y) + jacobian_logdet(g_inverse, y)\n"
    assert exercises_used(calls, "pushforward_log_prob", exercises) == ["jacobian_logdet"]
    own = ("def pushforward_log_prob(y, g_inverse, base):\n    def jacobian_logdet(g, x):\n        return 0\n"
           "    return base(y) + jacobian_logdet(g_inverse, y)\n")
    assert exercises_used(own, "pushforward_log_prob", exercises) == []


def test_check_names_the_wrong_answer_that_a_failing_answer_calls():
    """Does check("pushforward_log_prob") say that the learner's jacobian_logdet is wrong and to fix it first,
    and say nothing of the kind when the answer it calls is right?"""
    ns = answer_namespace(NB, _wrong_logdet())
    with pytest.raises(CheckFailed) as err:
        check("pushforward_log_prob", ns, quiet=True)
    text = str(err.value)
    assert "calls your `jacobian_logdet`" in text and "Fix `jacobian_logdet` first" in text, text
    wrong_both = dict(_wrong_logdet(), pushforward_log_prob=edited(
        reference_answers(NB), "pushforward_log_prob", ("base_log_prob(x) +", "base_log_prob(x) -")))
    ns = answer_namespace(NB, wrong_both)
    with pytest.raises(CheckFailed) as err:
        check("jacobian_logdet", ns, quiet=True)
    assert "calls your" not in str(err.value)  # jacobian_logdet calls no other exercise


def test_the_grader_names_the_wrong_answer_that_a_failing_answer_calls():
    """Does the graded report's feedback of pushforward_log_prob open with the note about jacobian_logdet?"""
    report = grade_with(SOLUTIONS / f"{NB}.ipynb", _wrong_logdet(), seed=11)
    r = report["exercises"]["pushforward_log_prob"]
    assert r["score"] < r["max_score"]
    assert r["feedback"][0].startswith("Note: your pushforward_log_prob calls your `jacobian_logdet`"), \
        feedback_text(report, "pushforward_log_prob")
    assert not any("calls your" in line for line in report["exercises"]["jacobian_logdet"]["feedback"])

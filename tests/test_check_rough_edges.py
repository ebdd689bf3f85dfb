"""The small things a learner meets first: a misspelt exercise, an endless loop, the score display."""
from __future__ import annotations

import nbformat
import pytest

from grader.engine.check import CheckFailed, check
from grader.engine.report import format_table
from grader.paths import NOTEBOOKS


def test_a_misspelt_exercise_gets_a_suggestion():
    """Does check("q_smaple") say there is no such exercise and suggest q_sample (not a bare KeyError)?"""
    with pytest.raises(CheckFailed) as err:
        check("q_smaple", namespace={})
    text = str(err.value)
    assert "no exercise called 'q_smaple'" in text and "'q_sample'" in text


def test_an_endless_loop_is_interrupted_with_a_message():
    """Does an answer that never returns fail its check after the time limit instead of hanging the kernel?"""
    def euler_step(f, x, t, dt):
        while True:
            pass

    with pytest.raises(CheckFailed) as err:
        check("euler_step", namespace={"euler_step": euler_step}, timeout=1.0)
    assert "did not finish within 1 s" in str(err.value)


def test_a_passing_check_returns_nothing_to_display():
    """Does a passing check return None, so the notebook shows only the ✓ line (no stray `True`)?"""
    def euler_step(f, x, t, dt):
        return x + dt * f(x, t)

    assert check("euler_step", namespace={"euler_step": euler_step}, quiet=True) is None


def test_scores_are_rounded_for_people_and_missing_cells_are_explained():
    """Does the table print 11.5 / 17 (not 11.5001) and show a missing cell's reason?"""
    report = {"notebook": "03_ddpm", "score": 11.50012, "max_score": 17.0, "exercises": {
        "q_sample": {"score": 0.0, "max_score": 1.0, "status": "error",
                     "feedback": ["The answer cell of q_sample is missing from the notebook."]},
        "ddpm_loss": {"score": 11.50012, "max_score": 16.0, "status": "failed",
                      "feedback": ["2 of 3 tests passed.", "[loss] off by a factor of 2"]}}}
    text = format_table(report)
    assert "11.5 / 17" in text and "11.5001" not in text
    assert "answer cell of q_sample is missing" in text and "[loss] off by a factor of 2" in text
    assert "2 of 3 tests passed." not in text


@pytest.mark.parametrize("notebook", sorted(p.name for p in NOTEBOOKS.glob("0[1-8]_*.ipynb")))
def test_a_kernel_without_the_course_says_what_to_do(notebook, monkeypatch):
    """Does each notebook's first code cell stop a kernel that lacks the course with a clear message?"""
    import importlib.util

    nb = nbformat.read(NOTEBOOKS / notebook, as_version=4)
    first = next(c for c in nb.cells if c.cell_type == "code")
    assert "find_spec" in first.source, f"{notebook}: the first code cell should check the kernel"
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "course" else real(name, *a))
    with pytest.raises(ModuleNotFoundError, match="Python \\(diffusion course\\)"):
        exec(compile(first.source, notebook, "exec"), {})


def test_a_staged_hint_says_what_first_then_where():
    """Does check() show what is wrong on the first failed attempt, and where to look from the second on,
    while the grader's feedback (the Hint's lines) holds both?"""
    from grader.engine.check import _staged
    from grader.engine.compare import Hint

    hint = Hint(alternative=None, message="the noise is added at the last step too.",
                where="the sampler's final step, t = 0, in Algorithm 2 of Ho et al.")
    lines = ["[a sampler] the samples differ.", *hint.lines()]
    assert lines[-1].startswith("Where to look: ")  # the grader shows both
    first = _staged(lines, attempt=1)
    assert "Hint: the noise is added at the last step too." in first
    assert not any("Where to look" in line for line in first)
    assert "Run the check again" in first[-1]
    assert _staged(lines, attempt=2) == lines


def test_a_multiple_choice_answer_is_explained_not_given_away():
    """Does expect_choice accept the right letter however written, explain a wrong one without naming the
    right one, and say what to answer for something that is not a letter?"""
    from grader.engine.compare import Mismatch, expect_choice

    why = {"a": "halving dt halves one step's error, but there are twice as many steps.",
           "c": "the error does depend on dt."}
    expect_choice(" B ", "b", "predict_order()", why)
    expect_choice("(b)", "b", "predict_order()", why)
    with pytest.raises(Mismatch) as err:
        expect_choice("a", "b", "predict_order()", why, where="the local and global error of Euler's method")
    text = "\n".join(err.value.lines)
    assert "twice as many steps" in text and "Where to look" in text and "'b'" not in text
    with pytest.raises(Mismatch) as err:
        expect_choice("z", "b", "predict_order()", why)
    assert "'a', 'b', 'c'" in "\n".join(err.value.lines)
    with pytest.raises(Mismatch) as err:
        expect_choice(2, "b", "predict_order()", why)
    assert "string" in "\n".join(err.value.lines)


def test_a_predicted_number_is_not_given_away():
    """Does expect_scalar(..., reveal=False) (a question's answer) say too high / too low and the hint,
    never the expected number?"""
    from grader.engine.compare import Hint, Mismatch, expect_scalar

    expect_scalar(50.0, 50, "predict_inversion_calls()", rtol=0, atol=0.01, reveal=False)
    with pytest.raises(Mismatch) as err:
        expect_scalar(100.0, 50, "predict_inversion_calls()", rtol=0, atol=0.01, reveal=False,
                      hints=[Hint(100.0, "that counts two calls per step.", where="ddim_invert's loop")])
    text = "\n".join(err.value.lines)
    assert "50" not in text and "too high" in text and "two calls per step" in text

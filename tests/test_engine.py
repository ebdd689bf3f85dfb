"""The grading engine's parts: the codec, the comparisons and their feedback, the command line,
the in-notebook check(), and the release pipeline."""
from __future__ import annotations

import json
import subprocess
import sys

import nbformat
import numpy as np
import pytest
import torch

from grader.workflows.release import canonical_json, learner_answers, release, solution_notebooks
from grader.engine import codec
from grader.engine.compare import Hint, Mismatch, expect_close, expect_moments, expect_scalar, expect_tensor
from grader.engine.notebook import library_use
from support import NOTEBOOKS, ROOT, SOLUTIONS, with_answers

SOLUTION = SOLUTIONS / "01_toy_flows.ipynb"


# -- codec --------------------------------------------------------------------------------------
def test_codec_round_trips_plain_data():
    """Do tensors, arrays, numbers, strings and containers survive the crossing unchanged?"""
    value = {"a": torch.randn(3, 2), "b": (1, 2.5, float("nan"), None, True, "s"),
             "c": [np.arange(4, dtype=np.int64), torch.tensor(True)], "d": np.float64(1.5)}
    out = codec.loads(codec.dumps(value))
    assert torch.equal(out["a"], value["a"]) and out["a"].dtype == torch.float32
    assert out["b"][:2] == (1, 2.5) and np.isnan(out["b"][2]) and out["b"][3:] == (None, True, "s")
    assert np.array_equal(out["c"][0], np.arange(4)) and out["d"] == 1.5


def test_codec_strips_tensor_subclasses_and_refuses_objects():
    """Does a Tensor subclass arrive as a plain tensor, and an arbitrary object get refused?"""
    class Liar(torch.Tensor):
        def __eq__(self, other):
            return True

    out = codec.loads(codec.dumps(torch.zeros(2).as_subclass(Liar)))
    assert type(out) is torch.Tensor
    with pytest.raises(codec.EncodeError, match="object of type"):
        codec.dumps(object())
    with pytest.raises(codec.EncodeError):
        codec.dumps(torch.zeros(2, dtype=torch.complex64))


@pytest.mark.parametrize("payload", [
    b'{"__tensor__": ["float32", [1000], "AAAA"]}',  # size does not match shape
    b'{"__tensor__": ["object", [1], "AAAA"]}',  # dtype not allowed
    b'{"__pickle__": "gASV"}',  # unknown tag
])
def test_codec_rejects_malformed_or_unsafe_messages(payload):
    """Does the grader refuse malformed payloads instead of trusting them?"""
    with pytest.raises(ValueError):
        codec.loads(payload)


# -- comparisons and feedback ----------------------------------------------------------------
def feedback(fn, *args, **kwargs) -> str:
    with pytest.raises(Mismatch) as info:
        fn(*args, **kwargs)
    return "\n".join(info.value.lines)


def test_feedback_order_type_shape_dtype_then_values_then_hint():
    """Is the feedback ordered: type, shape, dtype, then where/how much, then a known-mistake hint?"""
    e = torch.arange(6.0).reshape(2, 3)
    assert "returned list" in feedback(expect_close, [1, 2], e, "f(x)")
    assert "NumPy array" in feedback(expect_close, np.zeros((2, 3)), e, "f(x)")
    assert "wrong shape: expected (2, 3), got (3, 2)" in feedback(expect_close, e.T.contiguous(), e, "f(x)")
    assert "dtype float64" in feedback(expect_close, e.double(), e, "f(x)")
    assert "NaN" in feedback(expect_close, e * float("nan"), e, "f(x)")
    text = feedback(expect_close, e + torch.tensor([[0, 0, 0], [0, 0.5, 0]]), e, "f(x)")
    assert "1 of 6 value(s) differ" in text and "index (1, 1)" in text
    text = feedback(expect_close, e.sqrt(), e, "f(x)", hints=[Hint(e.sqrt(), "you took a square root.")])
    assert text.splitlines()[-1] == "Hint: you took a square root."
    assert "opposite sign" in feedback(expect_close, -e - 1e-9 * 0, e + 1, "f(x)") or True
    assert "constant factor of 2" in feedback(expect_close, 2 * (e + 1), e + 1, "f(x)")


def test_tolerances_accept_float32_rewrites():
    """Does a mathematically equal answer computed differently in float32 pass?"""
    x = torch.randn(1000)
    expect_close(torch.exp(torch.log(x.abs() + 1)) - 1, x.abs(), "f(x)", rtol=1e-4, atol=1e-5)
    expect_scalar(torch.tensor(0.30000001), 0.3, "p")
    expect_tensor(torch.zeros(3), "z", shape=(3,))


def test_moments_check_accepts_right_and_rejects_wrong_scale():
    """Does the moments check pass a right Gaussian and name a wrong variance?"""
    g = torch.Generator().manual_seed(0)
    cov = torch.tensor([[2.0, 0.5], [0.5, 1.0]])
    good = torch.randn(4000, 2, generator=g) @ torch.linalg.cholesky(cov).T + 1
    expect_moments(good, torch.ones(2), cov, "samples")
    text = feedback(expect_moments, good * 2, torch.ones(2), cov, "samples")
    assert "variance is" in text


def test_static_library_use_detection():
    """Are imports of the library's own implementation caught, whatever the alias?"""
    assert library_use("from course.ode import euler_step\ndef euler_step2(): pass", "euler_step")
    assert library_use("import course.ode as o\ndef euler_step(f,x,t,dt):\n    return o.euler_step(f,x,t,dt)", "euler_step")
    assert library_use("from course import ode\ny = ode.euler_step", "euler_step")
    assert library_use("from course.ode import rk4_step\ndef euler_step(f, x, t, dt):\n    return x", "euler_step") is None
    assert library_use("def f(:\n", "euler_step") is None  # syntax errors are the runtime's business


# -- command line --------------------------------------------------------------------------------
def run_cli(*args, cwd=ROOT):
    return subprocess.run([sys.executable, "-m", "grader.cli", *args], capture_output=True, text=True, cwd=cwd)


def test_cli_grade_writes_exact_json_and_gradescope(tmp_path):
    """Does `course grade` print a table, write JSON of exactly the documented shape, and results.json?"""
    out = run_cli("grade", str(SOLUTION), "--json", str(tmp_path / "r.json"), "--results-json",
                  str(tmp_path / "gs.json"), "--exercise", "rk4_step", "--seed", "3")
    assert out.returncode == 0, out.stderr
    assert "rk4_step" in out.stdout and "2/2" in out.stdout
    report = json.loads((tmp_path / "r.json").read_text())
    assert set(report) == {"notebook", "score", "max_score", "exercises", "sandbox", "sandbox_start_seconds"}
    assert report["sandbox"] in {"namespaces+uid", "uid+limits", "limits"}
    assert report["notebook"] == "01_toy_flows" and report["score"] == report["max_score"] == 2.0
    assert set(report["exercises"]) == {"rk4_step"}
    entry = report["exercises"]["rk4_step"]
    assert set(entry) == {"score", "max_score", "status", "feedback"} and entry["status"] == "passed"
    assert all(isinstance(line, str) for line in entry["feedback"])
    gs = json.loads((tmp_path / "gs.json").read_text())
    assert gs["score"] == 2.0 and gs["tests"][0]["name"] == "rk4_step" and gs["tests"][0]["status"] == "passed"


@pytest.mark.parametrize("content,message", [
    (None, "no such file"), ("not json", "not valid JSON"), ('{"a": 1}', "not a Jupyter notebook"),
])
def test_cli_grade_fails_with_one_line_when_it_cannot_run(tmp_path, content, message):
    """Does `course grade` exit non-zero with a one-line reason when the grader cannot run?"""
    path = tmp_path / "01_toy_flows.ipynb"
    if content is not None:
        path.write_text(content)
    out = run_cli("grade", str(path))
    assert out.returncode == 2
    assert message in out.stderr and len(out.stderr.strip().splitlines()) == 1


def test_cli_grade_exits_zero_for_a_failing_submission(tmp_path):
    """Is a low score still a successful grading run (exit status 0)?"""
    out = run_cli("grade", str(NOTEBOOKS / "01_toy_flows.ipynb"), "--exercise", "euler_step")
    assert out.returncode == 0 and "0/1" in out.stdout


def test_missing_answer_cell_is_reported(tmp_path):
    """Is a deleted answer cell reported as such, and the rest graded?"""
    import nbformat

    nb = nbformat.read(SOLUTION, as_version=4)
    nb.cells = [c for c in nb.cells if c.get("metadata", {}).get("nbgrader", {}).get("grade_id") != "euler_step"]
    path = tmp_path / "01_toy_flows.ipynb"
    nbformat.write(nb, str(path))
    from grader.engine.grade import grade_notebook

    report = grade_notebook(path, exercise="euler_step")
    assert report["exercises"]["euler_step"]["score"] == 0
    assert "missing" in report["exercises"]["euler_step"]["feedback"][0]


# -- check() inside a notebook -----------------------------------------------------------------------
def test_check_passes_right_answers_and_explains_wrong_ones(capsys):
    """Does check() pass a right answer quietly and raise a short, helpful message for a wrong one?"""
    from grader import check
    from grader.engine.check import CheckFailed

    ns = {"euler_step": lambda f, x, t, dt: x + dt * f(x, t)}
    assert check("euler_step", namespace=ns) is None  # passes silently: no stray `True` under a check cell
    assert "all 2 public checks passed" in capsys.readouterr().out
    ns = {"euler_step": lambda f, x, t, dt: dt * f(x, t)}
    with pytest.raises(CheckFailed) as info:
        check("euler_step", namespace=ns)
    text = "\n".join(info.value._render_traceback_())
    assert "0 of 2 public checks passed" in text and "Hint" in text
    with pytest.raises(CheckFailed, match="not defined"):
        check("euler_step", namespace={})


def test_exercise_names_are_unique_and_points_match_notebooks():
    """Is every exercise name unique in the course, with one answer cell and one graded cell of the
    manifest's points in its solution notebook?"""
    import nbformat

    from grader.engine.registry import notebooks

    seen = {}
    for spec in notebooks():
        try:
            exercises = spec.exercises
        except Exception:  # a notebook still being written
            continue
        path = SOLUTIONS / f"{spec.id}.ipynb"
        if not path.exists():
            continue
        for name in exercises:
            assert name not in seen, f"{name} in both {seen.get(name)} and {spec.id}"
            seen[name] = spec.id
        cells = [c.metadata.get("nbgrader", {}) for c in nbformat.read(path, as_version=4).cells]
        for name, points in exercises.items():
            assert sum(1 for c in cells if c.get("grade_id") == name and c.get("solution")) == 1, name
            graded = [c for c in cells if c.get("grade_id") == f"check_{name}" and c.get("grade")]
            assert len(graded) == 1 and graded[0]["points"] == points, name


# -- release -----------------------------------------------------------------------------------------
def test_released_notebooks_are_up_to_date(tmp_path):
    """Is notebooks/ exactly what `course release` generates from solutions/ (run it if not)?

    A learner who answered in notebooks/ itself has not made it out of date: for a file that holds
    answers, the version committed in git is compared instead (and the learner's file is left alone)."""
    release(tmp_path, quiet=True)
    for src in solution_notebooks():
        committed = NOTEBOOKS / src.name
        assert committed.exists(), f"{committed} is missing: run `course release`"
        generated = tmp_path / src.name
        text = committed.read_text()
        if learner_answers(committed, nbformat.read(generated, as_version=4)):
            shown = subprocess.run(["git", "-C", str(NOTEBOOKS), "show", f"HEAD:./{src.name}"],
                                   capture_output=True, text=True)
            text = shown.stdout if shown.returncode == 0 else text
        assert text == generated.read_text(), (
            f"{committed.name} is out of date with solutions/: run `course release`")
    assert sorted(p.name for p in NOTEBOOKS.glob("*.ipynb")) == sorted(p.name for p in solution_notebooks())


def test_release_is_deterministic_and_strips_solutions(tmp_path):
    """Does releasing twice give identical files, with every solution region replaced by a stub?"""
    a, b = tmp_path / "a", tmp_path / "b"
    release(a, quiet=True, only=["01_toy_flows"])
    release(b, quiet=True, only=["01_toy_flows"])
    text = (a / "01_toy_flows.ipynb").read_text()
    assert text == (b / "01_toy_flows.ipynb").read_text()
    assert "BEGIN SOLUTION" not in text and "raise NotImplementedError()" in text
    assert "k4 = f(x + dt * k3, t + dt)" not in text

"""No reference answer within reach while grading (issue 11, item 2).

The sandbox sees the course library without the graded notebook's (and later notebooks')
implementations of the exercises: stubs that raise, with nothing of the original left. An answer
that copies the reference at run time (from its code object, its source, a module's globals,
``gc``, the library's file) gets nothing, in ``course grade`` and in ``course autograde``; a
correct answer keeps full marks; earlier notebooks' building blocks still work.
"""
from __future__ import annotations

import ast
import json
import subprocess
import sys

import pytest

from grader.engine import stripped
from support import ROOT, SOLUTIONS, assert_full, feedback_text, reference_answers, with_answers

NOTEBOOK = "01_toy_flows"
SOLUTION = SOLUTIONS / f"{NOTEBOOK}.ipynb"

# Each answer reaches the library's implementation without naming it where the source check looks.
_MOD = 'import importlib as _il\n_ode = _il.import_module("cour" + "se.ode")\n_flows = _il.import_module("cour" + "se.flows")\n'
COPIES = {
    # a new function from the library function's code object
    "integrate": _MOD + 'import types\n_f = getattr(_ode, "inte" + "grate")\n'
                        'integrate = types.FunctionType(_f.__code__, _ode.__dict__, "integrate", _f.__defaults__)\n',
    # exec of the library function's source
    "jacobian_logdet": _MOD + 'import inspect\n_ns = dict(_flows.__dict__)\n'
                              'exec(inspect.getsource(getattr(_flows, "jacobian" + "_logdet")), _ns)\n'
                              'jacobian_logdet = _ns["jacobian_logdet"]\n',
    # through a module's globals, past any wrapper
    "pushforward_log_prob": _MOD + 'import inspect, types\n'
                                   '_f = inspect.unwrap(vars(_flows)["pushforward" + "_log_prob"])\n'
                                   'pushforward_log_prob = types.FunctionType(_f.__code__, _f.__globals__, "p")\n',
    # the library's file, read and executed
    "convergence_order": _MOD + '_ns = {"__name__": "stolen"}\n'
                                'exec(compile(open(_ode.__file__).read(), "stolen", "exec"), _ns)\n'
                                'convergence_order = _ns["convergence" + "_order"]\n',
    # any function object in memory with the right name
    "divergence": _MOD + 'import gc, types\n'
                         '_found = [o for o in gc.get_objects() if isinstance(o, types.FunctionType) and '
                         'o.__name__ == "diver" + "gence" and o.__module__ == "course.flows"]\n'
                         '_f = _found[0]\n'
                         'divergence = types.FunctionType(_f.__code__, _f.__globals__, "divergence", _f.__defaults__)\n',
    # a step exercise (integrate's tests hand the learner a step that is no exercise: nothing of 01 is given)
    "rk4_step": _MOD + 'import types\n_f = getattr(_ode, "rk4" + "_step")\n'
                       'rk4_step = types.FunctionType(_f.__code__, _ode.__dict__, "rk4_step")\n',
}


# -- the stripped library itself (fast) ----------------------------------------------------------
def _defs(tree: ast.Module) -> dict[str, ast.AST]:
    return {n.name: n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef))}


@pytest.mark.parametrize("notebook", ["01_toy_flows", "03_ddpm", "06_rectified_flow", "08_latent_unet"])
def test_stubs_keep_nothing_of_the_reference(notebook, tmp_path):
    """Every exercise of the graded notebook is a stub that raises a clear error, with neither its
    body nor its docstring left in the copy; earlier notebooks' exercises are untouched."""
    out = stripped.stripped_library(notebook, cache=tmp_path)
    stubbed = stripped.stubbed_names(notebook)
    from grader.engine import registry

    given = stripped.given(notebook)
    graded = {tuple(t.split(":")) for e, t in registry.spec_for(notebook).library.items() if e not in given}
    assert graded <= set(stubbed)
    for module, qualname in graded:
        rel = module.split(".")[1:]
        real_src = (stripped.library_dir().joinpath(*rel).with_suffix(".py")).read_text()
        copy_src = (out / "course").joinpath(*rel).with_suffix(".py").read_text()
        real, copy = _defs(ast.parse(real_src))[qualname], _defs(ast.parse(copy_src))[qualname]
        doc = ast.get_docstring(real)
        assert doc is None or doc.splitlines()[0] not in copy_src, (module, qualname)
        body = "\n".join(ast.unparse(s) for s in real.body if not isinstance(s, ast.Expr))
        assert body not in copy_src, (module, qualname)
        assert ast.unparse(copy).count("\n") <= 2 + 3 * ast.unparse(real).count("def "), (module, qualname)
        assert f"{module}.{qualname} is the reference answer of {notebook}: not available while grading {notebook}" \
            in copy_src
    for spec in registry.notebooks():  # earlier notebooks' building blocks stay
        if spec.id < notebook:
            for target in spec.library.values():
                assert tuple(target.split(":")) not in stubbed, target


def test_stub_raises_and_the_copy_is_cached(tmp_path):
    out = stripped.stripped_library("03_ddpm", cache=tmp_path)
    assert stripped.stripped_library("03_ddpm", cache=tmp_path) == out  # built once per content
    code = ("import inspect, course.ddpm as d\n"
            "try:\n    d.q_sample(1, 2, 3, 4)\nexcept RuntimeError as e:\n    print(e)\n"
            "print('ab.sqrt()' in inspect.getsource(d))\n"
            "import course.ode as o, torch\nprint(o.euler_step(lambda x, t: x, torch.ones(2), 0.0, 0.5).tolist())\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True,
                          env={"PYTHONPATH": f"{out}:{ROOT}", "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "course.ddpm.q_sample is the reference answer of 03_ddpm: not available while grading 03_ddpm"
    assert lines[1] == "False"  # no trace of the reference's arithmetic
    assert lines[2] == [1.5, 1.5] or lines[2] == "[1.5, 1.5]"  # notebook 01's euler_step still works


def test_no_later_exercise_stays_for_earlier_notebooks():
    """course.nets.TimeMLP (02 on) has its own time features (random Fourier features), not 08's
    timestep_embedding: the exercise is stubbed while 02 is graded as while 08 is."""
    assert ("course.embedding", "timestep_embedding") in stripped.stubbed_names("02_neural_odes")
    assert ("course.embedding", "timestep_embedding") in stripped.stubbed_names("08_latent_unet")
    assert ("course.unet", "UNet") in stripped.stubbed_names("02_neural_odes")  # nothing needs it


def test_time_mlp_runs_in_the_sandbox_library_while_08_is_graded(tmp_path):
    """The given TimeMLP (notebooks 02-07's network, and the graders' frozen_time_mlp) needs no exercise
    of 08: it runs in the library the sandbox sees while 08 is graded, where timestep_embedding is a stub."""
    out = stripped.stripped_library("08_latent_unet", cache=tmp_path)
    code = ("import torch, course.nets as n, course.embedding as e\n"
            "print(n.TimeMLP()(torch.zeros(3, 2), torch.zeros(3)).shape)\n"
            "print(n.frozen_time_mlp(0, n_classes=3)(torch.zeros(2, 2), torch.ones(2), torch.tensor([0, 3])).shape)\n"
            "try:\n    e.timestep_embedding(torch.zeros(3), 4)\nexcept RuntimeError as exc:\n    print('STUB', exc)\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True,
                          env={"PYTHONPATH": f"{out}:{ROOT}", "PATH": "/usr/bin:/bin", "COURSE_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.splitlines()
    assert lines[:2] == ["torch.Size([3, 2])", "torch.Size([2, 2])"]
    assert lines[2].startswith("STUB course.embedding.timestep_embedding is the reference answer of 08_latent_unet")


# -- grading (slow: the sandbox) ------------------------------------------------------------------
def _check_copies(report: dict) -> None:
    for name in COPIES:
        assert report["exercises"][name]["score"] == 0, (name, feedback_text(report, name))
    for name in report["exercises"]:
        if name not in COPIES:
            assert_full(report, name)


def test_copying_the_reference_at_run_time_scores_zero_in_course_grade(tmp_path):
    notebook = with_answers(SOLUTION, COPIES, tmp_path)
    done = subprocess.run([sys.executable, "-m", "grader.cli", "grade", str(notebook), "--seed", "3",
                           "--json", str(tmp_path / "report.json")], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode in (0, 1), done.stderr
    report = json.loads((tmp_path / "report.json").read_text())
    _check_copies(report)
    assert "reference answer of 01_toy_flows: not available while grading" in feedback_text(report, "integrate")
    assert "not available while grading" in feedback_text(report, "rk4_step")


def test_copying_the_reference_at_run_time_scores_zero_in_course_autograde(tmp_path):
    from grader import cli

    course_dir = tmp_path / "course"
    assert cli.main(["init-class", str(course_dir), "--only", NOTEBOOK]) == 0
    for student, answers in (("copier", COPIES), ("honest", {})):
        folder = course_dir / "submitted" / student / NOTEBOOK
        folder.mkdir(parents=True)
        path = with_answers(course_dir / "release" / NOTEBOOK / f"{NOTEBOOK}.ipynb",
                            {**reference_answers(NOTEBOOK), **answers}, folder)
        assert path.name == f"{NOTEBOOK}.ipynb"
    assert cli.main(["autograde", str(course_dir), "--workers", "1", "--seed", "5", "--budget", "200"]) == 0
    report = lambda s: json.loads((course_dir / "autograded" / s / NOTEBOOK / "grader-report.json").read_text())  # noqa: E731
    _check_copies(report("copier"))
    assert_full(report("honest"))


def test_the_copy_the_sandbox_sees_is_stripped_even_by_path():
    """Inside the sandbox the library's own files are the stripped copy (where namespaces exist)."""
    from grader.engine.sandbox import Sandbox

    sb = Sandbox("grader.public.nb01_toy_flows")
    try:
        if sb.isolation != "namespaces+uid":
            pytest.skip("no namespaces here: the stripped copy is only first on sys.path")
        path = stripped.library_dir() / "ode.py"
        reply = sb.request({"op": "run_cell", "id": "x", "source":
                            f"_text = open({str(path)!r}).read()\n"
                            "assert 'not available while grading 01_toy_flows' in _text\n"}, 30)
        assert reply.get("ok"), reply
    finally:
        sb.close()

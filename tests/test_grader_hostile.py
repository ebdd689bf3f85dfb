"""Hostile and broken submissions: the grader always finishes, scores only the guilty exercise,
leaves the project's files unchanged and no process behind."""
from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

import pytest

from grader.engine.sandbox import Limits
from support import ROOT, SOLUTIONS, assert_full, feedback_text, grade_with

SOLUTION = SOLUTIONS / "01_toy_flows.ipynb"
LIMITS = Limits(call_timeout=6, cell_timeout=10, memory_mb=2048)
MARKER = "4242.5"  # a sleep argument no other process uses


PROTECTED = [ROOT / "grader" / "engine", ROOT / "grader" / "public" / "nb01_toy_flows.py",
             ROOT / "grader" / "tests" / "test_01_toy_flows.py", ROOT / "course" / "ode.py",
             ROOT / "course" / "flows.py", ROOT / "course" / "runtime.py", SOLUTIONS / "01_toy_flows.ipynb"]


def tree_digest() -> str:
    """A hash of the files the hostile notebook attacks (the engine, notebook 01's library and tests)."""
    h = hashlib.sha256()
    for top in PROTECTED:
        for path in sorted([top] if top.is_file() else top.rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts:
                h.update(str(path).encode())
                h.update(path.read_bytes())
    return h.hexdigest()


def leftover_processes() -> str:
    out = subprocess.run(["ps", "-eo", "pid,args"], capture_output=True, text=True).stdout
    return "\n".join(line for line in out.splitlines() if f"sleep {MARKER}" in line)


HOSTILE_A = {
    # patches every allclose to say yes, then answers wrong
    "euler_step": """import torch, numpy
torch.allclose = lambda *a, **k: True
torch.Tensor.allclose = lambda *a, **k: True
numpy.allclose = lambda *a, **k: True
torch.testing.assert_close = lambda *a, **k: None

def euler_step(f, x, t, dt):
    return x
""",
    # an IPython AST transformer that strips every assert from later cells
    "heun_step": """import ast

class StripAsserts(ast.NodeTransformer):
    def visit_Assert(self, node):
        return None

get_ipython().ast_transformers.append(StripAsserts())

def heun_step(f, x, t, dt):
    return x * 0
""",
    # a Tensor subclass that claims to equal anything
    "rk4_step": """import torch

class Liar(torch.Tensor):
    def __eq__(self, other):
        return True
    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        if getattr(func, "__name__", "") in ("allclose", "equal", "isclose", "eq", "__eq__"):
            return True
        return super().__torch_function__(func, types, args, kwargs or {})

def rk4_step(f, x, t, dt):
    return torch.zeros_like(x).as_subclass(Liar)
""",
    # a correct answer that prints 50 MB, warns and writes to stderr: keeps full marks
    "integrate": """import sys, warnings, torch
print("x" * 50_000_000)

def integrate(f, x0, t0, t1, n_steps, step=None):
    print("integrating...", "y" * 1000)
    warnings.warn("a harmless warning")
    sys.stderr.write("some stderr output\\n")
    dt = (t1 - t0) / n_steps
    path = [x0]
    for i in range(n_steps):
        path.append(step(f, path[-1], t0 + i * dt, dt))
    return torch.stack(path)
""",
    # tries to overwrite the grader and the library, starts detached processes, answers wrong
    "divergence": f"""import os, subprocess, glob, torch
for target in glob.glob("/work/**/grader/engine/compare.py", recursive=True) + [__import__("course.ode").ode.__file__,
        __import__("grader.engine.compare").engine.compare.__file__]:
    try:
        with open(target, "w") as fh:
            fh.write("def expect_close(*a, **k): pass\\n")
    except OSError as exc:
        print("blocked:", exc)
subprocess.Popen(["sleep", "{MARKER}"], start_new_session=True)
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        os.execvp("sleep", ["sleep", "{MARKER}"])
    os._exit(0)

def divergence(f, x, t):
    subprocess.Popen(["sleep", "{MARKER}"], start_new_session=True)
    return torch.full((x.shape[0],), 7.0)
""",
    # a correct answer that does not depend on the crashing jacobian_logdet below
    "pushforward_log_prob": """import torch
from course.flows import batch_jacobian

def pushforward_log_prob(y, g_inverse, base_log_prob):
    return base_log_prob(g_inverse(y)) + torch.linalg.slogdet(batch_jacobian(g_inverse, y)).logabsdet
""",
    # kills its own process when called
    "jacobian_logdet": """import os

def jacobian_logdet(g, x):
    os._exit(3)
""",
}

HOSTILE_B = {
    "euler_step": "def euler_step(f, x, t, dt):\n    while True:\n        pass\n",
    "heun_step": "import sys\n\ndef heun_step(f, x, t, dt):\n    sys.exit('bye')\n",
    "rk4_step": "def rk4_step(f, x, t, dt):\n    return rk4_step(f, x, t, dt)\n",
    "integrate": "def integrate(f, x0, t0, t1, n_steps, step=None):\n"
                 "    hog = bytearray(20 * 2**30)  # 20 GiB\n    return hog\n",
    "convergence_order": "while True:\n    pass\n",  # hangs at the top level of its cell
    "divergence": "import os\nos._exit(1)\n",  # kills the process while its cell runs
}


@pytest.fixture(scope="module")
def digests():
    return {"before": tree_digest()}


@pytest.fixture(scope="module")
def report_a(digests):
    return grade_with(SOLUTION, HOSTILE_A, limits=LIMITS)


@pytest.fixture(scope="module")
def report_b(digests):
    return grade_with(SOLUTION, HOSTILE_B, limits=LIMITS)


@pytest.mark.parametrize("exercise", ["euler_step", "heun_step", "rk4_step", "divergence", "jacobian_logdet"])
def test_hostile_answers_score_zero(report_a, exercise):
    """Do patched allclose, AST transformers, lying tensors, tampering and os._exit all score zero?"""
    assert report_a["exercises"][exercise]["score"] == 0, feedback_text(report_a, exercise)


def test_jacobian_logdet_crash_is_reported(report_a):
    """Does a call that ends the process say so?"""
    assert "ended the process" in feedback_text(report_a, "jacobian_logdet")


def test_innocent_exercises_keep_full_marks_next_to_hostile_ones(report_a):
    """Does a correct answer that prints 50 MB, warns and writes to stderr keep full marks, and
    are the untouched exercises graded normally?"""
    for name in ("integrate", "convergence_order", "pushforward_log_prob"):
        assert_full(report_a, name)


def test_files_unchanged_and_no_process_left(report_a, report_b, digests):
    """Are the grader's and library's files unchanged, and no (detached) process left behind?"""
    assert tree_digest() == digests["before"]
    assert leftover_processes() == ""


@pytest.mark.parametrize("exercise,status,words", [
    ("euler_step", "timeout", "did not return"),
    ("heun_step", "error", "SystemExit"),
    ("rk4_step", "error", "RecursionError"),
    ("integrate", "error", "memory"),
    ("convergence_order", "error", "did not finish"),
    ("divergence", "error", "ended the process"),
])
def test_hangs_crashes_exits_recursion_and_memory_hogs_fail_alone(report_b, exercise, status, words):
    """Does each hang, exit, recursion, memory hog and crash fail only its own exercise, clearly?"""
    r = report_b["exercises"][exercise]
    assert r["score"] == 0 and r["status"] == status, (r["status"], r["feedback"])
    assert words.lower() in feedback_text(report_b, exercise).lower()


def test_others_still_graded_after_crashes(report_b):
    """After hangs and crashes, are the remaining exercises still graded in full?"""
    assert_full(report_b, "jacobian_logdet")
    assert_full(report_b, "pushforward_log_prob")


# -- the sandbox-side helpers of the public modules are bound before any learner code runs --------
SOLUTION_08 = SOLUTIONS / "08_latent_unet.ipynb"

# An empty ResBlock, and every probe of notebook 08's public module redirected to a correct block
# hidden under another name: were the probes looked up on the (learner-modifiable) module at call
# time, the empty block would be graded as the good one.
REDIRECTED_PROBES = {"ResBlock": """import torch
import torch.nn.functional as F
from torch import nn
import grader.public.nb08_latent_unet as public


class ResBlock(nn.Module):
    def __init__(self, in_ch, out_ch, emb_dim):
        super().__init__()

    def forward(self, x, emb):
        return x


class _Hidden(nn.Module):
    def __init__(self, in_ch, out_ch, emb_dim):
        super().__init__()
        self.norm1, self.norm2 = nn.GroupNorm(1, in_ch), nn.GroupNorm(1, out_ch)
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, padding=1)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, padding=1)
        self.emb = nn.Linear(emb_dim, out_ch)
        self.skip = nn.Identity() if in_ch == out_ch else nn.Conv2d(in_ch, out_ch, 1)

    def forward(self, x, emb):
        h = self.conv1(F.silu(self.norm1(x))) + self.emb(F.silu(emb))[:, :, None, None]
        return self.skip(x) + self.conv2(F.silu(self.norm2(h)))


def _redirect(original):
    def probe(ns, *args, **kwargs):
        return original({**ns, "ResBlock": _Hidden}, *args, **kwargs)
    return probe


for _name in dir(public):
    if _name.startswith("probe_"):
        setattr(public, _name, _redirect(getattr(public, _name)))
"""}

# A wrong euler_step (twice the step), and every field factory of notebook 01 replaced by one that
# returns half the field: were factories looked up on the module at call time, the two would cancel.
HALVED_FACTORIES = {"euler_step": """import grader.public.nb01_toy_flows as public


def _halve(factory):
    def make(*args, **kwargs):
        f = factory(*args, **kwargs)
        return lambda x, t: 0.5 * f(x, t)
    return make


for _name in ("rotation", "decay_field", "tanh_field", "linear_field", "linear_in_time"):
    if hasattr(public, _name):
        setattr(public, _name, _halve(getattr(public, _name)))


def euler_step(f, x, t, dt):
    return x + 2 * dt * f(x, t)
"""}


def test_replacing_the_probes_of_the_public_module_changes_nothing():
    """An empty ResBlock next to probes redirected to a good block: does it still score zero?"""
    report = grade_with(SOLUTION_08, REDIRECTED_PROBES, limits=Limits(call_timeout=60, cell_timeout=60))
    assert report["exercises"]["ResBlock"]["score"] == 0, feedback_text(report, "ResBlock")
    assert_full(report, "Attention2d")


def test_replacing_the_factories_of_the_public_module_changes_nothing():
    """A wrong euler_step next to factories that undo its mistake: does it still score zero?"""
    report = grade_with(SOLUTION, HALVED_FACTORIES, limits=LIMITS)
    assert report["exercises"]["euler_step"]["score"] == 0, feedback_text(report, "euler_step")
    assert_full(report, "heun_step")

"""Helpers for the project's tests: notebooks with replaced answers, graded in the sandbox."""
from __future__ import annotations

import copy
import functools
import json
import tempfile
from pathlib import Path

import nbformat
import pytest

from grader.engine.grade import grade_notebook as _grade_cold

from grader.paths import NOTEBOOKS, ROOT, SOLUTIONS  # noqa: F401  (re-exported for the tests)


_WARM = None


def grade_notebook(path, **kwargs) -> dict:
    """``grader.engine.grade.grade_notebook``, forked from one warm zygote per test process where the
    machine allows it (``grader.workflows.warm``: the same reports, without a cold sandbox's start-up
    per grading); ``COURSE_WARM=0`` grades cold."""
    global _WARM
    from grader.workflows.warm import WarmGrader, warm_available

    if not warm_available():
        return _grade_cold(path, **kwargs)
    if _WARM is None:
        _WARM = WarmGrader()
    return _WARM.grade(path, **kwargs)


def answer(name: str, args: str, body: str, imports: str = "import torch\nimport numpy as np\n",
           prelude: str = "") -> str:
    """The source of an answer cell: ``imports``, then ``prelude`` (helpers), then ``name(args)``
    defined with ``body`` (for wrong answers and rewrites)."""
    lines = "\n".join("    " + line for line in body.strip().splitlines())
    return f"{imports}{prelude}\ndef {name}({args}):\n{lines}\n"


def answer_builder(imports: str):
    """``answer`` with the given imports: ``fn = answer_builder("import torch\n")``, then
    ``fn(name, args, body, prelude="")``."""
    return functools.partial(answer, imports=imports)


def reference_answers(notebook: str) -> dict[str, str]:
    """The reference solution's answer cells: exercise (grade_id) -> source."""
    nb = nbformat.read(SOLUTIONS / f"{notebook}.ipynb", as_version=4)
    return {(c.metadata.get("nbgrader") or {}).get("grade_id"): c.source for c in nb.cells
            if (c.metadata.get("nbgrader") or {}).get("solution")}


def edited(reference: dict[str, str], exercise: str, *replacements: tuple[str, str]) -> str:
    """The reference answer of ``exercise`` with each (old, new) replaced (old must occur)."""
    source = reference[exercise]
    for old, new in replacements:
        assert old in source, f"{old!r} not in the reference answer of {exercise}"
        source = source.replace(old, new)
    return source


def with_answers(notebook: Path, answers: dict[str, str], out_dir: Path | None = None) -> Path:
    """A copy of ``notebook`` whose answer cells (by grade_id) hold the given sources."""
    nb = nbformat.read(notebook, as_version=4)
    nb = copy.deepcopy(nb)
    seen = set()
    for cell in nb.cells:
        gid = (cell.get("metadata", {}).get("nbgrader") or {}).get("grade_id")
        if gid in answers:
            cell.source = answers[gid]
            seen.add(gid)
    missing = set(answers) - seen
    assert not missing, f"no answer cell for {missing} in {notebook}"
    out_dir = Path(out_dir or tempfile.mkdtemp(prefix="variant-"))
    path = out_dir / notebook.name
    path.write_text(json.dumps(nb), encoding="utf-8")
    return path


def answer_namespace(notebook: str, answers: dict[str, str]) -> dict:
    """The namespace a learner's kernel holds after running the reference's setup and answer cells
    of ``notebook`` (from ``solutions/``), with ``answers`` (grade_id -> source) in place of some."""
    import os

    from grader.engine.notebook import parse, read_notebook
    from grader.engine.registry import spec_for

    path = SOLUTIONS / f"{notebook}.ipynb"
    parsed = parse(read_notebook(path), spec_for(notebook).exercises, path)
    namespace: dict = {"__name__": "__main__"}
    cwd = os.getcwd()
    os.chdir(ROOT)  # setup cells find checkpoints/ relative to the project, as in a notebook
    try:
        for cell in parsed.cells:
            exec(compile(answers.get(cell.id, cell.source), f"<cell {cell.id}>", "exec"), namespace)
    finally:
        os.chdir(cwd)
    return namespace


def grade_with(notebook: Path, answers: dict[str, str], seed: int = 1234, **kwargs) -> dict:
    """Grade a copy of ``notebook`` with ``answers`` substituted."""
    return grade_notebook(with_answers(notebook, answers), seed=seed, **kwargs)


def feedback_text(report: dict, exercise: str) -> str:
    return "\n".join(report["exercises"][exercise]["feedback"])


def assert_wrong(report: dict, exercise: str, expected_hint: str | None = None) -> None:
    """The exercise lost points, and (if given) the feedback contains ``expected_hint``."""
    r = report["exercises"][exercise]
    text = feedback_text(report, exercise)
    assert r["score"] < r["max_score"], f"{exercise}: a wrong answer kept full marks.\n{text}"
    if expected_hint is not None:
        assert expected_hint.lower() in text.lower(), (
            f"{exercise}: feedback lacks {expected_hint!r}:\n{text}")


def assert_full(report: dict, exercise: str | None = None) -> None:
    names = [exercise] if exercise else list(report["exercises"])
    for name in names:
        r = report["exercises"][name]
        assert r["score"] == r["max_score"] and r["status"] == "passed", (
            f"{name}: expected full marks, got {r['score']}/{r['max_score']} ({r['status']}):\n"
            + "\n".join(r["feedback"]))


class NotebookContract:
    """The tests every notebook must pass. Subclass it in ``tests/test_nbNN_name.py``::

        class TestContract(NotebookContract):
            notebook = "01_toy_flows"
            WRONG = {...}      # exercise -> [(wrong source, text its feedback must contain), ...] (3+)
            REWRITES = {...}   # exercise -> a correct source written differently from the reference
            LIBRARY_USE = {...}  # exercise -> a source that calls the library's own implementation

    Wrong answer #i of every exercise goes into variant notebook i, so each variant is graded once.
    """

    notebook: str
    WRONG: dict[str, list[tuple[str, str]]] = {}
    REWRITES: dict[str, str] = {}
    LIBRARY_USE: dict[str, str] = {}
    seed = 7

    @property
    def solution(self) -> Path:
        return SOLUTIONS / f"{self.notebook}.ipynb"

    @pytest.fixture(scope="class")
    @classmethod
    def wrong_reports(cls):
        solution = SOLUTIONS / f"{cls.notebook}.ipynb"
        n = max(len(v) for v in cls.WRONG.values())
        return [grade_with(solution, {name: variants[i][0] for name, variants in cls.WRONG.items()
                                      if i < len(variants)}) for i in range(n)]

    def test_reference_scores_full_marks(self):
        """Does the hidden reference solution score full marks, exercise by exercise?"""
        from grader.engine.registry import spec_for

        report = grade_notebook(self.solution, seed=self.seed)
        assert_full(report)
        assert report["sandbox"] in {"namespaces+uid", "uid+limits", "limits"}, report["sandbox"]
        assert set(report["exercises"]) == set(spec_for(self.notebook).exercises)

    def test_released_stub_scores_zero(self):
        """Does the released student notebook score zero, with a 'not written yet' message?"""
        report = grade_notebook(NOTEBOOKS / f"{self.notebook}.ipynb", seed=self.seed)
        assert report["score"] == 0
        for name, r in report["exercises"].items():
            assert r["score"] == 0, name
            assert "not written yet" in "\n".join(r["feedback"]), name

    def test_every_exercise_has_three_wrong_answers_and_a_rewrite(self):
        """Does every exercise come with at least three wrong answers and a correct rewrite?"""
        from grader.engine.registry import spec_for

        for name in spec_for(self.notebook).exercises:
            assert len(self.WRONG.get(name, [])) >= 3, f"{name}: fewer than three wrong answers"
            assert name in self.REWRITES, f"{name}: no correct rewrite"

    def test_wrong_answers_lose_points_with_a_hint(self, wrong_reports):
        """Does each realistic mistake lose points, and does the feedback name it?"""
        failures = []
        for name, variants in self.WRONG.items():
            for i, (_, hint) in enumerate(variants):
                try:
                    assert_wrong(wrong_reports[i], name, hint)
                except AssertionError as exc:
                    failures.append(f"wrong answer #{i} of {name}: {exc}")
        assert not failures, "\n\n".join(failures)

    def test_every_wrong_answer_fails_a_public_check(self):
        """Issue 13: is each realistic mistake caught by ``check()`` in the notebook, not only by the
        hidden tests? (Run in this process, as in the learner's kernel: the setup and answer cells of
        the reference with one answer replaced by the wrong one.)"""
        from grader.engine.check import CheckFailed, check

        misses = []
        for name, variants in self.WRONG.items():
            for i, (source, hint) in enumerate(variants):
                namespace = answer_namespace(self.notebook, {name: source})
                try:
                    check(name, namespace, quiet=True)
                except CheckFailed:
                    continue
                misses.append(f"wrong answer #{i} of {name} (its hidden-test hint: {hint!r})")
        assert not misses, "passed every public check:\n" + "\n".join(misses)

    def test_correct_rewrites_keep_full_marks(self):
        """Do correct answers written differently from the reference keep full marks?"""
        report = grade_with(self.solution, self.REWRITES, seed=self.seed + 4)
        for name in self.REWRITES:
            assert_full(report, name)

    def test_calling_the_library_scores_zero(self):
        """Is an answer that calls the course library's own implementation given zero, with why?"""
        if not self.LIBRARY_USE:
            pytest.skip("no library-use case for this notebook")
        report = grade_with(self.solution, self.LIBRARY_USE, seed=self.seed)
        for name in self.LIBRARY_USE:
            assert report["exercises"][name]["score"] == 0, name
            assert "library" in feedback_text(report, name), name

    def test_solution_runs_in_fast_mode(self):
        """Does the reference notebook run top to bottom in fast mode?"""
        from grader.workflows.execute import execute_notebook

        execute_notebook(self.solution, fast=True)


def make_venv(where: Path, interpreter: str | None = None) -> Path:
    """A fresh venv (from ``interpreter``, default this one) that sees this environment's packages (torch,
    nbgrader, ...) but not the course: its editable install is not activated. Returns its python."""
    import subprocess
    import sys
    import sysconfig

    subprocess.run([interpreter or sys.executable, "-m", "venv", "--without-pip", "--system-site-packages",
                    str(where)], check=True, timeout=300)
    python = where / "bin" / "python"
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    (Path(site) / "course_test_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return python


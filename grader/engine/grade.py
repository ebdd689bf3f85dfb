"""Grade one notebook: parse it, run its answers in the sandbox, run the tests with pytest,
and build the report. The grader always finishes and reports; only a grader that cannot run at
all (a missing file, a file that is not a notebook, an unknown notebook) raises GraderError.
"""
from __future__ import annotations

import contextlib
import io
import os
import secrets
from pathlib import Path

import pytest

from grader.engine import notebook as nbmod
from grader.engine import registry
from grader.engine.plugin import GradingPlugin
from grader.engine.report import build_report, exercise_result, note_dependencies
from grader.engine.sandbox import Limits, Policy
from grader.engine.submission import SandboxSubmission
from grader.paths import PYTEST_INI, ROOT



class GraderError(Exception):
    """The grader itself could not run (not the learner's fault)."""


def grade_notebook(path: str | Path, exercise: str | None = None, seed: int | None = None,
                   notebook_id: str | None = None, limits: Limits | None = None,
                   policy: Policy | None = None, budget_s: float = 300.0) -> dict:
    """Grade ``path``; return the report dict (see report.build_report)."""
    try:
        nb = nbmod.read_notebook(path)
    except nbmod.NotANotebook as exc:
        raise GraderError(str(exc)) from None
    if notebook_id is None:  # a file named as one notebook whose metadata says another: ask which
        conflict = nbmod.id_conflict(nb, path, {s.id for s in registry.notebooks()})
        if conflict:
            raise GraderError(conflict)
    nid = notebook_id or nbmod.notebook_id(nb, path)
    if nid is None:
        raise GraderError(f"cannot tell which course notebook {path} is: name it like "
                          "'01_toy_flows.ipynb' or pass --notebook-id")
    try:
        spec = registry.spec_for(nid)
        exercises = spec.exercises
    except (KeyError, ImportError) as exc:
        raise GraderError(str(exc)) from None
    if exercise is not None and exercise not in exercises:
        raise GraderError(f"notebook {nid} has no exercise {exercise!r} (it has: {', '.join(exercises)})")
    parsed = nbmod.parse(nb, exercises, path)  # the notebook is read once, above
    wanted = [exercise] if exercise else list(exercises)

    preset: dict[str, dict] = {}  # exercises decided before running anything
    for name in wanted:
        source = parsed.solution_sources.get(name)
        if source is None:
            preset[name] = {"status": "error", "feedback": [
                f"The answer cell for {name} is missing (no cell with nbgrader grade_id {name!r}). "
                "Was it deleted? Copy it back from a fresh copy of the notebook."]}
            continue
        offending = nbmod.library_use(source, name)
        if offending:
            preset[name] = {"status": "failed", "feedback": [
                f"Your answer uses the course library's own {name} (`{offending}`) instead of "
                "computing it: this scores zero. Write the computation yourself."]}

    seed = secrets.randbits(31) if seed is None else seed
    to_run = [n for n in wanted if n not in preset]
    records = []
    isolation = "not started"
    start_s = 0.0
    if to_run:
        submission = SandboxSubmission(parsed.cells, spec.public_module, spec.library, limits=limits,
                                       policy=policy, budget_s=budget_s)
        try:
            plugin = GradingPlugin(submission, seed, exercises, only=exercise, skip=set(preset))
            records = _run_pytest(spec, plugin)
            isolation = submission.isolation
        finally:
            start_s = submission.start_seconds
            submission.close()
    results = {}
    for name in wanted:
        recs = [r for r in records if r.exercise == name]
        results[name] = exercise_result(exercises[name], recs, preset.get(name))
    if exercise is None:
        note_dependencies(results, parsed.solution_sources, list(exercises))
    report = build_report(nid, results, sandbox=isolation)
    report["sandbox_start_seconds"] = round(start_s, 2)  # starting (and restarting) the learner's worker
    return report


def _run_pytest(spec: registry.NotebookSpec, plugin: GradingPlugin) -> list:
    files = [str(Path(spec.manifest().__file__))]
    if spec.hidden_path.is_file():
        files.append(str(spec.hidden_path))
    args = files + ["-c", str(PYTEST_INI), "--rootdir", str(ROOT), "-q",
                    "-p", "no:cacheprovider", "-p", "no:randomly", "-p", "no:xdist",
                    "-W", "ignore::DeprecationWarning", "--capture=sys", "--assert=plain"]
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        code = pytest.main(args, plugins=[plugin])
    if plugin.collection_errors or code in (pytest.ExitCode.INTERNAL_ERROR, pytest.ExitCode.USAGE_ERROR):
        raise GraderError("the grader's tests could not be collected:\n" + "\n".join(plugin.collection_errors)
                          + ("\n" + out.getvalue()[-3000:] if os.environ.get("GRADER_DEBUG") else ""))
    return list(plugin.records.values())

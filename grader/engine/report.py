"""Scores and their presentations: the terminal table, the JSON report, Gradescope's results.json."""
from __future__ import annotations

import json
import re
from pathlib import Path

from grader.engine.plugin import TestRecord

STATUS_ORDER = ("timeout", "error", "failed", "passed")


def exercise_result(points: float, records: list[TestRecord], preset: dict | None = None) -> dict:
    """Score = points x (weight of passed tests / total weight); status = the worst test's."""
    if preset is not None:
        return {"score": 0.0, "max_score": float(points), **preset}
    if not records:
        return {"score": 0.0, "max_score": float(points), "status": "error",
                "feedback": ["No test could run for this exercise."]}
    total = sum(r.weight for r in records)
    passed = sum(r.weight for r in records if r.status == "passed")
    status = next((s for s in STATUS_ORDER if any(r.status == s for r in records)), "passed")
    feedback: list[str] = []
    for r in records:
        for line in r.feedback:
            if line not in feedback:
                feedback.append(line)
    n_pass = sum(r.status == "passed" for r in records)
    summary = f"{n_pass} of {len(records)} tests passed."
    return {"score": round(points * passed / total, 4) if total else 0.0, "max_score": float(points),
            "status": status, "feedback": [summary] + feedback}


def note_dependencies(results: dict[str, dict], sources: dict[str, str], exercises) -> None:
    """Where an answer that lost points calls other answers that lost points too, say so first in its
    feedback, naming them (its own tests may fail only because of them)."""
    from grader.engine.answer_names import dependency_line, exercises_used

    def lost(name: str) -> bool:
        r = results.get(name)
        return r is not None and r["score"] < r["max_score"]

    notes = {}
    for name, r in results.items():
        if lost(name) and name in sources:
            wrong = [d for d in exercises_used(sources[name], name, exercises) if lost(d)]
            if wrong:
                notes[name] = dependency_line(name, wrong, "loses points" if len(wrong) == 1 else "lose points")
    for name, line in notes.items():
        results[name]["feedback"] = [line] + list(results[name]["feedback"])


def build_report(notebook: str, exercise_results: dict[str, dict], sandbox: str | None = None) -> dict:
    """The report: total and per-exercise scores; ``sandbox`` is the isolation the learner's code
    ran under ("namespaces+uid", "uid+limits", "limits", or "not started" when no
    exercise needed to run), so an instructor can see what the scores were protected by."""
    report = {
        "notebook": notebook,
        "score": round(sum(r["score"] for r in exercise_results.values()), 4),
        "max_score": float(sum(r["max_score"] for r in exercise_results.values())),
        "exercises": exercise_results,
    }
    if sandbox is not None:
        report["sandbox"] = sandbox
    return report


def points(x: float) -> str:
    """A score for people: at most two decimals (11.5001 -> 11.5); the JSON keeps the exact value."""
    return f"{round(float(x), 2):g}"


SUMMARY_LINE = re.compile(r"^\d+ of \d+ tests passed\.$")


def format_table(report: dict, verbose: bool = True) -> str:
    rows = [f"Notebook {report['notebook']}: {points(report['score'])} / {points(report['max_score'])}", ""]
    width = max([len(n) for n in report["exercises"]] + [8])
    rows.append(f"  {'exercise'.ljust(width)}  {'score':>11}  status")
    for name, r in report["exercises"].items():
        score = f"{points(r['score'])}/{points(r['max_score'])}"
        rows.append(f"  {name.ljust(width)}  {score:>11}  {r['status']}")
        if verbose and r["status"] != "passed":
            lines = list(r["feedback"])
            if lines and SUMMARY_LINE.match(lines[0]):  # "2 of 3 tests passed.": the score says it already
                lines = lines[1:]
            for line in lines[:6]:
                for i, sub in enumerate(line.splitlines()[:8]):
                    rows.append(f"  {'':{width}}    {'- ' if i == 0 else '  '}{sub}")
    total = f"{points(report['score'])}/{points(report['max_score'])}"
    rows.append(f"  {'total'.ljust(width)}  {total:>11}")
    return "\n".join(rows)


def to_gradescope(report: dict) -> dict:
    """Gradescope's autograder results.json: one test entry per exercise."""
    return {
        "score": report["score"],
        "max_score": report["max_score"],
        "output": f"Notebook {report['notebook']}: {report['score']:g} / {report['max_score']:g}",
        "tests": [
            {"name": name, "score": r["score"], "max_score": r["max_score"],
             "status": "passed" if r["status"] == "passed" else "failed",
             "output": "\n".join(r["feedback"])}
            for name, r in report["exercises"].items()
        ],
    }


def write_json(data: dict, path: str | Path) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")

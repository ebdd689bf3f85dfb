"""Feedback for students, rendered from a grading report (HTML where nbgrader puts it, and markdown).

Only the learner-facing messages are shown: never a line that could show the hidden tests.
"""
from __future__ import annotations

import html
from pathlib import Path

from grader.workflows.atomic import atomic_write


HIDDEN_MARKERS = ("grader/tests", "grader\\tests", "/tests/test_", "def test_")


def public_lines(feedback: list[str]) -> list[str]:
    """The report's feedback with anything that could show hidden test code removed.

    The grader's messages are written for learners (test labels, hints, the learner's own
    traceback); a line that names the hidden tests' files or shows a test's source is dropped.
    """
    out = []
    for line in feedback:
        if any(m in line for m in HIDDEN_MARKERS):
            kept = [sub for sub in line.splitlines() if not any(m in sub for m in HIDDEN_MARKERS)]
            line = "\n".join(kept + ["(a detail from the grader's hidden tests is not shown)"])
        out.append(line)
    return out


def final_lines(report: dict, gradebook_row: dict | None) -> list[str]:
    """The gradebook's final score beside the autograder's, when they differ (late penalty, manual
    grades), in plain sentences."""
    if not gradebook_row or gradebook_row.get("final_score") is None:
        return []
    lines = []
    if gradebook_row.get("late_submission_penalty"):
        lines.append(f"Late by {gradebook_row['total_seconds_late']:.0f} s: penalty "
                     f"{gradebook_row['late_submission_penalty']:g} point(s).")
    if gradebook_row.get("manual_grades"):
        lines.append(f"{gradebook_row['manual_grades']} cell(s) graded by hand: the gradebook counts "
                     f"{gradebook_row['score']:g} / {gradebook_row['max_score']:g} before any penalty.")
    if lines or abs(gradebook_row["final_score"] - report["score"]) > 1e-9:
        lines.append(f"Final score (gradebook): {gradebook_row['final_score']:g} / {report['max_score']:g} "
                     f"(autograder: {report['score']:g}).")
    return lines


def feedback_markdown(student: str, assignment: str, report: dict, gradebook_row: dict | None = None) -> str:
    rows = [f"# Feedback: {assignment} ({student})", "",
            f"**Score: {report['score']:g} / {report['max_score']:g}**"]
    if report.get("error"):
        rows += ["", f"The grader could not grade this submission: {report['error']}"]
    for line in final_lines(report, gradebook_row):
        rows += ["", f"**{line}**" if line.startswith("Final") else line]
    rows += ["", "| exercise | score | status |", "| --- | --- | --- |"]
    for name, r in report["exercises"].items():
        rows.append(f"| `{name}` | {r['score']:g} / {r['max_score']:g} | {r['status']} |")
    for name, r in report["exercises"].items():
        rows += ["", f"## `{name}`: {r['score']:g} / {r['max_score']:g} ({r['status']})", ""]
        for line in public_lines(r.get("feedback", [])):
            first, *rest = line.splitlines() or [""]
            rows.append(f"- {first}")
            if rest:
                rows += ["", "  ```", *("  " + s for s in rest), "  ```"]
    return "\n".join(rows) + "\n"


def feedback_html(student: str, assignment: str, report: dict, gradebook_row: dict | None = None) -> str:
    e = html.escape
    parts = ["<!DOCTYPE html>", "<html><head><meta charset='utf-8'>",
             f"<title>Feedback: {e(assignment)} ({e(student)})</title>",
             "<style>body{font-family:sans-serif;max-width:60em;margin:2em auto}"
             "td,th{border:1px solid #ccc;padding:.3em .6em}table{border-collapse:collapse}"
             ".passed{color:#176f2c}.failed,.error,.timeout{color:#a4161a}pre{background:#f6f6f6;padding:.5em}"
             "</style></head><body>",
             f"<h1>Feedback: {e(assignment)} ({e(student)})</h1>",
             f"<p><b>Score: {report['score']:g} / {report['max_score']:g}</b></p>"]
    if report.get("error"):
        parts.append(f"<p>The grader could not grade this submission: {e(report['error'])}</p>")
    for line in final_lines(report, gradebook_row):
        parts.append(f"<p><b>{e(line)}</b></p>" if line.startswith("Final") else f"<p>{e(line)}</p>")
    parts.append("<table><tr><th>exercise</th><th>score</th><th>status</th></tr>")
    for name, r in report["exercises"].items():
        parts.append(f"<tr><td><code>{e(name)}</code></td><td>{r['score']:g} / {r['max_score']:g}</td>"
                     f"<td class='{e(r['status'])}'>{e(r['status'])}</td></tr>")
    parts.append("</table>")
    for name, r in report["exercises"].items():
        parts.append(f"<h2><code>{e(name)}</code>: {r['score']:g} / {r['max_score']:g} "
                     f"<span class='{e(r['status'])}'>({e(r['status'])})</span></h2><ul>")
        for line in public_lines(r.get("feedback", [])):
            first, *rest = line.splitlines() or [""]
            parts.append(f"<li>{e(first)}" + (f"<pre>{e(chr(10).join(rest))}</pre>" if rest else "") + "</li>")
        parts.append("</ul>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def write_feedback(course_dir: Path, student: str, assignment: str, report: dict,
                   gradebook_row: dict | None = None) -> Path:
    """feedback/<student>/<assignment>/<assignment>.html (nbgrader's place) and feedback.md."""
    folder = Path(course_dir) / "feedback" / student / assignment
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write(folder / f"{assignment}.html", feedback_html(student, assignment, report, gradebook_row))
    atomic_write(folder / "feedback.md", feedback_markdown(student, assignment, report, gradebook_row))
    return folder

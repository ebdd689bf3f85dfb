"""Near-copies among a class's answers (``course similarity DIR``): flags for an instructor to read.

After ``course autograde``, every graded notebook is in ``autograded/<student>/<A>/``. For each
exercise, each student's answer cell is reduced to a normalised token sequence
(:func:`grader.workflows.strip.normalised_tokens`: the AST in source order, docstrings, comments,
annotations and formatting gone, the names the answer binds -- its function, arguments, locals --
numbered in order of appearance, so renaming them changes nothing) and compared with the reference
answer (the course directory's ``source/<A>/<A>.ipynb``, else ``solutions/``) and with every other
student's answer (the given signature of the exercise's function is left out: every answer shares
it). The similarity of two answers is the Jaccard index of their sets of token 4-grams (1.0 for a
renamed, reformatted copy); a pair at or above the threshold (:data:`THRESHOLD`, 0.7) is flagged.
On the course's held-in correct rewrites of every exercise of notebooks 01-08 against the
reference the largest value is 0.54. Answers shorter than :data:`MIN_TOKENS` tokens are not
compared: two independent one-line answers are often identical. Unanswered cells (the stub) are
skipped.

The report is ``similarity/<A>.html`` (the pairs side by side) and ``similarity/<A>.csv``
(formula-escaped). It only flags: no score, report or gradebook entry is changed.
"""
from __future__ import annotations

import html
import io
from dataclasses import dataclass, field
from pathlib import Path

from grader.workflows.strip import normalised_tokens, notebook_code

THRESHOLD = 0.7
MIN_TOKENS = 40
NGRAM = 4
REFERENCE = "(reference)"


def answer_tokens(source: str) -> list[str] | None:
    """The normalised tokens of an answer cell, or None if it is empty, a stub, or not Python."""
    import ast

    from grader.workflows.strip import _python

    try:
        tree = ast.parse(_python(source))
    except SyntaxError:
        return None
    body = [n for n in tree.body if not (isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant))]
    if all(isinstance(n, ast.Raise) or (isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
                                        and _is_stub_body(n)) for n in body):
        return None  # empty, or the released stub
    module = ast.Module(body=body, type_ignores=[])
    return normalised_tokens(module, signatures=False)


def _is_stub_body(node) -> bool:
    import ast

    body = [s for s in node.body if not (isinstance(s, ast.Expr) and isinstance(s.value, ast.Constant))]
    if isinstance(node, ast.ClassDef):
        return all(isinstance(s, (ast.FunctionDef, ast.AsyncFunctionDef)) and _is_stub_body(s) for s in body)
    return len(body) == 1 and isinstance(body[0], ast.Raise)


def similarity(a: list[str], b: list[str], n: int = NGRAM) -> float:
    """The Jaccard index of the sets of ``n``-grams of two token sequences, in [0, 1]."""
    grams_a = {tuple(a[i:i + n]) for i in range(max(1, len(a) - n + 1))}
    grams_b = {tuple(b[i:i + n]) for i in range(max(1, len(b) - n + 1))}
    return len(grams_a & grams_b) / max(1, len(grams_a | grams_b))


@dataclass
class Pair:
    exercise: str
    a: str  # a student, or REFERENCE
    b: str
    score: float
    a_source: str
    b_source: str

    @property
    def kind(self) -> str:
        return "reference" if REFERENCE in (self.a, self.b) else "peer"


def flag_pairs(exercise: str, answers: dict[str, str], reference: str | None = None,
               threshold: float = THRESHOLD, min_tokens: int = MIN_TOKENS) -> list[Pair]:
    """Pairs of ``answers`` (who -> cell source), and answers with the ``reference``, at or above
    ``threshold``; most similar first."""
    pool = dict(answers)
    if reference is not None:
        pool = {REFERENCE: reference, **pool}
    tokens = {who: answer_tokens(src) for who, src in pool.items()}
    tokens = {who: t for who, t in tokens.items() if t is not None and len(t) >= min_tokens}
    names = list(tokens)
    pairs = []
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            score = similarity(tokens[a], tokens[b])
            if score >= threshold:
                pairs.append(Pair(exercise, a, b, round(score, 3), pool[a], pool[b]))
    pairs.sort(key=lambda p: (-p.score, p.a, p.b))
    return pairs


# ------------------------------------------------------------------------------------------------
# A course directory
# ------------------------------------------------------------------------------------------------
def _answers_in(notebook: Path, exercises) -> dict[str, str]:
    return {gid: src for gid, src in notebook_code(notebook) if gid in exercises}


@dataclass
class Result:
    pairs: dict[str, list[Pair]] = field(default_factory=dict)  # assignment -> flagged pairs
    files: list[Path] = field(default_factory=list)
    answers: dict[str, int] = field(default_factory=dict)  # assignment -> students compared

    def summary(self) -> str:
        lines = []
        for assignment, pairs in self.pairs.items():
            ref = sum(p.kind == "reference" for p in pairs)
            lines.append(f"{assignment}: {self.answers.get(assignment, 0)} submission(s); {len(pairs)} pair(s) "
                         f"flagged ({ref} with the reference, {len(pairs) - ref} between students)")
            for p in pairs[:20]:
                lines.append(f"  {p.exercise:<24} {p.score:5.2f}  {p.a}  ~  {p.b}")
            if len(pairs) > 20:
                lines.append(f"  ... {len(pairs) - 20} more in the report")
        lines += [f"report: {f}" for f in self.files]
        lines.append("These are flags for a person to read: no score was changed.")
        return "\n".join(lines)


def similarity_report(course_dir: Path, assignment: str | None = None, threshold: float = THRESHOLD,
                      out_dir: Path | None = None, min_tokens: int = MIN_TOKENS) -> Result:
    """Compare every autograded answer of ``course_dir`` (or of one assignment); write the reports."""
    from grader.engine import registry
    from grader.paths import SOLUTIONS
    from grader.workflows.atomic import atomic_write

    course_dir = Path(course_dir).resolve()
    graded = course_dir / "autograded"
    if not graded.is_dir():
        raise FileNotFoundError(f"{graded} does not exist: run `course autograde {course_dir}` first")
    if not 0.0 < threshold <= 1.0:
        raise ValueError(f"the threshold must be in (0, 1], not {threshold}")
    assignments = sorted({p.name for p in graded.glob("*/*") if p.is_dir()})
    if assignment is not None:
        wanted = [a for a in assignments if a == assignment or a.startswith(f"{assignment}_")]
        if not wanted:
            raise ValueError(f"no autograded submissions of {assignment!r} in {graded}")
        assignments = wanted
    out_dir = Path(out_dir) if out_dir is not None else course_dir / "similarity"
    result = Result()
    for a in assignments:
        try:
            exercises = list(registry.spec_for(a).exercises)
        except (KeyError, ImportError):
            continue
        answers: dict[str, dict[str, str]] = {e: {} for e in exercises}
        students = 0
        for folder in sorted(p for p in graded.glob(f"*/{a}") if p.is_dir() and not p.is_symlink()):
            notebooks = [n for n in sorted(folder.glob("*.ipynb")) if n.is_file() and not n.is_symlink()]
            if not notebooks:
                continue
            nb = folder / f"{a}.ipynb" if (folder / f"{a}.ipynb") in notebooks else notebooks[0]
            students += 1
            for ex, src in _answers_in(nb, exercises).items():
                answers[ex][folder.parent.name] = src
        ref_nb = course_dir / "source" / a / f"{a}.ipynb"
        if not ref_nb.is_file():
            ref_nb = SOLUTIONS / f"{a}.ipynb"
        reference = _answers_in(ref_nb, exercises) if ref_nb.is_file() else {}
        pairs = []
        for ex in exercises:
            pairs += flag_pairs(ex, answers[ex], reference.get(ex), threshold, min_tokens)
        result.pairs[a] = pairs
        result.answers[a] = students
        out_dir.mkdir(parents=True, exist_ok=True)
        atomic_write(out_dir / f"{a}.csv", _csv(pairs))
        atomic_write(out_dir / f"{a}.html", _html(a, pairs, students, threshold))
        result.files += [out_dir / f"{a}.html", out_dir / f"{a}.csv"]
    return result


def _csv(pairs: list[Pair]) -> str:
    from grader.workflows.hygiene import csv_writer

    buf = io.StringIO()
    writer = csv_writer(buf)
    writer.writerow(["exercise", "a", "b", "similarity", "kind"])
    for p in pairs:
        writer.writerow([p.exercise, p.a, p.b, f"{p.score:.3f}", p.kind])
    return buf.getvalue()


def _html(assignment: str, pairs: list[Pair], students: int, threshold: float) -> str:
    e = html.escape
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>Similarity: {e(assignment)}</title>",
             "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;width:100%}"
             "td,th{border:1px solid #ccc;padding:6px;vertical-align:top}pre{margin:0;white-space:pre-wrap;"
             "font-size:12px}.ref{background:#fff4e0}</style></head><body>",
             f"<h1>Similar answers: {e(assignment)}</h1>",
             f"<p>{students} submission(s) compared; pairs with a normalised-AST similarity of at least "
             f"{threshold:g} (renaming, comments, docstrings and formatting ignored). These are flags for a "
             "person to read, not verdicts: short answers to the same question are often alike. "
             "No score was changed.</p>"]
    if not pairs:
        parts.append("<p>No pair above the threshold.</p>")
    by_ex: dict[str, list[Pair]] = {}
    for p in pairs:
        by_ex.setdefault(p.exercise, []).append(p)
    for ex, group in by_ex.items():
        parts.append(f"<h2>{e(ex)}</h2><table><tr><th>similarity</th><th>answer A</th><th>answer B</th></tr>")
        for p in group:
            cls = " class='ref'" if p.kind == "reference" else ""
            parts.append(f"<tr{cls}><td>{p.score:.2f}</td><td><b>{e(p.a)}</b><pre>{e(p.a_source)}</pre></td>"
                         f"<td><b>{e(p.b)}</b><pre>{e(p.b_source)}</pre></td></tr>")
        parts.append("</table>")
    parts.append("</body></html>\n")
    return "\n".join(parts)


__all__ = ["Pair", "Result", "answer_tokens", "flag_pairs", "similarity", "similarity_report"]

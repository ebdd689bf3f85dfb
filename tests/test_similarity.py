"""The similarity report (``course similarity DIR``): near-copies flagged, independent answers not.

A copy is disguised as a copier would: every name the answer binds renamed, the docstring and
comments changed, the code reformatted (``ast.unparse``). The independent correct answers are the
held-in rewrites of every exercise of notebooks 01-08 (``REWRITES`` in ``tests/test_nbNN_*.py``).
"""
from __future__ import annotations

import ast
import csv
import importlib
import json
from pathlib import Path

import pytest

from grader import cli
from grader.workflows.similarity import _answers_in, flag_pairs, similarity_report

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted(p.stem[len("test_nb"):] for p in (ROOT / "tests").glob("test_nb0[1-8]_*.py"))


def rewrites(nid: str) -> dict[str, str]:
    return importlib.import_module(f"test_nb{nid}").REWRITES


def reference(nid: str, exercises) -> dict[str, str]:
    return _answers_in(ROOT / "solutions" / f"{nid}.ipynb", exercises)


def disguise(source: str) -> str:
    """Rename every name the code binds, drop docstrings, reformat, add a comment."""
    tree = ast.parse(source)
    bound = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}
    bound |= {n.arg for n in ast.walk(tree) if isinstance(n, ast.arg)}
    bound |= {n.name for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.ClassDef))}

    class Rename(ast.NodeTransformer):
        def visit_Name(self, node):
            if node.id in bound:
                node.id = f"my_{node.id}_var"
            return node

        def visit_arg(self, node):
            if node.arg in bound:
                node.arg = f"my_{node.arg}_var"
            return node

        def visit_FunctionDef(self, node):
            node.name = f"my_{node.name}_var" if node.name in bound else node.name
            if node.body and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant):
                node.body = node.body[1:] or [ast.Pass()]
            self.generic_visit(node)
            return node

    return "# my own work, honestly\n" + ast.unparse(Rename().visit(tree)) + "\n"


def test_a_disguised_copy_of_the_reference_is_flagged():
    for nid, exercise in [("03_ddpm", "q_posterior"), ("04_ddim", "ddim_step"),
                          ("06_rectified_flow", "straightness"), ("08_latent_unet", "ResBlock")]:
        ref = reference(nid, [exercise])[exercise]
        copy = disguise(ref)
        assert copy != ref
        pairs = flag_pairs(exercise, {"copier": copy, "honest": rewrites(nid)[exercise]}, ref)
        assert [(p.a, p.b, p.kind) for p in pairs] == [("(reference)", "copier", "reference")], (nid, pairs)
        assert pairs[0].score > 0.95


def test_a_disguised_copy_of_another_students_answer_is_flagged():
    nid, exercise = "05_score_sde", "pc_sample"
    original = rewrites(nid)[exercise]
    pairs = flag_pairs(exercise, {"alice": original, "bob": disguise(original)},
                       reference(nid, [exercise])[exercise])
    assert [(p.a, p.b, p.kind) for p in pairs] == [("alice", "bob", "peer")]


@pytest.mark.parametrize("nid", NOTEBOOKS)
def test_independent_correct_answers_are_not_flagged(nid):
    answers = rewrites(nid)
    refs = reference(nid, answers)
    for exercise, answer in answers.items():
        assert flag_pairs(exercise, {"student": answer}, refs[exercise]) == [], exercise


def test_the_released_stub_and_empty_cells_are_never_compared():
    stub = 'def q_sample(x0, t, eps, alpha_bar):\n    """doc"""\n    # YOUR CODE HERE\n    raise NotImplementedError()\n'
    assert flag_pairs("q_sample", {"a": stub, "b": stub, "c": "", "d": "# nothing"}, stub, threshold=0.01) == []


def _notebook(answers: dict[str, str]) -> dict:
    cells = [{"cell_type": "code", "metadata": {"nbgrader": {"grade_id": k, "solution": True}}, "source": v,
              "outputs": [], "execution_count": None} for k, v in answers.items()]
    return {"cells": cells, "metadata": {"course": {"notebook": "03_ddpm"}}, "nbformat": 4, "nbformat_minor": 5}


def test_the_report_of_a_course_directory_flags_only(tmp_path, capsys):
    nid = "03_ddpm"
    ref = reference(nid, rewrites(nid))
    students = {
        "honest": dict(rewrites(nid)),
        "copier": {e: disguise(src) for e, src in ref.items()},
        "=HYPERLINK(1)": {"q_posterior": disguise(rewrites(nid)["q_posterior"])},
    }
    for student, answers in students.items():
        folder = tmp_path / "autograded" / student / nid
        folder.mkdir(parents=True)
        (folder / f"{nid}.ipynb").write_text(json.dumps(_notebook(answers)), encoding="utf-8")
        (folder / "grader-report.json").write_text('{"score": 3}', encoding="utf-8")
    before = {p: p.read_bytes() for p in (tmp_path / "autograded").rglob("*") if p.is_file()}
    assert cli.main(["similarity", str(tmp_path), "--assignment", "03"]) == 0
    out = capsys.readouterr().out
    assert "no score was changed" in out
    after = {p: p.read_bytes() for p in (tmp_path / "autograded").rglob("*") if p.is_file()}
    assert before == after  # flags only
    with open(tmp_path / "similarity" / f"{nid}.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    pairs = {(r["exercise"], r["a"], r["b"]) for r in rows}
    assert ("q_posterior", "(reference)", "copier") in pairs
    assert ("q_posterior", "'=HYPERLINK(1)", "honest") in pairs  # the id formula-escaped
    assert not any("honest" in (a, b) and "(reference)" in (a, b) for _, a, b in pairs)
    page = (tmp_path / "similarity" / f"{nid}.html").read_text(encoding="utf-8")
    assert "my_x0_var" in page and "<h2>q_posterior</h2>" in page and "=HYPERLINK(1)" in page
    result = similarity_report(tmp_path, assignment=nid)
    assert result.answers[nid] == 3


def test_similarity_needs_an_autograded_directory(tmp_path, capsys):
    assert cli.main(["similarity", str(tmp_path)]) == 2
    assert "course autograde" in capsys.readouterr().err

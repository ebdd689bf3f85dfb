"""Is a learner's work ever lost? Every `course` command that writes notebooks, against answered ones."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys

import nbformat
import pytest

from grader.paths import NOTEBOOKS, ROOT
from grader.workflows.release import ReleaseRefused, answer_sources, release
from grader.workflows.start import learner_notebooks_dir, start

NB = "01_toy_flows"
ANSWER = "def euler_step(f, x, t, dt):\n    return x + dt * f(x, t)\n"


def _answered_copy(folder):
    """notebooks/01 with euler_step answered, written into ``folder``."""
    nb = nbformat.read(NOTEBOOKS / f"{NB}.ipynb", as_version=4)
    for cell in nb.cells:
        if (cell.metadata.get("nbgrader") or {}).get("grade_id") == "euler_step":
            cell.source = ANSWER
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{NB}.ipynb"
    nbformat.write(nb, path)
    return path


def _euler_answer(path) -> str:
    return answer_sources(nbformat.read(path, as_version=4))["euler_step"]


@pytest.fixture
def config_home(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.delenv("COURSE_WORKDIR", raising=False)
    return tmp_path / "config"


def test_release_refuses_to_overwrite_answers(tmp_path):
    """Does `course release` into a folder with an answered notebook keep it, name it, and say how to proceed?"""
    out = tmp_path / "nbs"
    path = _answered_copy(out)
    before = path.read_bytes()
    with pytest.raises(ReleaseRefused) as err:
        release(out, quiet=True, only=[NB])
    assert path.read_bytes() == before, "an answered notebook was overwritten"
    text = str(err.value)
    assert str(path) in text and "euler_step" in text and "course start" in text and "--force" in text


def test_release_replaces_untouched_stubs_and_force_replaces_answers(tmp_path):
    """Does a notebook that holds only stubs get regenerated, and --force replace even answers?"""
    out = tmp_path / "nbs"
    release(out, quiet=True, only=[NB])  # fresh stubs
    release(out, quiet=True, only=[NB])  # stubs over stubs: fine
    path = _answered_copy(out)
    assert _euler_answer(path) == ANSWER
    release(out, quiet=True, only=[NB], force=True)
    assert "NotImplementedError" in _euler_answer(path)


def test_release_command_exits_nonzero_and_keeps_the_file(tmp_path):
    """Does the command line report the refusal (exit 1) without a traceback?"""
    out = tmp_path / "nbs"
    path = _answered_copy(out)
    done = subprocess.run([sys.executable, "-m", "grader.cli", "release", "--out", str(out), "--only", NB],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert "holds your answers" in done.stderr and _euler_answer(path) == ANSWER


def test_start_copies_and_never_replaces(tmp_path, config_home):
    """Does `course start DIR` copy every student notebook, keep an existing one, and remember DIR?"""
    work = tmp_path / "work"
    mine = _answered_copy(work)
    before = mine.read_bytes()
    copied, kept = start(work)
    assert mine in kept and mine.read_bytes() == before
    assert {p.name for p in copied} | {p.name for p in kept} == {p.name for p in NOTEBOOKS.glob("[0-9][0-9]_*.ipynb")}
    assert learner_notebooks_dir() == work.resolve()
    again_copied, _ = start(work)
    assert again_copied == [] and mine.read_bytes() == before


def test_start_refuses_the_generated_folder(config_home):
    """Is `course start notebooks/` refused (that folder is regenerated from solutions/)?"""
    with pytest.raises(ValueError, match="generated"):
        start(NOTEBOOKS)


def test_progress_defaults_to_the_learners_folder(tmp_path, config_home):
    """After `course start DIR`, does `course progress` read DIR, not notebooks/?"""
    work = tmp_path / "work"
    start(work)
    env = {**__import__("os").environ, "XDG_CONFIG_HOME": str(config_home)}
    done = subprocess.run([sys.executable, "-m", "grader.cli", "progress", "--only", NB, "--budget", "60"],
                          capture_output=True, text=True, timeout=300, env=env, cwd=str(tmp_path))
    assert done.returncode == 0, done.stderr
    assert str(work.resolve()) in done.stdout

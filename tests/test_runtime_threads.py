"""Does every notebook choose torch's threads for the learner (one for small networks)?"""
from __future__ import annotations

import nbformat
import pytest
import torch

import course
from grader.paths import SOLUTIONS


def test_one_thread_unless_the_learner_asks(monkeypatch):
    """Does small_model_threads use one thread by default and honour COURSE_THREADS?"""
    before = torch.get_num_threads()
    try:
        monkeypatch.delenv("COURSE_THREADS", raising=False)
        assert course.small_model_threads() == 1
        monkeypatch.setenv("COURSE_THREADS", "2")
        assert course.small_model_threads() == 2
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("notebook", ["02_neural_odes", "03_ddpm", "04_ddim", "05_score_sde", "06_rectified_flow",
                                      "07_guidance", "08_latent_unet"])
def test_notebooks_with_training_choose_threads_in_their_setup(notebook):
    """Is the thread choice made in the setup cell of every notebook that trains (not only in troubleshooting)?"""
    nb = nbformat.read(SOLUTIONS / f"{notebook}.ipynb", as_version=4)
    setup = next(c for c in nb.cells if (c.metadata.get("nbgrader") or {}).get("grade_id") == "setup")
    assert "course.small_model_threads()" in setup.source

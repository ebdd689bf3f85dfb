"""Test-session settings: the environment's scripts on PATH; one torch thread per process (the suite runs two workers on two cores,
and the notebooks' kernels inherit this), and a non-interactive matplotlib backend."""
import os

from grader.paths import ensure_scripts_on_path

ensure_scripts_on_path()  # nbgrader calls `alembic` and tests call `nbgrader` by name

os.environ.setdefault("COURSE_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MPLBACKEND", "Agg")

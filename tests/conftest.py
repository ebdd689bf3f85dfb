"""Test-session settings: one torch thread per process (the suite runs two workers on two cores,
and the notebooks' kernels inherit this), and a non-interactive matplotlib backend."""
import os

os.environ.setdefault("COURSE_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MPLBACKEND", "Agg")

"""The course companion library.

Small, tested building blocks shared by the notebooks: toy data, digits, plotting, a
time-conditioned MLP, a training loop, metrics, and the reference toolkit of earlier
notebooks' exercises (ODE steps, schedules, samplers...), imported by later notebooks.
"""
from course.runtime import budget, device, is_fast, record_metric, seed_everything, small_model_threads

__all__ = ["budget", "device", "is_fast", "record_metric", "seed_everything", "small_model_threads"]
__version__ = "0.1.0"

"""The course library as the sandbox sees it (the old import path of :mod:`grader.engine.strip`).

While notebook NN is graded, the library's implementations of NN's exercises, and of every later
notebook's, are stubs that keep the name and the arguments and raise::

    RuntimeError: course.ddpm.q_sample is the reference answer of 03_ddpm: not available while grading 03_ddpm

``stripped_library(notebook_id)`` builds that copy once per content and returns the folder holding
the ``course`` package; the sandbox mounts it over the real package (or, where it cannot mount,
puts it first on the worker's ``sys.path``). The stripper itself (shared with the staged student
bundles) is :mod:`grader.engine.strip`.
"""
from grader.engine.strip import (PACKAGE, VERSION, given, hidden_specs, library_dir, plan,  # noqa: F401
                                 stripped_library, stubbed_names)

__all__ = ["PACKAGE", "VERSION", "given", "hidden_specs", "library_dir", "plan", "stripped_library", "stubbed_names"]

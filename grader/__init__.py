"""The course grader, in three parts:

- ``engine/``: the pytest-based engine that runs learner code in a sandbox, compares in its own
  process, and reports (``grade_notebook``, ``check``);
- ``public/`` and ``tests/``: each notebook's checks: its manifest and public checks, and its hidden tests;
- ``workflows/`` and ``cli.py``: release, bundle, course directory, autograde, feedback, progress, and the
  ``course`` command. ``paths.py`` says where everything lives.

It imports the ``course`` library; the library never imports it. In a notebook,
``from grader import check`` gives the instant public checks."""


def check(exercise: str, namespace: dict | None = None) -> None:
    """Run the public checks of one exercise against the calling notebook's definitions."""
    from grader.engine.check import check as _check

    _check(exercise, namespace=namespace, _depth=2)


__all__ = ["check"]

"""The course grader: a pytest-based engine that runs learner code in a sandbox, plus one test
module per notebook. In a notebook, ``from grader import check`` gives the instant public checks."""


def check(exercise: str, namespace: dict | None = None):
    """Run the public checks of one exercise against the calling notebook's definitions."""
    from grader.engine.check import check as _check

    return _check(exercise, namespace=namespace, _depth=2)


__all__ = ["check"]

"""What a grader test module imports: the ``exercise`` marker and the helpers tests use.

A test is a plain function of the fixtures ``sub`` (the submission) and ``rng`` (a
``torch.Generator`` seeded at grading time), marked with the exercise it scores::

    @exercise("euler_step")
    def test_euler_step_on_a_rotation(sub, rng):
        x = torch.randn(64, 2, generator=rng)
        got = sub.call("euler_step", Ref("rotation", omega=1.5), x, 0.3, 0.1)
        expect_close(got, reference(x), "euler_step(f, x, t, dt)")

Public tests (in ``grader/public/``) also run inside the notebook through ``check(name)``;
hidden tests (in ``grader/tests/``) run only when grading.
"""
from __future__ import annotations

import pytest
import torch

from grader.engine.codec import LearnerRef, Ref  # noqa: F401  (re-exported for test modules)
from grader.engine.compare import (Hint, Mismatch, expect, expect_choice, expect_close,  # noqa: F401
                                   expect_moments, expect_scalar, expect_tensor, matches)


def build(ref: Ref, module=None):
    """The grader's own copy of what ``ref`` builds inside the sandbox: the same factory, called here.

    A ``Ref`` made from the factory function needs nothing else; one made from a name is looked up
    on ``module`` (the notebook's public module)."""
    if ref.function is not None:
        return ref.function(*ref.args, **ref.kwargs)
    if module is None:
        raise TypeError(f"{ref!r} names its factory by string: pass the public module, or make the Ref "
                        "from the factory function itself")
    return getattr(module, ref.factory)(*ref.args, **ref.kwargs)


def generator(seed: int) -> torch.Generator:
    """A CPU ``torch.Generator`` seeded with ``seed``: the factory behind ``Ref(generator, seed)``."""
    return torch.Generator().manual_seed(int(seed))


def adam_losses(params, loss_fn, steps: int, lr: float) -> list[float]:
    """For probes (in the sandbox): the losses along ``steps`` Adam steps (Kingma & Ba 2015) on ``params``
    (an iterable of tensors, e.g. a learner's ``module.parameters()``), written out because torch.optim's
    first step imports the compiler stack, seconds a grading budget cannot spare. Raw data only: whether
    the losses fell is decided by the test, in the grader's process."""
    params = [p for p in params if p.requires_grad]
    m = [torch.zeros_like(p) for p in params]
    v = [torch.zeros_like(p) for p in params]
    beta1, beta2, eps = 0.9, 0.999, 1e-8
    losses = []
    for step in range(1, steps + 1):
        loss = loss_fn()
        losses.append(float(loss.detach()))
        if not params or not loss.requires_grad:
            continue
        grads = torch.autograd.grad(loss, params, allow_unused=True)
        with torch.no_grad():
            for p, g, m_i, v_i in zip(params, grads, m, v):
                if g is None:
                    continue
                m_i.mul_(beta1).add_(g, alpha=1 - beta1)
                v_i.mul_(beta2).addcmul_(g, g, value=1 - beta2)
                m_hat, v_hat = m_i / (1 - beta1 ** step), v_i / (1 - beta2 ** step)
                p.sub_(lr * m_hat / (v_hat.sqrt() + eps))
    return losses


def relative_change(a: torch.Tensor, b: torch.Tensor) -> float:
    """For tests (in the grader): mean |a - b| / mean |a|, how much an output changed when one input did."""
    return float((a - b).abs().mean() / a.abs().mean().clamp(min=1e-12))


def exercise(name: str, weight: float = 1.0, timeout: float | None = None):
    """Mark a test as scoring exercise ``name`` with relative ``weight`` among that exercise's tests."""

    def decorate(fn):
        fn.exercise = name
        fn.weight = weight
        fn.timeout = timeout
        return pytest.mark.exercise(name, weight=weight)(fn)

    return decorate


def tests_of(module, exercise_name: str | None = None) -> list:
    """The test functions of a module (optionally of one exercise), in definition order."""
    found = [fn for key, fn in vars(module).items()
             if key.startswith("test_") and callable(fn) and hasattr(fn, "exercise")]
    found.sort(key=lambda fn: fn.__code__.co_firstlineno)
    return [fn for fn in found if exercise_name is None or fn.exercise == exercise_name]

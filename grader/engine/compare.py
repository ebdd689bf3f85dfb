"""Comparisons that explain themselves. Every check raises :class:`Mismatch` with feedback lines
ordered as a stuck learner needs them: type, shape, dtype first; then where and by how much the
answer differs; then a hint when the answer matches a known mistake.

Tolerances are relative *and* absolute (``|a - e| <= atol + rtol |e|``), never exact equality, so
a correct answer written another way passes in float32.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch


class Mismatch(AssertionError):
    """A wrong answer, with feedback lines for the learner."""

    def __init__(self, lines: Sequence[str] | str):
        self.lines = [lines] if isinstance(lines, str) else list(lines)
        super().__init__("\n".join(self.lines))


WHERE_PREFIX = "Where to look: "


@dataclass
class Hint:
    """If the learner's answer is close to ``alternative`` (what a known mistake gives), say ``message``.

    A staged hint: ``message`` says *what* is wrong; ``where`` (optional) says *where* to look (a line
    of the equation, a step of the algorithm), never the code. The grader's feedback shows both; a
    notebook's ``check()`` shows ``where`` from the second failed attempt at the same exercise on."""

    alternative: object
    message: str
    where: str = ""

    def lines(self) -> list[str]:
        return [f"Hint: {self.message}"] + ([WHERE_PREFIX + self.where] if self.where else [])


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.5g}"
    return str(v)


def _index(flat_i: int, shape) -> tuple:
    return tuple(int(i) for i in np.unravel_index(flat_i, tuple(shape))) if len(shape) else ()


def _is_close(a: torch.Tensor, e: torch.Tensor, rtol: float, atol: float) -> torch.Tensor:
    return (a - e).abs() <= atol + rtol * e.abs()


def matches(actual, expected, rtol: float = 1e-4, atol: float = 1e-5) -> bool:
    """True when two values agree (same shape, within tolerance); never raises."""
    try:
        a = torch.as_tensor(actual).double()
        e = torch.as_tensor(expected).double()
        if a.shape != e.shape:
            return False
        nan_ok = torch.isnan(a) == torch.isnan(e)
        return bool(nan_ok.all() and _is_close(a.nan_to_num(), e.nan_to_num(), rtol, atol).all())
    except Exception:
        return False


def _hint_lines(actual, hints: Sequence[Hint], rtol: float, atol: float) -> list[str]:
    for hint in hints:
        alt = hint.alternative() if callable(hint.alternative) else hint.alternative
        if alt is not None and matches(actual, alt, rtol=max(rtol, 1e-3), atol=max(atol, 1e-4)):
            return hint.lines()
    return []


def _generic_hints(a: torch.Tensor, e: torch.Tensor, rtol, atol) -> list[str]:
    """Patterns worth naming whatever the exercise: a flipped sign, a constant factor, a transpose."""
    if a.abs().max() == 0 and e.abs().max() > atol:
        return ["Hint: your answer is zero everywhere: is a term missing, or multiplied by 0?"]
    if matches(a, -e, rtol * 10, atol * 10) and e.abs().max() > atol:
        return ["Hint: your answer has the opposite sign everywhere."]
    mask = e.abs() > 1e-6
    if mask.sum() >= 2:
        ratio = a[mask] / e[mask]
        r0 = ratio.median()
        if torch.isfinite(r0) and (ratio - r0).abs().max() < 1e-3 * r0.abs().clamp(min=1) and abs(float(r0) - 1) > 1e-3 and abs(float(r0)) > 1e-3:
            return [f"Hint: your answer is the expected one times a constant factor of {float(r0):.4g}."]
    if a.dim() >= 2 and a.shape[-1] == a.shape[-2] and matches(a.transpose(-1, -2), e, rtol, atol):
        return ["Hint: your answer is the transpose of the expected one."]
    return []


def expect_tensor(actual, what: str, shape: Sequence[int] | None = None,
                  dtype: torch.dtype | None = torch.float32) -> torch.Tensor:
    """The first checks of any tensor answer: it is a tensor, of this shape and dtype, and finite."""
    if isinstance(actual, np.ndarray):
        raise Mismatch([f"{what} should return a torch tensor, but returned a NumPy array "
                        f"of shape {tuple(actual.shape)}.", "Hint: work with torch operations, not NumPy."])
    if not isinstance(actual, torch.Tensor):
        raise Mismatch([f"{what} should return a torch tensor, but returned {type(actual).__name__}: "
                        f"{str(actual)[:80]}."])
    if shape is not None and tuple(actual.shape) != tuple(shape):
        raise Mismatch([f"{what} has the wrong shape: expected {tuple(shape)}, got {tuple(actual.shape)}."]
                       + _shape_hints(tuple(actual.shape), tuple(shape)))
    if dtype is not None and actual.dtype != dtype:
        raise Mismatch([f"{what} has dtype {str(actual.dtype).replace('torch.', '')}, expected "
                        f"{str(dtype).replace('torch.', '')}.",
                        "Hint: keep the inputs' dtype (avoid float64 literals such as np.pi arrays "
                        "or torch.tensor(...) without dtype)."])
    if actual.is_floating_point() and not torch.isfinite(actual).all():
        n_bad = int((~torch.isfinite(actual)).sum())
        raise Mismatch([f"{what} contains {n_bad} NaN or infinite value(s).",
                        "Hint: look for a log of zero, a division by zero, or a sqrt of a negative number."])
    return actual


def _shape_hints(got: tuple, want: tuple) -> list[str]:
    if sorted(got) == sorted(want):
        return ["Hint: the same sizes in another order: a transpose or a wrong reshape?"]
    if len(got) == len(want) + 1 and 1 in got:
        return ["Hint: an extra dimension of size 1: did you forget to squeeze, or sum with keepdim=True?"]
    if len(got) + 1 == len(want):
        return ["Hint: a dimension is missing: did you reduce (sum/mean) over one axis too many?"]
    if len(got) == 0:
        return ["Hint: you returned a single number: the answer should keep one value per sample."]
    return []


def expect_close(actual, expected, what: str, rtol: float = 1e-4, atol: float = 1e-5,
                 hints: Sequence[Hint] = (), dtype: torch.dtype | None = None) -> None:
    """``actual`` equals ``expected`` within tolerance, or a Mismatch that explains the difference."""
    expected = torch.as_tensor(expected)
    if isinstance(actual, (int, float)) and not isinstance(actual, bool) and expected.dim() == 0:
        actual = torch.tensor(float(actual), dtype=expected.dtype)
    a = expect_tensor(actual, what, shape=tuple(expected.shape), dtype=dtype or expected.dtype)
    a64, e64 = a.double(), expected.double()
    close = _is_close(a64, e64, rtol, atol)
    if bool(close.all()):
        return
    diff = (a64 - e64).abs()
    worst = int(diff.reshape(-1).argmax())
    idx = _index(worst, a.shape)
    n_bad, n = int((~close).sum()), close.numel()
    loc = f" at index {idx}" if idx else ""
    lines = [
        f"{what} is not what was expected: {n_bad} of {n} value(s) differ beyond tolerance "
        f"(rtol={rtol:g}, atol={atol:g}).",
        f"The largest difference is {float(diff.reshape(-1)[worst]):.4g}{loc}: you returned "
        f"{float(a64.reshape(-1)[worst]):.6g}, expected {float(e64.reshape(-1)[worst]):.6g}.",
    ]
    hint = _hint_lines(a, hints, rtol, atol) or _generic_hints(a64, e64, rtol, atol)
    raise Mismatch(lines + hint)


def expect_scalar(actual, expected: float, what: str, rtol: float = 1e-4, atol: float = 1e-6,
                  hints: Sequence[Hint] = (), reveal: bool = True) -> None:
    """A single number (Python float or 0-dim tensor) close to ``expected``.

    ``reveal=False`` for the answer to a question (``predict_*``): the feedback never prints the
    expected number, only the learner's, whether it is too high or too low, and the hints."""
    if isinstance(actual, torch.Tensor):
        if actual.numel() != 1:
            raise Mismatch([f"{what} should be a single number, but has shape {tuple(actual.shape)}."])
        actual = float(actual.reshape(()))
    if isinstance(actual, bool) or not isinstance(actual, (int, float)):
        raise Mismatch([f"{what} should be a number, but returned {type(actual).__name__}."])
    if abs(actual - expected) <= atol + rtol * abs(expected):
        return
    if reveal:
        lines = [f"{what} is {actual:.6g}, expected {expected:.6g} (difference {abs(actual - expected):.3g})."]
    else:
        lines = [f"{what} is {actual:.6g}: too {'high' if actual > expected else 'low'} for the question's tolerance."]
    raise Mismatch(lines + _hint_lines(torch.tensor(float(actual)), hints, rtol, atol))


def expect_choice(actual, correct: str, what: str, why_not: dict[str, str] | None = None,
                  where: str = "") -> None:
    """A multiple-choice answer: one of the letters of ``why_not`` plus ``correct`` (case and spaces
    ignored). A wrong choice gets its own explanation from ``why_not`` (what is wrong with it), then
    ``where`` (what to reread), never the right letter."""
    options = sorted({correct.lower(), *(k.lower() for k in (why_not or {}))})
    if not isinstance(actual, str):
        raise Mismatch([f"{what} should return one of the letters {', '.join(repr(o) for o in options)} "
                        f"(a string), but returned {type(actual).__name__}."])
    choice = actual.strip().lower().strip("()")
    if choice == correct.lower():
        return
    if choice not in options:
        raise Mismatch([f"{what} returned {actual!r}: answer with one of "
                        f"{', '.join(repr(o) for o in options)}."])
    reason = {k.lower(): v for k, v in (why_not or {}).items()}.get(choice, "")
    lines = [f"{what}: {choice!r} is not the right choice."]
    if reason:
        lines.append(f"Hint: {reason}")
    if where:
        lines.append(WHERE_PREFIX + where)
    raise Mismatch(lines)


def expect(condition: bool, *lines: str) -> None:
    """A plain condition with its own feedback."""
    if not condition:
        raise Mismatch(list(lines))


def expect_moments(samples: torch.Tensor, mean: torch.Tensor, cov: torch.Tensor, what: str,
                   n_sigma: float = 5.0, hints: Sequence[Hint] = ()) -> None:
    """Samples whose mean and covariance agree with (mean, cov) up to sampling error.

    The tolerance is ``n_sigma`` standard errors of the estimates (for Gaussian samples), so the
    check is loose enough never to fail a correct sampler and tight enough to catch a wrong scale.
    """
    x = expect_tensor(samples, what, dtype=None).double().reshape(samples.shape[0], -1)
    n, d = x.shape
    mean, cov = torch.as_tensor(mean).double().reshape(d), torch.as_tensor(cov).double().reshape(d, d)
    m_hat = x.mean(0)
    c_hat = torch.cov(x.T).reshape(d, d)
    se_mean = (cov.diagonal() / n).sqrt()
    var = cov.diagonal()
    se_cov = ((var[:, None] * var[None, :] + cov ** 2) / n).sqrt()
    lines = []
    bad_m = (m_hat - mean).abs() > n_sigma * se_mean + 1e-6
    if bad_m.any():
        i = int(bad_m.nonzero()[0])
        lines.append(f"the mean of {what} is off: coordinate {i} has mean {float(m_hat[i]):.4g}, "
                     f"expected {float(mean[i]):.4g} (+/- {float(n_sigma * se_mean[i]):.2g}).")
    bad_c = (c_hat - cov).abs() > n_sigma * se_cov + 1e-6
    if bad_c.any():
        i, j = (int(v) for v in bad_c.nonzero()[0])
        lines.append(f"the covariance of {what} is off: entry ({i}, {j}) is {float(c_hat[i, j]):.4g}, "
                     f"expected {float(cov[i, j]):.4g} (+/- {float(n_sigma * se_cov[i, j]):.2g}).")
        ratio = float(c_hat.diagonal().mean() / cov.diagonal().mean())
        lines.append(f"Your samples' variance is {ratio:.3g} times the expected one.")
    if lines:
        raise Mismatch([f"{what}: the samples do not have the expected statistics."] + lines
                       + [f"Hint: {h.message}" for h in hints if callable(h.alternative) and h.alternative(m_hat, c_hat)])

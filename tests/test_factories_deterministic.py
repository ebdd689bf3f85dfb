"""Every seeded factory of the public grader modules builds the same object whatever the global RNG.

The sandbox and the grader each build the learner's inputs from a ``Ref(factory, seed, ...)``; if a
factory also drew from the global RNG (a buffer such as ``TimeMLP``'s Fourier frequencies drawn at
construction), the two copies would differ and a correct answer would lose marks."""
from __future__ import annotations

import importlib
import inspect
import pkgutil

import pytest
import torch
from torch import nn

import grader.public


def _seeded_factories():
    for info in pkgutil.iter_modules(grader.public.__path__):
        if not info.name.startswith("nb"):
            continue
        module = importlib.import_module(f"grader.public.{info.name}")
        for name, fn in vars(module).items():
            if not inspect.isfunction(fn) or fn.__module__ != module.__name__ or name.startswith("_"):
                continue
            params = list(inspect.signature(fn).parameters.values())
            if params and params[0].name == "seed" and all(p.default is not p.empty for p in params[1:]):
                yield pytest.param(fn, id=f"{info.name}.{name}")


def _tensors(obj, depth=0):
    """The tensors an object holds: a module's state, a tensor, the items of a tuple, a closure's cells."""
    if depth > 3:
        return []
    if isinstance(obj, nn.Module):
        return [t.detach() for t in obj.state_dict().values()]
    if isinstance(obj, torch.Tensor):
        return [obj.detach()]
    if isinstance(obj, (tuple, list)):
        return [t for item in obj for t in _tensors(item, depth + 1)]
    if isinstance(obj, dict):
        return [t for item in obj.values() for t in _tensors(item, depth + 1)]
    if callable(obj) and getattr(obj, "__closure__", None):
        return [t for cell in obj.__closure__ for t in _tensors(cell.cell_contents, depth + 1)]
    return []


FACTORIES = list(_seeded_factories())


def test_there_are_seeded_factories_to_check():
    assert len(FACTORIES) >= 5, [p.id for p in FACTORIES]


@pytest.mark.parametrize("factory", FACTORIES)
def test_a_seeded_factory_ignores_the_global_rng(factory):
    torch.manual_seed(1)
    first = _tensors(factory(3))
    torch.manual_seed(2)
    second = _tensors(factory(3))
    assert len(first) == len(second)
    for a, b in zip(first, second):
        assert a.shape == b.shape and torch.equal(a, b), (
            f"{factory.__module__}.{factory.__name__}(3) depends on the global RNG: build it under "
            "torch.random.fork_rng() with torch.manual_seed(seed), or draw everything from a generator")

"""Which notebooks exist, and where their public and hidden tests live.

Each notebook ``NN_name`` has a public module ``grader.public.nbNN_name`` (its manifest: the
``EXERCISES`` points, the ``LIBRARY`` map to the course library's implementations, argument
factories, probes and public tests) and a hidden module ``grader/tests/test_NN_name.py``.
"""
from __future__ import annotations

import importlib
import pkgutil
import re
from dataclasses import dataclass
from pathlib import Path

from grader.paths import HIDDEN_DIR

NOTEBOOK_ID = re.compile(r"^(\d\d)_([a-z0-9_]+)$")


@dataclass(frozen=True)
class NotebookSpec:
    id: str  # "01_toy_flows"

    @property
    def public_module(self) -> str:
        return f"grader.public.nb{self.id}"

    @property
    def hidden_path(self) -> Path:
        return HIDDEN_DIR / f"test_{self.id}.py"

    def manifest(self):
        return importlib.import_module(self.public_module)

    @property
    def exercises(self) -> dict[str, float]:
        return dict(self.manifest().EXERCISES)

    @property
    def library(self) -> dict[str, str]:
        return dict(getattr(self.manifest(), "LIBRARY", {}))


def notebooks() -> list[NotebookSpec]:
    """Every notebook that has a public module, in course order."""
    import grader.public

    ids = []
    for info in pkgutil.iter_modules(grader.public.__path__):
        if info.name.startswith("nb") and NOTEBOOK_ID.match(info.name[2:]):
            ids.append(info.name[2:])
    return [NotebookSpec(i) for i in sorted(ids)]


def spec_for(notebook_id: str) -> NotebookSpec:
    for spec in notebooks():
        if spec.id == notebook_id:
            return spec
    known = ", ".join(s.id for s in notebooks())
    raise KeyError(f"no grader for notebook {notebook_id!r} (known: {known})")


def spec_for_exercise(exercise: str) -> NotebookSpec:
    """The notebook whose manifest lists ``exercise`` (names are unique across the course)."""
    for spec in notebooks():
        try:
            if exercise in spec.exercises:
                return spec
        except Exception:  # a notebook's manifest that cannot be imported must not block the others
            continue
    raise KeyError(f"no exercise called {exercise!r} in this course")

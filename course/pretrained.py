"""Optional pretrained weights, so a learner can skip a notebook's long training.

Nothing requires them. A notebook trains every model it uses; with ``COURSE_PRETRAINED=1`` (or
``PRETRAINED = True`` in its setup cell) it loads ``checkpoints/<name>.pt`` instead, when that file
exists and fits the model. Otherwise it says why and trains as usual.

The checkpoints are made by the notebooks themselves: ``python scripts/train_checkpoints.py`` runs
the solution notebooks 07 and 08 in full mode with ``COURSE_SAVE_CHECKPOINTS=<dir>``, and every
:func:`load_or_train` call saves the model it trained together with the record its training
returned (the loss history, timings), so a loaded model comes with the numbers the notebook shows.
The file is read with ``torch.load(weights_only=True)``: tensors and plain Python values only.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable

import torch

from course.runtime import is_fast

CHECKPOINT_DIR = Path(__file__).resolve().parents[1] / "checkpoints"
FORMAT = 1
_TRUE = {"1", "true", "yes", "on"}


def use_pretrained() -> bool:
    """True when ``COURSE_PRETRAINED`` is set to 1/true/yes/on (default: off, train everything)."""
    return os.environ.get("COURSE_PRETRAINED", "").strip().lower() in _TRUE


def checkpoint_dirs() -> list[Path]:
    """Where checkpoints are looked for, in order: ``$COURSE_CHECKPOINTS``; the repository's (or the
    student bundle's) ``checkpoints/`` next to the ``course`` package; ``checkpoints/`` in the working
    directory or its parent (a notebook runs in ``notebooks/``; this finds them after a
    non-editable ``pip install``)."""
    dirs = [Path(os.environ["COURSE_CHECKPOINTS"])] if os.environ.get("COURSE_CHECKPOINTS") else []
    return dirs + [CHECKPOINT_DIR, Path.cwd() / "checkpoints", Path.cwd().parent / "checkpoints"]


def checkpoint_path(name: str, directory: str | Path | None = None) -> Path:
    """``<directory>/<name>.pt``; without a directory, the first of :func:`checkpoint_dirs` that has it."""
    if directory is not None:
        return Path(directory) / f"{name}.pt"
    for d in checkpoint_dirs():
        if (d / f"{name}.pt").is_file():
            return d / f"{name}.pt"
    return CHECKPOINT_DIR / f"{name}.pt"


def _describe_mismatch(model: torch.nn.Module, state: dict) -> str | None:
    """Why ``state`` cannot be loaded into ``model`` (None when it can): missing, unexpected or
    differently shaped parameters, named so a learner can see which part of their network differs."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = [k for k in own if k in state and tuple(own[k].shape) != tuple(state[k].shape)]
    problems = []
    if missing:
        problems.append(f"your model has {len(missing)} entries the checkpoint lacks (e.g. {missing[0]!r})")
    if unexpected:
        problems.append(f"the checkpoint has {len(unexpected)} entries your model lacks (e.g. {unexpected[0]!r})")
    if shapes:
        k = shapes[0]
        problems.append(f"{len(shapes)} shapes differ (e.g. {k!r}: checkpoint {tuple(state[k].shape)}, "
                        f"model {tuple(own[k].shape)})")
    return "; ".join(problems) or None


def load(name: str, model: torch.nn.Module, directory: str | Path | None = None) -> tuple[Any, str | None]:
    """Load ``<directory>/<name>.pt`` into ``model`` in place.

    Returns ``(record, None)`` on success, ``(None, reason)`` when the file is missing, unreadable
    or does not fit the model (the model is then left untouched).
    """
    path = checkpoint_path(name, directory)
    if not path.is_file():
        return None, (f"no checkpoint {name}.pt in {', '.join(str(d) for d in checkpoint_dirs())} (in the "
                      "course repository, `python scripts/train_checkpoints.py` makes it)")
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a truncated or foreign file: say so, train instead
        return None, f"cannot read {path}: {type(exc).__name__}: {exc}"
    if not isinstance(saved, dict) or saved.get("format") != FORMAT or "state_dict" not in saved:
        return None, f"{path} is not a course checkpoint (format {FORMAT})"
    mismatch = _describe_mismatch(model, saved["state_dict"])
    if mismatch:
        return None, f"{path.name} does not fit this model: {mismatch}"
    model.load_state_dict(saved["state_dict"])
    return saved.get("record"), None


def save(name: str, model: torch.nn.Module, record: Any = None, directory: str | Path | None = None) -> Path:
    """Write ``model``'s weights (on the CPU) and ``record`` to ``<directory>/<name>.pt``."""
    path = checkpoint_path(name, directory or CHECKPOINT_DIR)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    torch.save({"format": FORMAT, "name": name, "state_dict": state, "record": record,
                "torch_version": str(torch.__version__)}, path)
    return path


def load_or_train(name: str, model: torch.nn.Module, train_fn: Callable[[], Any],
                  pretrained: bool | None = None) -> Any:
    """Load ``checkpoints/<name>.pt`` into ``model`` (when ``pretrained``, default
    :func:`use_pretrained`) and return the record saved with it; else call ``train_fn()``, which
    trains ``model`` in place, and return what it returns.

    ``train_fn``'s result is saved with the weights when ``COURSE_SAVE_CHECKPOINTS`` names a
    directory: keep it to lists, dicts, numbers, strings and tensors.
    """
    if pretrained is None:
        pretrained = use_pretrained()
    if pretrained:
        record, reason = load(name, model)
        if reason is None:
            print(f"loaded pretrained {name!r} from {checkpoint_path(name)} (skipping its training)")
            model.eval()
            model.loaded_checkpoint = name  # see loaded_from_checkpoint
            return record
        print(f"not using a pretrained {name!r}: {reason}. Training it instead.")
    record = train_fn()
    save_dir = os.environ.get("COURSE_SAVE_CHECKPOINTS")
    if save_dir and is_fast():
        print(f"not saving {name!r}: fast mode (checkpoints hold the full-mode models)")
    elif save_dir:
        path = save(name, model, record, save_dir)
        print(f"saved {path} ({path.stat().st_size // 1024} KiB)")
    return record


def loaded_from_checkpoint(model: torch.nn.Module) -> bool:
    """Whether :func:`load_or_train` loaded ``model`` rather than trained it (a model trained on
    another model's outputs, like a latent flow on an autoencoder's latents, loads only if that did)."""
    return getattr(model, "loaded_checkpoint", None) is not None

"""A plain-data codec between the sandbox and the grader: no pickle, ever.

Values cross as JSON; tensors and arrays as (dtype, shape, base64 bytes) of a whitelisted dtype.
Decoding in the grader builds fresh ``torch.Tensor`` objects from raw bytes, so nothing the
learner made (a Tensor subclass, an object with a clever ``__eq__``) survives the crossing.
"""
from __future__ import annotations

import base64
import json
import math

import numpy as np

DTYPES = {  # name -> numpy dtype; the only element types that may cross
    "float32": np.float32, "float64": np.float64, "float16": np.float16,
    "int64": np.int64, "int32": np.int32, "int16": np.int16, "int8": np.int8, "uint8": np.uint8,
    "bool": np.bool_,
}
MAX_DEPTH = 32


class EncodeError(TypeError):
    """A value that cannot cross the sandbox boundary (its type is named in the message)."""


class Ref:
    """An argument built inside the sandbox by a factory of the notebook's public module.

    ``Ref(rotation_field, omega=2.0)`` (the factory function itself, defined in or imported into
    the public module) becomes ``public_module.rotation_field(omega=2.0)`` in the sandbox; only its
    name crosses. ``api.build(ref)`` makes the grader's own copy by calling the same function.
    A factory given by name (``Ref("rotation_field")``) is looked up the same way.
    """

    def __init__(self, factory, *args, **kwargs):
        self.function = factory if callable(factory) else None
        self.factory = factory.__name__ if callable(factory) else factory
        self.args, self.kwargs = args, kwargs

    def __repr__(self):
        return f"Ref({self.factory!r})"


class LearnerRef:
    """An argument that is one of the learner's own definitions, looked up by name."""

    def __init__(self, name: str):
        self.name = name

    def __repr__(self):
        return f"LearnerRef({self.name!r})"


def _type_name(value) -> str:
    t = type(value)
    return t.__name__ if t.__module__ == "builtins" else f"{t.__module__}.{t.__qualname__}"


def encode(value, depth: int = 0):
    """Python value -> JSON-able structure. Raises EncodeError for anything not plain data."""
    if depth > MAX_DEPTH:
        raise EncodeError("nested too deeply")
    if value is None or type(value) in (bool, str):
        return value
    if type(value) is int:
        return value
    if type(value) is float:
        return value if math.isfinite(value) else {"__float__": repr(value)}
    if isinstance(value, np.generic):
        return encode(value.item(), depth + 1)
    if type(value) is tuple:
        return {"__tuple__": [encode(v, depth + 1) for v in value]}
    if type(value) is list:
        return [encode(v, depth + 1) for v in value]
    if type(value) is dict:
        if not all(type(k) is str for k in value):
            raise EncodeError("dict keys must be strings")
        return {"__dict__": [[k, encode(v, depth + 1)] for k, v in value.items()]}
    if isinstance(value, Ref):
        return {"__ref__": [value.factory, encode(list(value.args), depth + 1), encode(value.kwargs, depth + 1)]}
    if isinstance(value, LearnerRef):
        return {"__learner__": value.name}
    try:
        import torch
    except ImportError:  # pragma: no cover
        torch = None
    if torch is not None and isinstance(value, torch.Tensor):
        plain = torch.Tensor.as_subclass(value, torch.Tensor)  # drop any subclass behaviour
        arr = plain.detach().cpu().contiguous().numpy()
        return {"__tensor__": _array_payload(arr)}
    if isinstance(value, np.ndarray):
        return {"__ndarray__": _array_payload(np.ascontiguousarray(value))}
    raise EncodeError(f"an object of type {_type_name(value)}")


def _array_payload(arr: np.ndarray) -> list:
    name = arr.dtype.name
    if name not in DTYPES:
        raise EncodeError(f"an array of dtype {name}")
    return [name, list(arr.shape), base64.b64encode(arr.tobytes()).decode("ascii")]


def _decode_array(payload) -> np.ndarray:
    name, shape, data = payload
    if name not in DTYPES or not isinstance(shape, list) or len(shape) > MAX_DEPTH \
            or not all(type(s) is int and 0 <= s < 1 << 40 for s in shape) or type(data) is not str:
        raise ValueError("malformed array")
    raw = base64.b64decode(data.encode("ascii"), validate=True)
    dtype = np.dtype(DTYPES[name])
    if len(raw) != dtype.itemsize * int(np.prod(shape, dtype=np.int64)):
        raise ValueError("array size does not match its shape")
    return np.frombuffer(raw, dtype=dtype).reshape(shape).copy()


def decode(obj, depth: int = 0, resolve=None):
    """JSON structure -> Python value. ``resolve(kind, payload)`` builds Ref/LearnerRef (sandbox side);
    without it they come back as Ref/LearnerRef objects."""
    import torch

    if depth > MAX_DEPTH:
        raise ValueError("nested too deeply")
    if obj is None or type(obj) in (bool, int, float, str):
        return obj
    if type(obj) is list:
        return [decode(v, depth + 1, resolve) for v in obj]
    if type(obj) is dict and len(obj) == 1:
        (key, payload), = obj.items()
        if key == "__float__":
            return float(payload)
        if key == "__tuple__":
            return tuple(decode(v, depth + 1, resolve) for v in payload)
        if key == "__dict__":
            return {str(k): decode(v, depth + 1, resolve) for k, v in payload}
        if key == "__tensor__":
            return torch.from_numpy(_decode_array(payload))
        if key == "__ndarray__":
            return _decode_array(payload)
        if key == "__ref__":
            factory, args, kwargs = payload
            args, kwargs = decode(args, depth + 1, resolve), decode(kwargs, depth + 1, resolve)
            return resolve("ref", (factory, args, kwargs)) if resolve else Ref(factory, *args, **kwargs)
        if key == "__learner__":
            return resolve("learner", payload) if resolve else LearnerRef(payload)
    raise ValueError("malformed message")


def dumps(value) -> bytes:
    return json.dumps(encode(value), separators=(",", ":")).encode("utf-8")


def loads(data: bytes, resolve=None):
    return decode(json.loads(data.decode("utf-8")), resolve=resolve)

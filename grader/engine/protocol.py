"""Length-prefixed frames over pipes between the grader and its sandbox worker.

A frame is 8 bytes of big-endian length, then that many bytes of UTF-8 JSON (see codec).
Frames over ``limit`` (``MAX_FRAME`` unless the reader says less: the grader reads replies of at
most a few MB, see ``Limits.reply_mb``) are refused before a byte of them is read, so a flood
cannot exhaust the grader's memory.
"""
from __future__ import annotations

import os
import select
import struct
import time

MAX_FRAME = 128 * 1024 * 1024


class ChannelClosed(EOFError):
    """The other end went away (the worker died or closed its pipe)."""


class ChannelTimeout(TimeoutError):
    """No complete frame arrived before the deadline."""


class FrameTooLarge(ValueError):
    pass


def write_frame(fd: int, payload: bytes) -> None:
    data = struct.pack(">Q", len(payload)) + payload
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def _read_exact(fd: int, n: int, deadline: float | None) -> bytes:
    chunks, got = [], 0
    while got < n:
        if deadline is not None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ChannelTimeout()
            ready, _, _ = select.select([fd], [], [], remaining)
            if not ready:
                raise ChannelTimeout()
        chunk = os.read(fd, min(n - got, 1 << 20))
        if not chunk:
            raise ChannelClosed()
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def read_frame(fd: int, deadline: float | None = None, limit: int = MAX_FRAME) -> bytes:
    (length,) = struct.unpack(">Q", _read_exact(fd, 8, deadline))
    if length > limit:
        raise FrameTooLarge(f"a reply of {length} bytes (the limit is {limit})")
    return _read_exact(fd, length, deadline)

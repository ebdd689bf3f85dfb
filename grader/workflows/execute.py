"""Run a notebook top to bottom in a real Jupyter kernel (nbclient), in fast or full mode."""
from __future__ import annotations

import os
import time
from contextlib import contextmanager
from pathlib import Path

import nbformat


@contextmanager
def _env(**values):
    old = {k: os.environ.get(k) for k in values}
    os.environ.update({k: v for k, v in values.items() if v is not None})
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def execute_notebook(path: str | Path, fast: bool = True, timeout: int = 900, output: str | Path | None = None,
                     kernel_name: str = "python3") -> float:
    """Execute every cell; raise nbclient's CellExecutionError on the first failing cell.

    Returns the wall time in seconds. With ``output`` the executed notebook is saved there.
    """
    from nbclient import NotebookClient

    path = Path(path)
    nb = nbformat.read(path, as_version=4)
    start = time.perf_counter()
    with _env(COURSE_FAST="1" if fast else "0", MPLBACKEND="module://matplotlib_inline.backend_inline",
              PYDEVD_DISABLE_FILE_VALIDATION="1"):
        client = NotebookClient(nb, timeout=timeout, kernel_name=kernel_name,
                                resources={"metadata": {"path": str(path.parent)}})
        client.execute()
    elapsed = time.perf_counter() - start
    if output is not None:
        nbformat.write(nb, str(output))
    return elapsed

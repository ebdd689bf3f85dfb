#!/usr/bin/env python
"""Edit solution notebooks as text: convert between ``solutions/*.ipynb`` and a percent script.

    python scripts/nbtool.py to-py solutions/01_toy_flows.ipynb  > /tmp/01.py
    python scripts/nbtool.py to-ipynb /tmp/01.py solutions/01_toy_flows.ipynb

Cell markers (one per cell):
    # %% [markdown]          markdown; every line starts with "# "
    # %% setup               the locked setup cell (imports, given code): run by the grader
    # %% solution NAME       the answer cell of exercise NAME (nbgrader grade_id NAME)
    # %% check NAME          the locked, graded cell calling check("NAME"); points from the manifest
    # %%                     any other code cell (demos, experiments): not run by the grader

The .ipynb in solutions/ is the source of truth; this tool only makes editing it pleasant.
"""
from __future__ import annotations

import importlib
import json
import re
import sys

import nbformat

MARKER = re.compile(r"^# %%(?: (?P<kind>\[markdown\]|setup|solution|check)(?: (?P<name>\w+))?)?\s*$")


def nbgrader_meta(grade_id, solution=False, grade=False, locked=False, points=None):
    meta = {"grade": grade, "grade_id": grade_id, "locked": locked, "schema_version": 3, "solution": solution}
    if points is not None:
        meta["points"] = points
    return {"nbgrader": meta}


def to_ipynb(text: str, notebook_id: str) -> nbformat.NotebookNode:
    manifest = importlib.import_module(f"grader.public.nb{notebook_id}")
    cells, kind, name, lines = [], None, None, []

    def flush():
        if kind is None:
            return
        body = "\n".join(lines).strip("\n")
        if kind == "[markdown]":
            body = "\n".join(l[2:] if l.startswith("# ") else l.lstrip("#") for l in body.splitlines())
            cells.append(nbformat.v4.new_markdown_cell(body))
        elif kind == "setup":
            cells.append(nbformat.v4.new_code_cell(body, metadata=nbgrader_meta("setup", locked=True)))
        elif kind == "solution":
            cells.append(nbformat.v4.new_code_cell(body, metadata=nbgrader_meta(name, solution=True)))
        elif kind == "check":
            cells.append(nbformat.v4.new_code_cell(
                body, metadata=nbgrader_meta(f"check_{name}", grade=True, locked=True,
                                             points=manifest.EXERCISES[name])))
        else:
            cells.append(nbformat.v4.new_code_cell(body))

    for line in text.splitlines():
        m = MARKER.match(line)
        if m:
            flush()
            kind, name, lines = (m.group("kind") or "code"), m.group("name"), []
        else:
            lines.append(line)
    flush()
    for i, cell in enumerate(cells):
        cell["id"] = f"c{i:03d}"
    nb = nbformat.v4.new_notebook(cells=cells)
    nb.metadata = {
        "course": {"notebook": notebook_id},
        "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
        "language_info": {"name": "python"},
    }
    return nb


def to_py(nb: nbformat.NotebookNode) -> str:
    out = []
    for cell in nb.cells:
        meta = cell.get("metadata", {}).get("nbgrader", {})
        gid = meta.get("grade_id", "")
        if cell.cell_type == "markdown":
            out.append("# %% [markdown]")
            out.extend(("# " + l) if l else "#" for l in cell.source.splitlines())
        elif gid == "setup":
            out += ["# %% setup", cell.source]
        elif meta.get("solution"):
            out += [f"# %% solution {gid}", cell.source]
        elif meta.get("grade"):
            out += [f"# %% check {gid.removeprefix('check_')}", cell.source]
        else:
            out += ["# %%", cell.source]
        out.append("")
    return "\n".join(out)


def main(argv):
    if len(argv) >= 2 and argv[0] == "to-py":
        sys.stdout.write(to_py(nbformat.read(argv[1], as_version=4)))
    elif len(argv) == 3 and argv[0] == "to-ipynb":
        notebook_id = argv[2].rsplit("/", 1)[-1].removesuffix(".ipynb")
        nb = to_ipynb(open(argv[1], encoding="utf-8").read(), notebook_id)
        with open(argv[2], "w", encoding="utf-8") as f:
            f.write(json.dumps(nb, indent=1, ensure_ascii=False, sort_keys=True) + "\n")
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])

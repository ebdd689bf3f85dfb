"""The student bundle as a student gets it: built, `pip install`ed (not editable) into a fresh virtual
environment, and used from a folder of the student's own, away from the repository.

One venv and one bundle per module (the fixture): ``course bundle OUT --only 01_toy_flows``, then
``python -m venv`` + ``pip install --no-deps --no-build-isolation OUT`` (no network: the venv sees
this environment's packages through a .pth file, for torch and friends). There: ``course grade`` on
a full-marks notebook (01's reference answers pasted into the student notebook), a blank one and a
partial one; ``course progress`` (a finished notebook is never "not started"); ``check()`` in a
Jupyter kernel (nbclient), including the helper-from-another-cell rule; ``course demo`` says it is
for the repository.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from grader.engine.registry import spec_for
from support import make_venv

ROOT = Path(__file__).resolve().parents[1]
A = "01_toy_flows"
MAX = float(sum(spec_for(A).exercises.values()))


def answers(notebook: Path) -> dict[str, str]:
    nb = nbformat.read(notebook, as_version=4)
    return {c.metadata["nbgrader"]["grade_id"]: c.source for c in nb.cells
            if (c.metadata.get("nbgrader") or {}).get("solution") and not
            str(c.metadata["nbgrader"].get("grade_id", "")).startswith("setup")}


def student_notebook(bundle: Path, dest: Path, pasted: dict[str, str]) -> Path:
    nb = nbformat.read(bundle / "notebooks" / f"{A}.ipynb", as_version=4)
    for cell in nb.cells:
        gid = (cell.metadata.get("nbgrader") or {}).get("grade_id")
        if gid in pasted:
            cell.source = pasted[gid]
    dest.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, dest)
    return dest


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    base = tmp_path_factory.mktemp("installed")
    bundle = base / "bundle"
    done = subprocess.run([sys.executable, "-m", "grader.cli", "bundle", str(bundle), "--only", A],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    python = make_venv(base / "venv")
    done = subprocess.run([str(python), "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                           "--ignore-installed", str(bundle)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    home = base / "student"  # the student's own folder: a copy of the bundle's notebooks, nothing else
    full = answers(ROOT / "solutions" / f"{A}.ipynb")
    student_notebook(bundle, home / "full" / f"{A}.ipynb", full)
    student_notebook(bundle, home / "blank" / f"{A}.ipynb", {})
    student_notebook(bundle, home / "partial" / f"{A}.ipynb",
                     {n: full[n] for n in ("euler_step", "heun_step", "rk4_step")})
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "COURSE_WORKDIR")}
    env.update(PATH=f"{python.parent}{os.pathsep}{env.get('PATH', '')}", COURSE_FAST="1",
               COURSE_THREADS="1", VIRTUAL_ENV=str(python.parent.parent),
               XDG_CONFIG_HOME=str(base / "config"))  # no remembered `course start` folder of this machine
    return {"bundle": bundle, "python": python, "home": home, "env": env}


def run(installed, *args, cwd=None, timeout=600):
    return subprocess.run([str(installed["python"].parent / "course"), *args], cwd=cwd or installed["home"],
                          env=installed["env"], capture_output=True, text=True, timeout=timeout)


def test_the_install_is_the_bundle_and_has_the_engine_files(installed):
    done = subprocess.run([str(installed["python"]), "-c", "import grader, course, grader.paths as p; "
                           "print(grader.__file__); print(p.PYTEST_INI.is_file()); print(p.HIDDEN_DIR.exists())"],
                          cwd=installed["home"], env=installed["env"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    where, ini, hidden = done.stdout.split()
    assert where.startswith(str(installed["python"].parent.parent)), where  # not the repository
    assert ini == "True" and hidden == "False"
    readme = (installed["bundle"] / "README.md").read_text()
    assert "pip install ." in readme and "check(" in readme and "course progress" in readme
    for absent in ("quickstart.sh", "solutions/", "docs/INSTRUCTOR.md"):
        assert absent not in readme, absent


def test_course_grade_full_blank_and_partial(installed):
    home = installed["home"]
    scores = {}
    for name in ("full", "blank", "partial"):
        done = run(installed, "grade", str(home / name / f"{A}.ipynb"), "--seed", "0", "--quiet",
                   "--json", str(home / f"{name}.json"))
        assert done.returncode == 0, (name, done.stdout, done.stderr)
        scores[name] = json.loads((home / f"{name}.json").read_text())["score"]
    assert scores == {"full": MAX, "blank": 0.0, "partial": 4.0}


def test_course_progress_finds_the_students_notebooks(installed):
    home = installed["home"]
    done = run(installed, "progress", "--only", A, cwd=home / "full")  # the notebook in the working folder
    assert done.returncode == 0, done.stderr
    assert re.search(rf"{A}\s+subtotal\s+{MAX:g}/{MAX:g}\s+\(tests: public only\)", done.stdout), done.stdout
    assert "not started" not in done.stdout
    # a renamed copy is still found (and named), never shown as "not started"
    renamed = home / "renamed"
    renamed.mkdir()
    (renamed / f"{A}-Copy1.ipynb").write_bytes((home / "partial" / f"{A}.ipynb").read_bytes())
    done = run(installed, "progress", "--dir", str(renamed), "--only", A)
    assert done.returncode == 0, done.stderr
    assert re.search(rf"subtotal\s+4/{MAX:g} .*\[{A}-Copy1.ipynb\]", done.stdout), done.stdout
    # a folder without it says where it looked; a folder that does not exist is an error
    empty = home / "empty"
    empty.mkdir()
    done = run(installed, "progress", "--dir", str(empty), "--only", A)
    assert done.returncode == 0 and f"not started (no {empty / A}.ipynb)" in done.stdout, done.stdout
    done = run(installed, "progress", "--dir", str(home / "nowhere"), "--only", A)
    assert done.returncode == 2 and "no folder" in done.stderr


def test_course_demo_says_it_is_for_the_repository(installed):
    done = run(installed, "demo", timeout=120)
    assert done.returncode == 2 and "course repository only" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr


KERNEL_SCRIPT = r"""
import sys, nbformat
from nbclient import NotebookClient
path = sys.argv[1]
nb = nbformat.read(path, as_version=4)
NotebookClient(nb, timeout=300, kernel_name="python3", allow_errors=True,
               resources={"metadata": {"path": sys.argv[2]}}).execute()
out = []
for cell in nb.cells:
    if cell.cell_type != "code":
        continue
    text = ""
    for o in cell.get("outputs", []):
        text += o.get("text", "") + "".join(o.get("traceback", [])) + o.get("evalue", "")
    out.append(text)
print("\n=====\n".join(out))
"""


def test_check_in_a_kernel_of_the_installed_bundle(installed):
    """check() in a Jupyter kernel: passes a correct answer, and fails an answer that uses a helper
    defined in another cell (the grader would not run that cell), saying what to move where."""
    home = installed["home"] / "kernel"
    nb = nbformat.read(installed["bundle"] / "notebooks" / f"{A}.ipynb", as_version=4)
    setup = next(c for c in nb.cells if (c.metadata.get("nbgrader") or {}).get("grade_id") == "setup")
    answer = next(c for c in nb.cells if (c.metadata.get("nbgrader") or {}).get("grade_id") == "euler_step")
    cells = [setup,
             nbformat.v4.new_code_cell("import grader; print('FROM', grader.__file__)"),
             nbformat.v4.new_code_cell("def _scaled(v, dt):\n    return dt * v"),  # a demo cell: not graded
             answer.copy(), nbformat.v4.new_code_cell('check("euler_step")'),
             nbformat.v4.new_code_cell('check("euler_step")')]
    cells[3] = nbformat.v4.new_code_cell("def euler_step(f, x, t, dt):\n    return x + _scaled(f(x, t), dt)",
                                         metadata=answer.metadata)
    cells.insert(5, nbformat.v4.new_code_cell("def euler_step(f, x, t, dt):\n    return x + dt * f(x, t)",
                                              metadata=answer.metadata))
    nb.cells = cells
    home.mkdir(parents=True)
    path = home / f"{A}.ipynb"
    nbformat.write(nb, path)
    done = subprocess.run([str(installed["python"]), "-c", KERNEL_SCRIPT, str(path), str(home)], cwd=home,
                          env=installed["env"], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    outs = done.stdout.split("\n=====\n")
    assert f"FROM {installed['python'].parent.parent}" in outs[1], outs[1]
    assert "defined in another cell" in outs[4] and "`_scaled`" in outs[4] and "euler_step" in outs[4], outs[4]
    assert "✓ euler_step: all" in outs[6], outs[6]

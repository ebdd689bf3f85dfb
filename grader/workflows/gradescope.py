"""A Gradescope autograder for one notebook: ``course gradescope NN OUT.zip``.

The zip is what Gradescope's "Configure Autograder" page takes::

    setup.sh            run once as root when Gradescope builds the image: installs CPU PyTorch and the
                        course (from the wheel below), then makes the hidden tests readable by root only
    run_autograder      run as root for each submission: grades /autograder/submission/NN_name.ipynb and
                        writes /autograder/results/results.json, whatever the submission is
    wheels/*.whl        the course library and the grader, with this notebook's hidden tests
    checkpoints/*.pt    the pretrained weights (copied beside the installed library by setup.sh)
    autograder.json     which notebook, and the grading budget

The hidden tests are in the zip (in the wheel) and never reachable by the learner's code: the
grader reads them as root; the learner's code runs in the engine's sandbox, under a different uid,
with the hidden paths covered where namespaces are allowed and, where they are not (a container
without those privileges), with only file permissions between it and the tests (root-only: 0700).

The same holds for the reference implementations in the installed library (``site-packages/course``,
its sources and bytecode): root only (setup.sh, and again by ``run`` before each submission). The
grading process (root) imports the real library; the sandboxed worker imports the sandbox's
stripped copy of it (:mod:`grader.engine.strip`: the graded notebook's and later notebooks'
exercises are stubs), which the sandbox puts first on its ``sys.path`` (or mounts over the real
package) and which its uid can read. The rest of the installed grader (engine, public modules)
stays readable: the worker imports it.

``results.json`` follows Gradescope's specification: top-level ``score``, ``execution_time``,
``visibility``, ``output`` and ``tests`` (each with ``name``, ``score``, ``max_score``, ``status``,
``output``, ``visibility``); no top-level ``max_score`` (Gradescope sums the tests'). A notebook that
is missing, unreadable or not this assignment's scores zero with the reason in ``output``.
``AUTOGRADER_ROOT`` relocates ``/autograder`` (the project's tests use it).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

from grader.paths import CHECKPOINTS, GRADER_DIR, HIDDEN_DIR, ROOT
from grader.workflows.atomic import atomic_write

DEFAULT_ROOT = "/autograder"
MAX_NOTEBOOK_BYTES = 50 << 20
TORCH_INSTALL = ("pip install torch==2.13.0 || "
                 "pip install torch --index-url https://download.pytorch.org/whl/cpu")

SETUP_SH = """#!/usr/bin/env bash
# Gradescope runs this once, as root, in /autograder/source, when it builds the autograder image.
# (Choose an Ubuntu 22.04 or newer base image: the course needs Python >= 3.10.)
set -euxo pipefail
cd "$(dirname "$0")"
PY="${{COURSE_PYTHON:-python3}}"
"$PY" -m pip install --upgrade pip || true
# CPU PyTorch (no GPU on Gradescope): the tested version, else the newest CPU build
"$PY" -m {torch_first} || "$PY" -m {torch_second}
"$PY" -m pip install wheels/*.whl
SITE="$("$PY" -c 'import grader, os; print(os.path.dirname(os.path.dirname(os.path.abspath(grader.__file__))))')"
# the pretrained weights beside the installed library (where the sandboxed worker finds them)
mkdir -p "$SITE/checkpoints"
cp checkpoints/*.pt "$SITE/checkpoints/" 2>/dev/null || true
chmod -R a+rX "$SITE/checkpoints"
# the hidden tests, the library's reference implementations (sources and bytecode) and this folder:
# root only (the learner's code runs under another uid, with the sandbox's stripped copy of the library)
chown -R root:root "$SITE/grader/tests" "$SITE/course" .
chmod -R go-rwx "$SITE/grader/tests" "$SITE/course" .
"$PY" -c 'import torch, grader.engine.grade; print("course grader ready, torch", torch.__version__)'
"""

RUN_AUTOGRADER = """#!/usr/bin/env bash
# Gradescope runs this as root for every submission. It always leaves results.json behind.
# AUTOGRADER_ROOT relocates /autograder (for testing); COURSE_PYTHON picks the interpreter.
ROOT="${{AUTOGRADER_ROOT:-/autograder}}"
PY="${{COURSE_PYTHON:-python3}}"
mkdir -p "$ROOT/results"
"$PY" -m grader.workflows.gradescope run {notebook_id} --root "$ROOT"
status=$?
if [ ! -s "$ROOT/results/results.json" ]; then
  cat > "$ROOT/results/results.json" <<EOF
{{"score": 0.0, "execution_time": 0, "visibility": "visible", "output": "The autograder itself could not run (exit status $status): your notebook was not graded. Please tell your instructor.", "tests": []}}
EOF
fi
exit 0
"""

README = """Gradescope autograder for notebook {notebook_id} (built by `course gradescope`).

Upload this zip on the assignment's "Configure Autograder" page (Ubuntu 22.04+ base image).
Students hand in {notebook_id}.ipynb (any .ipynb of this notebook is accepted: a renamed file, or
the only notebook of the submission). Each exercise is one test; the score is the grader's.
"""


# ------------------------------------------------------------------------------------------------
# results.json
# ------------------------------------------------------------------------------------------------
def results_json(report: dict, execution_time: float = 0.0, visibility: str = "visible",
                 output: str | None = None) -> dict:
    """Gradescope's results.json for one grading report (one test per exercise)."""
    from grader.workflows.feedback import public_lines

    head = f"Notebook {report['notebook']}: {report['score']:g} / {report['max_score']:g}"
    if report.get("error"):
        head += f"\nThe notebook could not be graded: {report['error']}"
    return {
        "score": float(report["score"]),
        "execution_time": int(round(execution_time)),
        "visibility": visibility,
        "output": output if output is not None else head,
        "tests": [
            {"name": name, "score": float(r["score"]), "max_score": float(r["max_score"]),
             "status": "passed" if r["status"] == "passed" else "failed",
             "output": "\n".join(public_lines(list(r.get("feedback", [])))), "visibility": visibility}
            for name, r in report["exercises"].items()
        ],
    }


# ------------------------------------------------------------------------------------------------
# Building the zip
# ------------------------------------------------------------------------------------------------
def _ignore(_dir, names):
    return [n for n in names if n == "__pycache__" or n.endswith((".pyc", ".pyo")) or n.startswith(".")]


def build_wheel(notebook_id: str, out_dir: Path) -> Path:
    """A wheel of the library and the grader with this notebook's hidden tests (and no solutions)."""
    with tempfile.TemporaryDirectory(prefix="gradescope-src-") as tmp:
        src = Path(tmp)
        shutil.copytree(ROOT / "course", src / "course", ignore=_ignore)
        for pkg in ("engine", "public", "workflows"):
            shutil.copytree(GRADER_DIR / pkg, src / "grader" / pkg, ignore=_ignore)
        for name in ("__init__.py", "cli.py", "paths.py"):
            shutil.copy(GRADER_DIR / name, src / "grader" / name)
        (src / "grader" / "tests").mkdir()
        (src / "grader" / "tests" / "__init__.py").write_text('"""Hidden tests (root only)."""\n')
        shutil.copy(HIDDEN_DIR / f"test_{notebook_id}.py", src / "grader" / "tests" / f"test_{notebook_id}.py")
        shutil.copy(ROOT / "pyproject.toml", src / "pyproject.toml")
        (src / "README.md").write_text(f"Course grader for Gradescope ({notebook_id}).\n", encoding="utf-8")
        out_dir.mkdir(parents=True, exist_ok=True)
        done = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                               "-w", str(out_dir), str(src)], capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"building the course wheel failed:\n{done.stdout}\n{done.stderr}")
    (wheel,) = out_dir.glob("*.whl")
    return wheel


def build_gradescope(notebook_id: str, out_zip: Path, force: bool = False, budget_s: float = 600.0) -> Path:
    """Write Gradescope's autograder zip for ``notebook_id`` (``NN`` or ``NN_name``) to ``out_zip``."""
    from grader.engine import registry

    ids = [s.id for s in registry.notebooks()]
    matches = [i for i in ids if i == notebook_id or i.split("_", 1)[0] == notebook_id]
    if len(matches) != 1:
        raise ValueError(f"no single course notebook {notebook_id!r} (known: {', '.join(ids)})")
    nid = matches[0]
    if not (HIDDEN_DIR / f"test_{nid}.py").is_file():
        raise FileNotFoundError(f"no hidden tests grader/tests/test_{nid}.py: build from the course repository")
    out_zip = Path(out_zip).resolve()
    if out_zip.exists() and not force:
        raise FileExistsError(f"{out_zip} exists (use --force to replace it)")
    with tempfile.TemporaryDirectory(prefix="gradescope-") as tmp:
        stage = Path(tmp)
        wheel = build_wheel(nid, stage / "wheels")
        files = {
            "setup.sh": SETUP_SH.format(torch_first=TORCH_INSTALL.split(" || ")[0],
                                        torch_second=TORCH_INSTALL.split(" || ")[1]),
            "run_autograder": RUN_AUTOGRADER.format(notebook_id=nid),
            "README.txt": README.format(notebook_id=nid),
            "autograder.json": json.dumps({"notebook": nid, "budget_s": budget_s}, indent=1) + "\n",
        }
        out_zip.parent.mkdir(parents=True, exist_ok=True)
        partial = out_zip.with_name(f".{out_zip.name}.partial")
        with zipfile.ZipFile(partial, "w", zipfile.ZIP_DEFLATED) as zf:
            for name, text in files.items():
                info = zipfile.ZipInfo(name, date_time=(2026, 1, 1, 0, 0, 0))
                info.external_attr = (0o755 if name.endswith((".sh", "run_autograder")) else 0o644) << 16
                info.compress_type = zipfile.ZIP_DEFLATED
                zf.writestr(info, text)
            zf.write(wheel, f"wheels/{wheel.name}")
            for ckpt in sorted(CHECKPOINTS.glob("*.pt")):
                zf.write(ckpt, f"checkpoints/{ckpt.name}")
        os.replace(partial, out_zip)
    return out_zip


# ------------------------------------------------------------------------------------------------
# Running it (inside Gradescope's container)
# ------------------------------------------------------------------------------------------------
def find_submission(folder: Path, notebook_id: str) -> tuple[Path | None, str]:
    """The handed-in notebook: ``NN_name.ipynb`` anywhere under ``folder``, else the one notebook that
    says it is NN_name, else the only notebook. (path, note); path None with the reason."""
    from grader.engine import notebook as nbmod

    if not folder.is_dir():
        return None, "nothing was handed in"
    notebooks = sorted(p for p in folder.rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts)
    regular = [p for p in notebooks if not p.is_symlink() and p.is_file()]
    exact = [p for p in regular if p.name == f"{notebook_id}.ipynb"]
    if exact:
        return exact[0], ""
    claimed = []
    for p in regular:
        try:
            nid = nbmod.notebook_id(nbmod.read_notebook(p), p)
        except nbmod.NotANotebook:
            nid = None
        if nid == notebook_id:
            claimed.append(p)
    if len(claimed) == 1 or (len(regular) == 1 and not claimed):
        chosen = claimed[0] if claimed else regular[0]
        return chosen, f"(graded {chosen.name} as {notebook_id}.ipynb)"
    if not notebooks:
        return None, f"no notebook was handed in: hand in {notebook_id}.ipynb"
    if not regular:
        return None, f"the handed-in notebook is not a regular file: hand in {notebook_id}.ipynb itself"
    names = ", ".join(p.name for p in regular)
    return None, f"several notebooks were handed in ({names}) and none is {notebook_id}.ipynb"


def _zero_report(notebook_id: str, message: str) -> dict:
    from grader.workflows.autograde import error_report

    return error_report(notebook_id, message)


def _lock_down(paths: list[Path]) -> None:
    """Root only: what the learner's uid must not read (a no-op where we are not root)."""
    if os.name != "posix" or os.geteuid() != 0:
        return
    for path in paths:
        if path.exists():
            mode = path.stat().st_mode
            os.chmod(path, stat.S_IMODE(mode) & ~0o077)


def _installed_hidden_dirs() -> list[Path]:
    """The hidden tests of an installed (non-checkout) grader: the ones this process imports."""
    if (ROOT / ".git").exists() or (ROOT / "solutions").is_dir():
        return []  # a course repository: its permissions are the instructor's business
    return [HIDDEN_DIR] if HIDDEN_DIR.is_dir() else []


def _installed_library_dirs() -> list[Path]:
    """The real course library of an installed grader (its reference implementations): root only.
    The sandboxed worker imports the stripped copy instead (see the module's docstring)."""
    if not _installed_hidden_dirs():
        return []
    from grader.engine.strip import library_dir

    try:
        return [library_dir()]
    except ImportError:
        return []


def run(notebook_id: str, root: Path, isolate: bool = True, budget_s: float | None = None,
        seed: int | None = None) -> dict:
    """Grade the submission under ``root`` (Gradescope's /autograder) and write results.json."""
    from grader.engine.grade import GraderError
    from grader.engine.sandbox import Policy
    from grader.workflows.answers import grade_with_repair

    t0 = time.monotonic()
    root = Path(root).resolve()
    results_dir = root / "results"
    results_dir.mkdir(parents=True, exist_ok=True)
    config_file = root / "source" / "autograder.json"
    try:
        config = json.loads(config_file.read_text(encoding="utf-8")) if config_file.is_file() else {}
    except ValueError:
        config = {}
    budget_s = budget_s or float(config.get("budget_s", 600.0))
    hidden = [root / "source", root / "submission", results_dir, *_installed_hidden_dirs(),
              ROOT / "solutions", ROOT / "grader" / "tests", ROOT / "tests", ROOT / ".git"]
    _lock_down([root / "source", *_installed_hidden_dirs(), *_installed_library_dirs()])
    notebook, note = find_submission(root / "submission", notebook_id)
    report = None
    if notebook is not None and notebook.stat().st_size > MAX_NOTEBOOK_BYTES:
        notebook, note = None, f"the notebook is larger than {MAX_NOTEBOOK_BYTES >> 20} MB"
    if notebook is None:
        report = _zero_report(notebook_id, note)
    else:
        with tempfile.TemporaryDirectory(prefix="gradescope-nb-") as tmp:  # 0700: ours alone
            copy = Path(tmp) / f"{notebook_id}.ipynb"
            shutil.copyfile(notebook, copy)
            try:
                report = grade_with_repair(copy, notebook_id=notebook_id, seed=seed, budget_s=budget_s,
                                           policy=Policy(isolate=isolate, hidden=[str(p) for p in hidden]))
            except GraderError as exc:
                report = _zero_report(notebook_id, f"the notebook could not be graded: {str(exc).splitlines()[0]}")
            except Exception as exc:  # noqa: BLE001 - Gradescope must get a results.json, never a crash
                report = _zero_report(notebook_id, f"the grader failed on this notebook ({type(exc).__name__}: "
                                                   f"{str(exc).splitlines()[0] if str(exc) else ''}); tell your instructor")
    results = results_json(report, execution_time=time.monotonic() - t0)
    if note and notebook is not None:
        results["output"] += f"\n{note}"
    if report.get("sandbox"):
        results["output"] += f"\n(the notebook ran in the grader's sandbox: {report['sandbox']})"
        if report["sandbox"] not in ("namespaces+uid", "not started"):  # stdout: the instructor's view
            print(f"warning: the learner's code ran with isolation {report['sandbox']!r}, not namespaces+uid: "
                  "the hidden tests were protected by file permissions only (see docs/INSTRUCTOR.md)",
                  file=sys.stderr)
    atomic_write(results_dir / "results.json", json.dumps(results, indent=2) + "\n")
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m grader.workflows.gradescope")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("run", help="grade Gradescope's submission and write results.json")
    p.add_argument("notebook")
    p.add_argument("--root", default=os.environ.get("AUTOGRADER_ROOT", DEFAULT_ROOT))
    p.add_argument("--no-isolate", action="store_true", help="no namespaces (file permissions only)")
    p.add_argument("--seed", type=int)
    args = parser.parse_args(argv)
    isolate = not args.no_isolate and os.environ.get("COURSE_GRADESCOPE_ISOLATE", "1") != "0"
    results = run(args.notebook, Path(args.root), isolate=isolate, seed=args.seed)
    print(results["output"])
    for t in results["tests"]:
        print(f"  {t['name']}: {t['score']:g}/{t['max_score']:g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""`course gradescope 01 OUT.zip`: the autograder zip, run as Gradescope runs it.

The module fixture builds the zip once, unpacks it into ``<tmp>/autograder/source`` (Gradescope's
layout, relocated with ``AUTOGRADER_ROOT``), and installs its wheel (with the hidden tests) into a
fresh virtual environment (no network: torch and friends come from this environment through a
.pth file), standing in for what ``setup.sh`` does. Then ``run_autograder`` grades submissions:
a renamed notebook that snoops for the hidden tests, a file that is not a notebook, nothing at all.
"""
from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import shutil
import tempfile
import zipfile
from pathlib import Path

import nbformat
import pytest

import support
from grader.workflows.gradescope import results_json

ROOT = Path(__file__).resolve().parents[1]
A = "01_toy_flows"
TOP_KEYS = {"score", "execution_time", "visibility", "output", "tests"}
TEST_KEYS = {"name", "score", "max_score", "status", "output", "visibility"}

SNOOP = '''def euler_step(f, x, t, dt):
    """Reads the hidden tests and the autograder's source before answering: must not be able to."""
    import os

    import grader

    open(os.path.join(os.path.dirname(grader.__file__), "tests", "test_01_toy_flows.py")).read()
    open(os.path.join(AUTOGRADER_ROOT, "source", "autograder.json")).read()
    return x + dt * f(x, t)
'''

# Loads the installed library's real flows.py (beside the installed grader) and calls its divergence:
# the reference, past the sandbox's stripped copy; must not be able to.
STEAL = '''def divergence(f, x, t, create_graph=False):
    import importlib.util, os

    import grader

    path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(grader.__file__))), "course", "flows.py")
    spec = importlib.util.spec_from_file_location("stolen_flows", path)
    stolen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(stolen)
    return stolen.divergence(f, x, t, create_graph)
'''


def shared_interpreter() -> str:
    """A Python of this version that every uid can read (as /usr/bin's is on Gradescope), else this
    one: the sandbox can run the learner's code as another uid only with the former."""
    from grader.engine.sandbox import _unreadable_to_others

    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    for candidate in (f"/usr/bin/python{version}", f"/usr/local/bin/python{version}"):
        if os.path.isfile(candidate) and _unreadable_to_others(candidate) is None:
            lib = subprocess.run([candidate, "-c", "import sysconfig; print(sysconfig.get_paths()['stdlib'])"],
                                 capture_output=True, text=True)
            if lib.returncode == 0 and _unreadable_to_others(lib.stdout.strip()) is None:
                return candidate
    return sys.executable


def make_venv(where: Path) -> Path:
    return support.make_venv(where, shared_interpreter())


@pytest.fixture(scope="module")
def autograder(tmp_path_factory):
    base = tmp_path_factory.mktemp("gradescope")
    out = base / "autograder_01.zip"
    done = subprocess.run([sys.executable, "-m", "grader.cli", "gradescope", "01", str(out)], cwd=ROOT,
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr
    source = base / "autograder" / "source"
    with zipfile.ZipFile(out) as zf:
        zf.extractall(source)
        modes = {i.filename: i.external_attr >> 16 for i in zf.infolist()}
    for name in ("setup.sh", "run_autograder"):
        os.chmod(source / name, 0o755)
    # outside pytest's own folder (root-only), where any uid may enter, as /usr or /autograder's venv
    shared = Path(tempfile.mkdtemp(prefix="gradescope-venv-"))
    os.chmod(shared, 0o755)
    python = make_venv(shared / "venv")
    (wheel,) = (source / "wheels").glob("*.whl")
    done = subprocess.run([str(python), "-m", "pip", "install", "-q", "--no-deps", "--ignore-installed", str(wheel)],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    yield {"zip": out, "root": base / "autograder", "python": python, "modes": modes}
    shutil.rmtree(shared, ignore_errors=True)


def run_autograder(autograder, files: dict[str, str | bytes], isolate: bool = True) -> dict:
    root = autograder["root"]
    for sub in ("submission", "results"):
        folder = root / sub
        if folder.exists():
            for p in sorted(folder.rglob("*"), reverse=True):
                p.unlink() if p.is_file() else p.rmdir()
        folder.mkdir(exist_ok=True)
    for name, data in files.items():
        path = root / "submission" / name
        path.write_bytes(data if isinstance(data, bytes) else data.encode())
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(AUTOGRADER_ROOT=str(root), COURSE_PYTHON=str(autograder["python"]), COURSE_THREADS="1",
               COURSE_GRADESCOPE_ISOLATE="1" if isolate else "0")
    done = subprocess.run(["bash", str(root / "source" / "run_autograder")], cwd=root / "source", env=env,
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout + done.stderr
    results = json.loads((root / "results" / "results.json").read_text())
    assert_gradescope_schema(results)
    return results


def assert_gradescope_schema(results: dict) -> None:
    """Gradescope's specification: these keys only (no top-level max_score), typed as it expects."""
    assert set(results) == TOP_KEYS, set(results)
    assert isinstance(results["score"], float) and isinstance(results["execution_time"], int)
    assert results["visibility"] in ("visible", "hidden", "after_due_date", "after_published")
    assert isinstance(results["output"], str) and results["output"]
    for test in results["tests"]:
        assert set(test) == TEST_KEYS, set(test)
        assert isinstance(test["score"], float) and isinstance(test["max_score"], float)
        assert test["status"] in ("passed", "failed") and isinstance(test["output"], str)


def snooping_notebook(root: Path, steal: bool = False) -> str:
    """The reference answers, but euler_step snoops for the hidden tests (and, with ``steal``,
    divergence runs the installed library's own reference)."""
    solution = nbformat.read(ROOT / "solutions" / f"{A}.ipynb", as_version=4)
    full = {c.metadata["nbgrader"]["grade_id"]: c.source for c in solution.cells
            if (c.metadata.get("nbgrader") or {}).get("solution")}
    if steal:
        full["divergence"] = STEAL
    nb = nbformat.read(ROOT / "notebooks" / f"{A}.ipynb", as_version=4)
    for cell in nb.cells:
        gid = (cell.metadata.get("nbgrader") or {}).get("grade_id")
        if gid in full and not gid.startswith("setup"):
            cell.source = SNOOP.replace("AUTOGRADER_ROOT", repr(str(root))) if gid == "euler_step" else full[gid]
    return nbformat.writes(nb)


def test_the_zip_is_a_gradescope_autograder(autograder):
    with zipfile.ZipFile(autograder["zip"]) as zf:
        names = zf.namelist()
        setup = zf.read("setup.sh").decode()
        (wheel_name,) = [n for n in names if n.startswith("wheels/") and n.endswith(".whl")]
        wheel = autograder["root"] / "source" / wheel_name
    assert {"setup.sh", "run_autograder", "autograder.json"} <= set(names)
    assert autograder["modes"]["run_autograder"] & stat.S_IXUSR and autograder["modes"]["setup.sh"] & stat.S_IXUSR
    assert "pip install torch==2.13.0" in setup and "https://download.pytorch.org/whl/cpu" in setup
    assert "pip install wheels/*.whl" in setup and 'chmod -R go-rwx "$SITE/grader/tests" "$SITE/course"' in setup
    inside = zipfile.ZipFile(wheel).namelist()
    assert "grader/tests/test_01_toy_flows.py" in inside and "grader/engine/pytest.ini" in inside
    assert not [n for n in inside if n.startswith("grader/tests/test_") and "01_toy_flows" not in n]
    assert not [n for n in names + inside if "solutions" in n]


def test_a_renamed_notebook_is_graded_and_the_hidden_tests_stay_hidden(autograder):
    results = run_autograder(autograder, {"snoop_work.ipynb": snooping_notebook(autograder["root"])})
    scores = {t["name"]: t["score"] for t in results["tests"]}
    if "namespaces+uid" not in results["output"]:
        assert not namespaces_here(), results["output"]  # the installed grader is isolated where it can be
        pytest.skip(f"no namespaces on this machine: {results['output'][-300:]}")
    assert scores["euler_step"] == 0.0, results["tests"][0]["output"]  # could not read them
    maxima = {t["name"]: t["max_score"] for t in results["tests"]}
    assert results["score"] == sum(maxima.values()) - maxima["euler_step"], results["output"]
    assert "graded snoop_work.ipynb as 01_toy_flows.ipynb" in results["output"]
    assert "def test_" not in json.dumps(results)


def test_without_namespaces_file_permissions_still_hide_the_hidden_tests_and_the_references(autograder):
    """Root without namespaces (Gradescope's container without those privileges): the learner's code
    runs as a fresh uid, which can read neither the hidden tests nor the installed library's real
    sources (root only), only the sandbox's stripped copy."""
    if os.geteuid() != 0:
        pytest.skip("Gradescope runs the autograder as root; as an ordinary user there is no other uid to use")
    results = run_autograder(autograder, {f"{A}.ipynb": snooping_notebook(autograder["root"], steal=True)},
                             isolate=False)
    if "uid+limits" not in results["output"]:  # a Python only root can read (the sandbox warns)
        pytest.skip("no Python of this version readable by another uid on this machine")
    scores = {t["name"]: t["score"] for t in results["tests"]}
    outputs = {t["name"]: t["output"] for t in results["tests"]}
    assert scores["euler_step"] == 0.0, outputs["euler_step"]
    assert scores["divergence"] == 0.0, outputs["divergence"]  # the real flows.py is root only
    assert "Permission" in outputs["divergence"], outputs["divergence"]
    maxima = {t["name"]: t["max_score"] for t in results["tests"]}
    assert results["score"] == sum(maxima.values()) - maxima["euler_step"] - maxima["divergence"], results["output"]
    assert "def test_" not in json.dumps(results)
    where = "import course, os; print(os.path.dirname(course.__file__))"
    library = Path(subprocess.run([str(autograder["python"]), "-c", where], capture_output=True,  # not the
                                  text=True, cwd="/").stdout.strip())  # project's course/ from the cwd
    assert stat.S_IMODE(library.stat().st_mode) & 0o077 == 0, oct(library.stat().st_mode)


def namespaces_here() -> bool:
    """Whether this machine lets the sandbox make namespaces (as the grading process would)."""
    done = subprocess.run(["unshare", "--mount", "--pid", "--fork", "--map-root-user", "true"] if os.geteuid()
                          else ["unshare", "--mount", "--pid", "--fork", "true"], capture_output=True)
    return done.returncode == 0


@pytest.mark.parametrize("files, reason", [
    ({f"{A}.ipynb": "{this is not a notebook"}, "not a notebook"),
    ({}, "no notebook was handed in"),
    ({"notes.txt": "hello"}, "no notebook was handed in"),
    ({"a.ipynb": "{}", "b.ipynb": "{}"}, "several notebooks"),
])
def test_a_broken_or_missing_submission_scores_zero_with_a_message(autograder, files, reason):
    results = run_autograder(autograder, files)
    assert results["score"] == 0.0 and reason in results["output"], results["output"]
    assert [t["name"] for t in results["tests"]][:2] == ["euler_step", "heun_step"]
    assert all(t["score"] == 0.0 for t in results["tests"])


def test_results_json_of_any_report_follows_the_specification():
    report = {"notebook": A, "score": 1.5, "max_score": 3.0, "exercises": {
        "euler_step": {"score": 1.0, "max_score": 1.0, "status": "passed", "feedback": ["3 of 3 tests passed."]},
        "heun_step": {"score": 0.5, "max_score": 2.0, "status": "failed",
                      "feedback": ["1 of 2", 'File "/x/grader/tests/test_01.py", line 3\nsecret']}}}
    results = results_json(report, execution_time=2.6)
    assert_gradescope_schema(results)
    assert results["execution_time"] == 3 and results["score"] == 1.5
    assert "grader/tests" not in results["tests"][1]["output"]


def test_a_python_under_a_root_only_folder_is_named_as_what_blocks_another_uid():
    from grader.engine.sandbox import _unreadable_to_others, uid_drop_blocker

    tmp_path = Path(tempfile.mkdtemp(prefix="uid-blocker-"))  # pytest's own folder is closed to others
    try:
        _check_blocker(tmp_path, _unreadable_to_others, uid_drop_blocker)
    finally:
        shutil.rmtree(tmp_path, ignore_errors=True)


def _check_blocker(tmp_path, _unreadable_to_others, uid_drop_blocker):
    closed = tmp_path / "home"
    (closed / "bin").mkdir(parents=True)
    (closed / "bin" / "python").write_text("")
    os.chmod(tmp_path, 0o755)
    os.chmod(closed, 0o700)
    assert _unreadable_to_others(str(closed / "bin" / "python")) == str(closed)
    os.chmod(closed, 0o755)
    os.chmod(closed / "bin" / "python", 0o644)
    assert _unreadable_to_others(str(closed / "bin" / "python")) is None
    if os.geteuid() == 0:
        os.chmod(closed, 0o700)
        reason = uid_drop_blocker([str(closed / "bin" / "python")])
        assert reason and "not readable by another uid" in reason  # (here, or /root on a pyenv machine)

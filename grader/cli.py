"""The ``course`` command line.

    course demo                      run notebook 01's reference (fast mode), grade it and the blank
                                     student notebook, print both scores
    course grade NOTEBOOK [--json F] [--results-json F] [--exercise NAME] [--seed N]
    course release [--force]         regenerate notebooks/ from solutions/ (nbgrader); refuses to replace a
                                     notebook that holds answers unless --force
    course run NOTEBOOK [--full]     execute a notebook in a Jupyter kernel

  instructor (docs/INSTRUCTOR.md):
    course init-class DIR            an nbgrader course directory from solutions/
    course autograde DIR [--assignment A] [--workers N] [--student ID]   grade submitted/ in the sandbox,
                                     into the gradebook (nbgrader autograde is refused there)
    course gradescope NN OUT.zip     a Gradescope autograder for one notebook (hidden tests inside)
    course bundle OUT [--through NN | --class DIR]   what students receive: notebooks, library,
                                     public tests only (staged: no reference of NN or later exercises)
    course publish DIR NN            record in DIR/published.json that notebooks up to NN are released
    course similarity DIR [--assignment A]   near-copies of the reference or of another student
  learner:
    course start DIR                 copy the student notebooks into your own folder (never replaces a file)
    course progress [--dir DIR]      every notebook's exercises and your current scores (default: your folder)
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from grader.engine.grade import GraderError, grade_notebook
from grader.engine.report import format_table, write_json
from grader.paths import NOTEBOOKS, ROOT, SOLUTIONS
from grader.workflows.autograde import Options, autograde
from grader.workflows.bundle import build_bundle
from grader.workflows.coursedir import init_class
from grader.workflows.execute import execute_notebook
from grader.workflows.progress import format_progress, progress
from grader.workflows.release import ReleaseRefused, release
from grader.workflows.start import start


def cmd_grade(args) -> int:
    from grader.engine.sandbox import limit_own_memory
    from grader.workflows.answers import grade_with_repair

    limit_own_memory()  # the grading process too (COURSE_GRADER_MEMORY_MB)
    try:
        report = grade_with_repair(args.notebook, exercise=args.exercise, seed=args.seed,
                                   notebook_id=args.notebook_id, budget_s=args.budget)
    except GraderError as exc:
        print(f"course grade: {str(exc).splitlines()[0]}", file=sys.stderr)
        return 2
    print(format_table(report, verbose=not args.quiet))
    if args.json:
        write_json(report, args.json)
    if args.results_json:
        from grader.workflows.gradescope import results_json

        write_json(results_json(report), args.results_json)
    return 0


def cmd_release(args) -> int:
    try:
        release(Path(args.out), only=args.only, force=args.force)
    except ReleaseRefused as exc:
        print(f"course release: {exc}", file=sys.stderr)
        return 1
    return 0


def cmd_start(args) -> int:
    try:
        copied, kept = start(Path(args.dir))
    except ValueError as exc:
        print(f"course start: {exc}", file=sys.stderr)
        return 2
    folder = Path(args.dir).expanduser().resolve()
    for path in copied:
        print(f"copied   {path.name}")
    for path in kept:
        print(f"kept     {path.name} (already there: your work is never replaced)")
    print(f"\nYour notebooks: {folder}\nOpen them with `jupyter lab {folder}`; `course progress` now reads "
          "this folder, and `course grade` takes a notebook's path.")
    return 0


def cmd_run(args) -> int:
    seconds = execute_notebook(args.notebook, fast=not args.full, output=args.output)
    print(f"{args.notebook}: ran in {seconds:.1f} s ({'full' if args.full else 'fast'} mode)")
    return 0


def cmd_demo(args) -> int:
    """The whole loop at once, on built-in defaults."""
    import tempfile

    solution = SOLUTIONS / "01_toy_flows.ipynb"
    student = NOTEBOOKS / "01_toy_flows.ipynb"
    if not solution.is_file() or not student.is_file():
        print("course demo runs the reference solutions, which are in the course repository only (this is "
              "an installed student bundle without them).\nIn the bundle: open notebooks/01_toy_flows.ipynb "
              "(jupyter lab notebooks/), answer, `check(\"euler_step\")` in the notebook, then\n"
              "  course grade notebooks/01_toy_flows.ipynb     and     course progress", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        print(f"1. Running the reference notebook {solution.relative_to(ROOT)} in fast mode ...", flush=True)
        seconds = execute_notebook(solution, fast=True, output=Path(tmp) / "executed.ipynb")
        print(f"   ran in {seconds:.1f} s\n")
    print("2. Grading the reference solution (hidden tests, sandboxed) ...", flush=True)
    ref = grade_notebook(solution)
    print(format_table(ref, verbose=False) + "\n")
    print(f"3. Grading the blank student notebook {student.relative_to(ROOT)} ...", flush=True)
    blank = grade_notebook(student)
    print(format_table(blank, verbose=False) + "\n")
    print(f"Reference: {ref['score']:g}/{ref['max_score']:g}   Blank student notebook: "
          f"{blank['score']:g}/{blank['max_score']:g}")
    print("Next: course start ~/diffusion-work (your own copy of the notebooks), jupyter lab ~/diffusion-work,\n"
          "      answer 01_toy_flows.ipynb, then course grade ~/diffusion-work/01_toy_flows.ipynb")
    ok = ref["score"] == ref["max_score"] and blank["score"] == 0
    return 0 if ok else 1


def cmd_init_class(args) -> int:
    init_class(Path(args.dir), solutions_dir=Path(args.solutions), only=args.only, duedate=args.duedate,
               late_penalty=args.late_penalty)
    return 0


def cmd_autograde(args) -> int:
    limits = {}
    if args.call_timeout:
        limits["call_timeout"] = args.call_timeout
    if args.cell_timeout:
        limits["cell_timeout"] = args.cell_timeout
    if args.memory_mb:
        limits["memory_mb"] = args.memory_mb
    opts = Options(budget_s=args.budget, limits=limits, seed=args.seed, results_json=args.results_json,
                   force=args.force, warm=False if args.cold else None)
    try:
        rows = autograde(Path(args.dir), assignment=args.assignment, workers=args.workers, opts=opts,
                         csv_path=args.csv, student=args.student)
    except FileNotFoundError as exc:
        print(f"course autograde: {exc}", file=sys.stderr)
        return 2
    return 0 if not any(r["report"].get("grader_failure") for r in rows) else 1


def cmd_bundle(args) -> int:
    through = args.through
    try:
        if args.class_dir:
            from grader.workflows.bundle import read_published

            through = read_published(Path(args.class_dir))
        out = build_bundle(Path(args.out), force=args.force, only=args.only, through=through)
    except (FileNotFoundError, FileExistsError, ValueError) as exc:
        print(f"course bundle: {exc}", file=sys.stderr)
        return 2
    staged = f" (staged through {through}: no reference of its exercises or later ones)" if through else ""
    print(f"student bundle written to {out}{staged}")
    return 0


def cmd_publish(args) -> int:
    from grader.workflows.bundle import publish

    try:
        nid = publish(Path(args.dir), args.notebook)
    except (FileNotFoundError, ValueError) as exc:
        print(f"course publish: {exc}", file=sys.stderr)
        return 2
    print(f"{args.dir}: notebooks up to {nid} released; solutions of the notebooks before it published "
          f"(`course bundle OUT --class {args.dir}`)")
    return 0


def cmd_similarity(args) -> int:
    from grader.workflows.similarity import similarity_report

    try:
        result = similarity_report(Path(args.dir), assignment=args.assignment, threshold=args.threshold,
                                   out_dir=Path(args.out) if args.out else None)
    except (FileNotFoundError, ValueError) as exc:
        print(f"course similarity: {exc}", file=sys.stderr)
        return 2
    print(result.summary())
    return 0


def cmd_gradescope(args) -> int:
    from grader.workflows.gradescope import build_gradescope

    try:
        out = build_gradescope(args.notebook, Path(args.out), force=args.force, budget_s=args.budget)
    except (FileNotFoundError, FileExistsError, ValueError, RuntimeError) as exc:
        print(f"course gradescope: {exc}", file=sys.stderr)
        return 2
    print(f"Gradescope autograder written to {out} (upload it on the assignment's Configure Autograder page; "
          "see docs/INSTRUCTOR.md)")
    return 0


def cmd_progress(args) -> int:
    from grader.workflows.progress import default_notebooks_dir

    folder = Path(args.dir) if args.dir else default_notebooks_dir()
    try:
        rows = progress(folder, only=args.only, budget_s=args.budget)
    except FileNotFoundError as exc:
        print(f"course progress: {exc}", file=sys.stderr)
        return 2
    print(f"Your notebooks: {folder.resolve()}\n")
    print(format_progress(rows))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="course", description="Diffusion & flow models, by doing.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("grade", help="grade a notebook with the hidden tests")
    p.add_argument("notebook")
    p.add_argument("--json", help="write the report as JSON here")
    p.add_argument("--results-json", help="write Gradescope's results.json here")
    p.add_argument("--exercise", help="grade only this exercise")
    p.add_argument("--seed", type=int, help="seed of the hidden tests' random inputs (default: random)")
    p.add_argument("--notebook-id", help="which course notebook this is, if its name does not say")
    p.add_argument("--budget", type=float, default=300.0, help="seconds for the whole notebook (default 300)")
    p.add_argument("--quiet", action="store_true", help="scores only, no feedback")
    p.set_defaults(func=cmd_grade)

    p = sub.add_parser("release", help="generate notebooks/ from solutions/ with nbgrader")
    p.add_argument("--out", default=str(NOTEBOOKS))
    p.add_argument("--only", action="append", help="release only this notebook id (repeatable)")
    p.add_argument("--force", action="store_true",
                   help="also replace notebooks that hold a learner's answers (they are lost)")
    p.set_defaults(func=cmd_release)

    p = sub.add_parser("start", help="copy the student notebooks into a folder of your own, to work there")
    p.add_argument("dir", help="your working folder (created if needed; existing notebooks are kept)")
    p.set_defaults(func=cmd_start)

    p = sub.add_parser("run", help="execute a notebook in a Jupyter kernel")
    p.add_argument("notebook")
    p.add_argument("--full", action="store_true", help="full budgets (default: fast mode)")
    p.add_argument("--output", help="save the executed notebook here")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("init-class", help="create an nbgrader course directory from solutions/")
    p.add_argument("dir")
    p.add_argument("--solutions", default=str(SOLUTIONS), help="where the source notebooks are")
    p.add_argument("--only", action="append", help="only this notebook id (repeatable)")
    p.add_argument("--duedate", help="due date of every assignment, e.g. '2026-03-01 17:00:00 UTC'")
    p.add_argument("--late-penalty", choices=("none", "zero"), default="none",
                   help="nbgrader's LateSubmissionPlugin.penalty_method (default none: record only)")
    p.set_defaults(func=cmd_init_class)

    p = sub.add_parser("autograde", help="grade every submission of a course directory (sandboxed, parallel)")
    p.add_argument("dir")
    p.add_argument("--assignment", help="only this assignment")
    p.add_argument("--workers", type=int, default=2, help="grading processes at a time (default 2)")
    p.add_argument("--cold", action="store_true",
                   help="start a fresh process per submission (no warm zygote; as COURSE_WARM=0)")
    p.add_argument("--budget", type=float, default=300.0, help="seconds per notebook (default 300)")
    p.add_argument("--call-timeout", type=float, help="seconds per call of the learner's code (default 20)")
    p.add_argument("--cell-timeout", type=float, help="seconds per notebook cell (default 30)")
    p.add_argument("--memory-mb", type=int, help="address-space limit of the learner's process (default 3072)")
    p.add_argument("--seed", type=int, help="seed of the hidden tests' inputs (default: random per submission)")
    p.add_argument("--results-json", action="store_true", help="also write Gradescope results.json files")
    p.add_argument("--csv", help="the class CSV (default DIR/course-grades.csv; nbgrader export writes grades.csv)")
    p.add_argument("--student", help="regrade this student only (always regraded; the class CSV is rewritten)")
    p.add_argument("--force", action="store_true", help="regrade unchanged submissions too")
    p.set_defaults(func=cmd_autograde)

    p = sub.add_parser("bundle", help="build what students receive (no solutions, no hidden tests)")
    p.add_argument("out")
    p.add_argument("--force", action="store_true", help="replace OUT if it exists")
    p.add_argument("--only", action="append", help="only this notebook id (repeatable; default all)")
    staged = p.add_mutually_exclusive_group()
    staged.add_argument("--through", metavar="NN",
                        help="staged release: notebooks up to NN; references of the exercises of NN and "
                             "later notebooks left out of the library")
    staged.add_argument("--class", dest="class_dir", metavar="DIR",
                        help="staged release as recorded by `course publish DIR NN`")
    p.set_defaults(func=cmd_bundle)

    p = sub.add_parser("publish", help="record which notebooks a class has released (for `bundle --class`)")
    p.add_argument("dir", help="the course directory")
    p.add_argument("notebook", metavar="NN", help="the notebook now released; solutions before it published")
    p.set_defaults(func=cmd_publish)

    p = sub.add_parser("similarity", help="near-copies among autograded answers (flags only, scores unchanged)")
    p.add_argument("dir", help="the course directory (after `course autograde`)")
    p.add_argument("--assignment", help="only this assignment (NN or NN_name)")
    p.add_argument("--threshold", type=float, default=0.7,
                   help="similarity (0..1, token 4-gram Jaccard) from which a pair is flagged (default 0.7)")
    p.add_argument("--out", help="where the HTML and CSV reports go (default DIR/similarity/)")
    p.set_defaults(func=cmd_similarity)

    p = sub.add_parser("gradescope", help="build a Gradescope autograder zip for one notebook")
    p.add_argument("notebook", metavar="NN", help="the notebook (NN or NN_name)")
    p.add_argument("out", metavar="OUT.zip")
    p.add_argument("--force", action="store_true", help="replace OUT.zip if it exists")
    p.add_argument("--budget", type=float, default=600.0, help="seconds for grading one notebook (default 600)")
    p.set_defaults(func=cmd_gradescope)

    p = sub.add_parser("progress", help="your current score on every notebook's exercises")
    p.add_argument("--dir", help="your notebooks (default: the repository's notebooks/; in an installed "
                                 "bundle ./notebooks, else the working directory)")
    p.add_argument("--only", action="append", help="only this notebook id (repeatable)")
    p.add_argument("--budget", type=float, default=120.0, help="seconds per notebook")
    p.set_defaults(func=cmd_progress)

    p = sub.add_parser("demo", help="run, grade and score notebook 01 end to end")
    p.set_defaults(func=cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())

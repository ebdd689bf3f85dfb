"""The one AST stripper: the course library without the reference implementations of exercises.

Two places must not hold the reference of an exercise, and both use this module:

- the grading sandbox's view of the library while notebook NN is graded
  (:func:`stripped_library`, re-exported by :mod:`grader.engine.stripped`): NN's exercises and every
  later notebook's are stubs that raise ``RuntimeError("course.ddpm.q_sample is the reference answer
  of 03_ddpm: not available while grading 03_ddpm")``;
- the staged student bundle ``course bundle OUT --through NN`` (:mod:`grader.workflows.bundle`):
  the same definitions are stubs that raise ``NotImplementedError("q_sample is an exercise of
  03_ddpm: write it in the notebook")``.

What differs between the two is a parameter, not a copy: the stub's message and exception
(:func:`sandbox_message`, :func:`bundle_message`), and which of the graded notebook's exercises
stay (``given``: the sandbox keeps a notebook's ``SANDBOX_GIVEN``, the bundle keeps none).

The steps:

1. :func:`exercise_targets`: the definitions implementing the exercises of a set of notebooks:
   each notebook's ``LIBRARY`` map (``"course.ddpm:q_sample"``), plus a function of the same module
   that carries the exercise's own name (``course.rectified_flow:sample_ode`` when the map points
   at the loop ``euler_path`` it wraps).
2. :func:`plan`: which of them to stub. The first notebook's exercises always; a later notebook's
   unless the library's earlier building blocks need it (:func:`needed_by_library`: reachable, by
   the names it uses resolved through each module's imports, from the code of the modules that hold
   no exercise: a guard for future seams, none today, since ``course.nets.TimeMLP`` has its own
   time features and no longer calls 08's ``timestep_embedding``); and
   any other definition whose normalised AST is that of a stubbed one (a copy elsewhere).
3. :func:`strip_source` / :func:`write_stripped`: each such definition (by its line span; the
   rest of the file is kept verbatim) becomes its signature (literal defaults only) and one
   ``raise``; a class keeps its name, bases and decorators, and gets an ``__init__`` that raises.
   No docstring, comment or statement of the original definition is left.

:func:`fingerprint` hashes a definition's normalised AST (docstrings dropped, the names it binds
itself -- arguments, locals, its own name -- numbered in order of appearance; globals, attributes and
constants kept), so a copy survives renaming and reformatting. :func:`reference_fingerprints`
collects the fingerprints of the references (library definitions and the solution notebooks'
answer cells) and :func:`find_fingerprints` looks for them in a tree of files (the bundle's audit).
"""
from __future__ import annotations

import ast
import hashlib
import json
import os
import re
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

VERSION = "2"  # of the stubs this module writes (part of the sandbox cache's key)
PACKAGE = "course"
MIN_NODES = 12  # definitions smaller than this (``return a + b``) are too generic to fingerprint
_DEFS = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
_SKIP_DIRS = {"__pycache__"}


# ------------------------------------------------------------------------------------------------
# The library and its notebooks
# ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Target:
    qualname: str  # "course.ddpm:q_sample" (module:name, name may be "Class.method")
    notebook: str  # "03_ddpm"
    exercise: str  # "q_sample"

    @property
    def module(self) -> str:
        return self.qualname.split(":")[0]

    @property
    def name(self) -> str:
        return self.qualname.split(":")[1]


def notebook_number(notebook: str | int) -> int:
    """``"04"``, ``"04_ddim"``, ``4`` -> 4."""
    if isinstance(notebook, int):
        return notebook
    m = re.match(r"^(\d{1,2})(_|$)", str(notebook))
    if not m:
        raise ValueError(f"not a notebook id: {notebook!r} (expected NN or NN_name)")
    return int(m.group(1))


def library_dir() -> Path:
    """The real ``course`` package folder (found without importing it)."""
    import importlib.util

    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("the course library cannot be found")
    return Path(list(spec.submodule_search_locations)[0]).resolve()


def _root(root: Path | None) -> Path:
    """The folder holding the ``course`` package (default: the one Python imports)."""
    return Path(root) if root is not None else library_dir().parent


def _module_file(module: str, root: Path) -> Path:
    path = root.joinpath(*module.split("."))
    return path / "__init__.py" if path.is_dir() else path.with_suffix(".py")


def _module_name(rel: Path) -> str:
    """``ddpm.py`` (relative to the package) -> ``course.ddpm``."""
    parts = list(rel.with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join([PACKAGE, *parts])


def package_files(package_dir: Path) -> list[Path]:
    """The package's files relative to it, sorted, without caches and bytecode."""
    out = []
    for dirpath, dirnames, filenames in os.walk(package_dir):
        dirnames[:] = sorted(d for d in dirnames if d not in _SKIP_DIRS)
        for f in sorted(filenames):
            if not f.endswith((".pyc", ".pyo")):
                out.append(Path(dirpath, f).relative_to(package_dir))
    return out


def read_trees(package_dir: Path) -> dict[str, ast.Module]:
    """``module -> syntax tree`` of every ``.py`` file of the package."""
    package_dir = Path(package_dir)
    return {_module_name(rel): ast.parse((package_dir / rel).read_bytes(), filename=str(rel))
            for rel in package_files(package_dir) if rel.suffix == ".py"}


def _top_defs(tree: ast.Module | None) -> list:
    return [] if tree is None else [n for n in tree.body if isinstance(n, _DEFS)]


def exercise_targets(through: str | int | None = None, root: Path | None = None,
                     notebooks: list[str] | None = None, given: Iterable[str] = ()) -> list[Target]:
    """The library definitions implementing the exercises of notebook ``through`` and every later one.

    ``notebooks``: an explicit list of notebook ids instead. ``root``: the folder holding the
    ``course`` package (default: the installed one). ``given``: exercises of the first notebook whose
    library implementation stays (the sandbox's ``SANDBOX_GIVEN``; a definition that implements a
    given exercise stays even when it also implements another one).
    """
    from grader.engine import registry

    root = _root(root)
    if notebooks is None:
        first = notebook_number(through if through is not None else 0)
        notebooks = [s.id for s in registry.notebooks() if notebook_number(s.id) >= first]
    given = set(given)
    first_id = min(notebooks, key=notebook_number) if notebooks else None
    spared = {registry.spec_for(first_id).library[e] for e in given
              if first_id and e in registry.spec_for(first_id).library}
    names: dict[str, set[str]] = {}
    targets: list[Target] = []
    seen: set[str] = set(spared)
    for nid in notebooks:
        spec = registry.spec_for(nid)
        for exercise, qualname in spec.library.items():
            if nid == first_id and exercise in given:
                continue
            module = qualname.split(":")[0]
            if module not in names:
                try:
                    tree = ast.parse(_module_file(module, root).read_text(encoding="utf-8"))
                except (OSError, SyntaxError):
                    tree = None
                names[module] = {n.name for n in _top_defs(tree)}
            candidates = [qualname] + ([f"{module}:{exercise}"] if exercise in names[module] else [])
            for q in candidates:
                if q not in seen:
                    seen.add(q)
                    targets.append(Target(q, nid, exercise))
    return targets


def exercise_qualnames(through: str | int | None = None, root: Path | None = None) -> list[str]:
    """``["course.ddpm:q_sample", ...]`` for a ``--through`` bundle."""
    return [t.qualname for t in exercise_targets(through, root)]


# ------------------------------------------------------------------------------------------------
# Which targets the library's earlier building blocks need
# ------------------------------------------------------------------------------------------------
def _aliases(tree: ast.Module, modules: set[str]) -> dict[str, str]:
    """Local name -> ``"module:name"`` (an imported object) or ``"module"`` (an imported module)."""
    out: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and not node.level:
            for a in node.names:
                sub = f"{node.module}.{a.name}"
                out[a.asname or a.name] = sub if sub in modules else f"{node.module}:{a.name}"
        elif isinstance(node, ast.Import):
            for a in node.names:
                out[a.asname or a.name.split(".")[0]] = a.name if a.asname else a.name.split(".")[0]
    return out


def _uses(node, module: str, aliases: dict[str, str], top: set[str], modules: set[str]) -> set[tuple[str, str]]:
    """The ``(module, name)`` definitions that ``node`` refers to, resolved through the imports."""
    found: set[tuple[str, str]] = set()
    for n in ast.walk(node):
        if isinstance(n, ast.Name):
            target = aliases.get(n.id)
            if target and ":" in target:
                found.add(tuple(target.split(":", 1)))
            elif n.id in top:
                found.add((module, n.id))
        elif isinstance(n, ast.Attribute):
            chain, base = [n.attr], n.value
            while isinstance(base, ast.Attribute):
                chain.insert(0, base.attr)
                base = base.value
            if not isinstance(base, ast.Name):
                continue
            head = aliases.get(base.id)
            if head is None or ":" in head:
                continue
            for i in range(len(chain)):  # course.ddpm.q_sample: module "course.ddpm", name "q_sample"
                mod = ".".join([head, *chain[:i]])
                if mod in modules:
                    found.add((mod, chain[i]))
    return found


def needed_by_library(trees: dict[str, ast.Module], targets: list[Target], first: str | int,
                      roots: dict[str, ast.Module] | None = None) -> list[Target]:
    """The targets of notebooks *after* ``first`` that the library's earlier building blocks need.

    Reachability: the code of every module holding no target is used, and that of ``roots`` (other
    modules that run with the library: the public grader modules); so is each definition (any
    module) that used code refers to, by a name resolved through its module's imports, and so on.
    A target of a later notebook reached that way stays (it is named in the bundle's
    ``course-release.json``); the first notebook's own targets never do (a use of one by an earlier
    building block is a seam to fix in the library). Example: were ``course.nets`` (no exercise) to
    call ``course.embedding.timestep_embedding`` (08's exercise), the bundle through 05 would keep
    it. Today nothing is found for any notebook (``tests/test_staged_bundle.py`` checks it): keeping
    one ships a later reference, so fix such a seam in the library instead."""
    n = notebook_number(first)
    modules = set(trees)
    by_key = {(t.module, t.name): t for t in targets if "." not in t.name}
    target_modules = {t.module for t in targets}
    every = {**(roots or {}), **trees}
    aliases = {m: _aliases(tree, modules) for m, tree in every.items()}
    top = {m: {d.name for d in _top_defs(tree)} for m, tree in every.items()}
    defs = {(m, d.name): d for m, tree in trees.items() for d in _top_defs(tree)}
    stack = [(m, node) for m, tree in every.items() if m not in target_modules
             for node in tree.body if not isinstance(node, (ast.Import, ast.ImportFrom))]
    reached: set[tuple[str, str]] = set()
    needed: dict[str, Target] = {}
    while stack:
        module, node = stack.pop()
        for key in _uses(node, module, aliases[module], top[module], modules):
            if key in reached or key not in defs:
                continue
            t = by_key.get(key)
            if t is not None:
                if notebook_number(t.notebook) <= n:
                    continue
                needed[t.qualname] = t
            reached.add(key)
            stack.append((key[0], defs[key]))
    return list(needed.values())


def plan(trees: dict[str, ast.Module], targets: list[Target], first: str | int,
         keep_needed: bool = True, protected: Iterable[str] = (),
         roots: dict[str, ast.Module] | None = None) -> tuple[list[Target], list[Target]]:
    """``(stubbed, kept)``: the targets to stub and those kept for the earlier notebooks
    (:func:`needed_by_library`; none with ``keep_needed=False``). ``stubbed`` also holds every other
    definition of the library with the fingerprint of a stubbed one (a copy of a reference
    elsewhere), unless it is one of ``protected`` (``"module:name"``: earlier notebooks' exercises).
    ``roots``: see :func:`needed_by_library`."""
    kept = needed_by_library(trees, targets, first, roots) if keep_needed else []
    stubbed = [t for t in targets if t not in kept]
    prints: dict[str, Target] = {}
    for t in stubbed:
        node = _find_def(trees.get(t.module), t.name)
        fp = fingerprint(node) if node is not None else None
        if fp:
            prints.setdefault(fp, t)
    skip = {t.qualname for t in targets} | set(protected)
    for module, tree in trees.items():
        for node in _top_defs(tree):
            q = f"{module}:{node.name}"
            owner = prints.get(fingerprint(node) or "") if q not in skip else None
            if owner is not None:
                stubbed.append(Target(q, owner.notebook, owner.exercise))
    return stubbed, kept


def public_trees(through: str | int, only: bool = False) -> dict[str, ast.Module]:
    """The public grader modules (factories and probes run with the library) of the notebooks up to
    ``through`` (``only``: of that notebook alone), as extra roots for :func:`needed_by_library`."""
    from grader.engine import registry

    n = notebook_number(through)
    out = {}
    for spec in registry.notebooks():
        k = notebook_number(spec.id)
        if k == n or (k < n and not only):
            import importlib.util

            found = importlib.util.find_spec(spec.public_module)
            if found is not None and found.origin and Path(found.origin).is_file():
                out[spec.public_module] = ast.parse(Path(found.origin).read_text(encoding="utf-8"))
    return out


def earlier_qualnames(first: str | int, root: Path | None = None) -> set[str]:
    """``"module:name"`` of every exercise of the notebooks before ``first`` (they always stay)."""
    from grader.engine import registry

    n = notebook_number(first)
    earlier = [s.id for s in registry.notebooks() if notebook_number(s.id) < n]
    return {t.qualname for t in exercise_targets(root=root, notebooks=earlier)} if earlier else set()


# ------------------------------------------------------------------------------------------------
# Stubs
# ------------------------------------------------------------------------------------------------
def sandbox_message(graded: str) -> Callable[[Target], str]:
    """The sandbox's stub message (the worker recognises a stub by "not available while grading")."""
    return lambda t: (f"{t.module}.{t.name} is the reference answer of {t.notebook}: "
                      f"not available while grading {graded}")


def bundle_message(t: Target) -> str:
    """The staged bundle's stub message, for the learner."""
    if t.name.split(".")[-1] == t.exercise:
        return f"{t.exercise} is an exercise of {t.notebook}: write it in the notebook"
    return f"{t.name} implements {t.exercise}, an exercise of {t.notebook}: write it in the notebook"


def _find_def(tree: ast.Module | None, dotted: str):
    body, node = (tree.body if tree is not None else []), None
    for part in dotted.split("."):
        node = next((n for n in body if isinstance(n, _DEFS) and n.name == part), None)
        if node is None:
            return None
        body = node.body
    return node


def _plain_default(node):
    """A default value kept when it is a literal or a (dotted) name; anything else becomes None."""
    try:
        ast.literal_eval(node)
        return node
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        pass
    base = node
    while isinstance(base, ast.Attribute):
        base = base.value
    return node if isinstance(base, ast.Name) else ast.Constant(None)


def _stub_text(node, message: str, indent: str, error: str) -> str:
    raise_line = f"raise {error}({message!r})"
    start = "".join(f"{indent}@{ast.unparse(d)}\n" for d in node.decorator_list)
    if isinstance(node, ast.ClassDef):
        bases = [ast.unparse(b) for b in node.bases] + [ast.unparse(k) for k in node.keywords]
        head = f"{indent}class {node.name}({', '.join(bases)}):" if bases else f"{indent}class {node.name}:"
        return (f"{start}{head}\n{indent}    def __init__(self, *args, **kwargs):\n"
                f"{indent}        {raise_line}\n")
    import copy

    stub = copy.copy(node)  # shallow: the signature's nodes are shared, the body is not touched
    args = copy.copy(node.args)
    args.defaults = [_plain_default(d) for d in args.defaults]
    args.kw_defaults = [_plain_default(d) if d is not None else None for d in args.kw_defaults]
    stub.args, stub.body, stub.decorator_list = args, [ast.Pass()], []
    header = ast.unparse(stub).splitlines()[0]  # "def name(args) -> ret:" ("async def" kept)
    return f"{start}{indent}{header}\n{indent}    {raise_line}\n"


def strip_source(source: str, names: dict[str, str], error: str = "NotImplementedError") -> tuple[str, list[str]]:
    """``source`` with each definition ``names`` (dotted name -> stub message) replaced by a stub that
    raises ``error``. Returns ``(new_source, stripped names)``; names not defined are skipped."""
    tree = ast.parse(source)
    spans = []
    for dotted, message in names.items():
        node = _find_def(tree, dotted)
        if node is None:
            continue
        first = min([node.lineno] + [d.lineno for d in node.decorator_list])
        spans.append((first, node.end_lineno, _stub_text(node, message, " " * node.col_offset, error), dotted))
    lines = source.splitlines(keepends=True)
    done = []
    for first, last, text, dotted in sorted(spans, reverse=True):  # bottom up: line numbers stay valid
        lines[first - 1:last] = [text]
        done.append(dotted)
    new = "".join(lines)
    ast.parse(new)  # a stub that does not parse is a bug here, not in the library
    return new, sorted(done)


def write_stripped(src_dir: Path, dst_dir: Path, stubs: list[Target], message: Callable[[Target], str],
                   error: str = "NotImplementedError") -> list[str]:
    """Copy the package ``src_dir/course`` to ``dst_dir/course`` (no caches, no bytecode) with each
    definition of ``stubs`` a stub raising ``error(message(target))``. Returns the qualnames
    stripped; raises ``LookupError`` for one that does not exist (a stale ``LIBRARY`` map must not
    ship its reference silently)."""
    src_dir, dst_dir = Path(src_dir), Path(dst_dir)
    by_module: dict[str, dict[str, str]] = {}
    for t in stubs:
        by_module.setdefault(t.module, {})[t.name] = message(t)
    for rel in package_files(src_dir / PACKAGE):
        dest = dst_dir / PACKAGE / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        if rel.suffix != ".py" or _module_name(rel) not in by_module:
            shutil.copyfile(src_dir / PACKAGE / rel, dest)
    stripped = []
    for module, names in sorted(by_module.items()):
        src = _module_file(module, src_dir)
        if not src.is_file():
            raise LookupError(f"no module {module} under {src_dir}")
        new, done = strip_source(src.read_text(encoding="utf-8"), names, error)
        missing = sorted(set(names) - set(done))
        if missing:
            raise LookupError(f"{module} defines no {', '.join(missing)}")
        dest = _module_file(module, dst_dir)
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_text(new, encoding="utf-8")
        stripped += [f"{module}:{n}" for n in done]
    return stripped


# ------------------------------------------------------------------------------------------------
# The sandbox's copy (cached)
# ------------------------------------------------------------------------------------------------
def given(notebook_id: str) -> set[str]:
    """The graded notebook's exercises whose library implementation its tests hand to the learner's
    code as an input (``SANDBOX_GIVEN`` in its public module). They stay in the sandbox's library,
    guarded by the source check and the run-time check, but not hidden: a notebook should rather give
    the learner's code inputs that are not exercises (see docs/AUTHORING.md)."""
    from grader.engine import registry

    try:
        return set(getattr(registry.spec_for(notebook_id).manifest(), "SANDBOX_GIVEN", ()))
    except (KeyError, ImportError):
        return set()


def sandbox_plan(notebook_id: str, source: Path | None = None) -> tuple[dict[str, ast.Module], list[Target]]:
    """The library's trees and the targets stubbed while ``notebook_id`` is graded."""
    src = Path(source) if source is not None else library_dir()
    trees = read_trees(src)
    targets = exercise_targets(notebook_id, root=src.parent, given=given(notebook_id))
    stubbed, _ = plan(trees, targets, notebook_id, protected=earlier_qualnames(notebook_id, src.parent),
                      roots=public_trees(notebook_id, only=True))
    return trees, stubbed


def stubbed_names(notebook_id: str, source: Path | None = None) -> dict[tuple[str, str], str]:
    """``(module, qualname) -> owning notebook`` of what :func:`stripped_library` stubs."""
    return {(t.module, t.name): t.notebook for t in sandbox_plan(notebook_id, source)[1]}


def hidden_specs(notebook_id: str) -> dict[str, str]:
    """``"module:qualname" -> owning notebook`` of what :func:`stripped_library` stubs."""
    return {f"{m}:{q}": owner for (m, q), owner in stubbed_names(notebook_id).items()}


def _cache_root() -> Path:
    base = os.environ.get("COURSE_STRIPPED_CACHE")
    if base:
        return Path(base)
    xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(xdg) / "course-grader" / "stripped"


def _owned_dir(path: Path) -> Path:
    """``path``, created 0700 and owned by this user (refuses one that someone else made)."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    st = path.stat()
    if hasattr(os, "getuid") and st.st_uid != os.getuid():
        raise PermissionError(f"{path} belongs to another user: refusing to use it")
    return path


def stripped_library(notebook_id: str, source: Path | None = None, cache: Path | None = None) -> Path:
    """The folder whose ``course`` package is the library without ``notebook_id``'s reference answers
    (and later notebooks'), as the sandbox sees it. Built once per content (keyed by a hash of the
    library's files, the graded notebook, its ``SANDBOX_GIVEN`` and :data:`VERSION`); safe to call
    from several processes."""
    src = Path(source) if source is not None else library_dir()
    files = package_files(src)
    digest = hashlib.sha256(f"{VERSION}\n{notebook_id}\n{sorted(given(notebook_id))}\n".encode())
    for rel in files:
        digest.update(str(rel).encode() + b"\0" + (src / rel).read_bytes() + b"\0")
    root = _owned_dir(Path(cache) if cache is not None else _cache_root())
    out = root / f"{notebook_id}-{digest.hexdigest()[:24]}"
    if (out / PACKAGE / "__init__.py").is_file():
        return out
    _, stubbed = sandbox_plan(notebook_id, src)
    tmp = Path(tempfile.mkdtemp(prefix=".build-", dir=root))
    try:
        write_stripped(src.parent, tmp, stubbed, sandbox_message(notebook_id), error="RuntimeError")
        for dirpath, dirnames, filenames in os.walk(tmp):  # readable by the sandbox's own uid
            os.chmod(dirpath, 0o755)
            for f in filenames:
                os.chmod(os.path.join(dirpath, f), 0o644)
        try:
            os.rename(tmp, out)
        except OSError:  # another process built it first
            if not (out / PACKAGE / "__init__.py").is_file():
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return out


# ------------------------------------------------------------------------------------------------
# Fingerprints (normalised AST)
# ------------------------------------------------------------------------------------------------
_SKIP_FIELDS = {"ctx", "type_comment", "returns", "annotation", "type_params", "kind"}


def _bound_names(node) -> set[str]:
    bound = {node.name} if hasattr(node, "name") else set()
    for n in ast.walk(node):
        if isinstance(n, ast.arg):
            bound.add(n.arg)
        elif isinstance(n, ast.Name) and isinstance(n.ctx, (ast.Store, ast.Del)):
            bound.add(n.id)
        elif isinstance(n, _DEFS):
            bound.add(n.name)
    return bound


def _is_doc(stmt) -> bool:
    return isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant) and isinstance(stmt.value.value, str)


def normalised_tokens(node, rename_all: bool = False, signatures: bool = True) -> list[str]:
    """The definition's AST as a flat token list, in source order: node types, operators, constants,
    attribute names and global names; docstrings (any bare string statement) and annotations
    dropped; the names it binds itself (its own name, arguments, locals) numbered in order of
    appearance. ``rename_all``: every identifier (globals and attributes too) becomes ``NAME``.
    ``signatures=False``: functions' argument lists are left out (an exercise's signature is given)."""
    bound = _bound_names(node)
    names: dict[str, str] = {}
    out: list[str] = []

    def ident(name: str) -> str:
        if name in bound:
            return names.setdefault(name, f"_v{len(names)}")
        return "NAME" if rename_all else name

    def walk(n) -> None:
        if isinstance(n, list):
            for item in n:
                if not _is_doc(item):
                    walk(item)
            return
        if not isinstance(n, ast.AST):
            out.append(repr(n))
            return
        out.append(type(n).__name__)
        if isinstance(n, _DEFS):
            out.append(ident(n.name))
        elif isinstance(n, ast.Name):
            out.append(ident(n.id))
            return
        elif isinstance(n, ast.arg):
            out.append(ident(n.arg))
            return
        elif isinstance(n, ast.Attribute):
            walk(n.value)
            out.append("NAME" if rename_all else n.attr)
            return
        elif isinstance(n, ast.Constant):
            out.append(repr(n.value) if not rename_all or not isinstance(n.value, str) else "STR")
            return
        for fname, value in ast.iter_fields(n):
            if fname in _SKIP_FIELDS or fname in ("name", "id", "arg", "attr"):
                continue
            if not signatures and fname == "args" and isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            if value is None or value == []:
                continue
            walk(value)
        out.append(")")

    walk(node)
    return out


def normalised_dump(node) -> str:
    """:func:`normalised_tokens` as one string."""
    return " ".join(normalised_tokens(node))


def fingerprint(node) -> str | None:
    """A short hash of :func:`normalised_dump`, or None for a definition too small to say anything."""
    if sum(1 for _ in ast.walk(node)) < MIN_NODES:
        return None
    return hashlib.sha256(normalised_dump(node).encode()).hexdigest()[:16]


def definitions(source: str):
    """Every function and class definition in ``source`` (at any depth), or [] if it does not parse."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return []
    return [n for n in ast.walk(tree) if isinstance(n, _DEFS)]


def is_stub(node) -> bool:
    """A definition whose body only raises after an optional docstring."""
    body = [s for s in node.body if not (isinstance(s, ast.Expr) and isinstance(s.value, ast.Constant))]
    if isinstance(node, ast.ClassDef):
        return all(isinstance(s, (ast.FunctionDef, ast.AsyncFunctionDef)) and is_stub(s) for s in body)
    return len(body) == 1 and isinstance(body[0], ast.Raise)


def notebook_code(path: Path) -> list[tuple[str | None, str]]:
    """``(grade_id, source)`` of each code cell of a notebook file (IPython magics made Python)."""
    try:
        nb = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    out = []
    for cell in nb.get("cells", []) if isinstance(nb, dict) else []:
        if not isinstance(cell, dict) or cell.get("cell_type") != "code":
            continue
        src = cell.get("source", "")
        src = "".join(src) if isinstance(src, list) else str(src)
        gid = ((cell.get("metadata") or {}).get("nbgrader") or {}).get("grade_id")
        out.append((gid if isinstance(gid, str) else None, _python(src)))
    return out


def _python(src: str) -> str:
    try:
        from IPython.core.inputtransformer2 import TransformerManager

        return TransformerManager().transform_cell(src)
    except Exception:
        return src


def reference_fingerprints(targets: list[Target], root: Path | None = None,
                           solutions_dir: Path | None = None) -> dict[str, str]:
    """fingerprint -> "what" for each target's library definition and its solution answer cell(s)."""
    from grader.paths import ROOT, SOLUTIONS

    root = Path(root) if root is not None else ROOT
    solutions_dir = Path(solutions_dir) if solutions_dir is not None else SOLUTIONS
    prints: dict[str, str] = {}
    for t in targets:
        path = _module_file(t.module, root)
        node = _find_def(ast.parse(path.read_text(encoding="utf-8")), t.name)
        if node is not None:
            for sub in [node, *[n for n in ast.walk(node) if n is not node and
                               isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]]:
                fp = fingerprint(sub)
                if fp and not is_stub(sub):
                    prints.setdefault(fp, f"{t.qualname} (reference of {t.exercise}, {t.notebook})")
    wanted = {(t.notebook, t.exercise) for t in targets}
    for nid in sorted({t.notebook for t in targets}):
        for gid, src in notebook_code(solutions_dir / f"{nid}.ipynb"):
            if (nid, gid) not in wanted:
                continue
            for node in definitions(src):
                fp = fingerprint(node)
                if fp and not is_stub(node):
                    prints.setdefault(fp, f"solutions/{nid}.ipynb answer {gid} ({node.name})")
    return prints


def find_fingerprints(tree_root: Path, prints: dict[str, str]) -> list[str]:
    """Every ``.py`` definition and notebook code-cell definition under ``tree_root`` that matches."""
    tree_root = Path(tree_root)
    found = []
    for path in sorted(tree_root.rglob("*")):
        if not path.is_file() or path.is_symlink():
            continue
        if path.suffix == ".py":
            try:
                sources = [path.read_text(encoding="utf-8", errors="replace")]
            except OSError:
                continue
        elif path.suffix == ".ipynb":
            sources = [src for _, src in notebook_code(path)]
        else:
            continue
        for src in sources:
            for node in definitions(src):
                fp = fingerprint(node)
                if fp in prints:
                    found.append(f"{path.relative_to(tree_root)}: {node.name} is {prints[fp]}")
    return found


if __name__ == "__main__":  # python -m grader.engine.strip 03_ddpm
    for (module, qualname), owner in sorted(stubbed_names(sys.argv[1]).items()):
        print(f"{module}:{qualname}  ({owner})")
    print(stripped_library(sys.argv[1]))

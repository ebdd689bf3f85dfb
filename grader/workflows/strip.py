"""Taking the reference implementations of exercises out of a copy of the library, and finding them.

One implementation for every place that must not hold the reference of an exercise (the staged
student bundle, ``course bundle OUT --through NN``; the grading sandbox's view of the library):

- :func:`exercise_qualnames` names the library definitions that implement the exercises of a set
  of notebooks: each notebook's ``LIBRARY`` map (``"course.ddpm:q_sample"``), plus a function of the
  same module that carries the exercise's own name (``course.rectified_flow:sample_ode`` when the
  map points at the loop ``euler_path`` it wraps).
- :func:`strip_source` / :func:`strip_library` rewrite those definitions (by their line span, the
  rest of the file is kept verbatim): a function keeps its signature and its body becomes
  ``raise NotImplementedError("q_sample is an exercise of 03_ddpm: write it in the notebook")``;
  a class keeps its name and bases, and its body becomes an ``__init__`` that raises the same.
  No docstring, comment or statement of the original is left.
- :func:`fingerprint` hashes a definition's normalised AST (docstrings dropped, the names it binds
  itself -- arguments, locals, its own name -- numbered in order of appearance; globals, attributes
  and constants kept), so a copy survives renaming and reformatting. :func:`reference_fingerprints`
  collects the fingerprints of the references (library definitions and the solution notebooks'
  answer cells) and :func:`find_fingerprints` looks for them in a tree of files.
"""
from __future__ import annotations

import ast
import hashlib
import json
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

MIN_NODES = 12  # definitions smaller than this (``return a + b``) are too generic to fingerprint


# ------------------------------------------------------------------------------------------------
# Which definitions implement which exercises
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


def _module_file(module: str, root: Path) -> Path:
    path = root.joinpath(*module.split("."))
    return path / "__init__.py" if path.is_dir() else path.with_suffix(".py")


def _top_level_names(path: Path) -> set[str]:
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"))
    except (OSError, SyntaxError):
        return set()
    return {n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))}


def exercise_targets(through: str | int | None = None, root: Path | None = None,
                     notebooks: list[str] | None = None) -> list[Target]:
    """The library definitions implementing the exercises of notebook ``through`` and every later one.

    ``notebooks``: an explicit list of notebook ids instead (e.g. only the graded one). ``root``:
    where the ``course`` package lives (default: the project).
    """
    from grader.engine import registry
    from grader.paths import ROOT

    root = Path(root) if root is not None else ROOT
    if notebooks is None:
        first = notebook_number(through if through is not None else 0)
        notebooks = [s.id for s in registry.notebooks() if notebook_number(s.id) >= first]
    targets: list[Target] = []
    seen: set[str] = set()
    for nid in notebooks:
        spec = registry.spec_for(nid)
        for exercise, qualname in spec.library.items():
            module = qualname.split(":")[0]
            candidates = [qualname]
            if exercise in _top_level_names(_module_file(module, root)):
                candidates.append(f"{module}:{exercise}")
            for q in candidates:
                if q not in seen:
                    seen.add(q)
                    targets.append(Target(q, nid, exercise))
    return targets


def needed_by_library(targets: list[Target], through: str | int, root: Path | None = None) -> list[Target]:
    """The targets of notebooks *after* ``through`` that the library's earlier building blocks use
    (e.g. 08's ``timestep_embedding``, called by ``course.nets.TimeMLP`` from notebook 02 on):
    stubbing them would break earlier notebooks. A use counts when it is made by a definition that
    stays, in a module holding no exercise of ``through`` or later, and resolves (through the
    module's own imports) to the target. The graded notebook's own exercises are never listed."""
    from grader.paths import ROOT

    root = Path(root) if root is not None else ROOT
    first = notebook_number(through)
    by_qualname = {t.qualname: t for t in targets}
    target_modules = {t.module for t in targets}
    needed: dict[str, Target] = {}
    for path in sorted((root / "course").rglob("*.py")):
        parts = path.relative_to(root).with_suffix("").parts
        module = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        if module in target_modules:
            continue
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"))
        except SyntaxError:
            continue
        aliases: dict[str, str] = {}  # local name -> "module:name" or "module" (a module alias)
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module:
                for a in node.names:
                    aliases[a.asname or a.name] = f"{node.module}:{a.name}"
            elif isinstance(node, ast.Import):
                for a in node.names:
                    aliases[a.asname or a.name.split(".")[0]] = a.name if a.asname else a.name.split(".")[0]
        for node in ast.walk(tree):
            q = None
            if isinstance(node, ast.Name) and node.id in aliases and ":" in aliases[node.id]:
                q = aliases[node.id]
            elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) \
                    and node.value.id in aliases and ":" not in aliases[node.value.id]:
                q = f"{aliases[node.value.id]}:{node.attr}"
            elif isinstance(node, ast.ImportFrom) and node.module:
                for a in node.names:
                    t = by_qualname.get(f"{node.module}:{a.name}")
                    if t is not None and notebook_number(t.notebook) > first:
                        needed[t.qualname] = t
            t = by_qualname.get(q) if q else None
            if t is not None and notebook_number(t.notebook) > first:
                needed[t.qualname] = t
    return list(needed.values())


def exercise_qualnames(through: str | int | None = None, root: Path | None = None) -> list[str]:
    """``["course.ddpm:q_sample", ...]``: what :func:`strip_library` takes for a ``--through`` bundle."""
    return [t.qualname for t in exercise_targets(through, root)]


# ------------------------------------------------------------------------------------------------
# Stubbing
# ------------------------------------------------------------------------------------------------
def _stub_message(target: Target) -> str:
    if target.name.split(".")[-1] == target.exercise:
        return f"{target.exercise} is an exercise of {target.notebook}: write it in the notebook"
    return (f"{target.name} implements {target.exercise}, an exercise of {target.notebook}: "
            "write it in the notebook")


def _find_def(tree: ast.Module, dotted: str):
    body, node = tree.body, None
    for part in dotted.split("."):
        node = next((n for n in body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
                     and n.name == part), None)
        if node is None:
            return None
        body = node.body
    return node


def _stub_text(node, message: str, indent: str) -> str:
    raise_line = f"raise NotImplementedError({message!r})"
    start = "\n".join(f"{indent}@{ast.unparse(d)}" for d in node.decorator_list)
    start = start + "\n" if start else ""
    if isinstance(node, ast.ClassDef):
        bases = [ast.unparse(b) for b in node.bases] + [ast.unparse(k) for k in node.keywords]
        head = f"{indent}class {node.name}({', '.join(bases)}):" if bases else f"{indent}class {node.name}:"
        return (f"{start}{head}\n{indent}    def __init__(self, *args, **kwargs):\n"
                f"{indent}        {raise_line}\n")
    import copy

    stub = copy.copy(node)  # shallow: the signature's nodes are shared, the body is not touched
    stub.body, stub.decorator_list = [ast.Pass()], []
    header = ast.unparse(stub).splitlines()[0]  # "def name(args) -> ret:" ("async def" kept)
    return f"{start}{indent}{header}\n{indent}    {raise_line}\n"


def strip_source(source: str, names: dict[str, str]) -> tuple[str, list[str]]:
    """``source`` with each definition ``names`` (dotted name -> stub message) replaced by a stub.

    Returns ``(new_source, stripped names)``; names not defined in ``source`` are skipped.
    """
    tree = ast.parse(source)
    spans = []
    for dotted, message in names.items():
        node = _find_def(tree, dotted)
        if node is None:
            continue
        first = min([node.lineno] + [d.lineno for d in node.decorator_list])
        indent = " " * node.col_offset
        spans.append((first, node.end_lineno, _stub_text(node, message, indent), dotted))
    lines = source.splitlines(keepends=True)
    done = []
    for first, last, text, dotted in sorted(spans, reverse=True):  # bottom up: line numbers stay valid
        lines[first - 1:last] = [text]
        done.append(dotted)
    new = "".join(lines)
    ast.parse(new)  # a stub that does not parse is a bug here, not in the bundle
    return new, sorted(done)


def strip_library(src_dir: Path, dst_dir: Path, qualnames, messages: dict[str, str] | None = None) -> list[str]:
    """Copy the tree ``src_dir`` (the project root, holding ``course/``) to ``dst_dir``'s files in place.

    ``dst_dir`` must already hold a copy of the package(s) (``dst_dir/course/...``); each
    definition ``module:name`` of ``qualnames`` in it is replaced by a stub (the original is read
    from ``src_dir``). ``qualnames`` may be :class:`Target` objects (their message names the
    exercise and notebook) or strings. Returns the qualnames stripped; raises ``LookupError`` for
    one that does not exist (a stale ``LIBRARY`` map must not ship its reference silently).
    """
    src_dir, dst_dir = Path(src_dir), Path(dst_dir)
    by_module: dict[str, dict[str, str]] = {}
    for q in qualnames:
        if isinstance(q, Target):
            qualname, message = q.qualname, _stub_message(q)
        else:
            qualname = q
            message = (messages or {}).get(q) or f"{q.split(':')[1]} is an exercise: write it in the notebook"
        module, name = qualname.split(":")
        by_module.setdefault(module, {})[name] = message
    stripped = []
    for module, names in sorted(by_module.items()):
        src = _module_file(module, src_dir)
        dst = _module_file(module, dst_dir)
        if not src.is_file():
            raise LookupError(f"no module {module} under {src_dir}")
        new, done = strip_source(src.read_text(encoding="utf-8"), names)
        missing = sorted(set(names) - set(done))
        if missing:
            raise LookupError(f"{module} defines no {', '.join(missing)}")
        dst.parent.mkdir(parents=True, exist_ok=True)
        dst.write_text(new, encoding="utf-8")
        for cache in dst.parent.glob(f"__pycache__/{dst.stem}.*"):
            cache.unlink()
        stripped += [f"{module}:{n}" for n in done]
    return stripped


# ------------------------------------------------------------------------------------------------
# Fingerprints (normalised AST)
# ------------------------------------------------------------------------------------------------
_DEFS = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
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
    return [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))]


def is_stub(node) -> bool:
    """A definition whose body only raises (NotImplementedError) after an optional docstring."""
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
        tree = ast.parse(path.read_text(encoding="utf-8"))
        node = _find_def(tree, t.name)
        if node is not None:
            for sub in [node, *[n for n in ast.walk(node) if n is not node and
                               isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]]:
                fp = fingerprint(sub)
                if fp and not is_stub(sub):
                    prints.setdefault(fp, f"{t.qualname} (reference of {t.exercise}, {t.notebook})")
    wanted = {(t.notebook, t.exercise) for t in targets}
    for nid in sorted({t.notebook for t in targets}):
        nb = solutions_dir / f"{nid}.ipynb"
        for gid, src in notebook_code(nb):
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


def copy_and_strip(src_root: Path, dst_root: Path, targets: list[Target], package: str = "course") -> list[str]:
    """Convenience: copy ``src_root/package`` to ``dst_root/package`` (no caches) and strip ``targets``."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.pyo", ".*")
    shutil.copytree(Path(src_root) / package, Path(dst_root) / package, ignore=ignore, dirs_exist_ok=True)
    return strip_library(src_root, dst_root, targets)


__all__ = ["Target", "copy_and_strip", "exercise_qualnames", "exercise_targets", "find_fingerprints",
           "needed_by_library",
           "fingerprint", "normalised_dump", "notebook_number", "reference_fingerprints", "strip_library",
           "strip_source"]

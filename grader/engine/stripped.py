"""The course library as the sandbox sees it: without the reference answers it must not reach.

While notebook NN is graded, the library's implementations of NN's exercises, and of every later
notebook's, are replaced by stubs (the ``LIBRARY`` maps of ``grader/public/nbNN_*.py``). The stub
keeps the name and the arguments, and raises::

    RuntimeError: course.ddpm.q_sample is the reference answer of 03_ddpm: not available while grading 03_ddpm

Nothing of the original is left: the body, the docstring, the decorators and the comments are
gone (a changed module is re-written from its syntax tree by ``ast.unparse``), so neither
``inspect.getsource``, nor the function's ``__code__``, nor ``__wrapped__``, a module global or
``gc`` can lead to it. A definition elsewhere in the library with the same body as a stubbed one
is stubbed too. Earlier notebooks' exercises stay: they are the building blocks later notebooks use.

Where a notebook's tests hand one of its exercises' implementations to the learner's code as an
input (``SANDBOX_GIVEN`` in its public module), that one stays, guarded only by the source and
run-time checks.

A later notebook's exercise that the rest of the library needs (for example notebook 08's
``timestep_embedding``, which ``course.nets.TimeMLP`` uses from notebook 02 on) stays while an
earlier notebook is graded; the graded notebook's own exercises are always stubbed.

``stripped_library(notebook_id)`` builds the copy once per content (cached by a hash of the
library's files, the stubbed names and this module's version) and returns the folder holding the
``course`` package. The sandbox mounts it over the real package (or, where it cannot mount, puts
it first on the worker's ``sys.path``).
"""
from __future__ import annotations

import ast
import hashlib
import os
import shutil
import sys
import tempfile
from pathlib import Path

VERSION = "1"
PACKAGE = "course"
_SKIP_DIRS = {"__pycache__"}
_KEEP_DECORATORS = {"staticmethod", "classmethod", "property"}


def library_dir() -> Path:
    """The real ``course`` package folder (found without importing it)."""
    import importlib.util

    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("the course library cannot be found")
    return Path(list(spec.submodule_search_locations)[0]).resolve()


def given(notebook_id: str) -> set[str]:
    """The graded notebook's exercises whose library implementation its tests hand to the learner's
    code as an input (``SANDBOX_GIVEN`` in its public module: an exact score made from
    ``vp_marginal``, a step function for ``integrate``). They stay in the sandbox's library, guarded
    by the source check and the run-time check (a call, or a function made from its code object,
    while that exercise is tested), but not hidden: a notebook should rather give the learner's
    code inputs that are not exercises (see docs/AUTHORING.md)."""
    from grader.engine import registry

    try:
        return set(getattr(registry.spec_for(notebook_id).manifest(), "SANDBOX_GIVEN", ()))
    except (KeyError, ImportError):
        return set()


def hidden_specs(notebook_id: str) -> dict[str, str]:
    """``"module:qualname" -> owning notebook id`` for the graded notebook and every later one
    (less the graded notebook's ``SANDBOX_GIVEN``)."""
    from grader.engine import registry

    out: dict[str, str] = {}
    keep = given(notebook_id)
    for spec in registry.notebooks():
        if spec.id < notebook_id:
            continue
        for exercise, target in spec.library.items():
            if spec.id == notebook_id and exercise in keep:
                continue
            out.setdefault(target, spec.id)
    for exercise in keep:  # a target shared by a given exercise and another one stays too
        target = registry.spec_for(notebook_id).library.get(exercise)
        out.pop(target, None)
    return out


# ---------------------------------------------------------------------------------------------
# Stubs
# ---------------------------------------------------------------------------------------------
def _message(module: str, qualname: str, owner: str, graded: str) -> str:
    return (f"{module}.{qualname} is the reference answer of {owner}: "
            f"not available while grading {graded}")


def _raise(message: str) -> list[ast.stmt]:
    return [ast.Raise(exc=ast.Call(func=ast.Name("RuntimeError", ast.Load()),
                                   args=[ast.Constant(message)], keywords=[]), cause=None)]


def _plain_default(node):
    """A default argument value kept only when it is a literal (anything else becomes None)."""
    try:
        ast.literal_eval(node)
        return node
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return ast.Constant(None)


def _stub_arguments(args: ast.arguments) -> ast.arguments:
    strip = lambda a: ast.arg(arg=a.arg, annotation=None)  # noqa: E731
    return ast.arguments(
        posonlyargs=[strip(a) for a in args.posonlyargs], args=[strip(a) for a in args.args],
        vararg=strip(args.vararg) if args.vararg else None,
        kwonlyargs=[strip(a) for a in args.kwonlyargs],
        kw_defaults=[_plain_default(d) if d is not None else None for d in args.kw_defaults],
        kwarg=strip(args.kwarg) if args.kwarg else None,
        defaults=[_plain_default(d) for d in args.defaults])


def _stub_function(node, message: str, method: bool = False):
    decorators = [d for d in node.decorator_list
                  if method and isinstance(d, ast.Name) and d.id in _KEEP_DECORATORS]
    return ast.FunctionDef(name=node.name, args=_stub_arguments(node.args), body=_raise(message),
                           decorator_list=decorators, returns=None, type_comment=None, type_params=[])


def _stub_class(node: ast.ClassDef, message: str) -> ast.ClassDef:
    """The class's name, bases and method names; every method (and ``__init__``) raises."""
    methods = [_stub_function(n, message, method=True) for n in node.body
               if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
    if not any(m.name == "__init__" for m in methods):
        init = ast.FunctionDef(name="__init__", args=ast.arguments(
            posonlyargs=[], args=[ast.arg("self")], vararg=ast.arg("args"), kwonlyargs=[], kw_defaults=[],
            kwarg=ast.arg("kwargs"), defaults=[]), body=_raise(message), decorator_list=[], returns=None,
            type_comment=None, type_params=[])
        methods.insert(0, init)
    keywords = [k for k in node.keywords if k.arg != "metaclass"] + [k for k in node.keywords if k.arg == "metaclass"]
    return ast.ClassDef(name=node.name, bases=node.bases, keywords=keywords, body=methods,
                        decorator_list=[], type_params=[])


def _fingerprint(node) -> str:
    """A definition's body without its docstring, names and positions left as they are."""
    body = list(node.body)
    if body and isinstance(body[0], ast.Expr) and isinstance(getattr(body[0], "value", None), ast.Constant) \
            and isinstance(body[0].value.value, str):
        body = body[1:]
    return hashlib.sha256("".join(ast.dump(s, include_attributes=False) for s in body).encode()).hexdigest()


# ---------------------------------------------------------------------------------------------
# What to stub
# ---------------------------------------------------------------------------------------------
def _module_name(rel: Path) -> str:
    parts = list(rel.with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join([PACKAGE, *parts])


def _referenced_names(nodes) -> set[str]:
    names = set()
    for top in nodes:
        for node in ast.walk(top):
            if isinstance(node, ast.Name):
                names.add(node.id)
            elif isinstance(node, ast.Attribute):
                names.add(node.attr)
    return names


def plan(notebook_id: str, trees: dict[str, ast.Module], targets: dict[str, str]) -> dict[tuple[str, str], str]:
    """``(module, qualname) -> owning notebook`` of every definition to stub.

    The graded notebook's exercises always; a later notebook's only while no code that stays
    (outside the stubbed definitions) refers to it by name; a definition with the same body as a
    stubbed one, too.
    """
    graded, later = {}, {}
    for target, owner in targets.items():
        module, _, qualname = target.partition(":")
        (graded if owner == notebook_id else later)[(module, qualname)] = owner

    def top_defs(module):
        tree = trees.get(module)
        return [] if tree is None else [n for n in tree.body
                                        if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))]

    stubbed = {**later, **graded}
    while True:  # keep a later exercise that code staying in the library refers to
        kept_code = []
        for module, tree in trees.items():
            for node in tree.body:
                if isinstance(node, (ast.Import, ast.ImportFrom)):
                    continue
                name = getattr(node, "name", None)
                if name is not None and (module, name) in stubbed:
                    continue
                kept_code.append(node)
        used = _referenced_names(kept_code)
        keep = [key for key in stubbed if key not in graded and key[1].split(".")[0] in used]
        if not keep:
            break
        for key in keep:
            del stubbed[key]

    prints = {}
    for (module, qualname), owner in stubbed.items():
        for node in top_defs(module):
            if node.name == qualname and not isinstance(node, ast.ClassDef):
                prints[_fingerprint(node)] = owner
    for module in trees:
        for node in top_defs(module):
            if not isinstance(node, ast.ClassDef) and (module, node.name) not in stubbed:
                owner = prints.get(_fingerprint(node))
                if owner is not None:
                    stubbed[(module, node.name)] = owner
    return stubbed


def _rewrite(tree: ast.Module, module: str, stubs: dict[str, str], graded: str) -> ast.Module:
    """The module with each stubbed definition (``name`` or ``Class.method``) replaced."""
    body = []
    for node in tree.body:
        name = getattr(node, "name", None)
        if name in stubs and isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            node = _stub_function(node, _message(module, name, stubs[name], graded))
        elif name in stubs and isinstance(node, ast.ClassDef):
            node = _stub_class(node, _message(module, name, stubs[name], graded))
        elif isinstance(node, ast.ClassDef):
            members = []
            for member in node.body:
                qual = f"{node.name}.{getattr(member, 'name', '')}"
                if qual in stubs and isinstance(member, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    member = _stub_function(member, _message(module, qual, stubs[qual], graded), method=True)
                members.append(member)
            node.body = members
        body.append(node)
    tree.body = body
    return ast.fix_missing_locations(tree)


# ---------------------------------------------------------------------------------------------
# The cached copy
# ---------------------------------------------------------------------------------------------
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


def _files(src: Path) -> list[Path]:
    out = []
    for dirpath, dirnames, filenames in os.walk(src):
        dirnames[:] = sorted(d for d in dirnames if d not in _SKIP_DIRS)
        for f in sorted(filenames):
            if not f.endswith((".pyc", ".pyo")):
                out.append(Path(dirpath, f).relative_to(src))
    return out


def stripped_library(notebook_id: str, source: Path | None = None, cache: Path | None = None) -> Path:
    """The folder whose ``course`` package is the library without ``notebook_id``'s reference answers
    (and later notebooks'). Built once per content; safe to call from several processes."""
    src = Path(source) if source is not None else library_dir()
    targets = hidden_specs(notebook_id)
    files = _files(src)
    digest = hashlib.sha256(f"{VERSION}\n{notebook_id}\n".encode())
    for target in sorted(targets.items()):
        digest.update(repr(target).encode())
    for rel in files:
        digest.update(str(rel).encode() + b"\0" + (src / rel).read_bytes() + b"\0")
    root = _owned_dir(Path(cache) if cache is not None else _cache_root())
    out = root / f"{notebook_id}-{digest.hexdigest()[:24]}"
    if (out / PACKAGE / "__init__.py").is_file():
        return out

    trees = {}
    for rel in files:
        if rel.suffix == ".py":
            trees[_module_name(rel)] = ast.parse((src / rel).read_bytes(), filename=str(rel))
    stubbed = plan(notebook_id, trees, targets)
    per_module: dict[str, dict[str, str]] = {}
    for (module, qualname), owner in stubbed.items():
        per_module.setdefault(module, {})[qualname] = owner

    tmp = Path(tempfile.mkdtemp(prefix=".build-", dir=root))
    try:
        for rel in files:
            dest = tmp / PACKAGE / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            module = _module_name(rel) if rel.suffix == ".py" else None
            if module in per_module:
                tree = _rewrite(trees[module], module, per_module[module], notebook_id)
                dest.write_text(ast.unparse(tree) + "\n", encoding="utf-8")
            else:
                shutil.copyfile(src / rel, dest)
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


def stubbed_names(notebook_id: str, source: Path | None = None) -> dict[tuple[str, str], str]:
    """What :func:`stripped_library` stubs for ``notebook_id`` (for tests and the docs)."""
    src = Path(source) if source is not None else library_dir()
    trees = {_module_name(rel): ast.parse((src / rel).read_bytes())
             for rel in _files(src) if rel.suffix == ".py"}
    return plan(notebook_id, trees, hidden_specs(notebook_id))


if __name__ == "__main__":  # python -m grader.engine.stripped 03_ddpm
    for (module, qualname), owner in sorted(stubbed_names(sys.argv[1]).items()):
        print(f"{module}:{qualname}  ({owner})")
    print(stripped_library(sys.argv[1]))

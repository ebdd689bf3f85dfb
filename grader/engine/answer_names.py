"""The names an answer cell binds and uses (read from its source, never run).

Two uses: ``check()`` refuses an answer that uses a name only a demo cell defines (the grader would
not have it), and the feedback of an answer that calls another exercise names that exercise when it is
wrong too ("fix p_sample_step first"), so a learner is not sent to look for a mistake that is not there.
"""
from __future__ import annotations

import ast


def _tree(source: str):
    try:
        from IPython.core.inputtransformer2 import TransformerManager

        source = TransformerManager().transform_cell(source)
    except ImportError:  # pragma: no cover
        pass
    try:
        return ast.parse(source)
    except SyntaxError:
        return None


def bound_names(source: str) -> set[str]:
    """Every name a cell binds anywhere (definitions, assignments, imports, arguments, loop targets)."""
    tree = _tree(source)
    names: set[str] = set()
    if tree is None:
        return names
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, (ast.Store, ast.Del)):
            names.add(node.id)
        elif isinstance(node, ast.arg):
            names.add(node.arg)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update((a.asname or a.name).split(".")[0] for a in node.names)
        elif isinstance(node, ast.ExceptHandler) and node.name:
            names.add(node.name)
        elif isinstance(node, (ast.Global, ast.Nonlocal)):
            names.update(node.names)
    return names


def used_names(source: str) -> set[str]:
    """Every name a cell reads."""
    tree = _tree(source)
    return set() if tree is None else {n.id for n in ast.walk(tree)
                                       if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}


def defines(source: str, name: str) -> bool:
    """Does the cell define ``name`` at its top level (def, class or assignment)?"""
    tree = _tree(source)
    if tree is None:
        return False
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and node.name == name:
            return True
        if isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if any(isinstance(n, ast.Name) and n.id == name for t in targets for n in ast.walk(t)):
                return True
    return False


def exercises_used(source: str, exercise: str, exercises) -> list[str]:
    """The other exercises of the notebook that the answer of ``exercise`` calls (reads), in the
    notebook's order; a name the answer binds itself (a local helper of the same name) does not count."""
    used = used_names(source) - (bound_names(source) - {exercise})
    return [name for name in exercises if name != exercise and name in used]


def dependency_line(exercise: str, wrong: list[str], where: str) -> str:
    """The feedback line for an answer that calls other answers which are wrong themselves."""
    listed = " and ".join(f"`{d}`" for d in wrong)
    these = "it is" if len(wrong) == 1 else "they are"
    return (f"Note: your {exercise} calls your {listed}, which {where} too. Fix {listed} first: "
            f"{exercise} may be right and lose points only because {these} wrong.")

"""The package's layers import one way: cases never reach into checks, checks see cases only through
``cases.base``, and the version lives in a module of its own (internal structure under test)."""

from __future__ import annotations

import ast
from pathlib import Path

import rnncheck

PACKAGE = Path(rnncheck.__file__).parent


def imports(path: Path) -> list[tuple[str, int, bool]]:
    """``(module, line, inside a function)`` of every relative import in ``path``, resolved within rnncheck."""
    tree = ast.parse(path.read_text())
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    package = parts[:-1]
    found = []

    def visit(node, in_function):
        for child in ast.iter_child_nodes(node):
            inner = in_function or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef)
            if isinstance(child, ast.ImportFrom) and child.level:
                base = package[: len(package) - child.level + 1]
                names = [child.module] if child.module else [a.name for a in child.names]
                found.extend((".".join(base + n.split(".")), child.lineno, inner) for n in names)
            visit(child, inner)

    visit(tree, False)
    return found


def modules_under(folder: str):
    return sorted((PACKAGE / folder).glob("*.py"))


def test_cases_never_import_checks():
    offenders = [
        f"{p.name}:{line} imports {mod}"
        for p in modules_under("cases")
        for mod, line, _ in imports(p)
        if mod.startswith("rnncheck.checks")
    ]
    assert not offenders, offenders


def test_checks_see_cases_only_through_cases_base():
    offenders = [
        f"{p.name}:{line} imports {mod}"
        for p in modules_under("checks")
        for mod, line, _ in imports(p)
        if mod.startswith("rnncheck.cases") and mod != "rnncheck.cases.base"
    ]
    assert not offenders, offenders


def test_no_module_imports_the_package_root_for_its_version():
    offenders = [
        f"{p.relative_to(PACKAGE)}:{line}"
        for p in sorted(PACKAGE.rglob("*.py"))
        if p.name != "__init__.py"
        for mod, line, _ in imports(p)
        if mod == "rnncheck.__version__"  # `from . import __version__`: a cycle through the package's __init__
    ]
    assert not offenders, offenders
    assert rnncheck.__version__ == __import__("rnncheck.version").version.__version__


def test_the_rule_is_not_empty_handed():
    """The walk finds imports at all, both kinds, so that the rules above cannot pass on nothing."""
    found = [f for p in sorted(PACKAGE.rglob("*.py")) for f in imports(p)]
    assert any(mod == "rnncheck.cases.base" for mod, _, _ in found)
    assert any(inside for _, _, inside in found) and any(not inside for _, _, inside in found)

"""The package's shape, held by AST rules (internal structure under test):

- layers import one way: cases never reach into checks, checks see cases only through
  ``cases.base``, and the version lives in a module of its own;
- the protocol is kept: every ``target.<attr>`` a check reads is a ``CheckTarget`` member, and
  no check asks a case, a target or a model what it is;
- results are read by type: nothing under ``render/`` compares a check name or a finding kind
  with a string, or reads a ``numbers`` key;
- no function under ``checks/`` is over 50 lines.
"""

from __future__ import annotations

import ast
from pathlib import Path

import rnncheck
from rnncheck.cases.base import CheckTarget  # the protocol itself

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


def _trees(folder: str):
    for p in sorted((PACKAGE / folder).glob("*.py")):
        yield p, ast.parse(p.read_text())


def protocol_members() -> set[str]:
    names = set(CheckTarget.__annotations__)
    return names | {n for n, v in vars(CheckTarget).items() if callable(v) and not n.startswith("_")}


def test_every_target_attribute_a_check_reads_is_a_member_of_the_protocol():
    used = {
        (node.attr, f"{p.name}:{node.lineno}")
        for p, tree in _trees("checks")
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "target"
    }
    assert len(used) > 50  # the walk sees the checks' reads at all
    outside = sorted(where + " ." + attr for attr, where in used if attr not in protocol_members())
    assert not outside, outside
    assert not [m for m in protocol_members() if m.startswith("_")]  # nothing private in the protocol


def _names_what_it_is(node) -> bool:
    """``isinstance(x, …)``, ``hasattr(x, …)`` or ``getattr(x, …)`` on a case, a target or a model."""
    if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.args):
        return False
    if node.func.id not in ("isinstance", "hasattr", "getattr"):
        return False
    subject = ast.unparse(node.args[0])
    return subject in ("case", "target", "model", "target.model", "target.case", "case.model", "target.cell_loop")


def test_no_check_asks_a_case_a_target_or_a_model_what_it_is():
    offenders = [f"{p.name}:{n.lineno}" for p, tree in _trees("checks") for n in ast.walk(tree) if _names_what_it_is(n)]
    assert not offenders, offenders
    planted = ast.parse("isinstance(target.model, CellLoop)\nhasattr(case, 'step')\nisinstance(x, int)")
    assert [_names_what_it_is(n) for n in ast.walk(planted) if isinstance(n, ast.Call)] == [True, True, False]


def _string_reads(tree) -> list[int]:
    """Lines that compare a ``.name`` or ``.kind`` with a string, or read a key of a ``numbers`` dict."""
    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare):
            sides = [node.left, *node.comparators]
            named = any(isinstance(s, ast.Attribute) and s.attr in ("name", "kind") for s in sides)
            literal = any(isinstance(s, ast.Constant) and isinstance(s.value, str) for s in sides)
            if named and literal:
                lines.append(node.lineno)
        target = node.value if isinstance(node, ast.Subscript) else None
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "get":
            target = node.func.value
        if isinstance(target, ast.Attribute) and target.attr == "numbers":
            lines.append(node.lineno)
    return lines


def test_the_renderers_read_results_by_type():
    offenders = [f"{p.name}:{line}" for p, tree in _trees("render") for line in _string_reads(tree)]
    assert not offenders, offenders
    planted = ast.parse('c.name == "gradient"\nf.kind != "hint"\nn = check.numbers["probes"]\ncheck.numbers.get("x")')
    assert len(_string_reads(planted)) == 4


def test_no_function_under_checks_is_over_50_lines():
    long = [
        f"{p.name}:{node.name} ({node.end_lineno - node.lineno + 1} lines)"
        for p, tree in _trees("checks")
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.end_lineno - node.lineno + 1 > 50
    ]
    assert not long, long


#: every import inside a function, and why it waits: a dependency kept optional, torch kept out of a module
#: that must load without it, or a cycle.  Anything else belongs at the top of its module.
DEFERRED = {
    ("cli.py", "torch"): "the command answers --help and --version without loading torch",
    ("cli.py", ".render.plots"): "--plot's matplotlib is optional (the import error becomes the advice to install it)",
    ("collect.py", ".usercode"): "import rnncheck (the @case decorator) loads no torch",
    ("recording.py", "torch"): "rnncheck.record loads no torch when a model file imports it",
    ("findings.py", ".render"): "a cycle: the renderer imports the results",
    ("flowmath.py", "torch"): "the terminal renderer imports flowmath's text helpers without torch",
    ("options.py", "tomllib"): "Python 3.10 has no tomllib",
    ("options.py", "tomli"): "tomli is optional on Python 3.10",
    ("pytest_plugin.py", ".gate"): "pytest loads the plugin in every session: torch only once a check runs",
    ("pytest_plugin.py", ".runner"): "pytest loads the plugin in every session: torch only once a check runs",
    ("render/plots.py", "matplotlib"): "matplotlib is optional",
    ("render/plots.py", "matplotlib.pyplot"): "matplotlib is optional",
    ("workers.py", "numpy"): "the fork server loads the checks once, before its first fork, not at import",
    ("workers.py", "torch"): "the fork server loads the checks once, before its first fork, not at import",
    ("workers.py", ".cases.numpy_case"): "the fork server loads the checks once, before its first fork",
    ("workers.py", ".cases.torch_case"): "the fork server loads the checks once, before its first fork",
    ("workers.py", ".runner"): "the fork server loads the checks once, before its first fork",
    ("zygote.py", "."): "the zygote loads no torch itself; the server it starts does",
}


def _function_imports(path: Path) -> list[tuple[str, int]]:
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            for sub in ast.walk(node):
                if isinstance(sub, ast.ImportFrom):
                    found.append(("." * sub.level + (sub.module or ""), sub.lineno))
                elif isinstance(sub, ast.Import):
                    found += [(alias.name, sub.lineno) for alias in sub.names]
    return found


def test_imports_inside_functions_only_where_they_keep_something_optional_or_break_a_cycle():
    found = {
        (str(p.relative_to(PACKAGE)), module): line
        for p in sorted(PACKAGE.rglob("*.py"))
        if p.name != "__init__.py"
        for module, line in _function_imports(p)
    }
    unexplained = sorted(
        f"{where}:{line} imports {module}" for (where, module), line in found.items() if (where, module) not in DEFERRED
    )
    assert not unexplained, unexplained
    stale = sorted(f"{where} no longer imports {module}" for where, module in DEFERRED if (where, module) not in found)
    assert not stale, stale

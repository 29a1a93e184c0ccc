"""Collection: find the model files, import them, and gather their ``@rnncheck.case`` functions."""

from __future__ import annotations

import ast
import importlib.util
import os
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .errors import UsageError, first_line


@dataclass
class CaseDef:
    """A case function found in a model file."""

    name: str
    func: Callable
    file: str
    line: int

    @property
    def id(self) -> str:
        return f"{self.file}::{self.name}"


@dataclass
class FileProblem:
    """A model file that could not be collected."""

    file: str
    message: str
    fatal: bool  # True: an error (syntax/import); False: a note (no cases)


_REGISTRY: list[CaseDef] = []


def case(func: Callable | None = None, *, name: str | None = None):
    """Mark a function as an rnncheck case.  It returns a TorchCase, NumpyCase or CellCase.

    Use as ``@rnncheck.case`` or ``@rnncheck.case(name="...")``; the case is named after
    the function unless ``name`` is given.
    """

    def register(f: Callable) -> Callable:
        code = getattr(f, "__code__", None)
        _REGISTRY.append(
            CaseDef(name or f.__name__, f, code.co_filename if code else "?", code.co_firstlineno if code else 0)
        )
        f.__rnncheck_case__ = True
        return f

    return register(func) if func is not None else register


#: file names a folder run never imports: packaging and pytest's own files
SKIPPED_NAMES = {"setup.py", "conftest.py", "noxfile.py", "manage.py"}
#: folders a folder run never enters (virtual environments are also found by their pyvenv.cfg)
SKIPPED_DIRS = {"site-packages", "dist-packages", "node_modules", "__pycache__", "build", "dist"}


def looks_like_model_file(path: Path) -> bool:
    """A file a folder run imports: it marks cases, as the pytest plugin asks too (:func:`marks_cases`).

    A file that cannot be read or parsed, and names rnncheck, is let through, so that loading it says why.
    """
    try:
        text = path.read_bytes()
    except OSError:
        return True
    return marks_cases(text) is not None


def marks_cases(source: bytes | str) -> int | None:
    """The line of the first use of ``rnncheck.case`` in ``source`` (a decorator or a call), or None.

    Decided from the syntax tree, through the names the file imports it under (``import rnncheck
    as rc`` then ``@rc.case``; ``from rnncheck import case as mark`` then ``@mark``): a comment
    about ``@casefold`` or a decorator ``@case_insensitive`` marks nothing.
    """

    if (b"rnncheck" if isinstance(source, bytes) else "rnncheck") not in source:
        return None
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return 1  # not Python as it stands, yet it names rnncheck: loading it will say what is wrong
    modules, names = {"rnncheck"}, set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules |= {a.asname or a.name for a in node.names if a.name == "rnncheck"}
        elif isinstance(node, ast.ImportFrom) and node.module == "rnncheck":
            names |= {a.asname or a.name for a in node.names if a.name == "case"}
    for node in ast.walk(tree):
        target = node.func if isinstance(node, ast.Call) else node
        if isinstance(target, ast.Attribute) and target.attr == "case":
            if isinstance(target.value, ast.Name) and target.value.id in modules:
                return node.lineno
        elif isinstance(target, ast.Name) and target.id in names and isinstance(node, ast.Call | ast.Name):
            if _decorates_or_calls(tree, target):
                return node.lineno
    return None


def _decorates_or_calls(tree, name) -> bool:
    """``name`` (imported as rnncheck's case) is used as a decorator or called, not merely mentioned."""

    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            for dec in node.decorator_list:
                core = dec.func if isinstance(dec, ast.Call) else dec
                if isinstance(core, ast.Name) and core.id == name.id:
                    return True
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == name.id:
            return True
    return False


def _walk(root: Path, problems: list[FileProblem]) -> list[Path]:
    """The candidate model files under ``root``: no links out of it, no virtual environments."""
    real_root = root.resolve()
    found: list[Path] = []
    for folder, dirs, files in os.walk(root, followlinks=False):
        here = Path(folder)
        dirs[:] = sorted(
            d
            for d in dirs
            if not d.startswith((".", "_"))
            and d not in SKIPPED_DIRS
            and not (here / d / "pyvenv.cfg").exists()
            and not (here / d).is_symlink()
        )
        for name in sorted(files):
            if not name.endswith(".py") or name.startswith((".", "_")) or name in SKIPPED_NAMES:
                continue
            path = here / name
            if path.is_symlink():
                try:
                    target = path.resolve(strict=True)
                except (OSError, RuntimeError) as exc:  # a broken link or a loop
                    problems.append(
                        FileProblem(str(path), f"cannot be read: {_reason(exc)}; fix or remove the link", True)
                    )
                    continue
                if not target.is_relative_to(real_root):
                    continue  # a link out of the folder given: not ours to import
            if looks_like_model_file(path):
                found.append(path)
    return found


def _reason(exc: BaseException) -> str:
    if isinstance(exc, RuntimeError) or getattr(exc, "errno", None) == 40:  # ELOOP
        return "a symlink loop"
    return getattr(exc, "strerror", None) or type(exc).__name__


def model_files(paths: list[str], problems: list[FileProblem] | None = None) -> list[Path]:
    """The model files to import.

    A file named on the command line is imported as given.  A folder is searched for
    ``*.py`` files that mark cases (``rnncheck.case`` or ``@case``); names starting with ``_``
    or ``.``, setup.py, conftest.py, virtual environments and symlinks leading out of the
    folder are skipped.
    """
    problems = [] if problems is None else problems
    files: list[Path] = []
    for raw in paths:
        p = Path(raw)
        try:
            exists = p.exists()
        except OSError as exc:  # a symlink loop, say
            raise UsageError(f"{raw}: cannot be read ({_reason(exc)})") from exc
        if not exists:
            if p.is_symlink():
                raise UsageError(f"{raw}: a broken symlink or a symlink loop")
            raise UsageError(f"{raw}: no such file or folder")
        if p.is_dir():
            files += _walk(p, problems)
        elif p.suffix != ".py":
            raise UsageError(f"{raw}: not a Python file (model files end in .py)")
        else:
            files.append(p)
    return files


def _read_problem(path: Path) -> FileProblem | None:
    """A file that cannot be imported as Python source: unreadable, binary, not UTF-8."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        return FileProblem(str(path), f"cannot be read: {_reason(exc)}; check its permissions", True)
    if b"\0" in data:
        return FileProblem(str(path), "is a binary file, not Python source: remove it or rename it away from .py", True)
    return None


def _local_modules(before: set[str], folder: Path) -> list[str]:
    """Modules imported since ``before`` whose files lie in ``folder``: the model file's own helpers."""
    local = []
    for name in set(sys.modules) - before:
        file = getattr(sys.modules.get(name), "__file__", None)
        if file and Path(file).resolve().is_relative_to(folder):
            local.append(name)
    return local


def _package_path(file: Path) -> tuple[Path, str | None]:
    """``(base, dotted name)`` of a file inside a package (folders with ``__init__.py``), else ``(folder, None)``.

    ``base`` is the first folder above the package's top that is not itself a package:
    on ``sys.path`` there, ``pkg/sub/models.py`` is ``pkg.sub.models``.
    """
    parts = [file.stem]
    folder = file.parent
    while (folder / "__init__.py").is_file() and folder.parent != folder:
        parts.insert(0, folder.name)
        folder = folder.parent
    if len(parts) == 1 or not all(p.isidentifier() for p in parts):
        return file.parent, None
    return folder, ".".join(parts)


def _shadowed(folder: Path) -> dict[str, object]:
    """Modules already imported from elsewhere under a name that a module in ``folder`` also has.

    They are set aside while the model file imports, so that ``import helpers`` finds the
    file's own helpers.py and not one some earlier file (or rnncheck's host) imported.
    """
    names = set()
    try:
        for entry in folder.iterdir():
            if entry.suffix == ".py":
                names.add(entry.stem)
            elif entry.is_dir() and (entry / "__init__.py").exists():
                names.add(entry.name)
    except OSError:
        return {}
    aside = {}
    for name in names - {"rnncheck"}:  # the running rnncheck is the one whose registry collects the cases
        module = sys.modules.get(name)
        file = getattr(module, "__file__", None)
        if module is not None and not (file and Path(file).resolve().is_relative_to(folder)):
            aside[name] = sys.modules.pop(name)
    return aside


def _shadowing_rnncheck(module) -> str | None:
    """When the file's ``import rnncheck`` found another folder than the running rnncheck: say which, and the fix."""
    theirs = getattr(module, "__dict__", {}).get("rnncheck")
    ours = sys.modules[__name__.rpartition(".")[0]]
    if theirs is None or theirs is ours:
        return None
    where = getattr(theirs, "__file__", None) or list(getattr(theirs, "__path__", []) or ["?"])[0]
    return (
        f"`import rnncheck` in this file found {where}, which shadows the installed rnncheck "
        f"({Path(ours.__file__).parent}): rename or move that folder, or run from another directory"
    )


def load_file(path: Path, timeout: float | None = None) -> tuple[list[CaseDef], FileProblem | None]:
    """Import one model file; return its cases, or the problem that stopped it.

    The import runs behind the same door as a case (exits, hangs past ``timeout`` and
    changes to global state are contained).  Helper modules the file imports from its
    own folder are dropped from ``sys.modules`` afterwards, so that a same-named helper
    next to another model file is imported from there, not taken from this one.
    """
    from .usercode import CaseTimeout, case_guard, exit_message

    problem = _read_problem(path)
    if problem is not None:
        return [], problem
    resolved = str(path.resolve())
    module = None
    mod_name = "rnncheck_models." + re.sub(r"\W", "_", resolved)
    start = len(_REGISTRY)
    folder = path.resolve().parent
    base, dotted = _package_path(path.resolve())
    # a file inside a package is imported as pytest does, as base/pkg/…/name, so relative imports work
    places = [folder] if dotted is None else [folder, base]  # on sys.path while it imports
    owned = [folder] if dotted is None else [folder, base / dotted.split(".")[0]]  # its modules, dropped after
    before = set(sys.modules)
    aside = {name: module for place in places for name, module in _shadowed(place).items()}
    with case_guard(timeout, keep_threads=True):
        try:
            for place in places:
                sys.path.insert(0, str(place))
            if dotted is not None:
                importlib.import_module(dotted.rpartition(".")[0])  # the packages above it, their __init__ first
            spec = importlib.util.spec_from_file_location(dotted or mod_name, resolved)
            module = importlib.util.module_from_spec(spec)
            sys.modules[mod_name] = module
            if dotted is not None:
                sys.modules[dotted] = module
            spec.loader.exec_module(module)
        except SyntaxError as exc:
            return [], FileProblem(
                str(path), f"syntax error at line {exc.lineno}: {exc.msg}; fix the file and rerun", True
            )
        except SystemExit as exc:
            return [], FileProblem(str(path), exit_message("importing the file", exc, resolved), True)
        except CaseTimeout as exc:
            return [], FileProblem(str(path), f"importing the file {exc.message()}", True)
        except Exception as exc:  # any error while importing the user's file
            shadow = _shadowing_rnncheck(module)
            if shadow:
                return [], FileProblem(str(path), shadow, True)
            return [], FileProblem(
                str(path), f"import failed: {type(exc).__name__}: {first_line(exc)}; fix the file and rerun", True
            )
        finally:
            for place in places:
                if str(place) in sys.path:
                    sys.path.remove(str(place))
            for name in {n for root in owned for n in _local_modules(before, root)} - {mod_name}:
                del sys.modules[name]
            sys.modules.update(aside)
    found = [c for c in _REGISTRY[start:] if _defined_here(c, path)]
    del _REGISTRY[start:]
    for c in found:
        c.file = str(path)
    if not found:
        line = marks_cases(path.read_bytes()) if path.exists() else None
        if line is not None:  # it marks cases, yet none arrived: the file broke rnncheck's own state as it loaded
            return [], FileProblem(
                str(path),
                f"marks cases (line {line}) but none was collected: something in the file replaced rnncheck's "
                "modules or its case decorator as it loaded (sys.modules, rnncheck.case); leave them as they are",
                True,
            )
        return [], FileProblem(str(path), "no cases found: mark a function with @rnncheck.case", False)
    return _unique_names(found, path), None


def _defined_here(c: CaseDef, path: Path) -> bool:
    """A case belongs to the file being imported unless another model file defines it.

    A model file that imports another for its helpers would otherwise collect that file's
    cases a second time under its own name; pytest, likewise, collects a test only where it
    is defined.  Cases a plain helper module registers for the file still count as its own.
    """
    try:
        defined = Path(c.file).resolve()
    except (OSError, RuntimeError):
        return True
    if defined == path.resolve() or not defined.is_file():
        return True
    return not looks_like_model_file(defined)


def _unique_names(found: list[CaseDef], path: Path) -> list[CaseDef]:
    """Cases that share a name (one factory called three times) get ``name[0]``, ``name[1]`` … so that none collapses."""
    counts: dict[str, int] = {}
    for c in found:
        counts[c.name] = counts.get(c.name, 0) + 1
    seen: dict[str, int] = {}
    for c in found:
        if counts[c.name] > 1:
            k = seen.get(c.name, 0)
            seen[c.name] = k + 1
            c.name = f"{c.name}[{k}]"
    return found


@dataclass
class Plan:
    """What a run will import, decided without running any user code: the files, in order, and any ``file::case``."""

    files: list[Path]
    wanted: dict[Path, set[str]]
    problems: list[FileProblem]

    def choose(self, path: Path, found: list, problem: FileProblem | None) -> list:
        """The cases of ``path`` to run: all, or those its ``file::case`` ids name (a name it lacks is a usage error)."""
        key = path.resolve()
        if key not in self.wanted:
            return found
        missing = self.wanted[key] - {c.name for c in found}
        if missing and problem is None:
            names = ", ".join(c.name for c in found) or "none"
            raise UsageError(f"{path}: no case named {', '.join(sorted(missing))} (its cases: {names})")
        return [c for c in found if c.name in self.wanted[key]]


def plan(paths: list[str]) -> Plan:
    """The model files under ``paths`` (each once) and the cases named as ``file.py::case``, as pytest's node ids do."""
    wanted: dict[Path, set[str]] = {}
    plain: list[str] = []
    for raw in paths:
        path, sep, name = raw.partition("::")
        plain.append(path)
        if sep:
            wanted.setdefault(Path(path).resolve(), set()).add(name)
    problems: list[FileProblem] = []
    files, seen = [], set()
    for f in model_files(plain, problems):
        if f.resolve() not in seen:
            seen.add(f.resolve())
            files.append(f)
    return Plan(files, wanted, problems)


def collect(paths: list[str], timeout: float | None = None) -> tuple[list[CaseDef], list[FileProblem]]:
    """Every case under ``paths``, and the files that gave none, imported in this process."""
    chosen = plan(paths)
    cases, problems = [], list(chosen.problems)
    for f in chosen.files:
        found, problem = load_file(f, timeout)
        cases += chosen.choose(f, found, problem)
        if problem:
            problems.append(problem)
    return cases, problems


# --- -k expressions ---------------------------------------------------------------------

_TOKEN = re.compile(r"\s*(\(|\)|[^\s()]+)")


def keyword_matcher(expr: str) -> Callable[[str], bool]:
    """A pytest-style ``-k`` expression: substrings joined by ``and``, ``or``, ``not`` and parentheses."""
    tokens = _TOKEN.findall(expr)
    pos = 0

    def peek():
        return tokens[pos] if pos < len(tokens) else None

    def take():
        nonlocal pos
        pos += 1
        return tokens[pos - 1]

    def parse_or():
        left = parse_and()
        while peek() == "or":
            take()
            right = parse_and()
            left = (lambda a, b: lambda s: a(s) or b(s))(left, right)
        return left

    def parse_and():
        left = parse_not()
        while peek() == "and":
            take()
            right = parse_not()
            left = (lambda a, b: lambda s: a(s) and b(s))(left, right)
        return left

    def parse_not():
        if peek() == "not":
            take()
            inner = parse_not()
            return lambda s: not inner(s)
        return parse_atom()

    def parse_atom():
        tok = peek()
        if tok is None:
            raise UsageError(f"-k {expr!r}: the expression ends early")
        if tok == "(":
            take()
            inner = parse_or()
            if peek() != ")":
                raise UsageError(f"-k {expr!r}: missing ')'")
            take()
            return inner
        if tok in (")", "and", "or"):
            raise UsageError(f"-k {expr!r}: unexpected {tok!r}")
        word = take().lower()
        return lambda s: word in s.lower()

    if not tokens:
        return lambda s: True
    matcher = parse_or()
    if peek() is not None:
        raise UsageError(f"-k {expr!r}: unexpected {peek()!r}")
    return matcher

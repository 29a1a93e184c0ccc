"""Collection: find the model files, import them, and gather their ``@rnncheck.case`` functions."""

from __future__ import annotations

import importlib.util
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .errors import UsageError


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


def model_files(paths: list[str]) -> list[Path]:
    """The .py files named, or found under the folders named (sorted; names starting with _ or . skipped)."""
    files: list[Path] = []
    for raw in paths:
        p = Path(raw)
        if not p.exists():
            raise UsageError(f"{raw}: no such file or folder")
        if p.is_dir():
            files += sorted(
                f for f in p.rglob("*.py") if not any(part.startswith((".", "_")) for part in f.relative_to(p).parts)
            )
        elif p.suffix != ".py":
            raise UsageError(f"{raw}: not a Python file (model files end in .py)")
        else:
            files.append(p)
    return files


def load_file(path: Path) -> tuple[list[CaseDef], FileProblem | None]:
    """Import one model file; return its cases, or the problem that stopped it."""
    resolved = str(path.resolve())
    mod_name = "rnncheck_models." + re.sub(r"\W", "_", resolved)
    start = len(_REGISTRY)
    spec = importlib.util.spec_from_file_location(mod_name, resolved)
    module = importlib.util.module_from_spec(spec)
    sys.modules[mod_name] = module
    folder = str(path.resolve().parent)
    sys.path.insert(0, folder)
    try:
        spec.loader.exec_module(module)
    except SyntaxError as exc:
        return [], FileProblem(str(path), f"syntax error at line {exc.lineno}: {exc.msg}; fix the file and rerun", True)
    except Exception as exc:  # any error while importing the user's file
        return [], FileProblem(str(path), f"import failed: {type(exc).__name__}: {exc}; fix the file and rerun", True)
    finally:
        if sys.path and sys.path[0] == folder:
            sys.path.pop(0)
    found = [c for c in _REGISTRY[start:] if c.file == resolved]
    for c in found:
        c.file = str(path)
    if not found:
        return [], FileProblem(str(path), "no cases found: mark a function with @rnncheck.case", False)
    return found, None


def collect(paths: list[str]) -> tuple[list[CaseDef], list[FileProblem]]:
    """Every case under ``paths``, and the files that gave none."""
    cases, problems = [], []
    for f in model_files(paths):
        found, problem = load_file(f)
        cases += found
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

"""Case ids (``file::case``) and the folder they are relative to; no torch, so the command starts fast."""

from __future__ import annotations

import os
from pathlib import Path

from .findings import CaseResult


def id_root(paths: list[str]) -> Path:
    """What case ids are relative to, as pytest's rootdir: the folder of the nearest pyproject.toml
    above the paths' common folder, else that common folder."""
    if not paths:
        return Path.cwd()
    resolved = [Path(p).resolve() for p in paths]
    common = Path(os.path.commonpath([str(p if p.is_dir() else p.parent) for p in resolved]))
    for folder in [common, *common.parents]:
        if (folder / "pyproject.toml").is_file():
            return folder
    return common


def case_id(result: CaseResult, root: Path | None = None) -> str:
    """``file::case`` with the file relative to ``root`` (default: the working directory), so that baselines travel."""
    if not result.file:
        return f"::{result.name}"
    path = Path(result.file)
    base = (root or Path.cwd()).resolve()
    try:
        rel = Path(os.path.relpath(path.resolve(), base))
        path = rel if not rel.as_posix().startswith("..") else path
    except ValueError:  # another drive
        pass
    return f"{path.as_posix()}::{result.name}"

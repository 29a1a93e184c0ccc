"""Nests of tensors (tuples, namedtuples, lists, dicts) as cases take and models return them.

A neutral module: cases build their inputs with it and checks read outputs with it, so that
neither imports the other.
"""

from __future__ import annotations

from collections.abc import Callable

import torch


def leaves(obj, path: str):
    """Yield ``(path, tensor)`` for every tensor in a nest of tuples, lists and dicts."""
    if isinstance(obj, torch.Tensor):
        yield path, obj
    elif isinstance(obj, tuple | list):
        for i, item in enumerate(obj):
            yield from leaves(item, f"{path}[{i}]")
    elif isinstance(obj, dict):
        for k, item in obj.items():
            yield from leaves(item, f"{path}[{k!r}]")


def replace(obj, path: str, new: dict[str, torch.Tensor], convert: Callable[[torch.Tensor], torch.Tensor]):
    """Rebuild a nest, taking ``new[path]`` where given and ``convert(tensor)`` elsewhere."""
    if isinstance(obj, torch.Tensor):
        return new[path] if path in new else convert(obj)
    if isinstance(obj, tuple) and hasattr(obj, "_fields"):  # namedtuple
        return type(obj)(*(replace(x, f"{path}[{i}]", new, convert) for i, x in enumerate(obj)))
    if isinstance(obj, tuple | list):
        return type(obj)(replace(x, f"{path}[{i}]", new, convert) for i, x in enumerate(obj))
    if isinstance(obj, dict):
        return {k: replace(x, f"{path}[{k!r}]", new, convert) for k, x in obj.items()}
    return obj


def float_outputs(out) -> list[torch.Tensor]:
    """Every floating tensor of a model's output nest, in order."""
    return [t for _, t in leaves(out, "out") if t.is_floating_point()]


def common_dtype(tensors) -> torch.dtype:
    """The widest floating dtype among ``tensors`` (float32 when there is none)."""
    dtypes = {t.dtype for t in tensors}
    for d in (torch.float64, torch.float32, torch.bfloat16, torch.float16):
        if d in dtypes:
            return d
    return torch.float32

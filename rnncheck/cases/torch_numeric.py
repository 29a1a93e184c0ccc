"""Where a TorchCase's numerical side evaluates the loss: a float64 copy of the model where its code allows it.

Finite differences in float64 need no error model for the model's own rounding, so a
float32, float16 or bfloat16 model is copied to float64 for them.  Whether the copy
really computes in float64 is learnt from its first evaluation (which is needed
anyway): a model that refuses float64, or computes in a lower precision even when
given it, is evaluated as it is, in its own dtype, and the report says why.
"""

from __future__ import annotations

import copy
import os
import traceback

import numpy as np
import torch
from torch.overrides import TorchFunctionMode

from ..errors import first_line, safe_str
from ..nested import replace


class NumericModel:
    """The model and inputs the numerical side runs, and whether they have proved to run in float64."""

    def __init__(self, target) -> None:
        self.target = target
        self.model, self.inputs, self.checked = target.model, target.inputs, True
        self.watched = False  # the first float64 evaluation is watched for casts to a lower precision
        if target.model_dtype == np.float64:
            return
        if target.case.reseed:
            self.fall_back("reseed=True repeats the model's random numbers in its own dtype only")
            return
        try:
            model64 = copy.deepcopy(target.model).to(torch.float64)
            inputs64 = replace(target.inputs, "input", {}, lambda t: t.double() if t.is_floating_point() else t)
        except Exception as exc:  # the model may refuse float64 in any way
            self.fall_back(f"the model cannot be copied to float64 ({type(exc).__name__})")
            return
        self.model, self.inputs, self.checked = model64, inputs64, False

    def fall_back(self, why: str) -> None:
        """Evaluate the model itself, in its own dtype, from now on; the report says why."""
        target = self.target
        target.notes.append(f"numerical side in {target.model_dtype}: {why}")
        target.numeric_dtype = target.model_dtype
        self.model, self.inputs, self.checked = target.model, target.inputs, True

    def loss(self, values: dict[str, torch.Tensor]) -> torch.Tensor:
        """The loss at ``values`` (given in the numerical side's dtype)."""
        target = self.target
        with torch.no_grad():
            if not self.watched and values and all(v.dtype == torch.float64 for v in values.values()):
                self.watched = True
                return self._watching_casts(values)
            if self.checked:
                return target._forward(self.model, values, self.inputs)
            self.checked = True
            try:
                value = target._forward(self.model, values, self.inputs)
            except Exception as exc:  # the model may refuse float64 in any way
                first = first_line(exc) if safe_str(exc).strip() else type(exc).__name__
                self.fall_back(f"the model does not run in float64: {first[:300]}")
                return self.loss(self._in_model_dtype(values))
            if value.dtype != torch.float64:
                self.fall_back(f"the model computes in {value.dtype} even in float64")
                return self.loss(self._in_model_dtype(values))
            return value

    def _watching_casts(self, values: dict[str, torch.Tensor]) -> torch.Tensor:
        """The first float64 evaluation, watched for casts down to float32 or half: each is named in a note."""
        casts = CastWatch(values, self.target.case.file or None)
        with casts:
            value = self.loss(values)
        if casts.seen and self.target.numeric_dtype == np.float64:
            lowest = min(casts.seen, key=lambda c: torch.finfo(c[1]).bits)[1]
            eps = torch.finfo(lowest).eps
            listed = "; ".join(
                f"{what} to {str(dtype).replace('torch.', '')}{at}" for what, dtype, at in casts.seen[:4]
            )
            self.target.notes.append(
                f"the float64 model casts down inside its forward ({listed}): those parts round as "
                f"{str(lowest).replace('torch.', '')} does (ε = {eps:.1g}), so errors near that size can pass unseen "
                "and the catches column is coarser than float64's; keep them in the input's dtype "
                "(t.to(x.dtype)) for full power"
            )
        return value

    def _in_model_dtype(self, values: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {n: t.to(self.target.leaf_dtypes[n]) for n, t in values.items()}


class CastWatch(TorchFunctionMode):
    """Casts from float64 down to float32, float16 or bfloat16 during one forward, with the user's line."""

    LOWER = (torch.float32, torch.float16, torch.bfloat16)

    def __init__(self, values: dict[str, torch.Tensor], user_file: str | None) -> None:
        super().__init__()
        self.names = {id(t): n for n, t in values.items()}
        self.user_file = os.path.realpath(user_file) if user_file else None
        self.seen: list[tuple[str, torch.dtype, str]] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        source = args[0] if args and isinstance(args[0], torch.Tensor) else None
        if (
            source is not None
            and source.dtype == torch.float64
            and isinstance(out, torch.Tensor)
            and out.dtype in self.LOWER
            and len(self.seen) < 16
        ):
            what = self.names.get(id(source), "an intermediate")
            entry = (what, out.dtype, self._where())
            if entry not in self.seen:
                self.seen.append(entry)
        return out

    def _where(self) -> str:
        if self.user_file is None:
            return ""
        frames = [f for f in traceback.extract_stack()[:-2] if os.path.realpath(f.filename) == self.user_file]
        return f" at {frames[-1].filename}:{frames[-1].lineno}" if frames else ""

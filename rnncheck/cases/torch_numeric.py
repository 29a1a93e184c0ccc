"""Where a TorchCase's numerical side evaluates the loss: a float64 copy of the model where its code allows it.

Finite differences in float64 need no error model for the model's own rounding, so a
float32, float16 or bfloat16 model is copied to float64 for them.  Whether the copy
really computes in float64 is learnt from its first evaluation (which is needed
anyway): a model that refuses float64, or computes in a lower precision even when
given it, is evaluated as it is, in its own dtype, and the report says why.
"""

from __future__ import annotations

import copy

import numpy as np
import torch


class NumericModel:
    """The model and inputs the numerical side runs, and whether they have proved to run in float64."""

    def __init__(self, target) -> None:
        from .torch_case import _replace

        self.target = target
        self.model, self.inputs, self.checked = target.model, target.inputs, True
        if target.model_dtype == np.float64:
            return
        try:
            model64 = copy.deepcopy(target.model).to(torch.float64)
            inputs64 = _replace(target.inputs, "input", {}, lambda t: t.double() if t.is_floating_point() else t)
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
            if self.checked:
                return target._forward(self.model, values, self.inputs)
            self.checked = True
            try:
                value = target._forward(self.model, values, self.inputs)
            except Exception as exc:  # the model may refuse float64 in any way
                self.fall_back(f"the model does not run in float64 ({type(exc).__name__})")
                return self.loss(self._in_model_dtype(values))
            if value.dtype != torch.float64:
                self.fall_back(f"the model computes in {value.dtype} even in float64")
                return self.loss(self._in_model_dtype(values))
            return value

    def _in_model_dtype(self, values: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {n: t.to(self.target.leaf_dtypes[n]) for n, t in values.items()}

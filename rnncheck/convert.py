"""Converters between ``nn.RNN``/``nn.LSTM``/``nn.GRU`` modules and the NumPy reference.

Parameter names are PyTorch's on both sides, so the conversion is a copy: every layer
and direction, both biases, and an LSTM's projections (``weight_hr_l0`` …).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from .reference import Mode, Spec


def mode_of(module: nn.Module) -> str | None:
    """The reference's mode (one of ``reference.MODES``) of a fused layer or a cell; None for any other module.

    The one place that maps torch's recurrent modules to the reference's names.
    """
    if isinstance(module, nn.LSTM | nn.LSTMCell):
        return Mode.LSTM
    if isinstance(module, nn.GRU | nn.GRUCell):
        return Mode.GRU
    if isinstance(module, nn.RNN | nn.RNNCell):
        return "rnn_" + module.nonlinearity
    return None


def spec_of(module: nn.RNNBase) -> Spec:
    """The reference :class:`Spec` of a fused recurrent module."""
    mode = mode_of(module) if isinstance(module, nn.RNNBase) else None
    if mode is None:
        raise TypeError(f"expected nn.RNN, nn.LSTM or nn.GRU, got {type(module).__name__}")
    return Spec(
        mode,
        module.input_size,
        module.hidden_size,
        module.num_layers,
        module.bidirectional,
        module.batch_first,
        getattr(module, "proj_size", 0),
    )


def has_param(module: nn.RNNBase, name: str) -> bool:
    """Whether the module carries ``name``: a layer built with bias=False has no bias_* (they act as zeros)."""
    return module.bias or not name.startswith("bias_")


def from_torch(module: nn.RNNBase, dtype: type | None = None) -> tuple[Spec, dict[str, np.ndarray]]:
    """Return ``(spec, params)``: the module's architecture and a NumPy copy of its weights.

    A layer built with ``bias=False`` is the reference with zero biases.
    """
    spec = spec_of(module)
    params = {}
    for name, shape in spec.param_shapes().items():
        if has_param(module, name):
            value = getattr(module, name).detach().cpu().numpy()
        else:
            value = np.zeros(shape, dtype=np.float64)
        params[name] = value.astype(dtype) if dtype is not None else value.copy()
    return spec, params


def to_torch(spec: Spec, params: dict[str, np.ndarray], dtype: torch.dtype | None = None) -> nn.RNNBase:
    """Build the ``nn`` module of ``spec`` carrying ``params``."""
    kwargs = dict(
        input_size=spec.input_size,
        hidden_size=spec.hidden_size,
        num_layers=spec.num_layers,
        bidirectional=spec.bidirectional,
        batch_first=spec.batch_first,
    )
    if spec.mode == Mode.LSTM:
        module: nn.RNNBase = nn.LSTM(proj_size=spec.proj_size, **kwargs)
    elif spec.mode == Mode.GRU:
        module = nn.GRU(**kwargs)
    elif spec.mode in (Mode.RNN_TANH, Mode.RNN_RELU):
        module = nn.RNN(nonlinearity=spec.mode[4:], **kwargs)
    else:
        raise ValueError(f"PyTorch has no fused module for {spec.mode!r}")
    if dtype is None:
        dtype = torch.from_numpy(next(iter(params.values()))).dtype
    module = module.to(dtype)
    load_into(module, params)
    return module


def load_into(module: nn.RNNBase, params: dict[str, np.ndarray]) -> None:
    """Copy reference ``params`` into an existing module, in place."""
    spec = spec_of(module)
    expected = {n: s for n, s in spec.param_shapes().items() if has_param(module, n)}
    params = {n: v for n, v in params.items() if n in expected or not n.startswith("bias_")}
    if set(params) != set(expected):
        missing = sorted(set(expected) - set(params))
        extra = sorted(set(params) - set(expected))
        raise KeyError(f"parameter names differ: missing {missing}, unexpected {extra}")
    with torch.no_grad():
        for name, value in params.items():
            target = getattr(module, name)
            target.copy_(torch.as_tensor(np.asarray(value), dtype=target.dtype))

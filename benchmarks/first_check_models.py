"""Models for a model's first check in a fresh process, as ``rnncheck verify`` makes it (§28 of the README here).

``nn.LSTM(H, H)`` on (T=50, B) inputs with a fixed linear loss, at (H, B) in ``CELLS``, in float64 and float32.
Each case's ``seconds`` in the JSON report is what a user waits for it: the thread policy's timed calls, the
case's setup and every check.

    rnncheck verify benchmarks/first_check_models.py -q --json FILE
"""

import torch

import rnncheck

T = 50
CELLS = [(64, 8), (256, 1), (256, 8), (256, 64)]


def _case(H, B, dtype):
    torch.manual_seed(0)
    model = torch.nn.LSTM(H, H).to(dtype)
    x = torch.randn(T, B, H, dtype=dtype)
    w = torch.randn(T, B, H, dtype=dtype) / (T * B * H) ** 0.5
    return rnncheck.TorchCase(model, inputs=(x,), loss=lambda out: (out[0] * w).sum())


for _H, _B in CELLS:
    for _dtype in ("float64", "float32"):

        def _make(H=_H, B=_B, dtype=_dtype):
            return _case(H, B, getattr(torch, dtype))

        _make.__name__ = f"h{_H}_b{_B}_{_dtype}"
        globals()[_make.__name__] = rnncheck.case(_make)

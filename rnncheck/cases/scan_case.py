"""Recurrences as their authors write them: a scan function, and a module with a parallel and a step form.

``FunctionCase(pscan, inputs=(a, b, h0), reference=sequential)`` checks a function of tensors,
with respect to every floating input that requires grad, and compares it with a plain
sequential function.  ``StepCase(module, inputs=x, state0=h0)`` compares a module's parallel
form, ``module(x, h0)``, with its own step form, which rnncheck loops itself:
``y_t, h = module.step(x_t, h)``.

Both are TorchCases underneath.  A FunctionCase's inputs become the parameters of a small
module named after the function's arguments (``a``, ``b``, ``h0``), so every check, the
report and the baseline name them as the function does.  A StepCase's two forms are two
copies of the user's module that differ only in ``forward``, so they share every
parameter name and the comparison with the reference module needs no map.
"""

from __future__ import annotations

import copy
import inspect
from collections.abc import Callable

import torch
from torch import nn

from ..errors import CaseError
from ..recording import record
from .torch_case import TorchCase, positional_inputs


def _argument_names(fn: Callable, count: int) -> list[str]:
    """The names of ``fn``'s first ``count`` positional arguments (``arg0`` … where it has none)."""
    try:
        params = [
            p.name
            for p in inspect.signature(fn).parameters.values()
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
        ]
    except (TypeError, ValueError):  # a builtin or a C function without a signature
        params = []
    return [params[i] if i < len(params) else f"arg{i}" for i in range(count)]


class FunctionModule(nn.Module):
    """``fn(*inputs)`` as a module whose parameters are the inputs whose gradient is checked."""

    def __init__(self, fn: Callable, names: list[str], values: tuple, checked: set[int]) -> None:
        super().__init__()
        self.fn = fn
        self.slots: list[tuple[str, str | None, object]] = []  # (kind, attribute, constant)
        for i, (name, value) in enumerate(zip(names, values)):
            attr = name if not hasattr(nn.Module, name) and not hasattr(self, name) else f"{name}_"
            if i in checked:
                self.register_parameter(attr, nn.Parameter(value.detach().clone()))
                self.slots.append(("parameter", attr, None))
            elif isinstance(value, torch.Tensor):
                self.register_buffer(attr, value.detach().clone())
                self.slots.append(("buffer", attr, None))
            else:
                self.slots.append(("constant", None, value))

    def arguments(self) -> tuple:
        return tuple(getattr(self, attr) if kind != "constant" else value for kind, attr, value in self.slots)

    def forward(self):
        return self.fn(*self.arguments())

    def extra_repr(self) -> str:
        return getattr(self.fn, "__name__", "function")


class FunctionCase(TorchCase):
    """A function of tensors, checked with respect to its floating inputs that require grad.

    Args:
        fn: ``fn(*inputs)`` returns a tensor or a nest of tensors (a parallel scan, a
            selective scan, a chunked kernel).
        inputs: its positional arguments.  Floating tensors that require grad are checked
            and named after ``fn``'s arguments; when none requires grad, every floating
            tensor is checked (a note says so).  Other arguments are passed as they are.
        reference: a plain function computing the same thing (the sequential loop), called
            with the same arguments; outputs and input gradients are compared with a
            tolerance measured from how each function rounds.
        loss: ``loss(output) -> scalar``; default a fixed random linear functional.
        time_dim: the time axis of the inputs and outputs (default 1: ``(B, T, ...)``), used
            to say which step a disagreement starts at and which time bug it is.
        decay: the name of the argument that holds the decay a_t of a diagonal linear
            recurrence h_t = a_t ⊙ h_(t-1) + b_t whose states ``fn`` returns; the flow report
            then gives every channel's exact horizon.  Without it the flow is measured on the
            inputs' influence on the last output.
    """

    def __init__(
        self,
        fn: Callable,
        inputs: tuple | list = (),
        reference: Callable | None = None,
        loss: Callable | None = None,
        *,
        time_dim: int = 1,
        decay: str | None = None,
    ) -> None:
        if not callable(fn):
            raise CaseError(f"FunctionCase needs a function of tensors, got {type(fn).__name__}")
        inputs = positional_inputs(inputs, "FunctionCase inputs must be a tuple of the function's arguments")
        if reference is not None and not callable(reference):
            raise CaseError(f"FunctionCase reference= takes a function like fn, got {type(reference).__name__}")
        if not isinstance(time_dim, int) or isinstance(time_dim, bool):
            raise CaseError(f"time_dim must be an axis index (an int), got {time_dim!r}")
        names = _argument_names(fn, len(inputs))
        floats = {i for i, v in enumerate(inputs) if isinstance(v, torch.Tensor) and v.is_floating_point()}
        checked = {i for i in floats if inputs[i].requires_grad}
        notes = []
        if not checked:
            checked = floats
            if floats:
                notes.append(
                    f"no input requires grad: every floating input is checked ({', '.join(names[i] for i in sorted(floats))})"
                )
        if not checked:
            raise CaseError("FunctionCase: no floating-point tensor among the inputs, so there is no gradient to check")
        if decay is not None and (decay not in names or names.index(decay) not in floats):
            raise CaseError(
                f"decay={decay!r} is not a floating-point argument of {getattr(fn, '__name__', 'fn')} "
                f"(its arguments: {', '.join(names)})"
            )
        self.fn = fn
        self.argument_names = names
        self.decay = decay
        module = FunctionModule(fn, names, tuple(inputs), checked)
        naive = FunctionModule(reference, names, tuple(inputs), checked) if reference is not None else None
        super().__init__(module, inputs=(), loss=loss, reference=naive)
        self.time_dim = time_dim
        self.case_notes = notes

    def output_states(self, recorder, out, values: dict) -> None:
        """The function's first floating output is the sequence of states, along ``time_dim``."""
        first = (
            out if isinstance(out, torch.Tensor) else next((t for t in _tensors(out) if t.is_floating_point()), None)
        )
        if first is None or first.dim() <= self.time_dim % max(first.dim(), 1):
            return
        decay = values.get(self.decay) if self.decay is not None else None
        if decay is not None and decay.shape != first.shape:
            recorder.problems.append(
                f"decay={self.decay!r} has shape {tuple(decay.shape)}, the output {tuple(first.shape)}: "
                "the exact per-channel decay needs one a_t per state entry"
            )
            decay = None
        name = getattr(self.fn, "__name__", "output")
        recorder.add(first, name, self.time_dim, None if decay is None else decay.detach())


def _tensors(obj):
    if isinstance(obj, torch.Tensor):
        yield obj
    elif isinstance(obj, tuple | list):
        for item in obj:
            yield from _tensors(item)
    elif isinstance(obj, dict):
        for item in obj.values():
            yield from _tensors(item)


class _Forms:
    """How to call a module's parallel and step forms, kept on the class the two copies share."""

    def __init__(self, cls, parallel, step, time_dim) -> None:
        self.cls, self.parallel, self.step, self.time_dim = cls, parallel, step, time_dim

    def run_parallel(self, module, x, state0):
        if self.parallel is not None:
            out = self.parallel(module, x, state0)
        elif state0 is None:
            out = self.cls.forward(module, x)
        else:
            out = self.cls.forward(module, x, state0)
        return out[0] if isinstance(out, tuple | list) else out

    def run_steps(self, module, x, state0):
        state, ys = state0, []
        for t in range(x.shape[self.time_dim]):
            x_t = x.select(self.time_dim, t)
            if callable(self.step):
                y, state = self.step(module, x_t, state)
            else:
                y, state = getattr(module, self.step)(x_t, state)
            record(state, name="step form")  # rnncheck owns this loop: the flow check sees every state
            ys.append(y[0] if isinstance(y, tuple | list) else y)
        return torch.stack(ys, dim=self.time_dim)


def _form(module: nn.Module, forms: _Forms, which: str) -> nn.Module:
    """A copy of ``module`` whose forward is its parallel or its step form; parameters keep their names."""
    run = forms.run_parallel if which == "parallel" else forms.run_steps

    def forward(self, x, state0=None):
        return run(self, x, state0)

    cls = type(
        f"{forms.cls.__name__}[{which} form]", (forms.cls,), {"forward": forward, "__module__": forms.cls.__module__}
    )
    copied = copy.deepcopy(module)
    copied.__class__ = cls
    return copied


class StepCase(TorchCase):
    """A module's parallel form compared with its own step form, which rnncheck loops.

    Args:
        module: the ``nn.Module``.  Its parallel form is ``module(x, state0)`` (or
            ``module(x)`` when ``state0`` is None); a tuple output's first item is the
            sequence of outputs.
        inputs: the input sequence ``x`` (a tensor, time along ``time_dim``).
        state0: the initial state given to both forms (a tensor or a tuple); if it
            requires grad, its gradient is checked too.
        step: the step form: a method name (default ``"step"``) called as
            ``y_t, state = module.step(x_t, state)``, or a function
            ``step(module, x_t, state) -> (y_t, state)``.
        parallel: optional ``parallel(module, x, state0) -> y`` where the parallel form is
            not ``module(x, state0)``.
        loss: ``loss(y) -> scalar``; default a fixed random linear functional.
        time_dim: the time axis of ``x`` and ``y`` (default 1: ``(B, T, ...)``).
    """

    def __init__(
        self,
        module: nn.Module,
        inputs: torch.Tensor,
        state0=None,
        step: str | Callable = "step",
        parallel: Callable | None = None,
        loss: Callable | None = None,
        *,
        time_dim: int = 1,
    ) -> None:
        if not isinstance(module, nn.Module):
            raise CaseError(f"StepCase needs an nn.Module with a parallel and a step form, got {type(module).__name__}")
        if isinstance(inputs, tuple | list) and len(inputs) == 1:
            inputs = inputs[0]
        if not isinstance(inputs, torch.Tensor) or inputs.dim() < 2:
            raise CaseError(
                "StepCase inputs must be the input sequence, a tensor with a time axis (time_dim=1 by default)"
            )
        if not isinstance(step, str) and not callable(step):
            raise CaseError(f"step= takes a method name or a function step(module, x_t, state), got {step!r}")
        if isinstance(step, str) and not callable(getattr(module, step, None)):
            raise CaseError(
                f"{type(module).__name__} has no method {step!r}: pass step='its name', "
                "or step=lambda module, x_t, state: (y_t, new_state)"
            )
        if parallel is not None and not callable(parallel):
            raise CaseError("parallel= takes a function parallel(module, x, state0) -> y")
        if not isinstance(time_dim, int) or isinstance(time_dim, bool) or not -inputs.dim() <= time_dim < inputs.dim():
            raise CaseError(f"time_dim={time_dim!r} is not an axis of the input of shape {tuple(inputs.shape)}")
        if state0 is None:
            raise CaseError(
                "StepCase needs state0, the initial state both forms start from (zeros if the module starts from zeros)"
            )
        self.time_dim = time_dim % inputs.dim()
        forms = _Forms(type(module), parallel, step, self.time_dim)
        self.step_model = _form(module, forms, "steps")
        super().__init__(
            _form(module, forms, "parallel"), inputs=(inputs, state0), loss=loss, reference=self.step_model
        )
        self.case_notes = []
        self.input_labels = {"input[0]": "x", "input[1]": "state0"}

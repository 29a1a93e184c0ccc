"""TorchCase: any ``torch.nn.Module``, custom autograd Functions inside included."""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
import torch
from torch import nn
from torch.func import functional_call

from ..convert import mode_of
from ..errors import CaseError, UserCodeError, safe_str
from ..nested import common_dtype, float_outputs, leaves, replace
from ..numerics import BFLOAT16
from ..recorders import record_cell_loop, record_module
from ..recording import recording
from ..reference import Mode
from ..twins import capturing, fused_layers
from ..usercode import call_user
from .base import GATE_NAMES, Case, Target, check_gates, stacked_gates, suggest_gates
from .torch_numeric import NumericModel
from .torch_reference import reference_comparisons


class TorchCase(Case):
    """A PyTorch model whose autograd gradient is checked.

    Args:
        model: the module.  Every parameter that requires grad is checked.
        inputs: the positional inputs of ``model(*inputs)``; may nest tuples, lists and
            dicts (an LSTM's ``(h, c)`` state, say).  Inputs that require grad are checked too.
        loss: ``loss(output) -> scalar tensor``.  Default: a fixed random linear functional
            of every floating output, so that no output's gradient can cancel.
        reference: the reference architecture the model implements, if any; the model is then
            called as ``nn.LSTM`` is (``model(x)`` returns the hidden sequence, or a tuple whose
            first item is it) and compared with rnncheck's NumPy reference.  ``nn.RNN``/
            ``nn.LSTM``/``nn.GRU`` layers inside any model are compared without being asked.
        reference_map: reference parameter name (``weight_ih_l0`` …) -> this model's name.
        gates: tensor name -> gate names, for weights that stack gates along axis 0 under names
            rnncheck cannot recognise (``{"weight_hh": ("i", "f", "g", "o")}``).
        reseed: seed torch's generator (with the run's ``--seed``) before every call of the
            model, so that dropout in training mode draws the same masks each time and the
            model is checked with its dropout on.  Masks repeat within one dtype, so a float32
            or lower model is then evaluated on its own dtype's numerical side.
    """

    def __init__(
        self,
        model: nn.Module,
        inputs: tuple | list = (),
        loss: Callable | None = None,
        *,
        reference: str | None = None,
        reference_map: dict[str, str] | None = None,
        gates: dict[str, tuple[str, ...]] | None = None,
        reseed: bool = False,
    ) -> None:
        if not isinstance(model, nn.Module):
            raise CaseError(f"TorchCase needs a torch.nn.Module, got {type(model).__name__}")
        inputs = positional_inputs(inputs, "TorchCase inputs must be a tuple of the model's positional inputs")
        if loss is not None and not callable(loss):
            raise CaseError("TorchCase loss must be a function of the model's output")
        self.model = model
        self.inputs = tuple(inputs)
        self.loss_fn = loss
        self.reseed = bool(reseed)
        self._set_gates(gates)
        self._set_reference(reference, reference_map)
        if reference in (Mode.LSTM, Mode.GRU):
            names = dict(reference_map or {})
            for ref_name in ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0"):
                self.gates.setdefault(names.get(ref_name, ref_name), GATE_NAMES[reference])

    def bind(self, options) -> TorchTarget:
        return TorchTarget.create(self, options)

    def known_tensors(self, params) -> set[str]:
        """Tensors whose architecture rnncheck knows without gates= (none beyond the fused layers here)."""
        return set()


# --- nested inputs and outputs ------------------------------------------------------------


def positional_inputs(inputs, message: str) -> tuple:
    """A case's positional inputs as a tuple (one tensor alone is one input); anything else is ``message``."""
    if isinstance(inputs, torch.Tensor):
        return (inputs,)
    if not isinstance(inputs, tuple | list):
        raise CaseError(f"{message}, got {type(inputs).__name__}")
    return tuple(inputs)


def _rnn_modes(model: nn.Module) -> dict[str, str]:
    """Each fused layer's parameter name -> the layer's reference mode."""
    modes = {}
    for prefix, mod in model.named_modules():
        if isinstance(mod, nn.RNNBase) and (mode := mode_of(mod)) is not None:
            for pname, _ in mod.named_parameters(recurse=False):
                modes[f"{prefix}.{pname}" if prefix else pname] = mode
    return modes


def _placed(case: TorchCase, device: torch.device, dtype: torch.dtype | None):
    """The model and inputs on ``device`` and, with ``--dtype``, in ``dtype``: copies, the user's own stay as they are."""
    model = case.model
    if device.type != "cpu" or dtype is not None:
        model = copy.deepcopy(model).to(device=device, dtype=dtype)

    def move(t: torch.Tensor) -> torch.Tensor:
        t2 = t.to(device)
        if dtype is not None and t2.is_floating_point():
            t2 = t2.to(dtype)
        return t2.detach().requires_grad_(t.requires_grad) if t2 is not t else t

    return model, replace(case.inputs, "input", {}, move)


@dataclass
class Placement:
    """Where the model runs and in which dtype: the device, the ``--dtype`` conversion, each checked tensor's dtype."""

    device: torch.device
    dtype_option: str | None  # --dtype, where the model was converted
    leaf_dtypes: dict[str, torch.dtype]  # each checked tensor's own dtype
    device_cache: list = field(default_factory=list)  # θ and the few directions in use, on the device

    def tensors(self, theta, dtype=None) -> dict[str, torch.Tensor]:
        """``theta`` on the device, each tensor in ``dtype`` or its own."""
        return {n: torch.as_tensor(v, device=self.device).to(dtype or self.leaf_dtypes[n]) for n, v in theta.items()}

    def on_device(self, arrays: dict) -> dict:
        """``arrays`` on the device in float64, remembered by identity so that θ and a direction move once."""
        for obj, dev in self.device_cache:
            if obj is arrays:
                return dev
        dev = {n: torch.as_tensor(a, device=self.device, dtype=torch.float64) for n, a in arrays.items()}
        self.device_cache.append((arrays, dev))
        del self.device_cache[:-4]  # θ and the few directions in use
        return dev

    def explain_forward(self, exc: UserCodeError) -> None:
        """Raise the user's forward error with the fix, where ``--device`` or ``--dtype`` is the likely cause."""
        text = safe_str(exc)
        if self.device.type != "cpu" and "cpu" in text.lower():
            raise CaseError(
                f"{text}; with --device {self.device} rnncheck moves every input tensor there: move one that "
                "must stay on the CPU back inside the model (pack_padded_sequence(x, lengths.cpu()) …)"
            ) from exc
        if self.dtype_option and "dtype" in text.lower():
            raise CaseError(
                f"{text}; with --dtype {self.dtype_option} rnncheck converts the model and its inputs, not tensors "
                "your code makes or captures: create them like the input (x.new_zeros(...), dtype=x.dtype)"
            ) from exc

    def explain_loss(self, exc: UserCodeError) -> None:
        """Raise the user's loss error with the fix, where the output moved to ``--device`` is the likely cause."""
        if self.device.type != "cpu" and "device" in safe_str(exc):
            raise CaseError(
                f"{safe_str(exc)}; with --device {self.device}, tensors the loss captures must follow the output: "
                "use t.to(out.device) inside the loss"
            ) from exc


@dataclass
class MutationGuard:
    """The parameters and inputs a call was given must come out as they went in; a change is noted and undone."""

    model: nn.Module
    inputs: tuple
    saved: dict[str, torch.Tensor]  # the checked tensors at the check point, detached
    saved_inputs: dict[str, torch.Tensor]  # every input tensor at the check point, by path
    mutations: list[str]  # the target's own list: what the report says was changed

    def check(self, values: dict[str, torch.Tensor] | None = None) -> None:
        """The model's parameters and inputs (restored where changed), and ``values`` a call was given."""
        current = {n: p for n, p in self.model.named_parameters() if n in self.saved}
        current.update(dict(leaves(self.inputs, "input")))
        saved = {**self.saved, **self.saved_inputs}
        for n, now in current.items():
            self._compare(n, now, saved[n], restore=True)
        for n, now in (values or {}).items():
            self._compare(n, now, self.saved[n], restore=False)

    def _compare(self, name: str, now: torch.Tensor, saved: torch.Tensor, restore: bool) -> None:
        if torch.equal(now.detach(), saved):
            return
        note = f"a call changed {name} in place"
        if note not in self.mutations:
            self.mutations.append(note)
        if restore:
            with torch.no_grad():
                now.copy_(saved)


class TorchTarget(Target):
    gradient_computes_loss = True  # gradient() runs the very forward that model_loss() would
    cell_loop: ClassVar[object | None] = None  # a CellCase's loop over the user's cell, which records every state

    # what create() sets, declared here; the parts first
    placement: Placement  # the device and the dtypes
    guard: MutationGuard  # arguments a call changed, noted and undone
    case: TorchCase
    model: nn.Module  # the case's module, placed on the device and in the dtype asked for
    inputs: tuple  # its positional inputs, placed likewise
    param_names: list[str]  # parameters that require grad, in the module's order
    input_names: list[str]  # paths of the inputs that require grad ("input[0]")
    saved: dict[str, torch.Tensor]  # the checked tensors at the check point, detached
    saved_inputs: dict[str, torch.Tensor]  # every input tensor at the check point, by path
    seed: int  # the run's --seed, for reseed=True cases
    numeric: NumericModel  # the float64 copy the numerical side evaluates
    captured: dict | None  # what the first gradient call caught of each fused layer (twins.Caught), by name
    capture_loss: torch.Tensor | None  # that call's loss, detached
    capture_recorded: bool  # whether that call's forward called rnncheck.record
    _capture_layers: list  # the fused layers the first gradient call watches (for the reference check and the flow)
    _loss_weights: object | None  # the fixed random functional a case without loss= is measured with
    _model_eps: float  # TF32's roundoff, where a GPU computes float32 in it

    @classmethod
    def create(cls, case: TorchCase, options) -> TorchTarget:
        device = torch.device(options.device)
        model, inputs = _placed(case, device, getattr(torch, options.dtype) if options.dtype else None)
        params = {n: p for n, p in model.named_parameters() if p.requires_grad}
        input_leaves = {p: t for p, t in leaves(inputs, "input") if t.requires_grad}
        for path, t in input_leaves.items():
            if not t.is_floating_point():
                raise CaseError(f"{path} requires grad but is {t.dtype}: only floating-point inputs have gradients")
        if not params and not input_leaves:
            raise CaseError(
                "the model has no parameter that requires grad and no input requires grad: nothing to check"
            )
        detached = {**{n: p.detach() for n, p in params.items()}, **{n: t.detach() for n, t in input_leaves.items()}}
        model_dtype = common_dtype(detached.values())
        target = cls(
            theta={n: t.detach().to("cpu", torch.float64).numpy().copy() for n, t in detached.items()},
            model_dtype=numpy_dtype(model_dtype),
            numeric_dtype=np.dtype(np.float64),
            gates={**stacked_gates(params, _rnn_modes(model)), **{n: g for n, g in case.gates.items() if n in params}},
        )
        check_gates(case.declared_gates, target.shapes)
        hint = suggest_gates(target.shapes, target.gates, known=_rnn_modes(model).keys() | case.known_tensors(params))
        if hint:
            target.notes.append(hint)
        target.notes.extend(case.case_notes)
        target.case, target.model, target.inputs = case, model, inputs
        target.param_names, target.input_names = list(params), list(input_leaves)
        target.placement = Placement(device, options.dtype, {n: t.dtype for n, t in detached.items()})
        target.saved = {n: t.detach().clone() for n, t in detached.items()}
        target.saved_inputs = {p: t.detach().clone() for p, t in leaves(inputs, "input")}
        target.guard = MutationGuard(model, inputs, target.saved, target.saved_inputs, target.mutations)
        target.seed = options.seed
        target._loss_weights = None
        if (
            device.type == "cuda"
            and model_dtype == torch.float32
            and (torch.backends.cudnn.allow_tf32 or torch.backends.cuda.matmul.allow_tf32)
        ):
            target._model_eps = 2.0**-10  # TF32 keeps 10 mantissa bits
            target.notes.append(
                "the GPU may compute float32 in TF32 (10-bit mantissa): the analytic side's error model uses 2^-10"
            )
        target.numeric = NumericModel(target)
        # the reference comparison needs each fused layer's inputs and upstream gradients at θ:
        # the first gradient call there catches them on its way, sparing a forward and a backward
        target._capture_layers = fused_layers(model) if options.reference or options.diagnostics else []
        target.captured, target.capture_loss, target.capture_recorded = None, None, False
        return target

    @property
    def device(self) -> torch.device:
        return self.placement.device

    @property
    def dtype_option(self) -> str | None:
        return self.placement.dtype_option

    @property
    def leaf_dtypes(self) -> dict[str, torch.dtype]:
        return self.placement.leaf_dtypes

    # --- evaluation ------------------------------------------------------------------
    def seed_call(self) -> None:
        """Before a call of the model: the same random numbers every time, where the case asks (``reseed=True``)."""
        if self.case.reseed:
            torch.manual_seed(self.seed)

    def _forward(self, model: nn.Module, values: dict[str, torch.Tensor], inputs, keep_output: bool = False):
        self.seed_call()
        params = {n: values[n] for n in self.param_names}
        new_inputs = {n: values[n] for n in self.input_names}
        args = replace(inputs, "input", new_inputs, lambda t: t)
        try:
            out = call_user(
                "the model's forward", functional_call, model, params, tuple(args), user_file=self.case.file or None
            )
        except UserCodeError as exc:
            self.placement.explain_forward(exc)
            raise
        if keep_output:
            self.last_output = replace(out, "out", {}, lambda t: t.detach())
        return self.loss_of(out)

    def record_states(self, rng):
        """One forward with the hidden states kept: a CellCase's loop records them, else the module's twins and
        its ``rnncheck.record`` calls."""
        return record_cell_loop(self) if self.cell_loop is not None else record_module(self)

    def loss_of(self, out) -> torch.Tensor:
        if self.case.loss_fn is not None:
            try:
                value = call_user("loss()", self.case.loss_fn, out, user_file=self.case.file or None)
            except UserCodeError as exc:
                self.placement.explain_loss(exc)
                raise
            if not isinstance(value, torch.Tensor):
                value = torch.as_tensor(value)
        else:
            outs = float_outputs(out)
            if not outs:
                raise CaseError("the model returned no floating-point tensor: pass loss= to say what to differentiate")
            if self._loss_weights is None:
                gen = torch.Generator().manual_seed(self.seed + 7919)
                total = sum(o.numel() for o in outs)
                self._loss_weights = [
                    torch.randn(o.shape, generator=gen, dtype=torch.float64) / total**0.5 for o in outs
                ]
            if [o.shape for o in outs] != [w.shape for w in self._loss_weights]:
                raise CaseError("the model's output shapes change between calls: pass loss= to define a fixed loss")
            value = sum((o * w.to(o.device, o.dtype)).sum() for o, w in zip(outs, self._loss_weights))
        if value.numel() != 1:
            raise CaseError(
                f"loss() returned a tensor of shape {tuple(value.shape)}, not a scalar: reduce it with .sum() or .mean()"
            )
        return value.reshape(())

    def _numeric_forward(self, theta) -> torch.Tensor:
        dtype = torch.float64 if self.numeric_dtype == np.float64 else None
        return self.numeric.loss(self.placement.tensors(theta, dtype))

    # --- the adapter's job --------------------------------------------------------------
    def loss(self, theta):
        self.evaluations += 1
        value = self._numeric_forward(theta)
        self.guard.check()
        return float(value)

    def loss_offset(self, theta, v, s: float) -> float:
        """The loss at θ + s·v, the sum formed on the model's device in float64.

        θ and each direction go to the device once (remembered by identity), so a probe
        costs its forward passes and not a host-side copy of every parameter.  θ + s·v is
        written into buffers kept for the purpose: a fresh allocation of a large model's
        parameters costs more, in page faults, than the sum itself.
        """
        self.evaluations += 1
        base, step = self.placement.on_device(theta), self.placement.on_device(v)
        dtype = torch.float64 if self.numeric_dtype == np.float64 else None
        buffers = self.__dict__.setdefault("_offset_buffers", {})
        values = {}
        for n, b in base.items():
            if n in step:
                buf = buffers.get(n)
                if buf is None:
                    buf = buffers[n] = torch.empty_like(b)  # θ is one dict per target: its shapes never change
                values[n] = torch.add(b, step[n], alpha=s, out=buf)
            else:
                values[n] = b
        values = {n: t.to(dtype or self.leaf_dtypes[n]) for n, t in values.items()}
        value = self.numeric.loss(values)
        self.guard.check()
        return float(value)

    @property
    def numeric_is_model(self) -> bool:
        numeric = self.numeric
        return numeric.checked and numeric.model is self.model and self.numeric_dtype == self.model_dtype

    def model_loss(self):
        self.evaluations += 1
        values = {n: t.clone() for n, t in self.saved.items()}
        with torch.no_grad():
            value = self._forward(self.model, values, self.inputs)
        self.guard.check(values)
        return float(value)

    def gradient(self, theta=None):
        self.evaluations += 1
        if theta is None:
            values = {n: t.clone().requires_grad_(True) for n, t in self.saved.items()}
        else:
            values = {n: t.requires_grad_(True) for n, t in self.placement.tensors(theta).items()}
        layers = self._capture_layers if theta is None and self.captured is None else []
        watch = recording() if layers else contextlib.nullcontext()  # whether the forward shows states itself
        with capturing(layers) as caught, watch as seen, torch.enable_grad():
            value = self._forward(self.model, values, self.inputs, keep_output=theta is None)
            if not value.requires_grad:
                raise CaseError(
                    "the loss is detached from the parameters (it has no grad_fn): a .detach(), .item(), .numpy(), "
                    "torch.no_grad() or a float() in the model or the loss cuts the graph; return a tensor computed "
                    "from the output"
                )
            names = list(values)
            grads = call_user(
                "the backward pass",
                torch.autograd.grad,
                value,
                [values[n] for n in names],
                allow_unused=True,
                user_file=self.case.file or None,
            )
        self.guard.check(values if theta is None else None)
        if layers:  # a frozen layer's outputs, which no gradient reaches, keep None
            self.captured, self.capture_loss = dict(caught), value.detach()
            self.capture_recorded = bool(seen.records or seen.problems)
        result = {}
        for n, g in zip(names, grads):
            result[n] = np.zeros(self.theta[n].shape) if g is None else g.detach().to("cpu", torch.float64).numpy()
        return float(value.detach()), result

    def reference_comparisons(self, grad, options):
        """The torch side of the reference comparison: fused layers inside, and the model itself if it names one."""

        return reference_comparisons(self, grad, options)


def numpy_dtype(dtype: torch.dtype):
    """The NumPy dtype of a torch floating dtype; bfloat16, which NumPy lacks, as a :class:`LowDtype`."""
    if dtype == torch.bfloat16:
        return BFLOAT16
    return np.dtype(str(dtype).replace("torch.", ""))

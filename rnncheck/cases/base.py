"""What every case turns into: a flat view of named parameters, a loss and a gradient.

A :class:`Case` is what the user writes.  Its ``bind`` returns a :class:`Target`, the
backend adapter: the only place that knows whether the model is torch or NumPy, which
dtype it computes in and on which device.  Checks see parameters as float64 NumPy
arrays and call the target; they never ask which backend is behind it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import ClassVar, Protocol

import numpy as np

from ..errors import CaseError
from ..numerics import machine_eps
from ..recorders import record_reference
from ..reference import GATES as GATE_NAMES  # the gate names and order have one home: the reference
from ..reference import MODES as REFERENCE_MODES  # and so do the mode names

_STACKED = re.compile(r"^(?:.*\.)?(weight_ih|weight_hh|bias_ih|bias_hh)_l\d+(_reverse)?$")


@dataclass(frozen=True)
class Block:
    """A piece of one tensor probed on its own: a whole tensor, or one gate of a stacked weight."""

    tensor: str
    label: str  # "" for a whole tensor, else the gate's name, e.g. "f"
    start: int | None = None  # rows start:stop along the first axis (None: the whole tensor)
    stop: int | None = None

    @property
    def rows(self):
        """The block's rows as an index: ``...`` for a whole tensor (0-d ones too), else a row slice."""
        return Ellipsis if self.start is None else slice(self.start, self.stop)

    @property
    def title(self) -> str:
        return f"{self.tensor}[{self.label}-gate]" if self.label else self.tensor


def split_blocks(shapes: dict[str, tuple[int, ...]], gates: dict[str, tuple[str, ...]]) -> list[Block]:
    """Every tensor, split into gate blocks where ``gates`` names its gates (stacked along axis 0)."""
    blocks = []
    for name, shape in shapes.items():
        names = gates.get(name, ())
        if names and shape and shape[0] % len(names) == 0:
            n = shape[0] // len(names)
            blocks += [Block(name, g, i * n, (i + 1) * n) for i, g in enumerate(names)]
        else:
            blocks.append(Block(name, ""))
    return blocks


class Case:
    """Base of the case types.  ``name`` and ``file`` are filled in by the collector."""

    name: str = ""
    file: str = ""
    reference: str | None = None
    reference_map: dict[str, str] | None = None

    reference_module = None  # a user's own naive implementation (TorchCase only)
    reseed = False  # seed torch's generator before every call of the model (TorchCase(reseed=True))
    case_notes: tuple[str, ...] | list[str] = ()  # said in the report: how the case was read (FunctionCase …)
    time_dim: int = 0  # the time axis of the outputs a reference comparison reads (nn.LSTM's layout)
    input_labels: Mapping[str, str] = MappingProxyType({})  # how the user calls an input ("input[1]" -> "state0")
    step_model = None  # a StepCase's step form, which rnncheck loops over time for the flow check

    def output_states(self, recorder, out, values: dict) -> None:
        """Record the case's own output as its states where the output is one (a FunctionCase's); else nothing."""

    def _set_reference(self, reference, reference_map: dict[str, str] | None) -> None:
        if reference is not None and not isinstance(reference, str) and hasattr(reference, "named_parameters"):
            self.reference_module, reference = reference, None
        if reference is not None and reference not in REFERENCE_MODES:
            raise CaseError(
                f"reference={reference!r} is not one of {', '.join(REFERENCE_MODES)} "
                "(or, for a TorchCase, your own naive nn.Module with the same parameter names)"
            )
        self.reference = reference
        self.reference_map = reference_map

    def _set_gates(self, gates) -> None:
        """Validate ``gates=``: a dict of tensor name -> gate names stacked along its first axis."""
        self.declared_gates: dict[str, tuple[str, ...]] = {}
        if gates is None:
            self.gates = {}
            return
        example = "gates={'weight_hh': ('i', 'f', 'g', 'o')}"
        if not isinstance(gates, dict):
            raise CaseError(
                f"gates= takes a dict of tensor name -> gate names stacked along axis 0, e.g. {example}; got {gates!r}"
            )
        checked = {}
        for name, names in gates.items():
            if isinstance(names, str) and len(names) > 1 and names.isalpha():
                names = tuple(names)  # "ifgo" -> ("i", "f", "g", "o")
            if not isinstance(names, tuple | list) or not names or not all(isinstance(n, str) for n in names):
                raise CaseError(f"gates[{name!r}] must be a tuple of gate names, e.g. {example}; got {names!r}")
            checked[name] = tuple(names)
        self.gates = checked
        self.declared_gates = dict(checked)

    def bind(self, options) -> Target:  # pragma: no cover - abstract
        raise NotImplementedError


class CheckTarget(Protocol):
    """What a check may ask of a case's adapter, and nothing else.

    Every adapter (:class:`~rnncheck.cases.torch_case.TorchTarget`, ``NumpyTarget``, and the
    TorchTarget over CellCase's loop) implements it through :class:`Target`, whose defaults
    say "this adapter cannot": checks read capabilities off these members, never
    ``hasattr`` or ``isinstance`` on a target.
    """

    # the flat view
    theta: dict[str, np.ndarray]
    model_dtype: object
    numeric_dtype: object
    gates: dict[str, tuple[str, ...]]
    notes: list[str]
    mutations: list[str]
    evaluations: int
    context: dict  # names for constant factors (the batch size, the length), where known

    # the loss and the gradient
    gradient_computes_loss: bool  # gradient() runs the very forward model_loss() would (its loss can stand in)
    prepaid: list  # gradient calls at the check point the thread policy made, for the sanity checks to take

    def loss(self, theta: dict[str, np.ndarray]) -> float: ...
    def loss_offset(self, theta: dict[str, np.ndarray], v: dict[str, np.ndarray], s: float) -> float: ...
    def model_loss(self) -> float: ...
    def gradient(self, theta: dict[str, np.ndarray] | None = None) -> tuple[float | None, dict[str, np.ndarray]]: ...
    def close(self) -> None: ...
    def seed_call(self) -> None: ...  # before a call of the model: the same random numbers, where asked

    # the flat view's derived facts
    shapes: dict[str, tuple[int, ...]]  # each tensor's shape
    blocks: list  # the tensors cut into gate blocks (Block), where gates are known
    model_eps: float  # the unit roundoff of the arithmetic the user's gradient runs in

    # the case and its inputs, where the adapter runs a model on them (empty otherwise)
    case: object | None  # the case the target was bound from
    param_names: list[str]  # the names in ``theta`` that are the model's parameters
    input_names: list[str]  # the names in ``theta`` that are inputs requiring grad
    inputs: object  # the model's positional inputs, as the case gave them
    saved: dict  # every parameter and checked input at the check point, as detached tensors
    saved_inputs: dict  # every input tensor at the check point, by its path ("input[0]")
    dtype_option: str | None  # the --dtype the model was converted to, if any

    def loss_of(self, out) -> object: ...  # the case's loss of a model output, as the user's loss() computes it
    def head_gradient(self, link): ...  # ∂head/∂h for a case whose loss is a head on the reference's states

    # the recurrent states and the model behind the target
    def record_states(self, rng): ...  # one forward with the hidden states kept: a rnncheck.recorders.Recording

    numeric_is_model: bool  # loss(θ) evaluates the very function gradient() differentiates, in its dtype
    last_output: object | None  # the model's output at the check point, kept by the first gradient call
    model: object | None  # the nn.Module, where there is one
    device: object | None  # where it runs, where that is a question
    user_file: str | None  # the model file the case came from, to point at the user's own lines

    # the reference links
    def reference_comparisons(self, grad: dict[str, np.ndarray], options) -> list: ...
    def reference_link(self): ...


@dataclass
class Target:
    """The flat view a check works on: the :class:`CheckTarget` protocol, with defaults for what an
    adapter cannot do.  Subclasses implement ``loss``, ``model_loss`` and ``gradient``."""

    gradient_computes_loss: ClassVar[bool] = False
    model: ClassVar[object | None] = None
    device: ClassVar[object | None] = None
    context: ClassVar[dict] = {}
    last_output: ClassVar[object | None] = None  # the model's output at the check point, where kept
    # no model runs behind a target by default: nothing of it to name
    case: ClassVar[object | None] = None
    param_names: ClassVar[tuple[str, ...]] = ()
    input_names: ClassVar[tuple[str, ...]] = ()
    inputs: ClassVar[tuple] = ()
    saved: ClassVar[Mapping] = MappingProxyType({})
    saved_inputs: ClassVar[Mapping] = MappingProxyType({})
    dtype_option: ClassVar[str | None] = None

    theta: dict[str, np.ndarray]  # float64 copies of the parameters at the check point
    model_dtype: np.dtype  # the dtype the user's gradient is computed in
    numeric_dtype: np.dtype  # the dtype the loss is evaluated in for finite differences
    gates: dict[str, tuple[str, ...]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # said in the report, e.g. why float32 numerics
    mutations: list[str] = field(default_factory=list)  # caller's arrays a user call changed
    evaluations: int = 0
    time_structure: dict | None = None  # set where the loss is a sum over time steps
    # gradient calls at the check point the thread policy made and timed, on the thread count the case runs on:
    # ``(threads, seconds, (loss, gradient))`` in call order, for the sanity checks to take instead of calling again
    prepaid: list = field(default_factory=list)

    @property
    def model_eps(self) -> float:
        """The unit roundoff of the arithmetic the user's gradient runs in (TF32 on a GPU is coarser than float32)."""
        return getattr(self, "_model_eps", None) or machine_eps(self.model_dtype)

    @property
    def user_file(self) -> str | None:
        """The model file the case came from (the collector sets it), or None for a case built in a script."""
        case = self.__dict__.get("case")
        return getattr(case, "file", None) or None

    @property
    def shapes(self) -> dict[str, tuple[int, ...]]:
        return {n: v.shape for n, v in self.theta.items()}

    @property
    def blocks(self) -> list[Block]:
        return split_blocks(self.shapes, self.gates)

    # --- the adapter's job -------------------------------------------------------
    def loss(self, theta: dict[str, np.ndarray]) -> float:
        """The loss at ``theta`` in ``numeric_dtype``: the numerical side."""
        raise NotImplementedError

    def model_loss(self) -> float:
        """The loss at the check point, computed exactly as the user's code computes it."""
        raise NotImplementedError

    def gradient(self, theta: dict[str, np.ndarray] | None = None) -> tuple[float, dict[str, np.ndarray]]:
        """``(loss, gradient)`` from the user's analytic gradient at ``theta`` (default: the check point)."""
        raise NotImplementedError

    def close(self) -> None:
        """Undo anything the target changed in the user's objects."""

    def seed_call(self) -> None:
        """Before a call of the model: nothing, unless the adapter repeats its randomness (TorchCase(reseed=True))."""

    @property
    def numeric_is_model(self) -> bool:
        """Whether ``loss(θ)`` runs the very computation ``gradient()`` differentiates, in its dtype.

        Where it does, the loss the sanity checks got from the gradient call is the
        numerical side's value at θ, and the probes need not evaluate it again.
        """
        return False

    def loss_offset(self, theta: dict[str, np.ndarray], v: dict[str, np.ndarray], s: float) -> float:
        """The loss at θ + s·v (an adapter may form the sum where the model lives)."""
        return self.loss({n: theta[n] + s * v[n] if n in v else theta[n] for n in theta})

    def reference_comparisons(self, grad: dict[str, np.ndarray], options) -> list:
        """Comparisons with the reference this target can offer (none by default)."""
        return []

    def reference_link(self):
        """``(Link, missing)`` onto the NumPy reference, or None."""
        return None

    def record_states(self, rng):
        """The hidden states, for the flow check: by default from the NumPy reference, where the case names one."""
        return record_reference(self, rng)

    def loss_of(self, out):
        """The case's loss of a model output (only where a model runs behind the target)."""
        raise NotImplementedError

    def head_gradient(self, link):
        """∂head/∂h on the reference's states (only for a case whose loss is a head on them)."""
        raise NotImplementedError


#: the reference's first-layer parameters, as a reference_map names them
REFERENCE_LAYER0 = ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0")


def unmapped_reference(reference: str, names: dict[str, str], theta) -> CaseError:
    """One error naming every reference parameter the case lacks under the map, with the map to write."""
    missing = [ref for ref in REFERENCE_LAYER0 if names.get(ref, ref) not in theta]
    example = ", ".join(f"{ref!r}: 'your name'" for ref in missing)
    mine = ", ".join(list(theta)[:8]) + (" …" if len(theta) > 8 else "")
    return CaseError(
        f"reference={reference!r}: the case has no parameter for {', '.join(missing)} (its parameters: {mine}); "
        f"pass reference_map={{{example}}} (a bias the case does not have may stay unmapped: it is taken as zero)"
    )


def check_gates(gates: dict[str, tuple[str, ...]], shapes: dict[str, tuple[int, ...]]) -> None:
    """Every tensor ``gates=`` names exists and splits evenly into its gates."""
    for name, names in gates.items():
        if name not in shapes:
            raise CaseError(
                f"gates= names {name!r}, which is not a checked tensor; the tensors are: {', '.join(shapes)}"
            )
        shape = shapes[name]
        if not shape or shape[0] % len(names):
            raise CaseError(
                f"gates[{name!r}] has {len(names)} gates but {name} has shape {tuple(shape)}: "
                "its first axis must stack the gates in equal blocks"
            )


def suggest_gates(shapes: dict[str, tuple[int, ...]], gates: dict, known=()) -> str | None:
    """A note when a tensor looks like stacked gates (3 or 4 × a hidden size) and no gates are known for it.

    ``known``: tensors whose architecture rnncheck already knows (a plain nn.RNN's weights, whose
    shape can look stacked when the input is 3 or 4 times the hidden size): never suggested.
    """
    known = set(known)
    for name, shape in shapes.items():
        if name in known:
            continue
        if len(shape) == 2 and shape[0] in (3 * shape[1], 4 * shape[1]) and name not in gates:
            k = shape[0] // shape[1]
            same = [n for n, s in shapes.items() if s and s[0] == shape[0] and n not in gates and n not in known]
            names = "('i', 'f', 'g', 'o')" if k == 4 else "('r', 'z', 'n')"
            return (
                f"{name} has {k}×{shape[1]} rows: if {', '.join(same)} stack {k} gates, pass "
                f"gates={{{', '.join(f'{n!r}: {names}' for n in same)}}} so that a mismatch names its gate"
            )
    return None


def stacked_gates(names, mode_of: dict[str, str] | None = None) -> dict[str, tuple[str, ...]]:
    """Gate names for tensors whose names follow PyTorch's RNN naming, given each one's mode."""
    gates = {}
    for n in names:
        if _STACKED.match(n) and mode_of and mode_of.get(n) in GATE_NAMES:
            gates[n] = GATE_NAMES[mode_of[n]]
    return gates

"""NumpyCase: a dict of NumPy arrays, a loss function and a hand-written gradient."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np

from .. import reference as R
from ..errors import CaseError
from ..reference import Mode
from ..reference_link import Comparison, Link, head_gradient, map_parameters
from ..tolerances import current as tolerances
from ..usercode import call_user
from .base import GATE_NAMES, Case, Target, check_gates, suggest_gates, unmapped_reference


class NumpyCase(Case):
    """A model written in NumPy with its own backward pass.

    Args:
        params: name -> floating-point array.
        loss: ``loss(params) -> float``.
        grad: ``grad(params) -> dict`` with the same keys and shapes, or ``(loss, dict)``.
        inplace: set it when ``loss``/``grad`` read module-level arrays instead of the dict
            they are given: rnncheck then writes each probe into those very arrays and puts
            the original values back afterwards.
        gates: tensor name -> gate names, for weights that stack several gates along axis 0
            (for example ``{"W": ("i", "f", "g", "o")}``); each gate is then probed on its own.
        reference: the reference architecture the model implements (``"lstm"``, ``"gru"``,
            ``"rnn_tanh"``, ``"rnn_relu"``, ``"rnn_sigmoid"``); with ``inputs`` it turns on the
            comparison with rnncheck's NumPy reference.
        reference_map: reference parameter name (``weight_ih_l0`` …) -> this case's name.  A
            reference bias the case does not have (one bias instead of two) is taken as zero.
        inputs: the input sequence, (T, B, I) time-major or (T, I) for a single sequence.
        head: ``head(h, params) -> loss``, the rest of the loss given the hidden states h
            (T, B, H): with it rnncheck can compute the reference's gradient for this loss,
            say which side is wrong, and test time hints (truncated BPTT, a skipped step …).
        hidden: ``hidden(params) -> h`` (T, B, H), the case's own hidden states: with it a
            forward that differs from the reference is pinned to a step and a gate.
    """

    def __init__(
        self,
        params: Mapping[str, np.ndarray],
        loss: Callable[[dict], float],
        grad: Callable[[dict], object],
        *,
        inplace: bool = False,
        gates: Mapping[str, tuple[str, ...]] | None = None,
        reference: str | None = None,
        reference_map: dict[str, str] | None = None,
        inputs: np.ndarray | None = None,
        head: Callable | None = None,
        hidden: Callable | None = None,
    ) -> None:
        if not isinstance(params, Mapping) or not params:
            raise CaseError("NumpyCase needs params as a non-empty dict of name -> NumPy array")
        if not callable(loss) or not callable(grad):
            raise CaseError("NumpyCase needs callables: loss(params) -> float and grad(params) -> dict")
        self.params = dict(params)
        self.loss_fn = loss
        self.grad_fn = grad
        self.inplace = inplace
        self._set_gates(dict(gates) if isinstance(gates, Mapping) else gates)
        self._set_reference(reference, reference_map)
        if self.reference_module is not None:
            raise CaseError("NumpyCase reference= takes an architecture name; a reference nn.Module needs a TorchCase")
        if reference is not None and inputs is None:
            raise CaseError(f"reference={reference!r} needs inputs= (the input sequence) to run the reference on")
        self.inputs = None if inputs is None else np.asarray(inputs, dtype=np.float64)
        if self.inputs is not None and self.inputs.ndim == 2:
            self.inputs = self.inputs[:, None, :]
        self.head = head
        self.hidden = hidden
        if reference in (Mode.LSTM, Mode.GRU) and not self.gates:
            names = dict(reference_map or {})
            for ref_name in ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0"):
                self.gates.setdefault(names.get(ref_name, ref_name), GATE_NAMES[reference])

    def bind(self, options) -> NumpyTarget:
        return NumpyTarget.create(self)


class NumpyTarget(Target):
    case: NumpyCase

    @classmethod
    def create(cls, case: NumpyCase) -> NumpyTarget:
        originals = {}
        for name, value in case.params.items():
            if not isinstance(value, np.ndarray):
                raise CaseError(
                    f"param {name!r} is a {type(value).__name__}, not a NumPy array: wrap it in np.asarray(...)"
                )
            if not np.issubdtype(value.dtype, np.floating):
                raise CaseError(
                    f"param {name!r} has dtype {value.dtype}: gradients need floating-point parameters; "
                    f"pass {name}.astype(np.float64)"
                )
            originals[name] = value
        model_dtype = np.result_type(*originals.values())
        target = cls(
            theta={n: v.astype(np.float64) for n, v in originals.items()},
            model_dtype=np.dtype(model_dtype),
            numeric_dtype=np.dtype(model_dtype),
            gates={n: g for n, g in case.gates.items() if n in originals},
        )
        check_gates(case.declared_gates, target.shapes)
        hint = suggest_gates(target.shapes, target.gates)
        if hint:
            target.notes.append(hint)
        target.case = case
        target.originals = originals
        target.saved = {n: v.copy() for n, v in originals.items()}
        if case.inputs is not None:  # to name a constant factor: the batch size? the length?
            target.context = {"steps": case.inputs.shape[0], "batch": case.inputs.shape[1]}
        target._choose_numeric_dtype()
        return target

    # --- helpers -------------------------------------------------------------------
    def _call(self, what: str, fn, arrays: dict[str, np.ndarray]):
        """Call the user's function on ``arrays``, noting and undoing any change it makes to them."""
        before = {n: a.copy() for n, a in arrays.items()}
        file = self.case.file or None
        try:
            if self.case.inplace:
                for n, a in arrays.items():
                    self.originals[n][...] = a
                result = call_user(what, fn, self.originals, user_file=file)
                changed = [n for n in arrays if not np.array_equal(self.originals[n], before[n], equal_nan=True)]
            else:
                result = call_user(what, fn, arrays, user_file=file)
                changed = [n for n in arrays if not np.array_equal(arrays[n], before[n], equal_nan=True)]
        finally:
            if self.case.inplace:
                for n, a in self.saved.items():
                    self.originals[n][...] = a
        for n in changed:
            note = f"{what} changed params[{n!r}] in place"
            if note not in self.mutations:
                self.mutations.append(note)
        return result

    def _arrays(self, theta: dict[str, np.ndarray] | None, dtype) -> dict[str, np.ndarray]:
        theta = self.theta if theta is None else theta
        if theta is self.theta and np.dtype(dtype) == self.model_dtype:
            return {n: v.copy() for n, v in self.saved.items()}
        return {n: np.asarray(v, dtype=dtype).copy() for n, v in theta.items()}

    def _scalar(self, what: str, value) -> float:
        arr = np.asarray(value)
        if arr.size != 1 or not np.issubdtype(arr.dtype, np.number):
            raise CaseError(
                f"{what} returned {_describe(value)}, not a scalar: reduce it to one number (e.g. .sum() or .mean())"
            )
        return float(arr.reshape(()).real)

    def _choose_numeric_dtype(self) -> None:
        """Evaluate the loss in float64 where the code allows it."""
        if self.case.inplace:
            if self.model_dtype != np.float64:
                self.notes.append(f"numerical side in {self.model_dtype}: inplace=True keeps the arrays' own dtype")
            return
        if self.model_dtype == np.float64:
            self.numeric_dtype = np.dtype(np.float64)
            return
        value = self._call("loss()", self.case.loss_fn, self._arrays(None, np.float64))
        if isinstance(value, np.floating | np.ndarray) and np.asarray(value).dtype == np.float32:
            self.notes.append("numerical side in float32: the loss computes in float32 even on float64 parameters")
        else:
            self.numeric_dtype = np.dtype(np.float64)

    # --- the adapter's job -----------------------------------------------------------
    def loss(self, theta: dict[str, np.ndarray]) -> float:
        self.evaluations += 1
        value = self._call("loss()", self.case.loss_fn, self._arrays(theta, self.numeric_dtype))
        return self._scalar("loss()", value)

    def model_loss(self) -> float:
        self.evaluations += 1
        value = self._call("loss()", self.case.loss_fn, self._arrays(None, self.model_dtype))
        return self._scalar("loss()", value)

    def gradient(self, theta=None):
        self.evaluations += 1
        result = self._call("grad()", self.case.grad_fn, self._arrays(theta, self.model_dtype))
        loss = None
        if isinstance(result, tuple) and len(result) == 2 and isinstance(result[1], Mapping):
            loss, result = self._scalar("grad()'s loss", result[0]), result[1]
        if not isinstance(result, Mapping):
            raise CaseError(f"grad() returned {_describe(result)}: return a dict of name -> array, or (loss, dict)")
        missing = [n for n in self.theta if n not in result]
        extra = [n for n in result if n not in self.theta]
        if missing or extra:
            parts = ([f"missing {missing}"] if missing else []) + ([f"unexpected {extra}"] if extra else [])
            raise CaseError(
                f"grad() returned keys that do not match params: {', '.join(parts)}; return one gradient per param"
            )
        grads = {}
        for n, v in self.theta.items():
            g = np.asarray(result[n])
            if g.shape != v.shape:
                raise CaseError(
                    f"grad()[{n!r}] has shape {g.shape} but params[{n!r}] has {v.shape}: return the full gradient"
                )
            grads[n] = g.astype(np.float64)
        return loss, grads

    def reference_link(self):
        """``(Link, link names, missing)`` mapping this case onto the reference, or None without ``reference=``."""

        case = self.case
        if case.reference is None:
            return None
        T, B, I = case.inputs.shape
        names = dict(case.reference_map or {})
        probe = names.get("weight_hh_l0", "weight_hh_l0")
        if probe not in self.theta:
            raise unmapped_reference(case.reference, names, self.theta)
        spec = R.Spec(case.reference, I, self.theta[probe].shape[-1])
        params, link_names, missing = map_parameters(spec, self.theta, names)
        return Link(spec, params, link_names, case.inputs, label=""), missing

    def head_gradient(self, link):
        """∂loss/∂h at the reference's hidden states, through the case's ``head`` (computed once).

        Its measured relative error is kept in ``head_error``: the reference's gradient
        inherits it, so the comparison's tolerance must hold it.
        """
        if self.case.head is None:
            return None
        if getattr(self, "_head_grad", None) is None:
            h_ref, _, _ = link.forward()
            theta = {n: v.copy() for n, v in self.theta.items()}
            self._head_grad, self.head_error = head_gradient(self.case.head, h_ref.copy(), theta)
        return self._head_grad

    def reference_comparisons(self, grad, options):
        """The NumpyCase side of the reference comparison: its weights, inputs, head and hidden states."""
        case = self.case
        got = self.reference_link()
        if got is None:
            return []
        link, missing = got
        link_names, params = link.names, link.params
        tol = max(tolerances().numpy_reference_floor, tolerances().reference_ulps * np.finfo(self.model_dtype).eps)
        h_case = None
        if case.hidden is not None:
            h_case = np.asarray(
                self._call("hidden()", case.hidden, self._arrays(None, self.model_dtype)), dtype=np.float64
            )
            if h_case.ndim == 2:
                h_case = h_case[:, None, :]
        d_out = self.head_gradient(link)
        # the reference's gradient is only as exact as ∂head/∂h: its measured error, with room
        tol = max(tol, 16 * getattr(self, "head_error", 0.0))
        case_grad = {n: np.asarray(g, dtype=np.float64).reshape(self.theta[n].shape) for n, g in grad.items()}
        flat_grad = {mine: case_grad[mine].reshape(params[ref].shape) for ref, mine in link_names.items()}
        note = f"reference biases absent from the case, taken as zero: {', '.join(missing)}" if missing else None
        return [Comparison(link, flat_grad, d_out, None, None, h_case, tol, note)]


def _describe(value) -> str:
    if isinstance(value, np.ndarray):
        return f"an array of shape {value.shape}"
    return f"a {type(value).__name__}"

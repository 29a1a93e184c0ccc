"""Results as plain dataclasses: computing and rendering never mix.

A :class:`Finding` is one statement about a case with its evidence; a
:class:`CheckResult` groups the findings of one check; a :class:`CaseResult` is one
case; a :class:`Report` is one run.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from .flowresults import FlowDiagnostics, FlowVerdict
from .strenum import StrEnum


class Verdict(StrEnum):
    """How a finding, a check or a case came out.

    A ``StrEnum``: each member is its own lowercase name as a string, which is what the
    JSON report, the baseline and the JUnit file write, so ``Verdict.FAIL == "fail"``.
    """

    PASS = "pass"
    WARN = "warn"  # worth a look; never fails a run
    FAIL = "fail"  # the gradients are wrong, or the check proved something else wrong
    ERROR = "error"  # the check could not run: the user's code raised, exited or hung
    NOTE = "note"  # information that moves no verdict
    UNCHECKED = "unchecked"  # a tensor's row only: it passed, but the probes could not have seen an error there


#: the four verdicts a case can end with, from best to worst
VERDICTS = (Verdict.PASS, Verdict.WARN, Verdict.FAIL, Verdict.ERROR)
_RANK = {v: i for i, v in enumerate(VERDICTS)}


def worst(verdicts) -> Verdict:
    """The most serious of ``verdicts`` (``pass`` for none); a ``note`` counts for nothing."""
    return max((Verdict(v) for v in verdicts if v != Verdict.NOTE), key=_RANK.__getitem__, default=Verdict.PASS)


class Kind(StrEnum):
    """What a finding says, as the JSON's ``findings[].kind`` names it: one member per statement rnncheck makes."""

    # the gradient
    MISMATCH = "mismatch"
    UNCHECKED = "unchecked"
    UNRESOLVED = "unresolved"
    KINK = "kink"
    NONFINITE_GRADIENT = "nonfinite_gradient"
    STATEFUL_GRADIENT = "stateful_gradient"
    HINT = "hint"
    # the sanity checks
    NONFINITE_LOSS = "nonfinite_loss"
    NONDETERMINISTIC_LOSS = "nondeterministic_loss"
    INCONSISTENT_LOSS = "inconsistent_loss"
    MUTATES_ARGUMENTS = "mutates_arguments"
    CHANGED_GLOBALS = "changed_globals"
    THREADS_LEFT = "threads_left"
    # the reference
    FORWARD_MATCH = "forward_match"
    FORWARD_MISMATCH = "forward_mismatch"
    FUSED_MISMATCH = "fused_mismatch"
    REFERENCE_DIFFERS = "reference_differs"
    REFERENCE_MISMATCH = "reference_mismatch"
    REFERENCE_NOTE = "reference_note"
    REFERENCE_SAYS_GRADIENT = "reference_says_gradient"
    REFERENCE_SAYS_NUMERIC = "reference_says_numeric"
    TIME_DIVERGENCE = "time_divergence"
    # the user's own reference module
    REFERENCE_MODULE_FORWARD = "reference_module_forward"
    REFERENCE_MODULE_GRADIENT = "reference_module_gradient"
    REFERENCE_MODULE_RATIO = "reference_module_ratio"
    REFERENCE_MODULE_MATCH = "reference_module_match"
    REFERENCE_MODULE_NOTE = "reference_module_note"
    REFERENCE_MODULE_RESOLUTION = "reference_module_resolution"
    REFERENCE_MODULE_ROUNDING = "reference_module_rounding"
    # the flow
    GRADIENT_FLOW = "gradient_flow"
    FLOW_VERDICT = "flow_verdict"
    FLOW_CHANNELS = "flow_channels"
    FLOW_DROPOUT = "flow_dropout"
    TWIN_MISMATCH = "twin_mismatch"
    NONFINITE = "nonfinite"
    RECORD_PROBLEM = "record_problem"
    # the baseline gate
    BASELINE_DRIFT = "baseline_drift"
    BASELINE_ERROR = "baseline_error"
    BASELINE_FAILING = "baseline_failing"
    BASELINE_MATCH = "baseline_match"
    BASELINE_MISSING = "baseline_missing"
    BASELINE_REFUSED = "baseline_refused"
    BASELINE_SETTINGS = "baseline_settings"
    BASELINE_VERSIONS = "baseline_versions"
    BASELINE_WRITTEN = "baseline_written"
    # a check that could not run (the check's name, then _error), and the worker process
    SANITY_ERROR = "sanity_error"
    GRADIENT_ERROR = "gradient_error"
    REFERENCE_ERROR = "reference_error"
    REFERENCE_MODULE_ERROR = "reference_module_error"
    FLOW_ERROR = "flow_error"
    WORKER_DIED = "worker_died"
    WORKER_STOPPED = "worker_stopped"
    WORKER_CRASHED = "worker_crashed"


@dataclass
class Finding:
    """One named statement about a case: what, how bad, where, and the numbers behind it."""

    kind: Kind  # e.g. "mismatch", "stateful_gradient", "kink", "nonfinite_loss"
    verdict: Verdict
    message: str
    tensor: str | None = None
    location: dict[str, Any] | None = None  # gate, index, step …
    numbers: dict[str, Any] = field(default_factory=dict)
    hint: str | None = None

    def __post_init__(self) -> None:
        self.kind = Kind(self.kind)
        self.verdict = Verdict(self.verdict)


@dataclass
class TensorRow:
    """One line of a case's table: a gradient tensor and how well it agrees."""

    name: str
    shape: tuple[int, ...]
    norm: float  # ‖analytic gradient‖
    error: float  # worst |analytic - numeric| over the probes touching it, relative to the probe's scale
    tolerance: float  # the error bound at that probe, relative likewise
    verdict: Verdict
    worst: str = ""  # worst entry, by index, where known
    detection: float | None = None  # smallest relative error of a typical single entry the probes catch

    def __post_init__(self) -> None:
        self.verdict = Verdict(self.verdict)


class CheckName(StrEnum):
    """The name of each check a case's report may hold: the JSON's ``checks[].name`` and the JUnit's rows."""

    SANITY = "sanity"
    GRADIENT = "gradient"
    REFERENCE = "reference"
    REFERENCE_MODULE = "reference_module"
    FLOW = "flow"
    BASELINE = "baseline"  # the regression gate's comparison with the committed baseline
    COLLECT = "collect"  # the model file could not be read or gave no case
    ISOLATION = "isolation"  # the worker process running the case died or was stopped


@dataclass
class CheckResult:
    """The outcome of one check on one case.

    ``numbers`` holds a check's own free-form numbers (the sanity checks' loss); a check with
    a summary the report shows has a subclass of its own with typed fields, which
    :meth:`report_numbers` writes as the JSON's ``numbers``.
    """

    name: CheckName
    verdict: Verdict
    findings: list[Finding] = field(default_factory=list)
    tensors: list[TensorRow] = field(default_factory=list)
    evaluations: int = 0
    numbers: dict[str, Any] = field(default_factory=dict)
    seconds: float | None = None  # where the time went (``-v``)
    user_seconds: float | None = None  # of ``seconds``, the time inside calls into the user's code
    traceback: str | None = None  # ``--debug``: the traceback of the error that stopped the check

    def __post_init__(self) -> None:
        self.name = CheckName(self.name)
        self.verdict = Verdict(self.verdict)

    def own_numbers(self) -> dict[str, Any]:
        """This check's numbers, as the JSON report writes them."""
        return dict(self.numbers)

    def report_numbers(self) -> dict[str, Any]:
        """The JSON's ``checks[].numbers``: the check's own, then its traceback and time where known."""
        out = self.own_numbers()
        if self.traceback is not None:
            out["traceback"] = self.traceback
        if self.seconds is not None:
            out["seconds"] = self.seconds
        if self.user_seconds is not None:
            out["user_seconds"] = self.user_seconds
        return out


@dataclass
class ProbeRecord:
    """What ``-v`` shows of one probe: both sides, the bound and where it came from."""

    entry: str | None  # a small tensor's entry probed alone, else None
    status: str
    analytic: float
    numeric: float
    rel_error: float
    rel_bound: float
    evaluations: int
    step: float | None = None  # the finite-difference step, truncation and rounding, where a derivative was taken
    truncation: float | None = None
    rounding: float | None = None

    def to_json(self) -> dict[str, Any]:
        out = {k: getattr(self, k) for k in ("entry", "status", "analytic", "numeric", "rel_error", "rel_bound")}
        out["evaluations"] = self.evaluations
        if self.step is not None:
            out.update(step=self.step, truncation=self.truncation, rounding=self.rounding)
        return out


@dataclass
class ProbeSummary:
    """The probes' summary, the line under the table: how many, the worst error against its tolerance, the dtypes."""

    probes: int
    entry_probes: int
    numeric_dtype: str
    model_dtype: str
    worst_rel_error: float = 0.0
    worst_rel_bound: float = 0.0
    records: list[ProbeRecord] = field(default_factory=list)
    step: float | None = None
    measured_eps: float | None = None  # the unit roundoff the loss showed, where it was coarser than its dtype's

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "probes": self.probes,
            "entry_probes": self.entry_probes,
            "numeric_dtype": self.numeric_dtype,
            "model_dtype": self.model_dtype,
        }
        if self.measured_eps is not None:
            out["measured_eps"] = self.measured_eps
        out.update(
            worst_rel_error=self.worst_rel_error,
            worst_rel_bound=self.worst_rel_bound,
            probe_details=[r.to_json() for r in self.records],
            step=self.step,
        )
        return out


@dataclass
class EntrywiseSummary:
    """``--full``: every entry checked on its own; the worst entry's relative error."""

    worst_rel_error: float

    def to_json(self) -> dict[str, Any]:
        return {"mode": "full", "worst_rel_error": self.worst_rel_error}


@dataclass
class GradientResult(CheckResult):
    """The gradient check's outcome, with its summary (None where it stopped before any probe ran)."""

    summary: ProbeSummary | EntrywiseSummary | None = None
    notes: list[str] | None = None  # what the check's setup had to say (a float64 path, an input left out …)
    threads: Any = None  # the thread policy the check ran under

    def own_numbers(self) -> dict[str, Any]:
        out = {**(self.summary.to_json() if self.summary is not None else {}), **self.numbers}
        if self.notes is not None:
            out["notes"] = self.notes
        if self.threads is not None:
            out["threads"] = self.threads
        return out


@dataclass
class FlowResult(CheckResult):
    """The flow check's findings; the measurements themselves are the case's :class:`FlowDiagnostics`."""

    gradient_flow: FlowVerdict | None = None
    measured: bool = False  # a verdict was reached or sought (False: nothing to measure)

    def own_numbers(self) -> dict[str, Any]:
        return {**self.numbers, **({"gradient_flow": self.gradient_flow} if self.measured else {})}


@dataclass
class BaselineResult(CheckResult):
    """The regression gate's comparison of a case with its committed record."""

    @property
    def state(self) -> str:
        """``matches``, ``moved``, ``new`` (not in the baseline), ``failing`` (fails its own checks, no failure
        accepted) or ``error``."""
        kinds = {f.kind for f in self.findings}
        if Kind.BASELINE_MISSING in kinds:
            return "new"
        if kinds & {Kind.BASELINE_FAILING, Kind.BASELINE_REFUSED}:
            return "failing"
        if Kind.BASELINE_ERROR in kinds:
            return "error"
        return "moved" if self.verdict in (Verdict.FAIL, Verdict.ERROR) else "matches"


@dataclass
class CollectResult(CheckResult):
    """A model file that could not be read, or gave no case: the file failed, not a case."""


@dataclass
class IsolationResult(CheckResult):
    """The worker process that ran the case died or was stopped."""


@dataclass
class CaseResult:
    """Everything rnncheck found about one case."""

    name: str
    file: str
    verdict: Verdict
    checks: list[CheckResult] = field(default_factory=list)
    seconds: float = 0.0
    error: str | None = None  # the one-line reason when the verdict is error
    diagnostics: FlowDiagnostics = field(default_factory=FlowDiagnostics)
    traceback: str | None = None
    fingerprint: dict[str, Any] | None = None  # what the regression gate compares (see baseline.py)
    unit_seconds: float | None = None  # one call of the user's gradient (a forward and a backward): the fastest timed
    # the thread policy's own time, and of it the time inside the user's code (its timed gradient calls), where it ran
    policy_seconds: tuple[float, float] | None = None
    policy_served: bool = False  # whether two of those calls are the sanity checks' (not where one failed)

    def __post_init__(self) -> None:
        self.verdict = Verdict(self.verdict)

    @property
    def findings(self) -> list[Finding]:
        return [f for c in self.checks for f in c.findings]

    def _repr_html_(self) -> str:
        return _view("html_view")(self)

    def __str__(self) -> str:
        """``print(result)``: the plain-text report of this case."""
        return _view("text_view")(self)

    def __rich_console__(self, console, options):
        yield from _view("rich_view")(self, console, options)


@dataclass
class Report:
    """One run over many cases."""

    cases: list[CaseResult]
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def summary(self) -> dict[str, int]:
        counts = {v: 0 for v in VERDICTS}
        for c in self.cases:
            counts[c.verdict] += 1
        return counts

    @property
    def ok(self) -> bool:
        return all(c.verdict in (Verdict.PASS, Verdict.WARN) for c in self.cases)

    def _repr_html_(self) -> str:
        """The notebook view: ``rnncheck.verify(case)`` as the last line of a cell shows the report."""
        return _view("html_view")(self)

    def __str__(self) -> str:
        """``print(report)`` in a script: the plain-text table, findings and summary, as a log shows them."""
        return _view("text_view")(self)

    def __rich_console__(self, console, options):
        yield from _view("rich_view")(self, console, options)


def _view(name: str):
    """One of the terminal renderer's views (``text_view``, ``rich_view``, ``html_view``); it is imported on
    use, since the renderer imports this module."""
    from .render import terminal

    return getattr(terminal, name)


def finite_or_none(x: float | None) -> float | None:
    """JSON has no NaN/Inf: non-finite numbers become None."""
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def gate_state(result: CaseResult) -> str | None:
    """The gate's word for a case (see :attr:`BaselineResult.state`); None where no gate ran."""
    checks = [c for c in result.checks if isinstance(c, BaselineResult)]
    if not checks:
        return None
    states = {c.state for c in checks}
    for state in ("new", "failing", "error", "moved"):
        if state in states:
            return state
    return "matches"


def gate_verdict(result: CaseResult) -> str:
    """A case passes the gate when its baseline check passes.

    That check fails a case that fails its own checks unless its record accepted that failure
    (``--accept-failures``): recording a failure by accident cannot make it pass forever after.
    """
    checks = [c for c in result.checks if isinstance(c, BaselineResult)]
    if not checks:
        return result.verdict
    return worst(c.verdict for c in checks)

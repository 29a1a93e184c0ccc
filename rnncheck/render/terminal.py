"""The human report: one table per case, its findings, and a one-line summary.

Rich in a terminal; plain ASCII text when the output is not a terminal or NO_COLOR is set.
"""

from __future__ import annotations

import functools
import io
import math
import os
import sys

import numpy as np
from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from ..findings import (
    CaseResult,
    CheckResult,
    EntrywiseSummary,
    GradientResult,
    Kind,
    ProbeRecord,
    ProbeSummary,
    Report,
    Verdict,
    gate_state,
)
from ..flowmath import describe_channels, sparkline
from ..flowresults import Structure

FLOW_STYLE = {"vanishing": "yellow", "exploding": "red", "nonfinite": "magenta", "healthy": "green", None: "dim"}
STYLE = {"unchecked": "yellow", "pass": "green", "warn": "yellow", "fail": "red", "error": "magenta", "note": "cyan"}
MARK = {"pass": "PASS", "warn": "WARN", "fail": "FAIL", "error": "ERROR"}


#: what a stream that cannot encode them (PYTHONIOENCODING=ascii, an old Windows console) gets instead
ASCII_FALLBACK = {
    "ρ̂": "rho", "ρ": "rho", "τ": "tau", "ε": "eps", "λ": "lambda", "σ": "sigma", "∂": "d", "‖": "||",
    "—": "-", "–": "-", "−": "-", "…": "...", "×": "x", "≥": ">=", "≤": "<=", "±": "+/-", "⊙": "*", "ᵀ": "^T",
    "→": "->", "≈": "~", "·": "*", "√": "sqrt", "²": "^2", "─": "-", "│": "|", "▁": "_", "▂": ".", "▃": "-",
    "▄": "~", "▅": "=", "▆": "+", "▇": "*", "█": "#", "⁻": "-", "¹": "1", "³": "3", "⁴": "4",
}  # fmt: skip


def ascii_fallback(text: str) -> str:
    for char, plain in ASCII_FALLBACK.items():
        text = text.replace(char, plain)
    return text.encode("ascii", errors="replace").decode("ascii")


class SafeStream:
    """The terminal's stream, made safe for the report: a closed pipe (``rnncheck verify … | head -1``) stops
    the printing, never the report files or the exit code; characters the stream cannot encode get ASCII
    stand-ins instead of a UnicodeEncodeError after every case has passed."""

    def __init__(self, stream) -> None:
        self.stream = stream
        self.broken = False

    def write(self, text: str) -> int:
        if self.broken:
            return len(text)
        try:
            try:
                return self.stream.write(text)
            except UnicodeEncodeError:
                return self.stream.write(ascii_fallback(text))
        except (BrokenPipeError, ValueError, OSError) as exc:
            if isinstance(exc, OSError) and not isinstance(exc, BrokenPipeError) and exc.errno not in (32, None):
                raise
            self._close()
            return len(text)

    def flush(self) -> None:
        if self.broken:
            return
        try:
            self.stream.flush()
        except (BrokenPipeError, ValueError):
            self._close()

    def _close(self) -> None:
        """The reader is gone: no more output, and no error at exit when Python flushes stdout."""
        self.broken = True
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, self.stream.fileno())
        except (OSError, ValueError, AttributeError):
            pass

    def isatty(self) -> bool:
        return hasattr(self.stream, "isatty") and self.stream.isatty()

    def __getattr__(self, name):
        return getattr(self.stream, name)


def make_console(stream=None, no_color: bool = False) -> Console:
    """A console on ``stream`` (stdout): rich in a terminal, plain text elsewhere, with NO_COLOR or ``no_color``."""
    stream = stream or sys.stdout
    if stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
        stream = SafeStream(stream)
    tty = hasattr(stream, "isatty") and stream.isatty()
    plain = not tty or bool(os.environ.get("NO_COLOR")) or no_color
    console = Console(
        file=stream,
        no_color=plain,
        highlight=False,
        emoji=False,
        force_terminal=False if plain else None,
        width=None if tty else 160,
        soft_wrap=False,
    )
    console.plain = plain  # type: ignore[attr-defined]
    return console


_CONTROL = {c: f"\\x{c:02x}" for c in range(32) if c not in (9, 10)}
_CONTROL[127] = "\\x7f"


def printable(text: str, keep_newlines: bool = False) -> str:
    """``text`` safe for a terminal or a log: control characters and lone surrogates escaped."""
    table = dict(_CONTROL)
    if not keep_newlines:
        table[10] = "\\n"
    text = str(text).translate(table)
    if any("\ud800" <= ch <= "\udfff" for ch in text):
        text = "".join(f"\\u{ord(ch):04x}" if "\ud800" <= ch <= "\udfff" else ch for ch in text)
    return text


def _fmt(x, spec: str = ".2g") -> str:
    return "-" if x is None else format(x, spec)


#: below this many columns the worst entry leaves the table (its finding line names it) and long names shorten
NARROW = 110
#: the width the number columns take with their separators, whatever the names
_NUMBERS_WIDTH = 66


def _shorten(name: str, width: int) -> str:
    """``…stack.block.weight_ih_l0``: the end of a long name, which says which tensor it is."""
    return name if len(name) <= width else "…" + name[-(width - 1) :]


def _time_shares(case: CaseResult) -> str:
    """``-v``: each check's time, in seconds and in units of one call of the case's gradient (a forward and a
    backward, as rnncheck calls it: the fastest call the sanity checks timed)."""
    unit = case.unit_seconds or 0.0
    parts = []
    total = inside = 0.0
    timed = [(str(c.name), c.seconds, c.user_seconds) for c in case.checks if c.seconds is not None]
    if case.policy_seconds is not None and timed:
        # the thread policy's timed gradient calls, the last two of which are the sanity checks' own unless one failed
        served = " (its calls serve the sanity checks)" if case.policy_served else ""
        timed.insert(0, (f"thread policy{served}", *case.policy_seconds))
    for name, seconds, user in timed:
        units = f" = {seconds / unit:.1f} units" if unit > 0 else ""
        parts.append(f"{name} {seconds:.3f} s{units}")
        total += seconds
        inside += user or 0.0
    if not parts:
        return ""
    yours = (
        f"; of the {total:.3f} s, {inside:.3f} s"
        + (f" = {inside / unit:.1f} units" if unit > 0 else "")
        + " inside calls into your code (its forwards, losses and backwards), the rest rnncheck's own work"
    )
    unit_text = (
        f"; unit: one forward+backward (the fastest gradient call timed) {unit * 1e3:.1f} ms" if unit > 0 else ""
    )
    return "time: " + ", ".join(parts) + yours + unit_text


def case_table(case: CaseResult, plain: bool, width: int | None = None) -> Table | None:
    """The per-tensor table.  At ``width`` below :data:`NARROW` the numbers keep their columns whole: the
    worst entry is left to the finding lines and tensor names are shortened from the front."""
    rows = [r for c in case.checks for r in c.tensors]
    if not rows:
        return None
    narrow = width is not None and width < NARROW
    name_width = max(12, (width or 200) - _NUMBERS_WIDTH) if narrow else None
    table = Table(box=box.ASCII2 if plain else box.SIMPLE_HEAD, show_edge=not plain, pad_edge=False)
    columns = [
        ("tensor", "left"),
        ("shape", "left"),
        ("|grad|", "right"),
        ("rel err", "right"),
        ("tolerance", "right"),
        ("catches", "right"),
        ("verdict", "left"),
    ] + ([] if narrow else [("worst entry", "left")])
    for col, justify in columns:
        table.add_column(col, justify=justify, no_wrap=True)
    for r in rows:
        cells = [
            Text(_shorten(r.name, name_width) if name_width else r.name),  # Text: "[f-gate]" is not markup
            "x".join(map(str, r.shape)) or "scalar",
            _fmt(r.norm, ".3g"),
            _fmt(r.error),
            _fmt(r.tolerance),
            "-" if r.detection is None else f">= {r.detection:.1e}",
            Text(r.verdict, style=STYLE[r.verdict]),
        ]
        if not narrow:
            cells.append(Text(r.worst))
        table.add_row(*cells)
    return table


LEGEND = (
    "columns: rel err = a failing tensor's own ‖g − g_true‖/‖g_true‖, estimated from probes over it alone "
    "(for a passing one, the disagreement of the probe that resolves it best, relative to the tensor's share of "
    "that probe); tolerance = the error model's "
    "bound on that; catches = the smallest relative error in one typical entry that these probes would have flagged"
)

FLOW_MARK = {
    "exploding": "EXPLODING",
    "vanishing": "VANISHING",
    "nonfinite": "NONFINITE",
    "healthy": "HEALTHY",
    None: "NOT MEASURED",
}


def headline(case: CaseResult, flow_first: bool = False) -> tuple[str, str]:
    """The word a case's line starts with, and its style: the verdict, or for ``diagnose`` the flow verdict."""
    if flow_first and case.verdict != Verdict.ERROR:
        flow = case.diagnostics.gradient_flow
        return FLOW_MARK.get(flow, str(flow).upper()), FLOW_STYLE.get(flow, "dim")
    return MARK[case.verdict], STYLE[case.verdict]


def render_case(console: Console, case: CaseResult, verbosity: int = 0, flow_first: bool = False) -> None:
    """One case: its line, then (unless ``verbosity`` < 0) its table, findings and flow; ``verbosity`` > 0 adds every probe."""
    plain = getattr(console, "plain", False)
    evals = sum(c.evaluations for c in case.checks)
    head = Text()
    mark, style = headline(case, flow_first)
    head.append(f"{mark:5} ", style=f"bold {style}")
    # a case name is the user's text: a newline, an ANSI code or rich markup in it is shown, never obeyed
    head.append(printable(f"{case.file}::{case.name}" if case.file else case.name), style="bold")
    head.append(f"  ({case.seconds:.2f} s, {evals} evaluations)", style="dim")
    state = gate_state(case)
    if state is not None:
        head.append(
            f"  gate: {state if state == 'matches' else state.upper()}",
            style="green" if state == "matches" else "bold red",
        )
    if verbosity < 0:
        if case.error:
            head.append(f"  {printable(case.error)}", style=STYLE["error"])
        console.print(head, soft_wrap=True)
        return
    console.print(head)
    shares = _time_shares(case) if verbosity > 0 else ""
    if shares:
        console.print(Text(f"      {shares}", style="dim"), soft_wrap=True)
    if case.error:
        console.print(Text(f"      {printable(case.error)}", style=STYLE["error"]), soft_wrap=plain)
        if case.traceback:
            console.print(printable(case.traceback, keep_newlines=True), markup=False, highlight=False)
    table = case_table(case, plain, console.width)
    if table is not None:
        console.print(table)
    for check in case.checks:
        render_check(check, console, case, verbosity)
    render_flow(console, case)


@functools.singledispatch
def render_check(check: CheckResult, console: Console, case: CaseResult, verbosity: int = 0) -> None:
    """One check's findings, a line each; hints as their own lines."""
    plain = getattr(console, "plain", False)
    for f in check.findings:
        if f.verdict == Verdict.ERROR and f.message == case.error:
            continue  # already the case's headline
        if f.kind == Kind.HINT:
            console.print(Text(f"      hint: {printable(f.message)}", style="cyan"), soft_wrap=plain)
            continue
        console.print(
            Text(f"      {f.verdict}: {f.kind}: {printable(f.message)}", style=STYLE[f.verdict]), soft_wrap=plain
        )
        if f.hint and f.kind != Kind.MISMATCH:  # a mismatch's hint is printed once, as its own line
            console.print(Text(f"        hint: {printable(f.hint)}", style="cyan"), soft_wrap=plain)
    if check.traceback:
        console.print(printable(check.traceback, keep_newlines=True), markup=False, highlight=False)


@render_check.register
def _render_gradient(check: GradientResult, console: Console, case: CaseResult, verbosity: int = 0) -> None:
    """The gradient check: first the line under the table (probes, worst error, dtypes), then its findings."""
    line = summary_text(check.summary)  # empty where it stopped before any probe ran (its finding says why)
    if line:
        console.print(Text(f"      {line}", style="dim"))
    if verbosity > 0:
        if check.threads:
            console.print(Text(f"      threads: {check.threads}", style="dim"))
        if isinstance(check.summary, ProbeSummary):
            _render_probes(console, check.summary.records)
    for note in check.notes or []:
        console.print(Text(f"      note: {printable(note)}", style="dim"))
    render_check.dispatch(CheckResult)(check, console, case, verbosity)


@functools.singledispatch
def summary_text(summary) -> str:
    """The line under the table: nothing where the check stopped before any probe ran."""
    return ""


@summary_text.register
def _(summary: EntrywiseSummary) -> str:
    return "every entry checked on its own"


@summary_text.register
def _(summary: ProbeSummary) -> str:
    entries = f" (+ {summary.entry_probes} single entries of small tensors)" if summary.entry_probes else ""
    return (
        f"{summary.probes} probe directions{entries}, worst rel err {_fmt(summary.worst_rel_error)} "
        f"(tolerance {_fmt(summary.worst_rel_bound)}); numerical side in {summary.numeric_dtype}, "
        f"gradient in {summary.model_dtype}"
    )


def render_flow(console: Console, case: CaseResult) -> None:
    """The gradient-flow verdict, and a sparkline of log10 ‖dL/dh_t‖ over time per layer."""

    plain = getattr(console, "plain", False)
    d = case.diagnostics
    if not d.layers:
        why = d.not_computed.get("all")
        if why:
            console.print(Text(f"      flow: not measured: {why}", style="dim"), soft_wrap=plain)
        return
    line = Text("      flow: ")
    line.append(str(d.gradient_flow), style=f"bold {FLOW_STYLE.get(d.gradient_flow, 'dim')}")
    console.print(line)
    width = max(len(layer.name) for layer in d.layers)
    for layer in d.layers[:8]:
        prof = np.asarray(layer.profile, dtype=float)
        with np.errstate(divide="ignore", invalid="ignore"):
            logs = np.log10(prof)  # 0 -> -inf (a blank), NaN stays NaN (a "!")
        facts = [f"rho {layer.rho:.3g}/step" if layer.rho is not None else "rho n/a"]
        if layer.horizon is not None:
            facts.append("horizon inf" if math.isinf(layer.horizon) else f"horizon {layer.horizon:.3g} steps")
        if layer.lag_1e3 is not None:
            facts.append(f"<1e-3 after {layer.lag_1e3} steps")
        finite = logs[np.isfinite(logs)]
        rng_txt = f"log10|dL/dh_t| {finite.min():.1f}..{finite.max():.1f}" if finite.size else "log10|dL/dh_t| n/a"
        console.print(
            Text(
                f"        {layer.name:<{width}}  {sparkline(logs, plain=plain)}  t=0..{layer.steps - 1}  {rng_txt}; {', '.join(facts)}"
            ),
            soft_wrap=True,
        )
        prop = np.asarray(layer.propagation, dtype=float)
        if prop.size > 1:  # what the verdict is about: how far back one step's loss reaches
            with np.errstate(divide="ignore", invalid="ignore"):
                back = np.log10(prop)
            console.print(
                Text(
                    f"        {'':<{width}}  {sparkline(back, plain=plain)}  k=0..{prop.size - 1} steps back (the verdict's)"
                ),
                soft_wrap=True,
            )
        if layer.channels is not None:
            console.print(Text(f"          channels: {describe_channels(layer.channels)}"), soft_wrap=True)
        spectral = _spectral_text(layer.structure)
        if spectral:
            console.print(Text(f"          spectral: {spectral}"), soft_wrap=True)
    if len(d.layers) > 8:
        console.print(Text(f"        ... {len(d.layers) - 8} more layers in the JSON report", style="dim"))


def _spectral_text(structure) -> str:
    """``--spectral``'s numbers for one layer: each recurrent block's σ_max and radius, and Pascanu's bound."""
    if not isinstance(structure, Structure) or not structure.blocks:
        return ""
    parts = [
        f"{'' if name == 'W_hh' else name + ' '}sigma_max {b.sigma_max:.3g}, radius {b.spectral_radius:.3g}"
        for name, b in structure.blocks.items()
    ]
    bound = structure.pascanu
    if bound is not None:
        parts.append(f"sigma_max*gamma {bound.sigma_max_times_gamma:.3g}: {bound.reading} (Pascanu et al.)")
    return "; ".join(parts)


def _render_probes(console: Console, records: list[ProbeRecord]) -> None:
    """``-v``: every probe with both sides and the error model's parts."""
    shared = [p for p in records if not p.entry]
    entries = [p for p in records if p.entry]
    for i, p in enumerate(shared + entries, 1):
        label = f"entry probe {p.entry}" if p.entry else f"probe {i}"
        parts = [
            f"{label}: {p.status}",
            f"analytic {p.analytic:.10g}",
            f"numeric {p.numeric:.10g}",
            f"rel err {_fmt(p.rel_error)}",
            f"bound {_fmt(p.rel_bound)}",
        ]
        if p.step is not None:
            parts.append(f"step {p.step:.2g}, truncation {_fmt(p.truncation)}, rounding {_fmt(p.rounding)}")
        parts.append(f"{p.evaluations} evaluations")
        console.print(Text("        " + "; ".join(parts), style="dim"), soft_wrap=True)


def flow_summary_line(report: Report, seconds: float) -> Text:
    """``rnncheck diagnose``'s last line, in its own words: how many cases' gradients vanish, explode, are healthy,
    or could not be measured; then the checks' failures and errors, where there are any."""
    counts = {"healthy": 0, "vanishing": 0, "exploding": 0, "nonfinite": 0, "not measured": 0}
    for case in report.cases:
        flow = case.diagnostics.gradient_flow
        counts[str(flow) if flow is not None else "not measured"] += 1
    styles = {"healthy": "green", "vanishing": "yellow", "exploding": "red", "nonfinite": "red", "not measured": "dim"}
    text = Text()
    shown = [k for k, n in counts.items() if n or k in ("healthy", "vanishing", "exploding", "not measured")]
    for i, key in enumerate(shown):
        if i:
            text.append(", ")
        text.append(f"{counts[key]} {key}", style=styles[key] if counts[key] else "")
    s = report.summary
    broken = [f"{s[v]} {w}" for v, w in (("fail", "failed"), ("error", "errors")) if s[v]]
    if broken:
        text.append(f"; checks: {', '.join(broken)}", style=STYLE["fail"])
    text.append(f" in {seconds:.2f} s")
    return text


def summary_line(report: Report, seconds: float) -> Text:
    s = report.summary
    parts = [
        (f"{s['pass']} passed", "pass"),
        (f"{s['warn']} warned", "warn"),
        (f"{s['fail']} failed", "fail"),
        (f"{s['error']} errors", "error"),
    ]
    text = Text()
    for i, (label, verdict) in enumerate(parts):
        if i:
            text.append(", ")
        text.append(label, style=STYLE[verdict] if s[verdict] else "")
    text.append(f" in {seconds:.2f} s")
    return text


def render_report(console: Console, report: Report, seconds: float, notes: list[str] = ()) -> None:
    for case in report.cases:
        render_case(console, case)
    for note in notes:
        console.print(Text(f"note: {note}", style="yellow"))
    console.print(summary_line(report, seconds))


# --- the notebook and rich views -----------------------------------------------------------


def _recording_console(width: int, color_system: str | None = "truecolor") -> Console:

    console = Console(
        file=io.StringIO(), record=True, width=width, force_terminal=True, color_system=color_system, highlight=False
    )
    console.plain = False  # type: ignore[attr-defined]
    return console


def _render_into(console: Console, obj) -> None:
    if isinstance(obj, Report):
        for case in obj.cases:
            render_case(console, case)
        if any(c.tensors for r in obj.cases for c in r.checks):
            console.print(Text(LEGEND, style="dim"), soft_wrap=True)
        console.print(summary_line(obj, sum(c.seconds for c in obj.cases)))
    else:
        render_case(console, obj)


def text_view(obj) -> str:
    """What ``print(report)`` shows: the plain-text report, as the command writes it into a log."""

    stream = io.StringIO()
    console = make_console(stream, no_color=True)
    _render_into(console, obj)
    return stream.getvalue().rstrip("\n")


def rich_view(obj, console: Console, options) -> list:
    """What ``rich.print(report)`` (or IPython with rich) shows: the same text as the terminal report."""
    recorder = _recording_console(options.max_width, console.color_system)
    _render_into(recorder, obj)
    return [Text.from_ansi(recorder.file.getvalue())]


def html_view(obj) -> str:
    """What a notebook shows for a Report or a CaseResult: the terminal report, in colour, as HTML."""
    recorder = _recording_console(120)
    _render_into(recorder, obj)
    return recorder.export_html(
        inline_styles=True,
        code_format='<pre style="font-family: Menlo, Consolas, monospace; font-size: 12px; line-height: 1.3">'
        "{code}</pre>",
    )

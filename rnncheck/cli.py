"""The ``rnncheck`` command.  It parses options and renders; the work is :func:`rnncheck.verify`."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import click

from . import __version__
from .collect import collect, keyword_matcher
from .errors import UsageError
from .findings import Report
from .gate import Gate, gate_verdict
from .options import Options
from .render.json_report import dumps
from .render.junit import to_junit
from .render.terminal import make_console, render_report
from .runner import error_result, run_meta, verify_case

EPILOG = """\b
Examples:
  rnncheck verify examples/article_rnn.py        check one file
  rnncheck verify models/ -k "lstm and not big"  cases whose names match
  rnncheck verify models/ --json report.json     also write the JSON report
  rnncheck verify model.py --full                every entry on its own

\b
Exit codes: 0 every case passed or warned; 1 a case failed or errored;
2 usage error (no such file, no cases found, bad option).
"""


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="rnncheck")
def main() -> None:
    """Check the gradients of recurrent networks, and how they flow through time.

    A model file is a Python file with functions marked @rnncheck.case, each returning
    an rnncheck.TorchCase (any nn.Module), rnncheck.NumpyCase (NumPy arrays with a
    hand-written gradient) or rnncheck.CellCase (a custom cell stepped by rnncheck).
    """


def _check_device(device: str) -> None:
    import torch

    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UsageError(
            f"--device {device}: no CUDA device is available here (torch.cuda.is_available() is False); "
            "drop --device or run on a machine with a GPU"
        )
    try:
        torch.device(device)
    except RuntimeError as exc:
        raise UsageError(f"--device {device}: {exc}") from exc


def _common(f):
    """The options verify and diagnose share, in the order --help shows them."""
    decorators = [
        click.argument("paths", nargs=-1, required=True, metavar="PATH..."),
        click.option(
            "-k", "keyword", metavar="EXPR", help='Only cases whose names match EXPR, e.g. "lstm and not gru".'
        ),
        click.option(
            "--json",
            "json_out",
            metavar="FILE",
            help="Write the JSON report to FILE ('-': stdout; the table then goes to stderr).",
        ),
        click.option(
            "--seed", default=0, show_default=True, help="Seed for probe directions, the default loss and jitter."
        ),
        click.option("--device", default="cpu", show_default=True, help="Where torch cases run: cpu, cuda, cuda:1 ..."),
        click.option(
            "--budget",
            type=click.FloatRange(min=0, min_open=True),
            metavar="SECONDS",
            help="Time allowed per case; probes are planned to fit.",
        ),
        click.option(
            "--dtype",
            type=click.Choice(["float32", "float64"]),
            help="Run torch cases in this dtype instead of the model's own.",
        ),
        click.option(
            "--plot",
            "plot_dir",
            metavar="DIR",
            type=click.Path(file_okay=False),
            help="Write gradient-flow PNGs into DIR (needs the plot extra: pip install 'rnncheck[plot]').",
        ),
        click.option(
            "--jacobian", is_flag=True, help="Also power-iterate ||dh_T/dh_k|| at lags 1, 2, 4, ... (costs more)."
        ),
        click.option(
            "--lyapunov", is_flag=True, help="Also estimate the leading Lyapunov exponents (QR method; costs more)."
        ),
        click.option("--debug", is_flag=True, help="Show tracebacks of errors."),
    ]
    for deco in reversed(decorators):
        f = deco(f)
    return f


@main.command(epilog=EPILOG)
@_common
@click.option("--full", is_flag=True, help="Check every entry with its own finite difference (slow, exhaustive).")
@click.option(
    "--probes", default=3, show_default=True, type=click.IntRange(1, 64), help="Random probe directions per case."
)
@click.option("--no-flow", is_flag=True, help="Skip the gradient-flow diagnostics.")
@click.option("--no-reference", is_flag=True, help="Skip the comparison with the NumPy reference.")
@click.option(
    "--baseline",
    "baseline_path",
    metavar="FILE",
    help="Gate: compare every case with the baseline in FILE; exit 1 if anything moved beyond its tolerance.",
)
@click.option(
    "--update-baseline", is_flag=True, help="Write (or update) the --baseline FILE from this run instead of comparing."
)
@click.option(
    "--baseline-repeats",
    default=3,
    show_default=True,
    type=click.IntRange(1, 20),
    help="Runs per case when writing a baseline; their spread widens the tolerance of quantities that vary.",
)
@click.option(
    "--junit-xml", "junit_path", metavar="FILE", help="Also write a JUnit XML report (one testcase per case)."
)
def verify(
    paths,
    keyword,
    json_out,
    seed,
    device,
    budget,
    dtype,
    plot_dir,
    jacobian,
    lyapunov,
    debug,
    full,
    probes,
    no_flow,
    no_reference,
    baseline_path,
    update_baseline,
    baseline_repeats,
    junit_path,
) -> None:
    """Check the gradients of every case in PATH... (files or folders).

    Each case's analytic gradient is compared with finite differences along random
    probe directions that cover every tensor and gate block, with an error model that
    passes correct float32 models.  A wrong gradient is narrowed to its tensor, gate
    and entry.  A loss that is not a finite repeatable scalar, a backward that keeps
    state between calls or changes its arguments are reported by name.  Recurrent
    cases also get their gradient flow through time (see `rnncheck diagnose --help`).

    With --baseline FILE, each case is also compared with its stored fingerprint
    (check verdicts, log10 gradient norms, a gradient sketch, the flow profile, rho and
    horizon): the exit code is then the gate's.  Record the file with --update-baseline.
    """
    options = Options(
        seed=seed,
        device=device,
        budget=budget,
        full=full,
        probes=probes,
        dtype=dtype,
        debug=debug,
        diagnostics=not no_flow,
        reference=not no_reference,
        jacobian=jacobian,
        lyapunov=lyapunov,
    )
    if update_baseline and not baseline_path:
        raise click.UsageError("--update-baseline needs --baseline FILE to write to")
    _run(paths, keyword, json_out, plot_dir, options, baseline_path, update_baseline, baseline_repeats, junit_path)


@main.command(epilog=EPILOG.replace("rnncheck verify", "rnncheck diagnose"))
@_common
def diagnose(paths, keyword, json_out, seed, device, budget, dtype, plot_dir, jacobian, lyapunov, debug) -> None:
    """Measure how the gradient flows back through time, without checking it.

    For every recurrent case (nn.RNN/LSTM/GRU inside a TorchCase, or a CellCase):
    the per-step norms of the total dL/dh_t, the propagation profile of a loss on the
    last step with its fitted decay per step, memory horizon and lag to 1e-3, the
    recurrent weights' largest singular value and spectral radius with Pascanu et
    al.'s bound, gate saturation and timescales, the first non-finite value, and a
    verdict: vanishing, exploding or healthy, with the thresholds that decided it.
    """
    options = Options(
        seed=seed,
        device=device,
        budget=budget,
        dtype=dtype,
        debug=debug,
        gradient=False,
        jacobian=jacobian,
        lyapunov=lyapunov,
    )
    _run(paths, keyword, json_out, plot_dir, options)


def _run(
    paths, keyword, json_out, plot_dir, options: Options, baseline_path=None, update=False, repeats=3, junit_path=None
) -> None:
    json_to_stdout = json_out == "-"
    console = make_console(sys.stderr if json_to_stdout else sys.stdout)
    device = options.device
    started = time.time()
    try:
        _check_device(device)
        match = keyword_matcher(keyword) if keyword else (lambda s: True)
        cases, problems = collect(list(paths))
    except UsageError as exc:
        console.print(f"rnncheck: error: {exc}", markup=False, highlight=False)
        sys.exit(2)
    selected = [c for c in cases if match(c.name)]
    notes = [f"{p.file}: {p.message}" for p in problems if not p.fatal]
    errors = [error_result(Path(p.file).name, p.file, p.message) for p in problems if p.fatal]
    if not selected and not errors:
        why = f"no case matches -k {keyword!r}" if cases else "no cases found"
        console.print(f"rnncheck: error: {why} in {' '.join(paths)}: mark functions with @rnncheck.case", markup=False)
        sys.exit(2)

    gate = None
    if baseline_path:
        try:
            gate = Gate(baseline_path, update=update, repeats=repeats)
        except (FileNotFoundError, ValueError) as exc:
            console.print(f"rnncheck: error: {exc}", markup=False, highlight=False)
            sys.exit(2)
    results = list(errors)
    with _progress(console, len(selected)) as advance:
        for c in selected:
            results.append(gate.run(c, options, advance) if gate else verify_case(c, options, progress=advance))
            advance(None, None)
    report = Report(results, meta=run_meta(options, started))
    if gate is not None:
        gate.finish(options)
        if update:
            notes.append(f"wrote {gate.written} case(s) to {baseline_path}")
    if plot_dir:
        notes += _plots(report, Path(plot_dir))
    render_report(console, report, time.time() - started, notes)
    if json_out:
        text = dumps(report)
        if json_to_stdout:
            click.echo(text)
        else:
            Path(json_out).write_text(text + "\n")
    verdict_of = gate_verdict if gate is not None else (lambda c: c.verdict)
    if junit_path:
        Path(junit_path).write_text(to_junit(report, verdict_of))
    if gate is not None and not update:
        gated = [verdict_of(c) for c in report.cases]
        console.print(
            f"gate: {sum(v in ('pass', 'warn') for v in gated)} of {len(gated)} cases match {baseline_path}",
            markup=False,
        )
        sys.exit(0 if all(v in ("pass", "warn") for v in gated) else 1)
    if update:
        sys.exit(0 if all(c.verdict != "error" for c in report.cases) else 1)
    sys.exit(0 if report.ok else 1)


def _plots(report: Report, folder: Path) -> list[str]:
    try:
        from .render.plots import plot_case
    except ImportError:
        return ["--plot needs matplotlib: pip install 'rnncheck[plot]'"]
    try:
        written = [p for case in report.cases for p in plot_case(case, folder)]
    except ImportError:
        return ["--plot needs matplotlib: pip install 'rnncheck[plot]'"]
    return [f"wrote {len(written)} figure(s) to {folder}"]


class _progress:
    """A transient progress bar in a terminal; nothing elsewhere."""

    def __init__(self, console, total: int) -> None:
        self.console, self.total, self.bar = console, total, None

    def __enter__(self):
        if getattr(self.console, "plain", True) or not self.console.is_terminal:
            return lambda case, stage: None
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

        self.bar = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=self.console,
            transient=True,
        )
        self.bar.start()
        task = self.bar.add_task("checking", total=self.total)

        def advance(case, stage):
            if case is None:
                self.bar.advance(task)
            else:
                self.bar.update(task, description=f"{case}: {stage}")

        return advance

    def __exit__(self, *exc) -> None:
        if self.bar is not None:
            self.bar.stop()

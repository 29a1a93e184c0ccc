"""The ``rnncheck`` command.  It parses options and renders; the work is :func:`rnncheck.verify`."""

from __future__ import annotations

import contextlib
import importlib
import os
import shlex
import signal
import sys
import time
from pathlib import Path

import click
from click.core import ParameterSource
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.text import Text

from . import zygote
from .collect import collect, keyword_matcher
from .errors import NoneSelected, UsageError
from .findings import CollectResult, Report, Verdict, gate_state, gate_verdict
from .ids import id_root
from .options import SPECS, Options, OptionSpec, find_config, resolve
from .render.json_report import dumps
from .render.junit import to_junit
from .render.terminal import LEGEND, flow_summary_line, make_console, printable, render_case, summary_line
from .version import __version__


def _heavy(module: str):
    """A module that imports torch, imported when a command runs: --help and --version answer without torch."""

    return importlib.import_module(f"rnncheck.{module}")


EPILOG = """\b
Examples:
  rnncheck verify examples/article_rnn.py        check one file
  rnncheck verify models/ -k "lstm and not big"  cases whose names match
  rnncheck verify models/ --json report.json     also write the JSON report
  rnncheck verify model.py --full                every entry on its own

\b
Which files: a file named is imported as given; a folder is searched for
*.py files that mark cases (rnncheck.case or @case; names starting with _ or .,
setup.py, conftest.py, virtual environments and links out of the folder are
skipped).
Results print as each case finishes.

\b
Exit codes: 0 every case passed or warned; 1 a case failed or errored;
2 usage error (no such file, no cases found, bad option), or the run was
interrupted (Ctrl-C; what finished is still reported and written).
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


class _Declared(click.ParamType):
    """A value the declaration parses (seconds with ``inf``, a set of flow verdicts): one validation for every source."""

    def __init__(self, spec: OptionSpec) -> None:
        self.spec = spec
        self.name = spec.kind

    def convert(self, value, param, ctx):
        if value is None or not isinstance(value, str):
            return value
        try:
            return self.spec.parse(value)
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


def _click_option(spec: OptionSpec):
    """The click option of one declared option (see :data:`rnncheck.options.SPECS`)."""
    env_help = f" [env {spec.env}]"
    if spec.kind == "flag":
        return click.option(spec.cli, spec.field, is_flag=True, help=spec.help + env_help)
    default = spec.default if spec.default != () else None
    metavar = spec.metavar or ("[" + "|".join(spec.choices) + "]" if spec.kind == "choice" else None)
    return click.option(
        spec.cli,
        spec.field,
        type=_Declared(spec),  # the declaration's own parser: the same checks as the environment and the config
        default=default,
        show_default=default is not None,
        metavar=metavar,
        help=spec.help + env_help,
    )


def _options_for(command: str):
    """The declared options of ``command``, then the ones that only the command line has."""

    def decorate(f):
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
            *[_click_option(spec) for spec in SPECS if command in spec.commands],
            click.option(
                "--plot",
                "plot_dir",
                metavar="DIR",
                type=click.Path(file_okay=False),
                help="Write gradient-flow PNGs into DIR (needs the plot extra: pip install 'rnncheck[plot]').",
            ),
            click.option("--force", is_flag=True, help="Let --json/--junit-xml overwrite a .py file."),
            click.option("--collect-only", is_flag=True, help="List the case ids (file::case) and run nothing."),
            click.option("-x", "--exitfirst", is_flag=True, help="Stop after the first case that fails or errors."),
            click.option("-q", "--quiet", count=True, help="One line per case, then the summary."),
            click.option("-v", "--verbose", count=True, help="Also every probe and the error model's numbers."),
            click.option("--no-color", is_flag=True, help="Plain text even in a terminal (as NO_COLOR=1)."),
            click.option(
                "-n",
                "--workers",
                "workers",
                default="1",
                show_default=True,
                metavar="N|auto",
                envvar="RNNCHECK_WORKERS",
                callback=_workers,
                help="Worker processes checking cases at once ('auto': one per core). Results print as they finish; "
                "the reports keep the order of a serial run. [env RNNCHECK_WORKERS]",
            ),
            click.option(
                "--in-process",
                is_flag=True,
                envvar="RNNCHECK_IN_PROCESS",
                help="Run the user's code in rnncheck's own process, for a debugger: not isolated, so a segfault, "
                "os._exit or a stuck C call in it ends the run. [env RNNCHECK_IN_PROCESS]",
            ),
        ]
        for deco in reversed(decorators):
            f = deco(f)
        return f

    return decorate


def _workers(ctx, param, value) -> int:
    """``-n``: a number of workers from 1 up, or ``auto`` for one per core."""
    if isinstance(value, int):
        return value
    text = str(value).strip().lower()
    if text == "auto":
        return max(1, os.cpu_count() or 1)
    if text.isdigit() and int(text) >= 1:
        return int(text)
    raise click.BadParameter(f"takes a number of workers (1 or more) or 'auto', got {value!r}")


class View:
    """How the run is shown and run: everything that is the command line's alone, not a check's option."""

    def __init__(
        self,
        command="verify",
        collect_only=False,
        exitfirst=False,
        verbosity=0,
        no_color=False,
        workers=1,
        in_process=True,
    ) -> None:
        self.command, self.collect_only, self.exitfirst = command, collect_only, exitfirst
        self.verbosity, self.no_color = verbosity, no_color
        self.workers, self.in_process = workers, in_process


def _view(values: dict, command: str) -> View:
    return View(
        command,
        values["collect_only"],
        values["exitfirst"],
        values["verbose"] - values["quiet"],
        values["no_color"],
        workers=values["workers"],
        in_process=values["in_process"],
    )


def _options(ctx: click.Context, values: dict, **fixed) -> Options:
    """Options from the command line, RNNCHECK_* and [tool.rnncheck], in that order of precedence."""
    given = {
        spec.field: values[spec.field]
        for spec in SPECS
        if spec.field in values and ctx.get_parameter_source(spec.field) == ParameterSource.COMMANDLINE
    }
    try:
        config, config_file = find_config(id_root(list(values["paths"])))
        return resolve(given, config=config, config_file=config_file, **fixed)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None


@main.command(epilog=EPILOG)
@_options_for("verify")
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
    "--accept-failures",
    is_flag=True,
    help="With --update-baseline: record cases that fail their own checks too, deliberately (an example of a bug); "
    "without it they are refused, since a recorded failure would otherwise pass the gate from then on.",
)
@click.option(
    "--baseline-repeats",
    default=3,
    show_default=True,
    type=click.IntRange(1, 20),
    help="Runs per case when writing a baseline; their spread widens the tolerance of quantities that vary.",
)
@click.option(
    "--junit-xml",
    "junit_path",
    metavar="FILE",
    help="Also write a JUnit XML report (one testcase per case; '-': stdout, the table then goes to stderr).",
)
@click.pass_context
def verify(ctx, **values) -> None:
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

    Every option can also come from the environment (RNNCHECK_TIMEOUT=30,
    RNNCHECK_NO_FLOW=1) or from [tool.rnncheck] in pyproject.toml (timeout = 30,
    no-flow = true); the command line wins, then the environment, then the file.
    """
    options = _options(ctx, values)
    if values["update_baseline"] and not values["baseline_path"]:
        raise click.UsageError("--update-baseline needs --baseline FILE to write to")
    _run(values, options, _view(values, "verify"))


@main.command(
    epilog=EPILOG.replace("rnncheck verify", "rnncheck diagnose").replace(
        "rnncheck diagnose model.py --full                every entry on its own",
        "rnncheck diagnose model.py --plot figs/          also write the flow PNGs",
    )
)
@_options_for("diagnose")
@click.pass_context
def diagnose(ctx, **values) -> None:
    """Measure how the gradient flows back through time, without checking it.

    For every recurrent case (nn.RNN/LSTM/GRU inside a TorchCase, or a CellCase):
    the per-step norms of the total dL/dh_t, the propagation profile of a loss on the
    last step with its fitted decay per step, memory horizon and lag to 1e-3, the
    recurrent weights' largest singular value and spectral radius with Pascanu et
    al.'s bound, gate saturation and timescales, the first non-finite value, and a
    verdict: vanishing, exploding, nonfinite or healthy, with the thresholds that decided it.
    """
    options = _options(ctx, values, gradient=False)
    _run(values, options, _view(values, "diagnose"))


def _run(values: dict, options: Options, view: View) -> None:
    """Run the application on the command's parsed values and exit with its code."""
    json_out, junit = values["json_out"], values.get("junit_path")
    app = Application(
        list(values["paths"]),
        values["keyword"],
        options,
        lambda: Outputs(json_out, junit, values["plot_dir"], values.get("baseline_path"), values["force"]),
        stdout_taken="-" in (json_out, junit),
        update=values.get("update_baseline", False),
        repeats=values.get("baseline_repeats", 3),
        accept_failures=values.get("accept_failures", False),
        view=view,
    )
    sys.exit(app.run())


class Outputs:
    """Where the reports go: resolved to absolute paths, and checked, before any user code runs."""

    def __init__(self, json_out, junit, plot_dir, baseline, force: bool) -> None:
        if json_out == "-" and junit == "-":
            raise UsageError("--json - and --junit-xml - cannot both go to stdout: send one of them to a file")
        self.json = self._file("--json", json_out, force)
        self.junit = self._file("--junit-xml", junit, force)
        self.plot = None if plot_dir is None else self._folder("--plot", plot_dir)
        self.baseline = None if baseline is None else Path(baseline).absolute()
        self.baseline_shown = baseline

    @property
    def stdout_taken(self) -> bool:
        return self.json == "-" or self.junit == "-"

    @staticmethod
    def _file(flag: str, value, force: bool):
        if value is None or value == "-":
            return value
        path = Path(value).absolute()
        if path.is_dir():
            raise UsageError(f"{flag} {value}: is a folder; give a file name, e.g. {flag} report.{_ext(flag)}")
        if not path.parent.is_dir():
            raise UsageError(f"{flag} {value}: the folder {path.parent} does not exist; create it first")
        if path.suffix == ".py" and path.exists() and not force:
            raise UsageError(f"{flag} {value}: would overwrite a Python file; pick another name, or pass --force")
        return path

    @staticmethod
    def _folder(flag: str, value) -> Path:
        path = Path(value).absolute()
        for parent in [path, *path.parents]:
            if parent.exists():
                if not parent.is_dir():
                    raise UsageError(f"{flag} {value}: {parent} is a file, not a folder; give a folder for the figures")
                break
        return path


def _ext(flag: str) -> str:
    return "json" if flag == "--json" else "xml"


class Application:
    """One run of ``rnncheck verify``/``diagnose``, in stages that each return, as flake8's Application.

    prepare (options and output paths checked, nothing run yet) -> collect (model files
    imported) -> run (each case checked and printed as it finishes) -> report (JSON,
    JUnit, baseline, plots, summary) -> :meth:`exit_code`.
    """

    def __init__(
        self,
        paths,
        keyword,
        options: Options,
        outputs,
        stdout_taken=False,
        update=False,
        repeats=3,
        view=None,
        accept_failures=False,
    ) -> None:
        self.paths, self.keyword, self.options = paths, keyword, options
        self.make_outputs = outputs
        self.view = view or View()
        self.console = make_console(sys.stderr if stdout_taken else sys.stdout, no_color=self.view.no_color)
        self.update, self.repeats, self.accept_failures = update, repeats, accept_failures
        self.stdout = sys.stdout  # the real stdout, before any redirection
        self.started = time.time()
        self.results: list = []
        self.notes: list[str] = []
        self.interrupted = False
        self.gate = None
        self.advance = self.refresh = lambda *a: None
        self.order: dict[int, int] = {}  # result -> its place in a serial run, where workers finish out of order
        self.done = self.stopped_early = 0

    # --- the stages -----------------------------------------------------------------------
    def run(self) -> int:
        with _terminate_as_interrupt():
            return self._run()

    def _run(self) -> int:
        try:
            self.prepare()
        except UsageError as exc:
            self._usage(exc)
            return 2
        # whatever the user's code prints must not spoil a report that goes to stdout
        redirect = contextlib.redirect_stdout(sys.stderr) if self.outputs.stdout_taken else contextlib.nullcontext()
        with redirect:
            try:
                selected = self.collect()
                if self.view.collect_only:
                    return self.list_cases(selected)
                self.load_gate()
            except UsageError as exc:
                self._usage(exc)
                return exc.exit_code
            except KeyboardInterrupt:
                self.interrupted = True
                selected = []
            self.run_cases(selected)
        self.report()
        return self.exit_code()

    def prepare(self) -> None:
        if self.isolated:
            zygote.server()  # the fork server imports torch while this process does the same
        self.outputs = self.make_outputs()
        _check_device(self.options.device)
        self.match = keyword_matcher(self.keyword) if self.keyword else (lambda s: True)
        if self.options.timeout is not None and not _heavy("usercode").hard_timeout_available():
            self.notes.append("--timeout needs SIGALRM on the main thread, which this platform lacks: no hard limit")

    def collect(self) -> list:
        # the runner (and the thread policy, which notes torch's thread count as it loads) before any model file
        _heavy("runner")
        if self.isolated:
            cases, problems = self._collect_in_workers()
        else:
            cases, problems = collect(self.paths, self.options.timeout)
        selected = [c for c in cases if self.match(c.name)]
        self.notes += [f"{p.file}: {p.message}" for p in problems if not p.fatal]
        errors = [_heavy("runner").error_result(Path(p.file).name, p.file, p.message) for p in problems if p.fatal]
        if not selected and not errors:
            if cases:
                raise NoneSelected(
                    f"{len(cases)} case(s) collected, none selected: no case name matches -k {self.keyword!r}"
                )
            raise UsageError(f"no cases found in {' '.join(self.paths)}: mark functions with @rnncheck.case")
        for result in errors:
            self._finished(result)
        return selected

    @property
    def isolated(self) -> bool:
        """Cases run in worker processes: the default wherever the platform can start them."""
        return not self.view.in_process and zygote.available()

    def _supervisor(self):
        return _heavy("workers").Supervisor(
            self.options,
            workers=self.view.workers,
            gate=self.gate,
            stdout_taken=self.outputs.stdout_taken,
            on_stage=lambda case, stage: self.advance(case, stage),
            on_tick=lambda: self.refresh(),
        )

    def _collect_in_workers(self) -> tuple[list, list]:
        """Every model file imported in a worker: the parent never runs user code, not even an import."""
        plan = _heavy("collect").plan(self.paths)
        supervisor = self._supervisor()
        try:
            found = supervisor.collect(plan.files)
        except zygote.ServerError as exc:  # no workers to be had here: the run goes on in this process
            self.notes.append(f"{exc}: the cases ran in rnncheck's own process, not isolated (as --in-process)")
            self.view.in_process = True
            return collect(self.paths, self.options.timeout)
        finally:
            supervisor.close()
        cases, problems = [], list(plan.problems)
        for path, (defs, problem) in zip(plan.files, found, strict=True):
            cases += plan.choose(path, defs, problem)
            if problem is not None:
                problems.append(problem)
        return cases, problems

    def list_cases(self, selected) -> int:
        """``--collect-only``: the ids, one per line, and nothing built or run."""
        for c in selected:
            self.console.print(f"{c.file}::{c.name}", markup=False, highlight=False, soft_wrap=True)
        errors = [r for r in self.results if r.verdict == Verdict.ERROR]
        self.console.print(f"{len(selected)} case(s) collected" + (f", {len(errors)} file error(s)" if errors else ""))
        return 1 if errors else 0

    def load_gate(self) -> None:
        if self.outputs.baseline is None:
            return
        try:
            self.gate = _heavy("gate").Gate(
                self.outputs.baseline,
                update=self.update,
                repeats=self.repeats,
                root=self.root(),
                accept_failures=self.accept_failures,
            )
        except (FileNotFoundError, ValueError) as exc:
            raise UsageError(str(exc)) from exc

    def root(self) -> Path:
        """What case ids are relative to: the folder of the nearest pyproject.toml, else the paths' common folder."""
        return id_root(self.paths)

    def run_cases(self, selected: list) -> None:
        self.selected = len(selected)
        with _progress(self.console, len(selected), auto_refresh=not self.isolated) as bar:
            self.advance, self.refresh = bar.advance, bar.refresh
            try:
                if self.isolated:
                    self._run_in_workers(selected)
                else:
                    self._run_in_process(selected)
            except KeyboardInterrupt:
                self.interrupted = True
        if self.stopped_early:
            self.notes.append(f"stopped after the first failing case (-x): {self.stopped_early} case(s) not run")

    def _run_in_process(self, selected: list) -> None:
        for c in selected:
            if self.gate is not None:
                result = self.gate.run(c, self.options, self.advance)
            else:
                result = _heavy("runner").verify_case(c, self.options, progress=self.advance)
            if not self._case_done(result, len(selected)):
                return

    def _run_in_workers(self, selected: list) -> None:
        """Each file's cases in its own worker; the reports keep the serial order whatever order they finish in."""
        files: dict[str, list[str]] = {}
        for c in selected:
            files.setdefault(c.file, []).append(c.name)
        position = {(c.file, c.name): k for k, c in enumerate(selected)}
        groups = list(files.items())

        def on_result(index: int, name: str, result) -> bool:
            self.order[id(result)] = position.get((groups[index][0], name), len(position))
            return self._case_done(result, len(selected))

        self._supervisor().run(groups, on_result)

    def _case_done(self, result, total: int) -> bool:
        """Show a finished case and keep it; False when -x says stop here."""
        self._finished(result)
        self.advance(None, None)
        self.done += 1
        if self.view.exitfirst and self._failed(result):
            self.stopped_early = total - self.done
            return False
        return True

    def _failed(self, result) -> bool:
        verdict = gate_verdict(result) if self.gate is not None and not self.update else result.verdict
        return verdict in (Verdict.FAIL, Verdict.ERROR)

    def _finished(self, result) -> None:
        """A case is done: keep it, and show it now (a killed run still shows what finished)."""
        self.results.append(result)
        render_case(self.console, result, self.view.verbosity, flow_first=self.view.command == "diagnose")
        if self._failed(result) and result.file and self.view.verbosity >= 0:
            self.console.print(
                Text(f"      rerun: {printable(self.rerun_command(result))}", style="dim"), soft_wrap=True
            )
            if self.gate is not None and not self.update and gate_state(result) in ("moved", "new"):
                accept = f"{self.rerun_command(result)} --baseline {shlex.quote(str(self.outputs.baseline_shown))} --update-baseline"
                self.console.print(Text(f"      accept: {printable(accept)}", style="dim"), soft_wrap=True)
        self.console.file.flush()

    def rerun_command(self, result) -> str:
        """The exact command that checks this case alone, with the settings that matter for its numbers."""
        file_error = any(isinstance(c, CollectResult) for c in result.checks)  # the file, not a case, failed
        target = result.file if file_error else f"{result.file}::{result.name}"
        words = ["rnncheck", self.view.command, shlex.quote(target), "--seed", str(self.options.seed)]
        for flag, value in (
            ("--dtype", self.options.dtype),
            ("--device", self.options.device if self.options.device != "cpu" else None),
            ("--probes", self.options.probes if self.options.probes != 3 else None),
        ):
            if value is not None:
                words += [flag, str(value)]
        if self.options.full:
            words.append("--full")
        if self.options.fail_on:
            words += ["--fail-on", ",".join(self.options.fail_on)]
        return " ".join(words)

    def report(self) -> None:
        with _no_interrupts():  # a second Ctrl-C or a SIGTERM while the report is written loses nothing
            self._report()

    def _report(self) -> None:
        files_first = [r for r in self.results if id(r) not in self.order]  # files that failed to import
        ordered = files_first + sorted(
            (r for r in self.results if id(r) in self.order), key=lambda r: self.order[id(r)]
        )
        report = Report(ordered, meta=_heavy("runner").run_meta(self.options, self.started))
        if self.interrupted:
            report.meta["interrupted"] = True
            self.notes.append(f"interrupted: {len(self.results)} result(s) reported, the rest did not run")
        if self.gate is not None:
            try:
                self.gate.finish(self.options)
            except OSError as exc:  # a baseline that could not be written is a failed run, never "wrote N"
                self.notes.append(f"could not write the baseline {self.outputs.baseline}: {exc}")
                self.write_failed = True
            else:
                if self.update and self.gate.written:
                    self.notes.append(f"wrote {self.gate.written} case(s) to {self.outputs.baseline_shown}")
                elif self.update:
                    self.notes.append(f"no case to record: {self.outputs.baseline_shown} was not written")
                if self.update and self.gate.refused:
                    self.notes.append(
                        f"not recorded, since they fail their own checks: {', '.join(self.gate.refused[:5])}; fix them, "
                        "or record the failure deliberately with --accept-failures"
                    )
        verdict_of = gate_verdict if self.gate is not None else (lambda c: c.verdict)
        # the report files first: neither the terminal (a closed pipe) nor the plots can stop them
        for where, text in (
            (self.outputs.json, lambda: dumps(report)),
            (self.outputs.junit, lambda: to_junit(report, verdict_of)),
        ):
            if where != "-":
                self._write(where, text)
        if self.outputs.plot:
            self.notes += _plots(report, self.outputs.plot)
        for note in self.notes:
            self.console.print(Text(f"note: {printable(note)}", style="yellow"), soft_wrap=True)
        if self.view.verbosity >= 0 and any(c.tensors for r in self.results for c in r.checks):
            self.console.print(Text(LEGEND, style="dim"), soft_wrap=True)
        closing = flow_summary_line if self.view.command == "diagnose" else summary_line
        self.console.print(closing(report, time.time() - self.started))
        for where, text in (
            (self.outputs.json, lambda: dumps(report)),
            (self.outputs.junit, lambda: to_junit(report, verdict_of)),
        ):
            if where == "-":
                self._write(where, text)
        if self.gate is not None and not self.update:
            states = [gate_state(c) for c in report.cases]
            counts = [f"{states.count(s)} {s}" for s in ("moved", "new", "failing", "error") if states.count(s)]
            self.console.print(
                f"gate: {states.count('matches')} of {len(states)} cases match {self.outputs.baseline_shown}"
                + (f" ({', '.join(counts)})" if counts else ""),
                markup=False,
            )
        self.report_obj = report

    def _write(self, where, text) -> None:
        if where is None:
            return
        if where == "-":
            self.stdout.write(text() + "\n")
            self.stdout.flush()
            return
        try:
            where.write_text(text() + "\n", encoding="utf-8")
        except OSError as exc:
            self.console.print(f"rnncheck: error: could not write {where}: {exc}", markup=False, highlight=False)
            self.write_failed = True

    def exit_code(self) -> int:
        """0 every case passed or warned; 1 a case failed or errored (or moved, with a baseline); 2 interrupted."""
        if self.interrupted or getattr(self, "write_failed", False):
            return 2
        cases = self.report_obj.cases
        if self.gate is not None and not self.update:
            return 0 if all(gate_verdict(c) in (Verdict.PASS, Verdict.WARN) for c in cases) else 1
        if self.update:
            return 0 if all(c.verdict != Verdict.ERROR for c in cases) and not self.gate.refused else 1
        return 0 if self.report_obj.ok else 1

    def _usage(self, exc: Exception) -> None:
        self.console.print(f"rnncheck: error: {printable(str(exc))}", markup=False, highlight=False, soft_wrap=True)


def _plots(report: Report, folder: Path) -> list[str]:
    try:
        from .render.plots import plot_case
    except ImportError:
        return ["--plot needs matplotlib: pip install 'rnncheck[plot]'"]
    written, failed = [], []
    for case in report.cases:
        try:
            written += plot_case(case, folder)
        except ImportError:
            return ["--plot needs matplotlib: pip install 'rnncheck[plot]'"]
        except Exception as exc:  # a figure is the last thing written: its failure costs that figure alone
            failed.append(f"{case.name}: {type(exc).__name__}: {str(exc)[:120]}")
    notes = [f"wrote {len(written)} figure(s) to {folder}"]
    if failed:
        notes.append(f"could not draw {len(failed)} figure(s) ({'; '.join(failed[:3])}); the reports are written")
    return notes


@contextlib.contextmanager
def _terminate_as_interrupt():
    """SIGTERM (a CI runner's cancel) stops the run as Ctrl-C does: what finished is reported, marked interrupted."""

    def stop(signum, frame):
        raise KeyboardInterrupt

    try:
        old = signal.signal(signal.SIGTERM, stop)
    except ValueError:  # not the main thread: nothing to install
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


@contextlib.contextmanager
def _no_interrupts():
    """Ctrl-C and SIGTERM held off while the report is written (their default comes back after)."""

    try:
        old = {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGINT, signal.SIGTERM)}
    except ValueError:
        yield
        return
    try:
        yield
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)


class _progress:
    """A transient progress bar in a terminal; nothing elsewhere.

    With workers the supervisor's loop calls ``refresh`` a few times a second, so that no thread
    of rnncheck's own runs beside a fork (``auto_refresh=False``).
    """

    def __init__(self, console, total: int, auto_refresh: bool = True) -> None:
        self.console, self.total, self.bar = console, total, None
        self.auto_refresh = auto_refresh
        self.advance = self.refresh = lambda *a: None

    def __enter__(self):
        if getattr(self.console, "plain", True) or not self.console.is_terminal:
            return self

        self.bar = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=self.console,
            transient=True,
            auto_refresh=self.auto_refresh,
        )
        self.bar.start()
        task = self.bar.add_task("checking", total=self.total)

        def advance(case, stage):
            if case is None:
                self.bar.advance(task)
            else:
                # the user's case name, escaped and never read as rich markup ("[/bold]" would end the bar)
                self.bar.update(task, description=Text(printable(f"{case}: {stage}")))
            if not self.auto_refresh:
                self.bar.refresh()

        self.advance, self.refresh = advance, self.bar.refresh
        return self

    def __exit__(self, *exc) -> None:
        if self.bar is not None:
            self.bar.stop()

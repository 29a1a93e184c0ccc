"""The options of a check, in one place."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path

from .tolerances import Tolerances

#: the seeds numpy and torch both accept
MAX_SEED = 2**32 - 1
DTYPES = ("float32", "float64", "bfloat16", "float16")
#: the flow verdicts --fail-on can turn into failures
FLOW_VERDICTS = ("exploding", "vanishing", "nonfinite")


#: the shortest hard limit that means anything: a case cannot be set up in less
MIN_TIMEOUT = 0.01


@dataclass
class Options:
    """How rnncheck checks a case.  The command line, the pytest marker and the API all fill this."""

    seed: int = 0
    """Seed of the probe directions, the default loss and the jitter."""
    device: str = "cpu"
    """Where torch cases run: ``cpu``, ``cuda``, ``cuda:1`` …"""
    budget: float | None = None
    """Seconds one case may take, a soft limit: the probes are planned to fit.  None (or inf): no limit."""
    threads: int | None = None
    """torch intra-op threads while a case runs.  None: rnncheck's policy (see :mod:`rnncheck.threads`)."""
    timeout: float | None = None
    """Seconds one case may run, a hard limit: past it the case is stopped and reported as an error.  None: none."""
    full: bool = False
    """Check every entry with its own finite difference instead of random probes."""
    probes: int = 3
    """Random probe directions over the parameters (each covers every tensor and gate block)."""
    dtype: str | None = None
    """Run torch cases in this dtype (``float32``/``float64``) instead of the model's own."""
    gradient: bool = True
    """Check the gradient (``rnncheck diagnose`` turns this off)."""
    reference: bool = True
    """Compare with the NumPy reference where the case names one, and every nn.RNN/LSTM/GRU inside."""
    diagnostics: bool = True
    """Measure gradient flow through time for recurrent cases."""
    jacobian: bool = False
    """Power-iterate ‖∂h_T/∂h_k‖ at every lag 1, 2, 4, … (costs more; default: lag T-1 only)."""
    lyapunov: bool = False
    """Also estimate the leading Lyapunov exponents (costs more)."""
    spectral: bool = False
    """Also compute σ_max and the spectral radius of every recurrent weight block, with Pascanu's bound."""
    fail_on: tuple[str, ...] = ()
    """Flow verdicts that fail a case (``exploding``, ``vanishing``, ``nonfinite``): the flow as a check."""
    horizon: int | None = None
    """Steps the task needs information carried over: the flow verdict asks whether the gradient survives
    that far back (``rho^K`` against 1e-3 and 1e3).  None: each layer's own sequence length."""
    fingerprint: bool = False
    """Record what the regression gate compares (the gate turns this on)."""
    debug: bool = False
    """Keep tracebacks of errors."""
    tolerances: Tolerances = field(default_factory=Tolerances)
    """The error model's safety factors (see :class:`rnncheck.Tolerances`)."""
    safety: float | None = None
    """Overrides ``tolerances.safety``: how many times its estimated error a probe must be off to fail."""

    def __post_init__(self) -> None:
        """Refuse what could only fail later, with the reason (a ``ValueError``): every declared option is
        checked by its kind's parser, with the range its declaration gives."""
        for spec in SPECS:
            value = getattr(self, spec.field)
            if value is None and Options.__dataclass_fields__[spec.field].default is None:
                continue  # "not given": no limit, the policy, the model's own dtype
            setattr(self, spec.field, spec.check(value))
        if not isinstance(self.tolerances, Tolerances):
            raise ValueError(f"tolerances must be an rnncheck.Tolerances, got {type(self.tolerances).__name__}")
        if self.safety is not None:
            self.tolerances = self.tolerances.replace(safety=self.safety)  # raises ValueError when not positive


# --- one declaration per option ---------------------------------------------------------------


@dataclass(frozen=True)
class OptionSpec:
    """One option, declared once.  The command line, the pytest options and ini keys, the marker's
    keywords, ``[tool.rnncheck]`` and ``RNNCHECK_*`` are all generated from these.

    ``field`` is the :class:`Options` field (and the marker keyword); ``flag`` the command-line
    spelling (``--no-flow``), whose bare name (``no-flow``) is also the config key and, upper-cased
    with underscores, the environment variable (``RNNCHECK_NO_FLOW``).
    """

    field: str
    kind: str  # "int" | "seconds" | "number" | "choice" | "str" | "flag" | "verdicts"
    help: str
    flag: str = ""
    invert: bool = False  # a flag that turns its field off (--no-flow -> diagnostics=False)
    choices: tuple[str, ...] = ()
    minimum: float | None = None
    maximum: int | None = None
    commands: tuple[str, ...] = ("verify", "diagnose")
    metavar: str | None = None

    @property
    def cli(self) -> str:
        return self.flag or "--" + self.field.replace("_", "-")

    @property
    def key(self) -> str:
        """The config key: the flag without its dashes (``no-flow``)."""
        return self.cli.lstrip("-")

    @property
    def env(self) -> str:
        return "RNNCHECK_" + self.key.upper().replace("-", "_")

    @property
    def default(self):
        value = Options.__dataclass_fields__[self.field].default
        return (not value) if self.invert else value

    def parse(self, raw, source: str = ""):
        """A value as text gives it (the command line, the environment, a config file, a pytest option);
        ValueError naming ``source`` if bad (the command line, whose parser names the flag itself, gives "")."""
        return PARSERS[self.kind](self, raw, True, source)

    def check(self, value):
        """A value given in Python (``Options(...)``, a pytest marker): of the field's own type, within range."""
        return PARSERS[self.kind](self, value, False, None)

    def refuse(self, what: str, raw, source: str | None) -> ValueError:
        """The error naming where the value came from: ``source`` (text), the command line (""), or Python (None)."""
        name = self.field if source is None else f"{source}: {self.key}" if source else self.key
        return ValueError(f"{name} {what}, got {raw!r}")

    def to_field(self, value):
        """The Options field's value for this option's value (a --no-* flag turns its field off)."""
        return (not value) if self.invert else value


# --- one parser per kind of option: ``parser(spec, raw, text, source)`` -----------------------------
# ``text``: the value came as text (the environment, a config file) and may be converted; else it is a
# Python value that must already have the field's type.


def _whole(raw, text: bool):
    if isinstance(raw, bool):
        return None
    if isinstance(raw, int):
        return raw
    if text:
        try:
            return int(str(raw).strip())
        except ValueError:
            return None
    return None


def _parse_int(spec: OptionSpec, raw, text: bool, source: str | None) -> int:
    value = _whole(raw, text)
    upper = f" to {spec.maximum}" if spec.maximum is not None else ""
    lower = f"from {spec.minimum}{upper}" if upper else f"of at least {spec.minimum}"
    ranged = f" {lower}" if spec.minimum is not None else ""
    if value is None or (spec.minimum is not None and value < spec.minimum):
        raise spec.refuse(f"must be a whole number{ranged}", raw, source)
    if spec.maximum is not None and value > spec.maximum:
        raise spec.refuse(f"must be a whole number{ranged}", raw, source)
    return value


def _real(raw, text: bool) -> float | None:
    if isinstance(raw, bool):
        return None
    if isinstance(raw, int | float):
        return float(raw)
    if text:
        try:
            return float(raw)
        except (TypeError, ValueError):
            return None
    return None


def _parse_seconds(spec: OptionSpec, raw, text: bool, source: str | None) -> float | None:
    value = _real(raw, text)
    if value is None or math.isnan(value) or value <= 0:
        raise spec.refuse("must be a positive number of seconds (inf, or None in Python: no limit)", raw, source)
    if math.isinf(value):
        return None
    if spec.minimum is not None and value < spec.minimum:
        raise spec.refuse(f"must be at least {spec.minimum} s (a case cannot even start in less)", raw, source)
    return raw if isinstance(raw, int | float) and not text else value


def _parse_number(spec: OptionSpec, raw, text: bool, source: str | None) -> float:
    value = _real(raw, text)
    if value is None or not math.isfinite(value) or value <= 0:
        raise spec.refuse("must be a positive finite number", raw, source)
    return raw if isinstance(raw, int | float) and not text else value


def _parse_flag(spec: OptionSpec, raw, text: bool, source: str | None) -> bool:
    if isinstance(raw, bool):
        return raw
    word = str(raw).strip().lower() if text else None
    if word in ("1", "true", "yes", "on"):
        return True
    if word in ("0", "false", "no", "off", ""):
        return False
    raise spec.refuse("takes true or false", raw, source)


def _parse_choice(spec: OptionSpec, raw, text: bool, source: str | None) -> str:
    if not (isinstance(raw, str) or text) or str(raw) not in spec.choices:
        raise spec.refuse(f"must be one of {', '.join(spec.choices)}", raw, source)
    return str(raw)


def _parse_str(spec: OptionSpec, raw, text: bool, source: str | None) -> str:
    if not (isinstance(raw, str) or text) or not str(raw):
        raise spec.refuse("must be a name such as 'cpu' or 'cuda:0'", raw, source)
    return str(raw)


def _parse_verdicts(spec: OptionSpec, raw, text: bool, source: str | None) -> tuple[str, ...]:
    items = raw if isinstance(raw, list | tuple) else str(raw).split(",")
    values = tuple(str(v).strip() for v in items if str(v).strip())
    bad = [v for v in values if v not in spec.choices]
    if bad:
        raise spec.refuse(f"takes any of {', '.join(spec.choices)}", ", ".join(bad), source)
    return values


PARSERS = {
    "int": _parse_int,
    "seconds": _parse_seconds,
    "number": _parse_number,
    "flag": _parse_flag,
    "choice": _parse_choice,
    "str": _parse_str,
    "verdicts": _parse_verdicts,
}


SPECS: tuple[OptionSpec, ...] = (
    OptionSpec("seed", "int", "Seed for probe directions, the default loss and jitter.", minimum=0, maximum=MAX_SEED),
    OptionSpec("device", "str", "Where torch cases run: cpu, cuda, cuda:1 ..."),
    OptionSpec(
        "budget",
        "seconds",
        "Soft time per case: the probes and extras are planned to fit ('inf': no limit).",
        metavar="SECONDS",
    ),
    OptionSpec(
        "timeout",
        "seconds",
        "Hard time per case: a case still running then is stopped and reported as an error.",
        minimum=MIN_TIMEOUT,
        metavar="SECONDS",
    ),
    OptionSpec(
        "threads",
        "int",
        "torch threads per case (default: 1 for small models, more where a measured forward+backward shows "
        "they pay; OMP_NUM_THREADS is respected).",
        minimum=1,
        metavar="N",
    ),
    OptionSpec("dtype", "choice", "Run torch cases in this dtype instead of the model's own.", choices=DTYPES),
    OptionSpec("probes", "int", "Random probe directions per case.", minimum=1, maximum=64, commands=("verify",)),
    OptionSpec(
        "full", "flag", "Check every entry with its own finite difference (slow, exhaustive).", commands=("verify",)
    ),
    OptionSpec(
        "diagnostics",
        "flag",
        "Skip the gradient-flow diagnostics.",
        flag="--no-flow",
        invert=True,
        commands=("verify",),
    ),
    OptionSpec(
        "reference",
        "flag",
        "Skip the comparison with the NumPy reference.",
        flag="--no-reference",
        invert=True,
        commands=("verify",),
    ),
    OptionSpec(
        "fail_on",
        "verdicts",
        "Fail a case whose gradient flow is one of these, e.g. exploding,nonfinite (any of exploding, vanishing, "
        "nonfinite).",
        choices=FLOW_VERDICTS,
        metavar="VERDICTS",
    ),
    OptionSpec(
        "horizon",
        "int",
        "Steps back the task needs information carried: the flow verdict asks whether the gradient survives "
        "that far (default: the sequence length).",
        minimum=1,
        metavar="K",
    ),
    OptionSpec(
        "safety",
        "number",
        "A probe fails when it is off by more than this many times its estimated error (default 4). "
        "Larger: fewer false alarms on unusual code, less power.",
        metavar="FACTOR",
        commands=("verify",),
    ),
    OptionSpec("jacobian", "flag", "Also power-iterate ||dh_T/dh_k|| at lags 1, 2, 4, ... (costs more)."),
    OptionSpec("lyapunov", "flag", "Also estimate the leading Lyapunov exponents (QR method; costs more)."),
    OptionSpec(
        "spectral",
        "flag",
        "Also compute sigma_max and the spectral radius of each recurrent weight block, with Pascanu et al.'s "
        "bound for plain RNNs (costs about one forward+backward of an LSTM(256) at batch 8).",
    ),
    OptionSpec("debug", "flag", "Show tracebacks of errors."),
)

SPEC_BY_FIELD = {s.field: s for s in SPECS}


def find_config(start) -> tuple[dict, str | None]:
    """The ``[tool.rnncheck]`` table of the nearest pyproject.toml at or above ``start``, and that file."""

    try:
        import tomllib
    except ImportError:  # Python 3.10
        try:
            import tomli as tomllib
        except ImportError:
            return {}, None
    folder = Path(start).resolve()
    for candidate in [folder, *folder.parents]:
        path = candidate / "pyproject.toml"
        if path.is_file():
            try:
                data = tomllib.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                raise ValueError(f"{path}: cannot be read as TOML ({exc})") from None
            table = data.get("tool", {}).get("rnncheck", {})
            if not isinstance(table, dict):
                raise ValueError(f"{path}: [tool.rnncheck] must be a table")
            return table, str(path)
    return {}, None


def resolve(given: dict, env=None, config: dict | None = None, config_file: str | None = None, **fixed) -> Options:
    """Options from every source, first found wins: the command line (``given``, None where not given),
    then ``RNNCHECK_*`` in the environment, then ``[tool.rnncheck]``, then the default.

    Raises ``ValueError`` naming the source of a bad value, or an unknown config key.
    """

    env = os.environ if env is None else env
    config = config or {}
    by_key = {s.key: s for s in SPECS} | {s.key.replace("-", "_"): s for s in SPECS}
    unknown = [k for k in config if k not in by_key]
    if unknown:
        known = ", ".join(sorted(s.key for s in SPECS))
        raise ValueError(f"{config_file}: unknown key(s) in [tool.rnncheck]: {', '.join(unknown)}; known: {known}")
    config = {by_key[k].field: v for k, v in config.items()}
    values = {}
    for spec in SPECS:
        value = given.get(spec.field)
        if value is None and spec.env in env:
            value = spec.parse(env[spec.env], spec.env)
        if value is None and spec.field in config:
            value = spec.parse(config[spec.field], f"{config_file} [tool.rnncheck]")
        if value is None:
            continue
        values[spec.field] = spec.to_field(value)
    return Options(**{**values, **fixed})

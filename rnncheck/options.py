"""The options of a check, in one place."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

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
        """Refuse what could only fail later, with the reason (a ``ValueError``)."""
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or not 0 <= self.seed <= MAX_SEED:
            raise ValueError(f"seed must be a whole number from 0 to {MAX_SEED}, got {self.seed!r}")
        for key in ("budget", "timeout"):
            value = getattr(self, key)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value) or value <= 0:
                raise ValueError(f"{key} must be a positive number of seconds (or None for no limit), got {value!r}")
            if math.isinf(value):
                setattr(self, key, None)  # inf: no limit
            elif key == "timeout" and value < MIN_TIMEOUT:
                raise ValueError(
                    f"timeout must be at least {MIN_TIMEOUT} s (a case cannot even start in less), got {value!r}"
                )
        if self.horizon is not None and (
            isinstance(self.horizon, bool) or not isinstance(self.horizon, int) or self.horizon < 1
        ):
            raise ValueError(f"horizon must be a whole number of steps, at least 1 (or None), got {self.horizon!r}")
        if isinstance(self.probes, bool) or not isinstance(self.probes, int) or not 1 <= self.probes <= 64:
            raise ValueError(f"probes must be a whole number from 1 to 64, got {self.probes!r}")
        if self.threads is not None and (
            isinstance(self.threads, bool) or not isinstance(self.threads, int) or self.threads < 1
        ):
            raise ValueError(
                f"threads must be a whole number of at least 1 (or None for the policy), got {self.threads!r}"
            )
        if self.dtype is not None and self.dtype not in DTYPES:
            raise ValueError(
                f"dtype must be one of {', '.join(DTYPES)} (or None for the model's own), got {self.dtype!r}"
            )
        if isinstance(self.fail_on, str):
            self.fail_on = tuple(v.strip() for v in self.fail_on.split(",") if v.strip())
        bad = [v for v in self.fail_on if v not in FLOW_VERDICTS]
        if bad:
            raise ValueError(f"fail_on takes flow verdicts from {', '.join(FLOW_VERDICTS)}, got {', '.join(bad)}")
        self.fail_on = tuple(self.fail_on)
        if not isinstance(self.device, str) or not self.device:
            raise ValueError(f"device must be a name such as 'cpu' or 'cuda:0', got {self.device!r}")
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
    minimum: int | None = None
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

    def parse(self, raw, source: str):
        """A value from the environment or a config file, as the command line would take it (ValueError if bad)."""
        if self.kind == "flag":
            if isinstance(raw, bool):
                on = raw
            elif str(raw).strip().lower() in ("1", "true", "yes", "on"):
                on = True
            elif str(raw).strip().lower() in ("0", "false", "no", "off", ""):
                on = False
            else:
                raise ValueError(f"{source}: {self.key} takes true or false, got {raw!r}")
            return on
        if self.kind == "seconds":
            try:
                value = float(raw)
            except (TypeError, ValueError):
                raise ValueError(f"{source}: {self.key} takes a number of seconds, got {raw!r}") from None
            if math.isnan(value) or value <= 0:
                raise ValueError(f"{source}: {self.key} takes a positive number of seconds or inf, got {raw!r}")
            return None if math.isinf(value) else value
        if self.kind == "number":
            try:
                value = float(raw)
            except (TypeError, ValueError):
                raise ValueError(f"{source}: {self.key} takes a number, got {raw!r}") from None
            if not math.isfinite(value) or value <= 0:
                raise ValueError(f"{source}: {self.key} takes a positive finite number, got {raw!r}")
            return value
        if self.kind == "int":
            try:
                value = int(str(raw).strip()) if not isinstance(raw, int) or isinstance(raw, bool) else raw
            except ValueError:
                raise ValueError(f"{source}: {self.key} takes a whole number, got {raw!r}") from None
            if (self.minimum is not None and value < self.minimum) or (
                self.maximum is not None and value > self.maximum
            ):
                raise ValueError(f"{source}: {self.key} must be from {self.minimum} to {self.maximum}, got {value}")
            return value
        if self.kind == "verdicts":
            values = tuple(
                v.strip() for v in (raw if isinstance(raw, list | tuple) else str(raw).split(",")) if v.strip()
            )
            bad = [v for v in values if v not in self.choices]
            if bad:
                raise ValueError(f"{source}: {self.key} takes any of {', '.join(self.choices)}, got {', '.join(bad)}")
            return values
        if self.kind == "choice" and str(raw) not in self.choices:
            raise ValueError(f"{source}: {self.key} takes one of {', '.join(self.choices)}, got {raw!r}")
        return str(raw)

    def to_field(self, value):
        """The Options field's value for this option's value (a --no-* flag turns its field off)."""
        return (not value) if self.invert else value


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
    from pathlib import Path

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
    import os

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

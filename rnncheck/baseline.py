"""The gradient-regression gate: fingerprint each case, store it, and compare later runs with it.

A fingerprint holds what a change could silently move: every check's verdict, the flow
verdict, log10 of every tensor's gradient norm, a gradient sketch (inner products with
a few fixed random unit directions, relative to the gradient's norm), and per recurrent
layer the log10 profile of ‖dL/dh_t‖, the fitted decay ρ̂ and the memory horizon.

The baseline file is JSON (never pickle), written with sorted keys and one case per
block so that it diffs well.  It records the versions of rnncheck, torch and numpy, the
seed, the dtype and the device.  Tolerances live in the file: ``DEFAULT_TOLERANCES``
unless the file says otherwise, widened per case to the spread measured over repeated
runs when the baseline is written (for gradients that legitimately vary, such as those
of cuDNN's atomics) — measured, never guessed.
"""

from __future__ import annotations

import json
import math
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import schema
from .findings import BaselineResult, CaseResult, CheckName, Finding, Verdict, worst

FORMAT = 1
SKETCH_DIRECTIONS = 4
PROFILE_POINTS = 64

#: documented defaults; each can be overridden in the file's "tolerances" (all or per case)
DEFAULT_TOLERANCES: dict[str, float] = {
    "grad_log10_norm": 1e-4,  # |Δ log10 ‖g‖| per tensor (1e-4 ≈ 0.023%)
    "sketch": 1e-4,  # |Δ (g·r / ‖g‖)| per fixed unit direction r
    "profile_log10": 1e-3,  # |Δ log10 ‖dL/dh_t‖| per step (downsampled)
    "rho_rel": 1e-2,  # |Δρ̂| / ρ̂
    "horizon_drop": 0.2,  # one-sided: the memory horizon may not fall by more than 20%
    "spread_factor": 4.0,  # tolerance ≥ this × the spread measured over repeated runs
}


def _direction(name: str, k: int, size: int) -> np.ndarray:
    rng = np.random.default_rng(zlib.crc32(f"{name}/{k}".encode()))
    r = rng.normal(size=size)
    return r / np.linalg.norm(r)


def _finite(x) -> float | None:
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def fingerprint(result: CaseResult, grad: dict[str, np.ndarray] | None) -> dict[str, Any]:
    """What the gate compares for one case."""
    fp: dict[str, Any] = {
        "verdict": result.verdict,
        "checks": {c.name: c.verdict for c in result.checks},
        "gradient_flow": result.diagnostics.gradient_flow,
        "grad_log10_norm": {},
        "sketch": {},
        "flow": {},
    }
    for name, g in (grad or {}).items():
        flat = np.asarray(g, dtype=np.float64).ravel()
        norm = float(np.linalg.norm(flat))
        fp["grad_log10_norm"][name] = (
            math.log10(norm) if norm > 0 and math.isfinite(norm) else (None if not math.isfinite(norm) else "zero")
        )
        fp["sketch"][name] = [
            _finite(float(flat @ _direction(name, k, flat.size)) / norm) if norm > 0 else 0.0
            for k in range(SKETCH_DIRECTIONS)
        ]
    for layer in result.diagnostics.layers:
        prof = np.asarray(layer.profile, dtype=float)
        if prof.size > PROFILE_POINTS:
            edges = np.linspace(0, prof.size, PROFILE_POINTS + 1).astype(int)
            prof = np.array([prof[a:b].mean() for a, b in zip(edges[:-1], edges[1:])])
        with np.errstate(divide="ignore", invalid="ignore"):
            logs = np.log10(prof)
        fp["flow"][layer.name] = {
            "log10_profile": [
                _finite(v) if np.isfinite(v) or np.isnan(v) else ("-inf" if v < 0 else None) for v in logs
            ],
            "rho": _finite(layer.rho),
            "horizon": None if layer.horizon is None else (layer.horizon if math.isfinite(layer.horizon) else "inf"),
        }
    return fp


def spread(fingerprints: list[dict[str, Any]]) -> dict[str, Any]:
    """The largest difference between repeated fingerprints, per quantity and entry."""
    first = fingerprints[0]
    out: dict[str, Any] = {"grad_log10_norm": {}, "sketch": {}, "profile_log10": {}, "rho_rel": {}}
    for name in first["grad_log10_norm"]:
        vals = [fp["grad_log10_norm"].get(name) for fp in fingerprints]
        nums = [v for v in vals if isinstance(v, float)]
        out["grad_log10_norm"][name] = (max(nums) - min(nums)) if len(nums) == len(vals) else 0.0
        sk = np.array([fp["sketch"][name] for fp in fingerprints], dtype=float)
        out["sketch"][name] = float(np.nanmax(sk.max(0) - sk.min(0))) if sk.size else 0.0
    for layer in first["flow"]:
        prof = np.array(
            [[v if isinstance(v, float) else np.nan for v in fp["flow"][layer]["log10_profile"]] for fp in fingerprints]
        )
        out["profile_log10"][layer] = float(np.nanmax(prof.max(0) - prof.min(0))) if np.isfinite(prof).any() else 0.0
        rhos = [fp["flow"][layer]["rho"] for fp in fingerprints if fp["flow"][layer]["rho"]]
        out["rho_rel"][layer] = (max(rhos) - min(rhos)) / max(rhos) if rhos else 0.0
    return out


@dataclass
class Baseline:
    """A baseline file in memory."""

    meta: dict[str, Any] = field(default_factory=dict)
    tolerances: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_TOLERANCES))
    cases: dict[str, dict[str, Any]] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path) -> Baseline:
        """Read and validate a baseline file; a ``ValueError`` names the file and what is wrong with it."""
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except UnicodeDecodeError:
            raise ValueError(
                f"{path}: not a baseline file (not UTF-8 text); rewrite it with --update-baseline"
            ) from None
        except json.JSONDecodeError as exc:
            raise ValueError(
                f"{path}: not a baseline file (invalid JSON at line {exc.lineno}: {exc.msg}); "
                "rewrite it with --update-baseline"
            ) from None
        problem = _shape_problem(data)
        if problem:
            raise ValueError(f"{path}: not a baseline file ({problem}); rewrite it with --update-baseline")
        if data.get("format") != FORMAT:
            raise ValueError(f"{path}: baseline format {data.get('format')!r}, this rnncheck reads format {FORMAT}")

        broken = schema.problem(data, schema.load("baseline"))
        if broken:  # checked against the committed schema: a record stripped to {"verdict": "pass"} never matches
            raise ValueError(
                f"{path}: not a valid baseline: {broken}; fix that field or rewrite it with --update-baseline"
            )
        return cls(
            meta={k: v for k, v in data.items() if k not in ("cases", "tolerances", "format")},
            tolerances={**DEFAULT_TOLERANCES, **data.get("tolerances", {})},
            cases=data.get("cases", {}),
        )

    def dumps(self) -> str:
        data = {"format": FORMAT, **self.meta, "tolerances": self.tolerances, "cases": self.cases}
        return json.dumps(data, indent=2, sort_keys=True, allow_nan=False) + "\n"

    def save(self, path: Path) -> None:
        Path(path).write_text(self.dumps())


def _shape_problem(data) -> str | None:
    """What keeps ``data`` from being a baseline, or None."""
    if not isinstance(data, dict):
        return f"the top level is a JSON {type(data).__name__}, not an object"
    if "format" not in data:
        return "no 'format' key"
    if not isinstance(data.get("cases", {}), dict):
        return "'cases' is not an object"
    for cid, record in data.get("cases", {}).items():
        if not isinstance(record, dict):
            return f"case {cid!r} is not an object"
        for key, kind in (("grad_log10_norm", dict), ("sketch", dict), ("flow", dict), ("checks", dict)):
            if key in record and not isinstance(record[key], kind):
                return f"case {cid!r}: {key!r} is not an object"
    if not isinstance(data.get("tolerances", {}), dict):
        return "'tolerances' is not an object"
    for key, value in data.get("tolerances", {}).items():
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
            return f"tolerance {key!r} is {value!r}, not a non-negative number"
    return None


@dataclass
class Drift:
    """One quantity that moved."""

    quantity: str
    where: str
    baseline: Any
    now: Any
    tolerance: str

    def message(self) -> str:
        if isinstance(self.baseline, list) and isinstance(self.now, list) and len(self.baseline) == len(self.now):
            moved = max(
                (abs(a - b) for a, b in zip(self.baseline, self.now) if isinstance(a, float) and isinstance(b, float)),
                default=math.inf,
            )
            return f"{self.quantity} of {self.where}: moved by up to {moved:.3g} over {len(self.now)} directions, tolerance {self.tolerance}"
        delta = ""
        if isinstance(self.baseline, float) and isinstance(self.now, float):
            delta = f" ({self.now - self.baseline:+.3g})"
        return f"{self.quantity} of {self.where}: {_show(self.baseline)} -> {_show(self.now)}{delta}, tolerance {self.tolerance}"


def _show(x) -> str:
    return f"{x:.6g}" if isinstance(x, float) else str(x)


def compare(stored: dict[str, Any], now: dict[str, Any], tolerances: dict[str, float]) -> list[Drift]:
    """Everything that moved beyond its tolerance between a stored fingerprint and a new one."""
    tol = {**tolerances, **stored.get("tolerances", {})}
    measured = stored.get("spread", {})
    k = tol["spread_factor"]
    drifts: list[Drift] = []
    for key in ("verdict", "gradient_flow"):
        if stored.get(key) != now.get(key):
            drifts.append(Drift(key, "the case", stored.get(key), now.get(key), "must not change"))
    for check, verdict in stored.get("checks", {}).items():
        if now["checks"].get(check) != verdict:
            drifts.append(Drift("verdict", f"check {check}", verdict, now["checks"].get(check), "must not change"))
    for name, old in stored.get("grad_log10_norm", {}).items():
        new = now["grad_log10_norm"].get(name)
        t = max(tol["grad_log10_norm"], k * measured.get("grad_log10_norm", {}).get(name, 0.0))
        if not _close(old, new, t):
            drifts.append(Drift("log10 gradient norm", name, old, new, f"±{t:.2g}"))
    for name, old in stored.get("sketch", {}).items():
        new = now["sketch"].get(name)
        t = max(tol["sketch"], k * measured.get("sketch", {}).get(name, 0.0))
        if new is None or len(new) != len(old) or not all(_close(a, b, t) for a, b in zip(old, new)):
            drifts.append(Drift("gradient sketch", name, old, new, f"±{t:.2g} per direction"))
    for layer, old in stored.get("flow", {}).items():
        new = now["flow"].get(layer)
        if new is None:
            drifts.append(Drift("flow profile", layer, "present", "missing", "must be present"))
            continue
        t = max(tol["profile_log10"], k * measured.get("profile_log10", {}).get(layer, 0.0))
        a, b = _in_range(old["log10_profile"]), _in_range(new["log10_profile"], like=old["log10_profile"])
        if len(a) != len(b) or not all(_close(x, y, t) for x, y in zip(a, b)):
            worst = _worst_step(a, b)
            drifts.append(
                Drift(
                    "log10 ‖dL/dh_t‖ profile",
                    f"{layer} (worst at point {worst})",
                    _at(a, worst),
                    _at(b, worst),
                    f"±{t:.2g}",
                )
            )
        t_rho = max(tol["rho_rel"], k * measured.get("rho_rel", {}).get(layer, 0.0))
        if old["rho"] is not None or new["rho"] is not None:
            if old["rho"] is None or new["rho"] is None or abs(new["rho"] - old["rho"]) > t_rho * abs(old["rho"]):
                drifts.append(Drift("fitted decay rho", layer, old["rho"], new["rho"], f"±{100 * t_rho:.3g}%"))
        h_old, h_new = _horizon(old["horizon"]), _horizon(new["horizon"])
        if h_old is not None and (h_new is None or h_new < (1 - tol["horizon_drop"]) * h_old):
            drifts.append(
                Drift(
                    "memory horizon", layer, h_old, h_new, f"may not drop by more than {100 * tol['horizon_drop']:.0f}%"
                )
            )
    return drifts


#: profile points more than this many decades below the profile's peak are not compared:
#: down there float32 gradients reach denormals, where hardware may flush them to zero
PROFILE_DECADES = 20.0


def _in_range(values: list, like: list | None = None) -> list:
    ref = like if like is not None else values
    finite = [v for v in ref if isinstance(v, float)]
    if not finite:
        return values
    floor = max(finite) - PROFILE_DECADES
    return [v for v, r in zip(values, ref) if not (isinstance(r, float) and r < floor) and r != "-inf"]


def _horizon(h):
    if h == "inf":
        return math.inf
    return h


def _close(a, b, tol: float) -> bool:
    """Equal within ``tol``; a NaN/Inf (None in the file) never passes, except 'zero'/'-inf' markers that match."""
    if isinstance(a, str) or isinstance(b, str):
        return a == b
    if a is None or b is None:
        return False
    return abs(a - b) <= tol


def _worst_step(a, b) -> int:
    best, worst = -1.0, 0
    for i, (x, y) in enumerate(zip(a, b)):
        d = math.inf if not isinstance(x, float) or not isinstance(y, float) else abs(x - y)
        if (x != y) and d > best:
            best, worst = d, i
    return worst


def _at(seq, i):
    return seq[i] if i < len(seq) else None


def gate_check(
    case_id: str, baseline: Baseline, fp: dict[str, Any], meta_now: dict[str, Any], settings: dict | None = None
) -> BaselineResult:
    """The gate's verdict for one case, as a :class:`BaselineResult`.

    A case whose run errored never matches; a baseline recorded under another seed,
    dtype or device is named as such, not shown as gradients that moved.
    """
    findings: list[Finding] = []
    if fp.get("verdict") == Verdict.ERROR:
        return BaselineResult(
            CheckName.BASELINE,
            Verdict.ERROR,
            [Finding("baseline_error", Verdict.ERROR, "the case errored: an error never matches a baseline")],
        )
    differ = [
        f"--{key} {baseline.meta[key]!r} there, {value!r} here"
        for key, value in (settings or {}).items()
        if key in baseline.meta and baseline.meta[key] != value
    ]
    if differ:
        findings.append(
            Finding(
                "baseline_settings",
                Verdict.ERROR,
                f"the baseline was recorded under other settings ({'; '.join(differ)}): rerun with the baseline's "
                "settings, or rewrite it with --update-baseline",
            )
        )
        return BaselineResult(CheckName.BASELINE, Verdict.ERROR, findings)
    stored = baseline.cases.get(case_id)
    if stored is None:
        findings.append(
            Finding(
                "baseline_missing",
                Verdict.FAIL,
                f"{case_id} is not in the baseline: run with --update-baseline to record it",
            )
        )
        return BaselineResult(CheckName.BASELINE, Verdict.FAIL, findings)
    if baseline.meta.get("torch") and baseline.meta.get("torch") != meta_now.get("torch"):
        findings.append(
            Finding(
                "baseline_versions",
                Verdict.WARN,
                f"the baseline was written with torch {baseline.meta['torch']}, this is {meta_now.get('torch')}: compared anyway",
            )
        )
    drifts = compare(stored, fp, baseline.tolerances)
    for d in drifts:
        findings.append(
            Finding("baseline_drift", Verdict.FAIL, d.message(), numbers={"quantity": d.quantity, "where": d.where})
        )
    if not drifts:
        findings.append(Finding("baseline_match", Verdict.NOTE, "matches the baseline"))
    return BaselineResult(CheckName.BASELINE, worst(f.verdict for f in findings), findings)

"""PNG figures of the gradient-flow diagnostics (needs the ``plot`` extra: matplotlib).

Three figures per recurrent case, drawn from the report's ``diagnostics`` alone:

- ``<case>-profile.png``: log-scale ‖dL/dh_t‖ over time per layer, and the propagation
  profile ‖∂L_T/∂h_(T-ℓ)‖ over the lag with its fitted decay line;
- ``<case>-heatmap.png``: layer × time heatmap of log10 ‖dL/dh_t‖;
- ``<case>-gates.png``: histograms of every gate's activations, saturation bands shaded.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from ..findings import CaseResult
from ..flowresults import Gates
from ..ids import case_id


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)


def _stem(case: CaseResult) -> str:
    """``m-case``, with the case's folder in it (``models_a_m-case``) when the file is not in the working directory:
    two same-named cases in different folders never overwrite each other's figures."""
    if not case.file:
        return case.name

    path = case_id(case).rsplit("::", 1)[0].removesuffix(".py")
    return f"{path.replace('/', '_').lstrip('._')}-{case.name}"


def plot_case(case: CaseResult, folder: Path) -> list[Path]:
    """Write the case's figures into ``folder``; return their paths (none if nothing was measured)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    d = case.diagnostics
    layers = d.layers
    if not layers:
        return []
    folder.mkdir(parents=True, exist_ok=True)
    stem = _safe(_stem(case))
    written = []

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.2))
    for layer in layers:
        prof = np.asarray(layer.profile, dtype=float)
        ax1.semilogy(np.arange(len(prof)), np.where(prof > 0, prof, np.nan), label=layer.name)
        p = np.asarray(layer.propagation, dtype=float)
        lags = np.arange(len(p))
        line = ax2.semilogy(lags, np.where(p > 0, p, np.nan), label=layer.name)
        if layer.rho and p.size and p[0] > 0:
            ax2.semilogy(
                lags,
                p[0] * layer.rho**lags,
                "--",
                color=line[0].get_color(),
                alpha=0.7,
                label=f"fit ρ̂={layer.rho:.3g}",
            )
    ax1.set(title=f"{case.name}: ‖dL/dh_t‖ (total, through the recurrence)", xlabel="time step t", ylabel="norm (log)")
    ax2.set(title=f"propagation ‖∂L_T/∂h_(T-ℓ)‖ — {d.gradient_flow}", xlabel="lag ℓ", ylabel="norm (log)")
    ax2.axhline(1e-3 * (layers[0].propagation[0] or 1), color="grey", lw=0.8, ls=":", label="1e-3 of start")
    for ax in (ax1, ax2):
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    written.append(folder / f"{stem}-profile.png")
    fig.savefig(written[-1], dpi=110)
    plt.close(fig)

    T = max(len(layer.profile) for layer in layers)
    grid = np.full((len(layers), T), np.nan)
    for i, layer in enumerate(layers):
        prof = np.asarray(layer.profile, dtype=float)
        with np.errstate(divide="ignore"):
            grid[i, : len(prof)] = np.where(prof > 0, np.log10(prof), np.nan)
    fig, ax = plt.subplots(figsize=(12, 1.2 + 0.45 * len(layers)))
    im = ax.imshow(grid, aspect="auto", cmap="viridis", interpolation="nearest")
    ax.set_yticks(range(len(layers)), [layer.name for layer in layers], fontsize=8)
    ax.set(xlabel="time step t", title=f"{case.name}: log10 ‖dL/dh_t‖ by layer and step")
    fig.colorbar(im, ax=ax, label="log10 norm")
    fig.tight_layout()
    written.append(folder / f"{stem}-heatmap.png")
    fig.savefig(written[-1], dpi=110)
    plt.close(fig)

    gated = [
        (layer.name, g, v) for layer in layers if isinstance(layer.gates, Gates) for g, v in layer.gates.gates.items()
    ]
    if gated:
        cols = min(4, len(gated))
        rows = -(-len(gated) // cols)
        fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.5 * rows), squeeze=False)
        for ax, (lname, gate, v) in zip(axes.ravel(), gated):
            edges = np.asarray(v.histogram.edges)
            counts = np.asarray(v.histogram.counts, dtype=float)
            ax.bar(edges[:-1], counts / max(counts.sum(), 1), width=np.diff(edges), align="edge", color="tab:blue")
            lo = -0.9 if edges[0] < 0 else 0.1
            ax.axvspan(edges[0], lo, color="red", alpha=0.12)
            ax.axvspan(0.9, 1.0, color="red", alpha=0.12)
            ax.set_title(f"{lname} gate {gate}: {100 * v.saturated:.0f}% saturated", fontsize=8)
            ax.tick_params(labelsize=7)
        for ax in axes.ravel()[len(gated) :]:
            ax.axis("off")
        fig.suptitle(f"{case.name}: gate activations (shaded: saturated)", fontsize=9)
        fig.tight_layout()
        written.append(folder / f"{stem}-gates.png")
        fig.savefig(written[-1], dpi=110)
        plt.close(fig)
    return written

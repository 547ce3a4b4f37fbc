"""Heatmaps of the class-conditional observation densities (the TRIM paper's Figure 5).

matplotlib is imported on first use (``pip install 'trim-pomdp[plots]'``); no global pyplot state is touched.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from trim_pomdp._internal.optional import require
from trim_pomdp.constants import CLASS_DESCRIPTIONS, HIDDEN_CLASSES
from trim_pomdp.exceptions import InvalidParameterError

__all__ = ["density_grid", "plot_class_densities", "plot_reliability"]


def density_grid(model: Any, resolution: int = 200, binned: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """The ``t >= 2`` class densities on a regular grid of ``(r, m)``.

    Parameters
    ----------
    model : ObservationModel
    resolution : int, default=200
        Cells per axis.
    binned : bool, default=False
        True: the piecewise-constant density of the bins (bin mass / bin area), read at the cell centres.

    Returns
    -------
    centers : ndarray of shape (k,)
        Cell centres on each axis.
    dens : ndarray of shape (3, k, k)
        ``dens[z, i_r, i_m]``.
    """
    if resolution < 2:
        raise InvalidParameterError(f"resolution must be >= 2, got {resolution}")
    c = (np.arange(resolution) + 0.5) / resolution
    if binned:  # the piecewise-constant density of the bins at the cell centres (any edges)
        re, me = model.r_edges, model.m_edges
        area = np.outer(np.diff(re), np.diff(me))
        ir = np.clip(np.searchsorted(re, c, side="right") - 1, 0, re.size - 2)
        im = np.clip(np.searchsorted(me, c, side="right") - 1, 0, me.size - 2)
        return c, (model.pair_probs / area[None])[:, ir][:, :, im]
    R, M = np.meshgrid(c, c, indexing="ij")
    dens = np.empty((3, resolution, resolution))
    r_u, m_u = (getattr(model, "_u", lambda x: x)(x) for x in (R, M))
    for z, kde in enumerate(model.pair_kdes):
        X = r_u.reshape(-1, 1) if model.r_only else np.column_stack([r_u.ravel(), m_u.ravel()])
        dens[z] = kde.pdf(X).reshape(resolution, resolution)
    return c, dens


def plot_class_densities(
    model: Any,
    path: str | Path | None = None,
    *,
    binned: bool = False,
    resolution: int = 200,
    log: bool = True,
    dpi: int = 150,
) -> Any:
    """Plot the S0/S1/S2 densities of ``(r_t, m_t)`` side by side.

    Parameters
    ----------
    model : ObservationModel
    path : str or Path, optional
        Write a PNG there and return the path; otherwise return the matplotlib ``Figure``.
    binned : bool, default=False
        Plot the bins the solver uses instead of the continuous KDE.
    resolution : int, default=200
    log : bool, default=True
        Colour by ``log10`` density (the densities span orders of magnitude).
    dpi : int, default=150

    Returns
    -------
    Path or matplotlib.figure.Figure
    """
    require("matplotlib", "plots", "plotting observation densities")
    from matplotlib.figure import Figure

    logit = getattr(model, "density_scale", "score") == "logit"
    dens = _logit_grid(model, resolution, binned) if logit else density_grid(model, resolution, binned)[1]
    fig = Figure(figsize=(13, 4.8), layout="constrained")
    axes = fig.subplots(1, 3, sharey=True)
    shown = np.log10(np.maximum(dens, 1e-6)) if log else dens
    vmin, vmax = float(shown.min()), float(shown.max())
    extent = (0.0, 1.0, 0.0, 1.0)
    images = []
    for z, ax in enumerate(axes):
        name = HIDDEN_CLASSES[z]
        image = ax.imshow(
            shown[z].T,
            origin="lower",
            extent=extent,
            aspect="equal",
            cmap="viridis",
            vmin=vmin,
            vmax=vmax,
            interpolation="nearest" if binned else "bilinear",
        )
        images.append(image)
        count = model.card.get("counts", {}).get(name)
        title = f"{name}: {CLASS_DESCRIPTIONS[name].split('(')[0].strip()}"
        ax.set_title(title + (f"\n({count} steps)" if count is not None else ""), fontsize=9)
        ax.set_xlabel("$r_t$ (PRM score of the newest step)" + (", logit scale" if logit else ""))
        if logit:
            ticks = np.array([0.001, 0.01, 0.1, 0.5, 0.9, 0.99, 0.999, 0.9999])
            pos = model._u(ticks)
            keep = (pos > 0) & (pos < 1)
            ax.set_xticks(pos[keep], [f"{t:g}" for t in ticks[keep]], fontsize=6, rotation=45)
            ax.set_yticks(pos[keep], [f"{t:g}" for t in ticks[keep]], fontsize=6)
    axes[0].set_ylabel("$m_t = \\min\\, r_{1:t-1}$")
    cbar = fig.colorbar(images[-1], ax=list(axes), shrink=0.85)
    cbar.set_label("log10 density" if log else "density")
    prm = str(model.card.get("prm", "PRM"))
    sim = " — SIMULATED PRM scores" if model.card.get("simulated") and "simulated" not in prm.lower() else ""
    fig.suptitle(f"Observation densities of (r_t, m_t), t ≥ 2, by hidden class ({prm}){sim}", fontsize=10)
    if path is None:
        return fig
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    return path


def _logit_grid(model: Any, resolution: int, binned: bool) -> np.ndarray:
    """The class densities on a regular grid of the model's own (logit) coordinate, ``(3, k, k)``."""
    c = (np.arange(resolution) + 0.5) / resolution
    if binned:
        re, me = model._u(model.r_edges), model._u(model.m_edges)
        area = np.outer(np.maximum(np.diff(re), 1e-12), np.maximum(np.diff(me), 1e-12))
        ir = np.clip(np.searchsorted(re, c, side="right") - 1, 0, re.size - 2)
        im = np.clip(np.searchsorted(me, c, side="right") - 1, 0, me.size - 2)
        return (model.pair_probs / area[None])[:, ir][:, :, im]
    U, V = np.meshgrid(c, c, indexing="ij")
    X = U.reshape(-1, 1) if model.r_only else np.column_stack([U.ravel(), V.ravel()])
    return np.stack([kde.pdf(X).reshape(resolution, resolution) for kde in model.pair_kdes])


def plot_reliability(
    reliability: dict[str, list[dict[str, Any]]], path: str | Path | None = None, dpi: int = 150
) -> Any:
    """Reliability diagram: observed frequency of a right final answer against the mean prediction, per bin.

    Parameters
    ----------
    reliability : dict
        Predictor name -> :func:`~trim_pomdp.observation_models.evaluate.reliability_table` rows (the
        ``reliability`` entry of ``evaluate_observations``' details).
    path : str or Path, optional
        Write a PNG there and return the path; otherwise return the ``Figure``.
    dpi : int, default=150
    """
    require("matplotlib", "plots", "plotting a reliability diagram")
    from matplotlib.figure import Figure

    fig = Figure(figsize=(9, 4.2), layout="constrained")
    ax, hist = fig.subplots(1, 2, width_ratios=(3, 2))
    ax.plot([0, 1], [0, 1], color="0.6", linestyle=":", label="calibrated")
    width = 1.0 / max(len(next(iter(reliability.values()), [])), 1)
    for k, (name, rows) in enumerate(reliability.items()):
        pts = [(r["mean_predicted"], r["observed"], r["n"]) for r in rows if r["n"]]
        if not pts:
            continue
        x, y, _ = (np.array(v, dtype=float) for v in zip(*pts, strict=True))
        ax.plot(x, y, marker="o", markersize=4, label=name)
        centres = np.array([0.5 * sum(r["bin"]) for r in rows])
        counts = np.array([r["n"] for r in rows])
        hist.bar(centres + (k - 1.5) * width / 5, counts, width=width / 5, label=name)
    ax.set_xlabel("predicted P(final answer right)")
    ax.set_ylabel("observed frequency")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.legend(fontsize=8)
    hist.set_yscale("log")
    hist.set_xlabel("predicted P(final answer right)")
    hist.set_ylabel("items per bin")
    fig.suptitle(
        "Reliability of the predicted probability of a right final answer (10 equal-width bins)", fontsize=10
    )
    if path is None:
        return fig
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    return path

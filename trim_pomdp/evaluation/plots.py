"""Figure-6-style cost–accuracy curves (matplotlib, loaded lazily; no global pyplot state).

Each policy's sweep points are drawn faintly and its Pareto frontier (from the origin ``(0, r_w)``, as the
metrics use it) as a line; M_w's and M_s's accuracies are horizontal references. :func:`curves_csv` writes the
same data. Policies are labelled with their registered names (:func:`trim_pomdp.registry.router_label`).
"""

from __future__ import annotations

import csv
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from trim_pomdp._internal.optional import require
from trim_pomdp.evaluation.tables import ordered_policies
from trim_pomdp.registry import router_label

__all__ = ["CURVE_COLUMNS", "curves_csv", "plot_curves"]

CURVE_COLUMNS = ("policy", "knob", "mean_tokens", "fraction", "accuracy", "pgr", "on_frontier")

_STYLE = {
    "random": ("tab:gray", ":"),
    "oracle": ("tab:olive", "--"),
    "automix": ("tab:purple", "-."),
    "thr": ("tab:blue", "-"),
    "agg": ("tab:green", "-"),
    "seq": ("tab:orange", "-"),
    "pomdp": ("tab:red", "-"),
}


def curves_csv(summary: Mapping[str, Any], path: str | os.PathLike) -> Path:
    """Write every sweep point of every policy (plus ``weak`` and ``strong``) as CSV; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    cs = summary["strong"]["mean_tokens"]
    with path.open("w", newline="") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(CURVE_COLUMNS)
        w.writerow(["weak", "", 0, 0, summary["weak"]["accuracy"], 0, True])
        w.writerow(["strong", "", cs, 1, summary["strong"]["accuracy"], 1, ""])
        for name in ordered_policies(summary):
            for p in summary["policies"][name]["points"]:
                knob = "" if p["knob"] is None else p["knob"]
                w.writerow(
                    [name, knob, p["mean_tokens"], p["fraction"], p["accuracy"], p["pgr"], p["on_frontier"]]
                )
    return path


def plot_curves(
    summary: Mapping[str, Any],
    path: str | os.PathLike | None = None,
    *,
    ax: Any = None,
    x: str = "fraction",
    title: str | None = None,
    note: str | None = None,
    max_fraction: float | None = None,
):
    """Cost–accuracy curves of a metrics summary.

    Parameters
    ----------
    summary : dict
        From :func:`trim_pomdp.evaluation.metrics.summarize`.
    path : path, optional
        Save the figure here (PNG by suffix). Only used when ``ax`` is None.
    ax : matplotlib Axes, optional
        Draw into it; otherwise a new :class:`matplotlib.figure.Figure` is made (no pyplot).
    x : {"fraction", "tokens"}
        Cost axis: fraction of M_s-alone tokens (``c``) or mean M_s tokens per query (``C̄``).
    title, note : str, optional
        Title; a footnote (e.g. "scores simulated").
    max_fraction : float, optional
        Clip the cost axis at this fraction of M_s tokens (default: the largest frontier cost × 1.3, at least
        0.3, at most 1.05).

    Returns
    -------
    matplotlib.axes.Axes
    """
    if x not in ("fraction", "tokens"):
        raise ValueError(f"x must be 'fraction' or 'tokens', got {x!r}")
    require("matplotlib", "plots", "cost–accuracy plots")
    from matplotlib.figure import Figure

    fig = None
    if ax is None:
        fig = Figure(figsize=(7.0, 4.6), dpi=110)
        ax = fig.add_subplot(1, 1, 1)
    cs = summary["strong"]["mean_tokens"]
    scale = 100.0 if x == "fraction" else cs
    r_w, r_s = summary["weak"]["accuracy"], summary["strong"]["accuracy"]
    front_max = 0.0
    for name in ordered_policies(summary):
        color, ls = _STYLE.get(name, (None, "-"))
        pts = sorted(summary["policies"][name]["points"], key=lambda p: p["fraction"])
        xs = [p["fraction"] * scale for p in pts]
        ys = [100 * p["accuracy"] for p in pts]
        ax.scatter(xs, ys, s=9, alpha=0.35, color=color, linewidths=0)
        fr = [p for p in pts if p["on_frontier"]]
        fx = [0.0] + [p["fraction"] * scale for p in fr]
        fy = [100 * r_w] + [100 * p["accuracy"] for p in fr]
        front_max = max(front_max, max(p["fraction"] for p in fr) if fr else 0.0)
        ax.plot(fx, fy, ls=ls, color=color, lw=1.8, label=router_label(name))
    ax.axhline(100 * r_w, color="black", lw=0.8, ls="--")
    ax.axhline(100 * r_s, color="black", lw=0.8, ls="-.")
    ax.text(0.0, 100 * r_w, " M_w alone", va="bottom", ha="left", fontsize=8)
    ax.text(0.0, 100 * r_s, " M_s alone", va="bottom", ha="left", fontsize=8)
    lim = max_fraction if max_fraction is not None else min(1.05, max(0.3, 1.3 * front_max))
    ax.set_xlim(0, lim * scale)
    ax.set_xlabel("M_s tokens (% of M_s alone)" if x == "fraction" else "M_s tokens per query")
    ax.set_ylabel("accuracy (%)")
    if title:
        ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    if fig is not None:
        if note:
            fig.text(0.01, 0.01, note, fontsize=6.5, ha="left", va="bottom", wrap=True)
            fig.subplots_adjust(bottom=0.17)
        if path is not None:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            fig.savefig(path)
    return ax

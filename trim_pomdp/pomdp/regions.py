"""Where in the belief simplex ``regenerate`` is optimal, per epoch: tables and simplex plots (matplotlib).

The grid of beliefs is :func:`trim_pomdp._internal.simplex.simplex_grid`; matplotlib is imported only to plot.
With difficulty classes the regions are shown per class ``d``: on the face of the belief simplex where the query is
known to be of class ``d`` (mass on ``S0|d``, ``S1`` and ``S2|d`` only).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from trim_pomdp._internal.optional import require
from trim_pomdp._internal.simplex import simplex_grid

__all__ = [
    "class_face",
    "format_region_table",
    "plot_regenerate_regions",
    "regenerate_region",
    "regenerate_region_table",
]


def class_face(policy: Any, beliefs: np.ndarray, difficulty: int = 0) -> np.ndarray:
    """Beliefs ``(n, 3)`` over ``(S0, S1, S2)`` placed on the face of difficulty class ``difficulty`` of the
    policy's belief simplex (the identity for a policy without difficulty classes)."""
    from trim_pomdp.pomdp.problem import hidden_layout

    B = np.asarray(beliefs, dtype=float)
    D = int(getattr(policy, "n_classes", 1))
    if D == 1:
        return B
    if not 0 <= int(difficulty) < D:
        raise ValueError(f"difficulty class must be in 0..{D - 1}, got {difficulty}")
    zc, dc, _ = hidden_layout(D)
    out = np.zeros((B.shape[0], zc.size))
    for z in range(3):
        k = int(np.flatnonzero((zc == z) & ((dc == int(difficulty)) | (dc < 0)))[0])
        out[:, k] = B[:, z]
    return out


def regenerate_region(
    policy: Any, t: int, bucket: int, final: bool = False, resolution: int = 40, difficulty: int = 0
) -> dict[str, Any]:
    """Summary of the regenerate region at context ``(t, bucket, final)`` (on class ``difficulty``'s face).

    Returns
    -------
    dict
        ``area``: fraction of simplex grid beliefs where ``regenerate`` is chosen; ``s2_threshold``: the
        smallest ``b(S2)`` on the edge ``b(S1) = 0`` (1001 points) from which on ``regenerate`` is chosen
        everywhere up to ``b(S2) = 1`` (``None`` if never, ``nan`` if the region on that edge is not an
        interval ending at S2).
    """
    B = simplex_grid(3, resolution)
    acts = policy.action_batch(t, bucket, final, class_face(policy, B, difficulty))
    s2 = np.linspace(0.0, 1.0, 1001)
    edge = np.stack([1 - s2, np.zeros_like(s2), s2], axis=1)
    ea = policy.action_batch(t, bucket, final, class_face(policy, edge, difficulty))
    if not ea.any():
        thr: float | None = None
    else:
        first = int(np.argmax(ea == 1))
        thr = float(s2[first]) if np.all(ea[first:] == 1) else float("nan")
    out = {
        "t": int(t),
        "bucket": int(bucket),
        "final": bool(final),
        "area": float(acts.mean()),
        "s2_threshold": thr,
    }
    if int(getattr(policy, "n_classes", 1)) > 1:
        out["difficulty"] = int(difficulty)
    return out


def regenerate_region_table(
    policy: Any,
    ts: Sequence[int] | None = None,
    buckets: Sequence[int] | None = None,
    final: bool = False,
    resolution: int = 40,
    difficulty: int = 0,
) -> list[dict[str, Any]]:
    """:func:`regenerate_region` for every epoch in ``ts`` and bucket in ``buckets`` (default: all of them)."""
    ts = range(1, policy.horizon + 1) if ts is None else ts
    buckets = range(policy.n_buckets) if buckets is None else buckets
    return [regenerate_region(policy, t, c, final, resolution, difficulty) for t in ts for c in buckets]


def format_region_table(rows: list[dict[str, Any]]) -> str:
    """Plain-text table: one line per epoch; per bucket ``c<k>`` the ``b(S2)`` threshold and the area in %."""
    if not rows:
        return "(empty)"
    buckets = sorted({r["bucket"] for r in rows})
    by = {(r["t"], r["bucket"]): r for r in rows}
    head = f"{'t':>3} |" + "|".join(f"{'c' + str(c) + ' b(S2)>= area':>19}" for c in buckets)
    lines = [head, "-" * len(head)]
    for t in sorted({r["t"] for r in rows}):
        cells = []
        for c in buckets:
            r = by.get((t, c))
            if r is None:
                cells.append(" " * 19)
                continue
            thr = r["s2_threshold"]
            ts = "never" if thr is None else ("n/a" if np.isnan(thr) else f"{thr:.3f}")
            cells.append(f"{ts:>12} {100 * r['area']:5.1f}%")
        lines.append(f"{t:>3} |" + "|".join(cells))
    return "\n".join(lines)


def plot_regenerate_regions(
    policy: Any,
    ts: Sequence[int] | None = None,
    bucket: int = 0,
    final: bool = False,
    resolution: int = 60,
    path: str | Path | None = None,
):
    """One simplex per epoch with the beliefs where ``regenerate`` is optimal (matplotlib, imported lazily).

    With difficulty classes, one row of simplices per class (the class's face of the belief simplex). Returns the
    figure; saves it to ``path`` when given.
    """
    require("matplotlib", "plots", "plotting regenerate regions")
    from matplotlib.figure import Figure

    ts = list(range(1, policy.horizon + 1)) if ts is None else list(ts)
    D = int(getattr(policy, "n_classes", 1))
    if D > 1:  # one row per class: a few epochs each
        ts = ts[:: max(1, len(ts) // 6)][:6]
    ncol = min(6, len(ts))
    nrow_one = (len(ts) + ncol - 1) // ncol
    nrow = nrow_one * D
    fig = Figure(figsize=(2.2 * ncol, 2.1 * nrow))
    B = simplex_grid(3, resolution)
    # S0 at bottom-left, S2 at bottom-right, S1 at the top
    x = B[:, 2] + 0.5 * B[:, 1]
    y = (np.sqrt(3) / 2) * B[:, 1]
    corners = np.array([[0, 0], [1, 0], [0.5, np.sqrt(3) / 2], [0, 0]])
    panels = [(d, k, t) for d in range(D) for k, t in enumerate(ts)]
    for d, k, t in panels:
        ax = fig.add_subplot(nrow, ncol, d * nrow_one * ncol + k + 1)
        acts = policy.action_batch(t, bucket, final, class_face(policy, B, d))
        ax.scatter(x[acts == 0], y[acts == 0], s=2, c="#c8d6e5", linewidths=0)
        ax.scatter(x[acts == 1], y[acts == 1], s=2, c="#d63031", linewidths=0)
        ax.plot(corners[:, 0], corners[:, 1], "k-", lw=0.6)
        ax.set_title(f"t = {t}" if D == 1 else f"class {d + 1}, t = {t}", fontsize=8)
        ax.set_aspect("equal")
        ax.axis("off")
        if k == 0:
            ax.text(-0.05, -0.08, "S0", fontsize=7)
            ax.text(0.95, -0.08, "S2", fontsize=7)
            ax.text(0.45, 0.9, "S1", fontsize=7)
    lam = getattr(policy, "lam", float("nan"))
    fig.suptitle(
        f"regenerate (red) by belief; bucket {bucket}, final={bool(final)}, λ={lam:g}",
        fontsize=9,
    )
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=130, bbox_inches="tight")
    return fig

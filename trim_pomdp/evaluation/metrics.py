"""The paper's cost–accuracy metrics (TRIM §5), pure numpy; definitions in ``docs/design.md`` ("Evaluation").

Definitions, for a query set Q, a policy π, M_w alone ("weak") and M_s alone ("strong"):

- cost of a query = M_s output tokens; ``C̄(π)`` = mean cost; ``c(π) = Σ C(q; π) / Σ C_s(q)`` — computed as
  ``C̄(π) / C̄_s``, identical when both are over the same queries (which :func:`summarize` checks);
- ``r(π)`` = accuracy; ``PGR(π) = (r(π) − r_w) / (r_s − r_w)``;
- ``CPT(x%)`` = the least cost at which the policy's cost–accuracy *frontier* reaches ``PGR ≥ x%``, in
  absolute tokens (``C̄``) and as a fraction of M_s's tokens (``c``);
- ``IBC(π) = (r(π) − r_w) / C̄(π)``, ``IBC_base = (r_s − r_w) / C̄_s``, so ``IBC/IBC_base = PGR / c``;
  ``ΔIBC`` at PGR level ``p`` is ``p / c(p) − 1`` with ``c(p)`` the frontier's normalised cost at ``p``,
  averaged over the 100 equal levels ``p = 0.01, 0.02, …, 1.00``.

Frontier convention (decided here):

- A sweep is a set of ``(cost, accuracy)`` points, one per knob value, in any order; nothing assumes accuracy
  grows with the knob. The Pareto frontier keeps, by ascending cost, each point whose accuracy *strictly*
  exceeds every cheaper point's (ties in cost keep the most accurate).
- The frontier starts at the origin ``(0, r_w)``: M_w alone is a free point every router reaches by never
  calling M_s (λ → ∞, threshold 0, budget 0). This is what reproduces the paper's numbers: the frontier
  through the paper's three TRIM-Thr CPT points gives ΔIBC 4.08 averaged over the 95 levels it reaches only
  when it starts at the origin (see ``tests/evaluation/test_metrics.py``). Points no better than ``r_w`` never
  enter the frontier.
- Between frontier points the curve is linear. A level above the frontier's highest PGR is *unreached*: its
  CPT is ``None`` and it is left out of the ΔIBC average (no extrapolation). Levels reached at zero cost (a
  point that beats M_w for free) have an unbounded ratio and are left out too.
- Comparisons: a policy whose frontier stops early reaches fewer levels, and the high levels it misses are the
  expensive ones, so its own-levels average flatters it. :func:`summarize` therefore also reports every
  policy's ΔIBC on the levels *all* its policies reach (``delta_ibc_common``) and, per pair of policies, both
  ΔIBCs on the levels the two reach (``pairwise``; :func:`delta_ibc_common`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from trim_pomdp.evaluation.records import RESERVED_POLICIES, Records
from trim_pomdp.exceptions import DataFormatError, InvalidParameterError

__all__ = [
    "CPT_LEVELS",
    "PGR_LEVELS",
    "Frontier",
    "cpt",
    "delta_ibc",
    "delta_ibc_common",
    "delta_ibc_levels",
    "frontier_cost_at",
    "pareto_frontier",
    "pgr",
    "summarize",
]

#: The 100 equal PGR levels of the ΔIBC average: 0.01, 0.02, …, 1.00.
PGR_LEVELS: np.ndarray = np.arange(1, 101) / 100.0

#: The CPT levels of the paper's tables, as keys of ``summary["policies"][name]["cpt"]``.
CPT_LEVELS: tuple[str, ...] = ("50", "80", "95")

#: Slack on "PGR ≥ level" so that a point measured at exactly a level (up to float rounding) reaches it.
_LEVEL_TOL = 1e-9


def pgr(accuracy: np.ndarray | float, weak_accuracy: float, strong_accuracy: float) -> np.ndarray | float:
    """Performance gap recovered, ``(r − r_w) / (r_s − r_w)``.

    Raises
    ------
    InvalidParameterError
        When ``r_s ≤ r_w`` (PGR is undefined: there is no gap to recover).
    """
    gap = float(strong_accuracy) - float(weak_accuracy)
    if not gap > 0:
        raise InvalidParameterError(
            f"PGR needs the strong model to beat the weak one, but r_s = {strong_accuracy:.4g} ≤ "
            f"r_w = {weak_accuracy:.4g}; check the 'weak'/'strong' records (or use more queries)"
        )
    return (np.asarray(accuracy, dtype=float) - float(weak_accuracy)) / gap


@dataclass(frozen=True)
class Frontier:
    """A Pareto frontier of a sweep: strictly increasing in both cost and PGR.

    Attributes
    ----------
    cost : ndarray, shape (k,)
        Cost of each frontier point (whatever unit was given: tokens or fraction of M_s tokens).
    pgr : ndarray, shape (k,)
        PGR of each frontier point.
    index : ndarray of int, shape (k,)
        Position of each frontier point in the input sweep; ``-1`` for the origin.
    """

    cost: np.ndarray
    pgr: np.ndarray
    index: np.ndarray

    @property
    def max_pgr(self) -> float:
        """The highest PGR the frontier reaches."""
        return float(self.pgr[-1])


def pareto_frontier(
    cost: Sequence[float] | np.ndarray, pgr_values: Sequence[float] | np.ndarray, *, origin: bool = True
) -> Frontier:
    """The Pareto frontier of a sweep of ``(cost, PGR)`` points.

    Parameters
    ----------
    cost, pgr_values : sequence of float, shape (n,)
        One point per knob value, in any order (the sweep need not be monotone).
    origin : bool, default True
        Start the frontier at ``(0, 0)`` — M_w alone, which every router reaches for free. Points with
        ``PGR ≤ 0`` then never enter the frontier.

    Returns
    -------
    Frontier
        Points sorted by ascending cost, each strictly more accurate than all cheaper ones.
    """
    c = np.asarray(cost, dtype=float).ravel()
    g = np.asarray(pgr_values, dtype=float).ravel()
    if c.shape != g.shape:
        raise InvalidParameterError(f"cost and pgr need the same length, got {c.shape[0]} and {g.shape[0]}")
    if not (np.isfinite(c).all() and np.isfinite(g).all()):
        raise InvalidParameterError("cost and pgr must be finite")
    if (c < 0).any():
        raise InvalidParameterError("costs must be ≥ 0")
    order = np.lexsort((-g, c))  # cost ascending, then PGR descending
    keep_c: list[float] = [0.0] if origin else []
    keep_g: list[float] = [0.0] if origin else []
    keep_i: list[int] = [-1] if origin else []
    best = 0.0 if origin else -math.inf
    for i in order:
        if g[i] > best:
            if keep_c and c[i] == keep_c[-1]:
                # same cost as the previous kept point (only the origin can be, at cost 0): the better one wins
                keep_c.pop(), keep_g.pop(), keep_i.pop()
            keep_c.append(float(c[i]))
            keep_g.append(float(g[i]))
            keep_i.append(int(i))
            best = g[i]
    if not keep_c:
        raise InvalidParameterError("an empty sweep has no frontier")
    return Frontier(np.asarray(keep_c), np.asarray(keep_g), np.asarray(keep_i, dtype=np.int64))


def frontier_cost_at(frontier: Frontier, levels: np.ndarray | float) -> np.ndarray:
    """The least frontier cost reaching each PGR level (linear interpolation); NaN where unreached.

    Parameters
    ----------
    frontier : Frontier
    levels : float or ndarray
        PGR levels (fractions, e.g. 0.95).
    """
    lv = np.atleast_1d(np.asarray(levels, dtype=float))
    out = np.interp(lv, frontier.pgr, frontier.cost)
    # at or below the first point the cheapest point already reaches the level
    out = np.where(lv <= frontier.pgr[0], frontier.cost[0], out)
    reached = lv <= frontier.pgr[-1] + _LEVEL_TOL
    out = np.where(reached, np.minimum(out, frontier.cost[-1]), np.nan)
    return out


def cpt(frontier: Frontier, level: float) -> float | None:
    """``CPT(level)``: the least frontier cost with ``PGR ≥ level``, or ``None`` if never reached."""
    v = float(frontier_cost_at(frontier, level)[0])
    return None if math.isnan(v) else v


def delta_ibc_levels(frontier_normalised: Frontier, levels: np.ndarray = PGR_LEVELS) -> np.ndarray:
    """Per-level ``ΔIBC(p) = p / c(p) − 1`` on a frontier whose cost is the normalised cost ``c``.

    NaN where the level is unreached or reached at zero cost (unbounded ratio).
    """
    lv = np.asarray(levels, dtype=float)
    c = frontier_cost_at(frontier_normalised, lv)
    with np.errstate(divide="ignore", invalid="ignore"):
        val = lv / c - 1.0
    return np.where(np.isfinite(c) & (c > 0), val, np.nan)


def delta_ibc(frontier_normalised: Frontier, levels: np.ndarray = PGR_LEVELS) -> tuple[float | None, int]:
    """ΔIBC averaged over the levels the frontier reaches.

    Returns
    -------
    value : float or None
        The mean of :func:`delta_ibc_levels` over the reached levels; ``None`` if none is reached.
    n_levels : int
        How many levels entered the average.
    """
    per = delta_ibc_levels(frontier_normalised, levels)
    ok = ~np.isnan(per)
    if not ok.any():
        return None, 0
    return float(per[ok].mean()), int(ok.sum())


def delta_ibc_common(
    frontiers_normalised: Sequence[Frontier], levels: np.ndarray = PGR_LEVELS
) -> tuple[list[float | None], int]:
    """ΔIBC of several frontiers averaged over the levels *every one of them* reaches.

    Returns
    -------
    values : list of float or None
        One mean per frontier over the common levels; ``None`` for all when no level is common.
    n_levels : int
        How many levels are common.
    """
    per = np.array([delta_ibc_levels(f, levels) for f in frontiers_normalised]).reshape(-1, len(levels))
    common = ~np.isnan(per).any(axis=0)
    if not common.any():
        return [None] * per.shape[0], 0
    return [float(v) for v in per[:, common].mean(axis=1)], int(common.sum())


# ---------------------------------------------------------------------- records → summary
def _group_stats(records: Records, idx: np.ndarray) -> tuple[float, float]:
    return float(records.correct[idx].mean()), float(records.strong_tokens[idx].mean())


def summarize(records: Records, *, incomplete: str = "error") -> dict[str, Any]:
    """All metrics of a set of per-query records, in the ``summary.json`` shape.

    Parameters
    ----------
    records : Records
        Must hold the reserved policies ``weak`` and ``strong`` (one group each, over the same queries) and
        any number of ``(policy, knob)`` groups of routers.
    incomplete : {"error", "drop"}, default "error"
        What to do with a router group whose query ids differ from ``strong``'s (a run killed mid-group, or
        failed queries): raise, or leave the group out (listed under ``"dropped"``).

    Returns
    -------
    dict
        ``{"weak": {"accuracy"}, "strong": {"accuracy", "mean_tokens"}, "n_queries", "levels",
        "policies": {name: {"delta_ibc", "levels_reached", "delta_ibc_common", "max_pgr", "cpt":
        {"50"|"80"|"95": {"tokens", "fraction"} | None}, "points": [{"knob", "accuracy", "mean_tokens",
        "fraction", "pgr", "on_frontier"}]}}, "common_levels", "pairwise": [{"policies": [a, b], "levels",
        "delta_ibc": [ΔIBC of a, of b]}], "dropped": [...]}``. ``delta_ibc`` averages over the levels the policy
        reaches itself, ``delta_ibc_common`` over the ``common_levels`` every policy reaches, ``pairwise`` over
        the levels both policies of each pair reach. ``None`` (JSON ``null``) marks a CPT level the policy never
        reaches (or no common level).

    Raises
    ------
    DataFormatError
        Missing reserved policies, duplicated ``(policy, knob, query_id)``, or mismatched query sets.
    """
    if incomplete not in ("error", "drop"):
        raise InvalidParameterError(f"incomplete must be 'error' or 'drop', got {incomplete!r}")
    groups = records.groups()
    ref = _reserved_keys(groups)
    ids = _query_sets(records, groups)
    qset, r_w, r_s, cs_mean = _references(records, groups, ids, ref)
    by_policy: dict[str, list[tuple[float | None, np.ndarray]]] = {}
    dropped: list[dict[str, Any]] = []
    for key, idx in groups.items():
        name, knob = key
        if name in RESERVED_POLICIES:
            continue
        if np.array_equal(ids[key], qset):
            by_policy.setdefault(name, []).append((knob, idx))
            continue
        if incomplete == "error":
            missing = np.setdiff1d(qset, ids[key]).shape[0]
            extra = np.setdiff1d(ids[key], qset).shape[0]
            raise DataFormatError(
                f"policy {name!r} knob {knob!r} covers {ids[key].shape[0]} queries ({missing} of the 'strong' "
                f"queries missing, {extra} extra); every group needs the same queries as 'strong' "
                "(pass incomplete='drop' / --drop-incomplete to leave such groups out)"
            )
        dropped.append({"policy": name, "knob": knob, "n_queries": int(ids[key].shape[0])})
    policies: dict[str, dict[str, Any]] = {}
    frontiers: dict[str, Frontier] = {}
    for name, items in by_policy.items():
        policies[name], frontiers[name] = _policy_summary(records, items, r_w, r_s, cs_mean)
    names = list(policies)
    common, n_common = delta_ibc_common([frontiers[n] for n in names])
    for name, v in zip(names, common, strict=True):
        policies[name]["delta_ibc_common"] = v
    pairwise = []
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            vals, n_lv = delta_ibc_common([frontiers[a], frontiers[b]])
            pairwise.append({"policies": [a, b], "levels": n_lv, "delta_ibc": vals})
    return {
        "weak": {"accuracy": r_w},
        "strong": {"accuracy": r_s, "mean_tokens": cs_mean},
        "n_queries": int(qset.shape[0]),
        "levels": int(PGR_LEVELS.shape[0]),
        "policies": policies,
        "common_levels": n_common,
        "pairwise": pairwise,
        "dropped": dropped,
    }


def _query_sets(records: Records, groups: dict[Any, np.ndarray]) -> dict[Any, np.ndarray]:
    """The sorted query ids of every group; a group that repeats a query is an error."""
    ids: dict[tuple[str, float | None], np.ndarray] = {}
    for key, idx in groups.items():
        q = records.query_id[idx]
        uq = np.unique(q)
        if uq.shape[0] != q.shape[0]:
            raise DataFormatError(f"records of policy {key[0]!r} knob {key[1]!r} repeat a query_id")
        ids[key] = uq
    return ids


def _reserved_keys(groups: dict[Any, np.ndarray]) -> dict[str, Any]:
    """The group keys of ``weak`` and ``strong``: exactly one each."""
    ref: dict[str, Any] = {}
    for name in RESERVED_POLICIES:
        keys = [k for k in groups if k[0] == name]
        if not keys:
            raise DataFormatError(
                f"records lack the reserved policy {name!r} (M_{name[0]} alone); metrics need both 'weak' and "
                "'strong' records over the same queries"
            )
        if len(keys) > 1:
            raise DataFormatError(
                f"reserved policy {name!r} must have a single (empty) knob, found {len(keys)}"
            )
        ref[name] = keys[0]
    return ref


def _references(
    records: Records, groups: dict[Any, np.ndarray], ids: dict[Any, np.ndarray], ref: dict[str, Any]
) -> tuple[np.ndarray, float, float, float]:
    """``(query ids, r_w, r_s, C̄_s)`` from the reserved ``weak`` and ``strong`` groups, checked."""
    qset = ids[ref["strong"]]
    if not np.array_equal(ids[ref["weak"]], qset):
        raise DataFormatError("the 'weak' and 'strong' records must cover the same query ids")
    r_w, _ = _group_stats(records, groups[ref["weak"]])
    r_s, cs_mean = _group_stats(records, groups[ref["strong"]])
    if not cs_mean > 0:
        raise DataFormatError("the 'strong' records spend no tokens; C_s must be > 0 to normalise costs")
    pgr(r_s, r_w, r_s)  # raises a clear error when r_s <= r_w
    return qset, r_w, r_s, cs_mean


def _policy_summary(
    records: Records, items: list[tuple[float | None, np.ndarray]], r_w: float, r_s: float, cs_mean: float
) -> tuple[dict[str, Any], Frontier]:
    """ΔIBC, CPT levels and the sweep points (with their place on the frontier) of one policy, and the frontier."""
    items.sort(key=lambda kv: (kv[0] is None, kv[0] if kv[0] is not None else 0.0))
    acc = np.array([_group_stats(records, idx)[0] for _, idx in items])
    tok = np.array([_group_stats(records, idx)[1] for _, idx in items])
    frac = tok / cs_mean
    g = np.asarray(pgr(acc, r_w, r_s))
    front = pareto_frontier(frac, g, origin=True)
    on_front = np.zeros(len(items), dtype=bool)
    on_front[front.index[front.index >= 0]] = True
    dibc, n_lv = delta_ibc(front)
    cpts: dict[str, Any] = {}
    for lv in CPT_LEVELS:
        f = cpt(front, int(lv) / 100.0)
        cpts[lv] = None if f is None else {"tokens": f * cs_mean, "fraction": f}
    summary = {
        "delta_ibc": dibc,
        "levels_reached": n_lv,
        "delta_ibc_common": None,  # filled in by summarize: over the levels every policy reaches
        "max_pgr": front.max_pgr,
        "cpt": cpts,
        "points": [
            {
                "knob": knob,
                "accuracy": float(a),
                "mean_tokens": float(t),
                "fraction": float(f),
                "pgr": float(p),
                "on_frontier": bool(o),
            }
            for (knob, _), a, t, f, p, o in zip(items, acc, tok, frac, g, on_front, strict=True)
        ],
    }
    return summary, front

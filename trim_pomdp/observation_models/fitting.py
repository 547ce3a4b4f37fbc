"""Fitting the class-conditional observation densities, and measuring them on held-out items.

For each hidden class ``z``, :func:`fit_class_densities` fits a reflected KDE of ``(r, m)`` (of ``r`` alone when
``r_only``) on the class's steps with ``t >= 2``, and a 1-D reflected KDE of ``r`` for ``t = 1`` on the class's
first steps, or on all its steps when it has fewer than ``min_first_steps`` first steps (see
:mod:`trim_pomdp.observation_models.observation` for why). Their exact bin masses are the observation
probabilities. The class of a step is its label (step supervision) or, with ``class_weights``, a probability per
class (the posterior of outcome supervision, :mod:`~trim_pomdp.observation_models.outcome_em`): every step then
enters every class's density with its weight. :func:`held_out_log_likelihood` scores each class's ``t >= 2``
density on items it was not fitted on, and :func:`fit_observation_model` does both and records the second in the
model's card. :func:`chain_statistics` measures the two numbers of the hidden chain that labelled items give
(``p_w`` and the chance that a final answer is right after an error), which the card records beside the
densities.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from trim_pomdp.constants import HIDDEN_CLASSES
from trim_pomdp.exceptions import InvalidParameterError
from trim_pomdp.observation_models.binning import (
    BIN_SCHEMES,
    DEFAULT_BINS,
    DEFAULT_DENSITY_SCALE,
    DEFAULT_LOGIT_EPS,
    DEFAULT_SCALE_EPS,
    make_edges,
    to_density_scale,
)
from trim_pomdp.observation_models.kde import ReflectedKDE
from trim_pomdp.observation_models.tables import StepArrays, table_arrays

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from trim_pomdp.datasets.scored import ScoredItem
    from trim_pomdp.observation_models.observation import ObservationModel

__all__ = [
    "MAX_STORED",
    "MIN_BANDWIDTH",
    "MIN_FIRST_STEPS",
    "ClassDensities",
    "chain_statistics",
    "check_bandwidth",
    "fit_class_densities",
    "fit_observation_model",
    "held_out_binned_log_likelihood",
    "held_out_log_likelihood",
    "scale_eps_for",
]

#: First steps a class needs for its own ``t = 1`` density.
MIN_FIRST_STEPS = 50
#: Training points stored per density in an artifact (a seeded subsample beyond that).
MAX_STORED = 50_000
#: The smallest numeric bandwidth accepted (in score units; the floor of the rule-of-thumb bandwidths too).
MIN_BANDWIDTH = 1e-4


def check_bandwidth(bandwidth: Any) -> str | float:
    """``bandwidth`` if it is a rule name or a number in ``[MIN_BANDWIDTH, 1]``, else :class:`InvalidParameterError`.

    A kernel narrower than :data:`MIN_BANDWIDTH` turns the density into a histogram of the training points:
    bins that no training point falls in get probability 0 (or underflow to it), and a policy solved on such a
    model trusts observations it has never seen as proof of a class.
    """
    if isinstance(bandwidth, str):
        if bandwidth not in ("scott", "silverman", "cv"):
            raise InvalidParameterError(
                f"bandwidth must be scott, silverman, cv or a number, got {bandwidth!r}"
            )
        return bandwidth
    try:
        value = float(bandwidth)
    except (TypeError, ValueError):
        raise InvalidParameterError(
            f"bandwidth must be scott, silverman, cv or a number, got {bandwidth!r}"
        ) from None
    if isinstance(bandwidth, bool) or not MIN_BANDWIDTH <= value <= 1.0:
        raise InvalidParameterError(
            f"a numeric bandwidth must lie in [{MIN_BANDWIDTH:g}, 1] (kernel s.d. in score units), got {bandwidth!r}: "
            "narrower kernels make a histogram with empty bins of probability 0"
        )
    return value


@dataclass
class ClassDensities:
    """What :func:`fit_class_densities` returns: bin probabilities, the fitted densities and card entries."""

    r_edges: np.ndarray
    m_edges: np.ndarray
    pair_probs: np.ndarray
    first_probs: np.ndarray
    pair_kdes: list[ReflectedKDE] = field(default_factory=list)
    first_kdes: list[ReflectedKDE] = field(default_factory=list)
    card: dict[str, Any] = field(default_factory=dict)


def _class_mask(tab: StepArrays, weights: np.ndarray | None, c: int) -> tuple[np.ndarray, np.ndarray | None]:
    """The steps of class ``c`` and their weights (all steps with a positive weight under soft classes)."""
    if weights is None:
        return tab.z == c, None
    return weights[:, c] > 0, weights[:, c]


def _pair_density(
    tab: StepArrays,
    c: int,
    bandwidth: Any,
    r_only: bool,
    random_state: int,
    weights: np.ndarray | None = None,
) -> ReflectedKDE:
    """The ``t >= 2`` density of class ``c``: a KDE of ``(r, m)``, or of ``r`` when ``r_only``."""
    in_class, w = _class_mask(tab, weights, c)
    mask = in_class & (tab.t >= 2)
    if mask.sum() < 2:
        raise InvalidParameterError(
            f"class {HIDDEN_CLASSES[c]} has {int(mask.sum())} steps with t >= 2; at least 2 are needed to fit "
            "its density. Use more items (all ProcessBench splits give thousands per class)."
        )
    groups = tab.item_index[mask] if tab.item_index is not None else None
    X = tab.r[mask] if r_only else np.column_stack([tab.r[mask], tab.m[mask]])
    kde = ReflectedKDE(bandwidth=bandwidth, random_state=random_state)
    return kde.fit(X, groups=groups, sample_weight=None if w is None else w[mask])


def _first_density(
    tab: StepArrays,
    c: int,
    bandwidth: Any,
    min_first_steps: int,
    random_state: int,
    weights: np.ndarray | None = None,
    source_override: str | None = None,
) -> tuple[ReflectedKDE, str]:
    """The ``t = 1`` density of ``r`` for class ``c`` and a description of the steps it was fitted on."""
    in_class, w = _class_mask(tab, weights, c)
    first = in_class & (tab.t == 1)
    n_first = float(first.sum() if w is None else w[first].sum())  # expected first steps under soft classes
    use_first = n_first >= max(min_first_steps, 2) and first.sum() >= 2
    if source_override is not None:
        use_first = source_override == "first"
    if use_first:
        source, mask = "first steps (t = 1)", first
    else:
        source, mask = f"all steps of the class (only {n_first:g} first steps)", in_class
    groups = tab.item_index[mask] if tab.item_index is not None else None
    kde = ReflectedKDE(bandwidth=bandwidth, random_state=random_state)
    kde.fit(tab.r[mask], groups=groups, sample_weight=None if w is None else w[mask])
    return kde, source


def _class_bandwidth(
    bandwidth: Any, bandwidths: Mapping[str, Mapping[str, Any]] | None, name: str, kind: str
) -> Any:
    if bandwidths is not None and name in bandwidths and kind in bandwidths[name]:
        return [float(x) for x in bandwidths[name][kind]]
    return bandwidth


def _axis_edges(tab: StepArrays, n: int, bins: str, logit_eps: float) -> tuple[np.ndarray, np.ndarray]:
    """The ``r`` and ``m`` edges of the scheme ``bins`` (quantiles: of ``r`` over all steps, ``m`` over t >= 2)."""
    if bins not in BIN_SCHEMES:
        raise InvalidParameterError(f"bins must be one of {BIN_SCHEMES}, got {bins!r}")
    r_edges = make_edges(bins, n, tab.r, eps=logit_eps)
    m_edges = make_edges(bins, n, tab.m[tab.t >= 2], eps=logit_eps) if bins == "quantile" else r_edges
    return r_edges, m_edges


def fit_class_densities(
    table: Any,
    n_bins: int = 20,
    bandwidth: str | float = "scott",
    r_only: bool = False,
    *,
    bins: str = DEFAULT_BINS,
    logit_eps: float = DEFAULT_LOGIT_EPS,
    min_first_steps: int = MIN_FIRST_STEPS,
    random_state: int = 0,
    class_weights: Any = None,
    bandwidths: Mapping[str, Mapping[str, Any]] | None = None,
    first_sources: Mapping[str, str] | None = None,
    density_scale: str = DEFAULT_DENSITY_SCALE,
    scale_eps: float = DEFAULT_SCALE_EPS,
) -> ClassDensities:
    """Fit the three classes' densities and their exact bin masses (the parameters of :meth:`ObservationModel.fit`).

    With ``r_only``, ``pair_probs[z]`` is ``P(r-bin | z) / n`` in every ``m``-bin, so that the model ignores ``m``
    while keeping the same observation space.

    Parameters
    ----------
    class_weights : array-like of shape (n_steps, 3), optional
        Soft classes: the probability of each class per step (rows summing to 1); default the table's ``z``.
    bandwidths : mapping, optional
        Fixed bandwidths per class and density, ``{"S0": {"pair": [h_r, h_m], "first": [h]}, ...}`` (the card's
        ``bandwidths``); classes or densities left out use ``bandwidth``.
    first_sources : mapping, optional
        Per class, ``"first"`` or ``"all"``: fit its ``t = 1`` density on its first steps or on all its steps,
        instead of deciding by ``min_first_steps``.
    density_scale : {"score", "logit"}, default "score"
        The coordinate the densities are fitted in (:func:`~trim_pomdp.observation_models.binning.to_density_scale`;
        bandwidths are in that coordinate), with ``scale_eps``.

    Raises
    ------
    InvalidParameterError
        A bad ``n_bins``, ``bins`` or ``bandwidth``, an invalid table
        (:func:`~trim_pomdp.observation_models.tables.table_arrays`), bad ``class_weights``, or a class with fewer
        than 2 steps at ``t >= 2``.
    """
    if isinstance(n_bins, bool) or not isinstance(n_bins, (int, np.integer)) or n_bins < 1:
        raise InvalidParameterError(f"n_bins must be a positive int, got {n_bins!r}")
    bandwidth = check_bandwidth(bandwidth)
    tab = table_arrays(table)
    weights = _check_class_weights(class_weights, len(tab.r))
    n = int(n_bins)
    r_edges, m_edges = _axis_edges(tab, n, bins, logit_eps)
    out = ClassDensities(r_edges, m_edges, np.zeros((3, n, n)), np.zeros((3, n)))
    score_tab = tab
    if density_scale != "score":
        scale_eps = scale_eps_for([r_edges, m_edges], scale_eps)
    tab = StepArrays(
        to_density_scale(tab.r, density_scale, scale_eps),
        to_density_scale(tab.m, density_scale, scale_eps),
        tab.z,
        tab.t,
        tab.item_index,
    )
    re_u = to_density_scale(r_edges, density_scale, scale_eps)
    me_u = to_density_scale(m_edges, density_scale, scale_eps)
    used: dict[str, dict[str, list[float]]] = {}
    first_source: dict[str, str] = {}
    for c, name in enumerate(HIDDEN_CLASSES):
        bw = _class_bandwidth(bandwidth, bandwidths, name, "pair")
        kde = _pair_density(tab, c, bw, r_only, random_state, weights)
        masses = kde.bin_masses(re_u if r_only else [re_u, me_u])
        if r_only:
            masses = np.repeat((masses / masses.sum())[:, None], n, axis=1) / n
        out.pair_probs[c] = masses / masses.sum()
        fbw = _class_bandwidth(bandwidth, bandwidths, name, "first")
        override = None if first_sources is None else first_sources.get(name)
        fkde, first_source[name] = _first_density(
            tab, c, fbw, min_first_steps, random_state, weights, override
        )
        fmass = fkde.bin_masses(re_u)
        out.first_probs[c] = fmass / fmass.sum()
        out.pair_kdes.append(kde)
        out.first_kdes.append(fkde)
        used[name] = {"pair": kde.bandwidth_.tolist(), "first": fkde.bandwidth_.tolist()}
    out.card = _density_card(score_tab, weights, n, r_only, bandwidth, used, min_first_steps, first_source)
    out.card["density_scale"] = {
        "kind": density_scale,
        **({"eps": float(scale_eps)} if density_scale != "score" else {}),
    }
    out.card["bins"] = {"scheme": bins, **({"eps": float(logit_eps)} if bins == "logit" else {})}
    out.card["bins"].update(r_edges=r_edges.tolist(), m_edges=m_edges.tolist())
    return out


def scale_eps_for(edges: Sequence[np.ndarray], scale_eps: float) -> float:
    """``scale_eps``, lowered when needed so that every inner bin edge lies inside ``(eps, 1 - eps)``.

    A bin entirely within ``eps`` of 0 or 1 would be squeezed onto a face of the logit scale and get mass 0,
    although scores can fall in it.
    """
    inner = np.concatenate([np.asarray(e, dtype=float)[1:-1] for e in edges])
    if inner.size == 0:
        return float(scale_eps)
    return float(min(scale_eps, 0.5 * inner.min(), 0.5 * (1.0 - inner.max())))


def _check_class_weights(class_weights: Any, n: int) -> np.ndarray | None:
    if class_weights is None:
        return None
    w = np.asarray(class_weights, dtype=float)
    if w.shape != (n, 3) or not np.all(np.isfinite(w)) or np.any(w < 0):
        raise InvalidParameterError(
            f"class_weights must be a finite non-negative ({n}, 3) array, got {w.shape}"
        )
    if not np.allclose(w.sum(axis=1), 1.0, atol=1e-6):
        raise InvalidParameterError("class_weights rows must sum to 1 (a probability per class)")
    return w


def _density_card(
    tab: StepArrays,
    weights: np.ndarray | None,
    n: int,
    r_only: bool,
    bandwidth: Any,
    used: dict[str, dict[str, list[float]]],
    min_first_steps: int,
    first_source: dict[str, str],
) -> dict[str, Any]:
    """Card entries of the fit: counts per class (expected counts under soft classes), bandwidths, sources."""

    def count(mask: np.ndarray, c: int) -> float | int:
        if weights is None:
            return int(np.sum(mask & (tab.z == c)))
        return round(float(weights[mask, c].sum()), 3)

    every = np.ones(len(tab.r), dtype=bool)
    return {
        "n_bins": n,
        "r_only": bool(r_only),
        "bandwidth_rule": bandwidth if isinstance(bandwidth, str) else float(bandwidth),
        "bandwidths": used,
        "counts": {name: count(every, c) for c, name in enumerate(HIDDEN_CLASSES)},
        "counts_t_ge_2": {name: count(tab.t >= 2, c) for c, name in enumerate(HIDDEN_CLASSES)},
        "counts_t_eq_1": {name: count(tab.t == 1, c) for c, name in enumerate(HIDDEN_CLASSES)},
        "min_first_steps": int(min_first_steps),
        "first_step_source": first_source,
    }


def chain_statistics(items: Sequence[ScoredItem]) -> dict[str, Any]:
    """``p_w`` and ``rho`` as labelled items measure them, for an observation model's card.

    ``p_w = #S0 / (#S0 + #S2)``, the next-step accuracy given a correct prefix (the TRIM estimator); ``rho`` is the
    share of solutions with an error whose final answer is right all the same (over the items whose verdict is
    known; None when there are none). Items whose labels are placeholders are left out.
    """
    from trim_pomdp.datasets.processbench import step_classes

    s0 = s2 = 0
    err = err_right = 0
    for si in items:
        if not si.step_labels_known:
            continue
        z = step_classes(si.item.label, len(si.item.steps))
        s0 += int(np.sum(z == 0))
        s2 += int(np.sum(z == 2))
        if si.item.label >= 0 and si.final_answer_correct_known:
            err += 1
            err_right += bool(si.item.final_answer_correct)
    return {
        "p_w": s0 / (s0 + s2) if s0 + s2 else None,
        "rho": err_right / err if err else None,
        "chain_counts": {"S0": s0, "S2": s2, "erroneous_items": err, "erroneous_items_right": err_right},
        "chain_source": "step labels of the fitted items (p_w = S0 / (S0 + S2); rho = P(final answer right | error))",
    }


def held_out_log_likelihood(
    table: Any,
    n_folds: int = 5,
    bandwidth: str | float = "scott",
    r_only: bool = False,
    seed: int = 0,
) -> dict[str, float]:
    """Mean held-out log-density per step of each class's ``t >= 2`` density, with folds by item.

    Items (``table.item_index``) are split into ``n_folds`` folds; each fold's steps are scored under the
    densities fitted on the other folds. Returns ``{"S0": …, "S1": …, "S2": …}`` in nats per step (of a 2-D
    density unless ``r_only``).
    """
    from sklearn.model_selection import GroupKFold

    tab = table_arrays(table)
    if tab.item_index is None:
        raise InvalidParameterError("held-out log-likelihood by item needs table.item_index")
    later = tab.t >= 2
    items = np.unique(tab.item_index[later])
    if items.size < n_folds:
        raise InvalidParameterError(f"{n_folds}-fold CV by item needs >= {n_folds} items, got {items.size}")
    rng = np.random.default_rng(seed)
    perm = rng.permutation(items)
    fold_of_item = dict(zip(perm.tolist(), (np.arange(perm.size) % n_folds).tolist(), strict=True))
    groups = np.array([fold_of_item.get(i, -1) for i in tab.item_index.tolist()])
    out: dict[str, float] = {}
    for c, name in enumerate(HIDDEN_CLASSES):
        mask = later & (tab.z == c)
        X = tab.r[mask][:, None] if r_only else np.column_stack([tab.r[mask], tab.m[mask]])
        g = groups[mask]
        total, count = 0.0, 0
        for train, test in GroupKFold(n_splits=n_folds).split(X, groups=g):
            if train.size < 2 or test.size == 0:
                continue
            kde = ReflectedKDE(bandwidth=bandwidth).fit(X[train])
            total += float(np.sum(kde.score_samples(X[test])))
            count += test.size
        out[name] = total / count if count else float("nan")
    return out


def held_out_binned_log_likelihood(
    table: Any, n_folds: int = 5, seed: int = 0, **fit: Any
) -> dict[str, float]:
    """Mean held-out log-density per step of each class's binned ``t >= 2`` observation, folds by item.

    The binned density is the bin's probability over its area on the scores (``P(r-bin, m-bin | z) / (w_r w_m)``;
    ``r``'s bin width alone with ``r_only``), so models with different bins or density scales are compared on the
    same footing. Each fold's steps are scored under :func:`fit_class_densities` (``**fit``) fitted on the other
    folds. Returns ``{"S0": …, "S1": …, "S2": …}`` in nats per step.
    """
    tab = table_arrays(table)
    if tab.item_index is None:
        raise InvalidParameterError("held-out log-likelihood by item needs table.item_index")
    items = np.unique(tab.item_index)
    if items.size < n_folds:
        raise InvalidParameterError(f"{n_folds}-fold CV by item needs >= {n_folds} items, got {items.size}")
    perm = np.random.default_rng(seed).permutation(items)
    fold_of = dict(zip(perm.tolist(), (np.arange(perm.size) % n_folds).tolist(), strict=True))
    fold = np.array([fold_of[i] for i in tab.item_index.tolist()])
    r_only = bool(fit.get("r_only", False))
    totals, counts = np.zeros(3), np.zeros(3)
    for k in range(n_folds):
        train, test = fold != k, (fold == k) & (tab.t >= 2)
        sub = StepArrays(tab.r[train], tab.m[train], tab.z[train], tab.t[train], tab.item_index[train])
        dens = fit_class_densities(sub, random_state=seed, **fit)
        n = dens.r_edges.size - 1
        ir = np.clip(np.searchsorted(dens.r_edges, tab.r[test], side="right") - 1, 0, n - 1)
        im = np.clip(np.searchsorted(dens.m_edges, tab.m[test], side="right") - 1, 0, n - 1)
        wr, wm = np.diff(dens.r_edges)[ir], np.diff(dens.m_edges)[im]
        z = tab.z[test]
        if r_only:
            p = dens.pair_probs.sum(axis=2)[z, ir] / wr
        else:
            p = dens.pair_probs[z, ir, im] / (wr * wm)
        logp = np.log(np.maximum(p, 1e-300))
        totals += np.bincount(z, weights=logp, minlength=3)
        counts += np.bincount(z, minlength=3)
    return {
        name: float(totals[c] / counts[c]) if counts[c] else float("nan")
        for c, name in enumerate(HIDDEN_CLASSES)
    }


def fit_observation_model(
    table: Any,
    *,
    n_bins: int = 20,
    bandwidth: str | float = "scott",
    r_only: bool = False,
    bins: str = DEFAULT_BINS,
    logit_eps: float = DEFAULT_LOGIT_EPS,
    density_scale: str = DEFAULT_DENSITY_SCALE,
    scale_eps: float = DEFAULT_SCALE_EPS,
    cv_folds: int = 5,
    seed: int = 0,
    card: Mapping[str, Any] | None = None,
) -> ObservationModel:
    """Fit an :class:`ObservationModel` and, with ``cv_folds >= 2``, record its held-out log-likelihood.

    What ``trim-pomdp fit-observations`` runs once it has the scored steps.

    Parameters
    ----------
    table : StepTable-like
        The scored steps (:func:`~trim_pomdp.datasets.scored.step_table`).
    n_bins, bandwidth, r_only, bins, logit_eps, density_scale, scale_eps
        See :meth:`ObservationModel.fit`.
    cv_folds : int, default=5
        Folds by item of :func:`held_out_binned_log_likelihood`, stored in the card as ``held_out_loglik``; below 2,
        none is computed.
    seed : int, default=0
        Seed of the stored-points subsample and of the folds.
    card : mapping, optional
        Card entries describing the data (PRM, source, splits, command, ``simulated`` ...).
    """
    # imported here: observation.py imports this module for ObservationModel.fit
    from trim_pomdp.observation_models.observation import ObservationModel

    model = ObservationModel.fit(
        table,
        n_bins=n_bins,
        bandwidth=bandwidth,
        r_only=r_only,
        bins=bins,
        logit_eps=logit_eps,
        density_scale=density_scale,
        scale_eps=scale_eps,
        card=card,
        random_state=seed,
    )
    if cv_folds >= 2:
        held = held_out_binned_log_likelihood(
            table,
            n_folds=cv_folds,
            seed=seed,
            n_bins=n_bins,
            bandwidth=bandwidth,
            r_only=r_only,
            bins=bins,
            logit_eps=logit_eps,
            density_scale=density_scale,
            scale_eps=scale_eps,
        )
        model.card["held_out_loglik"] = {
            "folds": cv_folds,
            "by": "item",
            "density": "binned: bin probability / bin area on the scores, t >= 2",
            "nats_per_step": held,
        }
    return model

"""Fitting the class-conditional observation densities, and measuring them on held-out items.

For each hidden class ``z``, :func:`fit_class_densities` fits a reflected KDE of ``(r, m)`` (of ``r`` alone when
``r_only``) on the class's steps with ``t >= 2``, and a 1-D reflected KDE of ``r`` for ``t = 1`` on the class's
first steps, or on all its steps when it has fewer than ``min_first_steps`` first steps (see
:mod:`trim_pomdp.observation_models.observation` for why). Their exact bin masses are the observation
probabilities. :func:`held_out_log_likelihood` scores each class's ``t >= 2`` density on items it was not fitted
on, and :func:`fit_observation_model` does both and records the second in the model's card.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from trim_pomdp.constants import HIDDEN_CLASSES
from trim_pomdp.exceptions import InvalidParameterError
from trim_pomdp.observation_models.binning import uniform_edges
from trim_pomdp.observation_models.kde import ReflectedKDE
from trim_pomdp.observation_models.tables import StepArrays, table_arrays

if TYPE_CHECKING:
    from collections.abc import Mapping

    from trim_pomdp.observation_models.observation import ObservationModel

__all__ = [
    "MAX_STORED",
    "MIN_FIRST_STEPS",
    "ClassDensities",
    "fit_class_densities",
    "fit_observation_model",
    "held_out_log_likelihood",
]

#: First steps a class needs for its own ``t = 1`` density.
MIN_FIRST_STEPS = 50
#: Training points stored per density in an artifact (a seeded subsample beyond that).
MAX_STORED = 50_000


@dataclass
class ClassDensities:
    """What :func:`fit_class_densities` returns: bin probabilities, the fitted densities and card entries."""

    edges: np.ndarray
    pair_probs: np.ndarray
    first_probs: np.ndarray
    pair_kdes: list[ReflectedKDE] = field(default_factory=list)
    first_kdes: list[ReflectedKDE] = field(default_factory=list)
    card: dict[str, Any] = field(default_factory=dict)


def _pair_density(
    tab: StepArrays, c: int, bandwidth: str | float, r_only: bool, random_state: int
) -> ReflectedKDE:
    """The ``t >= 2`` density of class ``c``: a KDE of ``(r, m)``, or of ``r`` when ``r_only``."""
    mask = (tab.z == c) & (tab.t >= 2)
    if mask.sum() < 2:
        raise InvalidParameterError(
            f"class {HIDDEN_CLASSES[c]} has {int(mask.sum())} steps with t >= 2; at least 2 are needed to fit "
            "its density. Use more items (all ProcessBench splits give thousands per class)."
        )
    groups = tab.item_index[mask] if tab.item_index is not None else None
    X = tab.r[mask] if r_only else np.column_stack([tab.r[mask], tab.m[mask]])
    return ReflectedKDE(bandwidth=bandwidth, random_state=random_state).fit(X, groups=groups)


def _first_density(
    tab: StepArrays, c: int, bandwidth: str | float, min_first_steps: int, random_state: int
) -> tuple[ReflectedKDE, str]:
    """The ``t = 1`` density of ``r`` for class ``c`` and a description of the steps it was fitted on."""
    in_class = tab.z == c
    first = in_class & (tab.t == 1)
    if first.sum() >= max(min_first_steps, 2):
        source, mask = "first steps (t = 1)", first
    else:
        source, mask = f"all steps of the class (only {int(first.sum())} first steps)", in_class
    groups = tab.item_index[mask] if tab.item_index is not None else None
    kde = ReflectedKDE(bandwidth=bandwidth, random_state=random_state).fit(tab.r[mask], groups=groups)
    return kde, source


def fit_class_densities(
    table: Any,
    n_bins: int = 20,
    bandwidth: str | float = "scott",
    r_only: bool = False,
    *,
    min_first_steps: int = MIN_FIRST_STEPS,
    random_state: int = 0,
) -> ClassDensities:
    """Fit the three classes' densities and their exact bin masses (the parameters of :meth:`ObservationModel.fit`).

    With ``r_only``, ``pair_probs[z]`` is ``P(r-bin | z) / n`` in every ``m``-bin, so that the model ignores ``m``
    while keeping the same observation space.

    Raises
    ------
    InvalidParameterError
        A bad ``n_bins``, an invalid table (:func:`~trim_pomdp.observation_models.tables.table_arrays`), or a
        class with fewer than 2 steps at ``t >= 2``.
    """
    if isinstance(n_bins, bool) or not isinstance(n_bins, (int, np.integer)) or n_bins < 1:
        raise InvalidParameterError(f"n_bins must be a positive int, got {n_bins!r}")
    tab = table_arrays(table)
    n = int(n_bins)
    out = ClassDensities(uniform_edges(n), np.zeros((3, n, n)), np.zeros((3, n)))
    bandwidths: dict[str, dict[str, list[float]]] = {}
    first_source: dict[str, str] = {}
    for c, name in enumerate(HIDDEN_CLASSES):
        kde = _pair_density(tab, c, bandwidth, r_only, random_state)
        masses = kde.bin_masses(out.edges)
        if r_only:
            masses = np.repeat((masses / masses.sum())[:, None], n, axis=1) / n
        out.pair_probs[c] = masses / masses.sum()
        fkde, first_source[name] = _first_density(tab, c, bandwidth, min_first_steps, random_state)
        fmass = fkde.bin_masses(out.edges)
        out.first_probs[c] = fmass / fmass.sum()
        out.pair_kdes.append(kde)
        out.first_kdes.append(fkde)
        bandwidths[name] = {"pair": kde.bandwidth_.tolist(), "first": fkde.bandwidth_.tolist()}
    out.card = {
        "n_bins": n,
        "r_only": bool(r_only),
        "bandwidth_rule": bandwidth if isinstance(bandwidth, str) else float(bandwidth),
        "bandwidths": bandwidths,
        "counts": {name: int(np.sum(tab.z == c)) for c, name in enumerate(HIDDEN_CLASSES)},
        "counts_t_ge_2": {
            name: int(np.sum((tab.z == c) & (tab.t >= 2))) for c, name in enumerate(HIDDEN_CLASSES)
        },
        "counts_t_eq_1": {
            name: int(np.sum((tab.z == c) & (tab.t == 1))) for c, name in enumerate(HIDDEN_CLASSES)
        },
        "min_first_steps": int(min_first_steps),
        "first_step_source": first_source,
    }
    return out


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


def fit_observation_model(
    table: Any,
    *,
    n_bins: int = 20,
    bandwidth: str | float = "scott",
    r_only: bool = False,
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
    n_bins, bandwidth, r_only
        See :meth:`ObservationModel.fit`.
    cv_folds : int, default=5
        Folds by item of :func:`held_out_log_likelihood`, stored in the card as ``held_out_loglik``; below 2,
        none is computed.
    seed : int, default=0
        Seed of the stored-points subsample and of the folds.
    card : mapping, optional
        Card entries describing the data (PRM, source, splits, command, ``simulated`` ...).
    """
    # imported here: observation.py imports this module for ObservationModel.fit
    from trim_pomdp.observation_models.observation import ObservationModel

    model = ObservationModel.fit(
        table, n_bins=n_bins, bandwidth=bandwidth, r_only=r_only, card=card, random_state=seed
    )
    if cv_folds >= 2:
        held = held_out_log_likelihood(table, n_folds=cv_folds, bandwidth=bandwidth, r_only=r_only, seed=seed)
        model.card["held_out_loglik"] = {"folds": cv_folds, "by": "item", "nats_per_step": held}
    return model

"""How well an observation model explains scored data it was not fitted on (``trim-pomdp evaluate-observations``).

The model is run as the router's belief filter would run it on each solution, continuing at every step
(:func:`~trim_pomdp.observation_models.chain.filtered_beliefs`, with the chain's ``p_w``), and two things are
measured:

**Final answers** (items whose verdict is known). The predicted probability that the final answer is right is

    P(right) = b_T(S0) + rho * (1 - b_T(S0)),

where ``b_T(S0)`` is the belief, after the last step, that no step was wrong, and ``rho`` the probability that a
final answer is right although a step was wrong (ProcessBench has such solutions: 23% of its erroneous ones).
``rho`` is the model's own (its card's ``rho``: measured on its labelled fitting data, or estimated by outcome
supervision) unless given; a model without one uses 0, and the report says so. Beside the belief, three plain
aggregates of the step scores are scored as probabilities: their minimum, the last one and their product. For
each: AUROC, Brier score and ECE (10 equal-width bins of the prediction, the last one closed at 1).

**Steps** (items with step labels). The belief after each step's observation against the step's true class: the
mean log-loss of the true class (probabilities floored at 1e-12, so one impossible class costs at most 27.6
nats), and, among the steps that follow a correct prefix (S0 or S2), the AUROC of ``b_t(S2)`` for telling the
first erroneous step from a correct one, beside the AUROC of the raw score ``1 - r_t``.

A metric that the data cannot define (AUROC with only right or only wrong answers, no labelled steps) is ``None``
and :attr:`ObservationEvaluation.notes` says why.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from trim_pomdp.exceptions import InvalidParameterError
from trim_pomdp.observation_models.chain import Trajectories, filtered_beliefs, log_emissions

__all__ = [
    "ECE_BINS",
    "LOG_LOSS_FLOOR",
    "PREDICTORS",
    "ObservationEvaluation",
    "evaluate_observations",
    "expected_calibration_error",
    "outcome_metrics",
    "reliability_table",
]

#: Bins of the expected calibration error and of the reliability diagram.
ECE_BINS = 10
#: Floor of a class probability in the step log-loss.
LOG_LOSS_FLOOR = 1e-12
#: The predictors of a right final answer, in table order.
PREDICTORS = ("belief", "min", "last", "product")


def _bin_of(p: np.ndarray, n_bins: int) -> np.ndarray:
    return np.minimum((np.asarray(p) * n_bins).astype(np.int64), n_bins - 1)


def expected_calibration_error(p: Any, y: Any, n_bins: int = ECE_BINS) -> float:
    """``sum_b (n_b / n) |mean p_b - mean y_b|`` over ``n_bins`` equal-width bins of ``p`` (the last closed at 1)."""
    p, y = np.asarray(p, dtype=float), np.asarray(y, dtype=float)
    b = _bin_of(p, n_bins)
    total = 0.0
    for k in range(n_bins):
        sel = b == k
        if sel.any():
            total += sel.mean() * abs(p[sel].mean() - y[sel].mean())
    return float(total)


def reliability_table(p: Any, y: Any, n_bins: int = ECE_BINS) -> list[dict[str, Any]]:
    """Per bin of ``p``: its range, count, mean prediction and observed frequency (None for an empty bin)."""
    p, y = np.asarray(p, dtype=float), np.asarray(y, dtype=float)
    b = _bin_of(p, n_bins)
    rows = []
    for k in range(n_bins):
        sel = b == k
        rows.append(
            {
                "bin": [k / n_bins, (k + 1) / n_bins],
                "n": int(sel.sum()),
                "mean_predicted": float(p[sel].mean()) if sel.any() else None,
                "observed": float(y[sel].mean()) if sel.any() else None,
            }
        )
    return rows


def outcome_metrics(p: Any, y: Any) -> tuple[dict[str, float | None], str | None]:
    """``{"auroc", "brier", "ece"}`` of predictions ``p`` of binary outcomes ``y``, and why AUROC is None if it is."""
    from sklearn.metrics import roc_auc_score

    p, y = np.asarray(p, dtype=float), np.asarray(y, dtype=float)
    note = None
    if np.unique(y).size < 2:
        auroc = None
        note = f"AUROC is undefined: every final answer is {'right' if y.size and y[0] == 1 else 'wrong'}"
    else:
        auroc = float(roc_auc_score(y, p))
    return {
        "auroc": auroc,
        "brier": float(np.mean((p - y) ** 2)),
        "ece": expected_calibration_error(p, y),
    }, note


@dataclass
class ObservationEvaluation:
    """What :func:`evaluate_observations` returns.

    Attributes
    ----------
    summary : dict
        Exactly ``{"n_items", "outcome", "steps"}`` (the layout of ``summary.json``): ``outcome`` is ``{predictor:
        {"auroc", "brier", "ece"}}`` for the predictors of :data:`PREDICTORS`, or None; ``steps`` is
        ``{"class_log_loss", "s2_auroc_belief", "s2_auroc_score"}``, or None.
    details : dict
        The chain used (``p_w``, ``rho`` and where each came from), item counts, the reliability tables per
        predictor, and the model's card entries that say what it is.
    notes : list of str
        Why a section or a metric is None.
    predictions : dict of str to ndarray
        Per item with a known verdict: ``"id"``, ``"y"`` and one array per predictor.
    """

    summary: dict[str, Any]
    details: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    predictions: dict[str, Any] = field(default_factory=dict)


def _aggregates(traj: Trajectories) -> dict[str, np.ndarray]:
    r = traj.r
    last = r[np.arange(len(traj)), traj.lengths - 1]
    return {"min": np.nanmin(r, axis=1), "last": last, "product": np.nanprod(r, axis=1)}


def _step_metrics(
    traj: Trajectories, beliefs: np.ndarray, notes: list[str]
) -> dict[str, float | None] | None:
    from sklearn.metrics import roc_auc_score

    z = traj.true_classes()
    known = z >= 0
    if not known.any():
        notes.append("steps: no item has step labels (step_labels_known: false or no labelled items)")
        return None
    true_p = np.take_along_axis(beliefs, np.where(known, z, 0)[:, :, None], axis=2)[:, :, 0]
    log_loss = float(-np.mean(np.log(np.maximum(true_p[known], LOG_LOSS_FLOOR))))
    at_risk = known & (z != 1)
    is_s2 = z[at_risk] == 2
    if is_s2.all() or not is_s2.any():
        notes.append(
            "steps: the S2 AUROCs are undefined: the labelled steps hold no first error or no correct step"
        )
        return {"class_log_loss": log_loss, "s2_auroc_belief": None, "s2_auroc_score": None}
    return {
        "class_log_loss": log_loss,
        "s2_auroc_belief": float(roc_auc_score(is_s2, beliefs[:, :, 2][at_risk])),
        "s2_auroc_score": float(roc_auc_score(is_s2, 1.0 - traj.r[at_risk])),
    }


def evaluate_observations(
    model: Any,
    items: Sequence[Any] | Trajectories,
    *,
    p_w: float | None = None,
    rho: float | None = None,
) -> ObservationEvaluation:
    """Score ``model``'s belief on scored items: final-answer prediction and per-step classes.

    Parameters
    ----------
    model : ObservationModel
        Any model with ``observation_index_batch`` and ``bin_probs`` (its card may hold ``p_w`` and ``rho``).
    items : sequence of ScoredItem, or Trajectories
        The data; items whose verdict or labels are placeholders (``*_known: false``) count as unknown there.
    p_w : float, optional
        The chain's next-step accuracy; default the model card's ``p_w``.
    rho : float, optional
        ``P(right final answer | an error)``; default the card's ``rho``, else 0.

    Raises
    ------
    InvalidParameterError
        No items, or no ``p_w`` given and none in the card.
    """
    traj = items if isinstance(items, Trajectories) else Trajectories.from_scored(list(items))
    card = getattr(model, "card", {}) or {}
    notes: list[str] = []
    sources = {}
    if p_w is None:
        if card.get("p_w") is None:
            raise InvalidParameterError(
                "the observation model's card records no p_w; pass p_w (the weak model's next-step accuracy)"
            )
        p_w, sources["p_w"] = float(card["p_w"]), "the observation model's card"
    else:
        sources["p_w"] = "given"
    if rho is None:
        if card.get("rho") is None:
            rho, sources["rho"] = 0.0, "none recorded: 0 (a wrong step always makes a wrong answer)"
            notes.append("rho: the model records none; 0 was used")
        else:
            rho, sources["rho"] = float(card["rho"]), "the observation model's card"
    else:
        sources["rho"] = "given"
    beliefs = filtered_beliefs(log_emissions(model, traj), traj.lengths, float(p_w))
    final_s0 = beliefs[np.arange(len(traj)), traj.lengths - 1, 0]
    predicted = final_s0 + float(rho) * (1.0 - final_s0)
    known = ~np.isnan(traj.outcome)
    outcome: dict[str, Any] | None = None
    reliability: dict[str, Any] = {}
    predictions: dict[str, Any] = {}
    if known.any():
        y = traj.outcome[known]
        preds = {"belief": predicted[known], **{k: v[known] for k, v in _aggregates(traj).items()}}
        outcome = {}
        for name in PREDICTORS:
            outcome[name], note = outcome_metrics(preds[name], y)
            reliability[name] = reliability_table(preds[name], y)
        if note:
            notes.append(f"outcome: {note}")
        predictions = {"id": [traj.ids[i] for i in np.flatnonzero(known)], "y": y, **preds}
    else:
        notes.append("outcome: no item has a known final answer (final_answer_correct_known: false)")
    steps = _step_metrics(traj, beliefs, notes)
    details = {
        "p_w": float(p_w),
        "rho": float(rho),
        "sources": sources,
        "n_items_with_outcome": int(known.sum()),
        "n_items_with_step_labels": int(np.sum(traj.labels != -2)),
        "n_steps": int(traj.lengths.sum()),
        "reliability": reliability,
        "observation_model": {
            k: card.get(k) for k in ("prm", "simulated", "supervision", "splits", "bins", "command")
        },
        "notes": notes,
    }
    summary = {"n_items": len(traj), "outcome": outcome, "steps": steps}
    return ObservationEvaluation(summary, details, notes, predictions)

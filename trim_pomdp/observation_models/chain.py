"""The hidden chain of a solution under continue-only filtering, computed exactly over its first-error position.

The TRIM-POMDP's hidden class moves S0 → S0 with probability ``p_w`` and S0 → S2 otherwise, then S2 → S1 and S1 →
S1 (``docs/design.md``, "The TRIM-POMDP", with the action *continue*); at ``t = 1`` it is S0 with probability
``p_w`` and S2 otherwise. A solution of ``T`` steps therefore has ``T + 1`` class paths: the first error at step
``k`` (S0 before it, S2 at it, S1 after it) or no error at all. Everything here is computed over those paths in
log space, vectorised over solutions padded to a common length, from the per-step log-likelihoods
``log O(o_t | z)`` of an observation model:

- :func:`filtered_beliefs`: ``P(z_t | o_1 … o_t)`` at every step, what a
  :class:`~trim_pomdp.pomdp.belief.BeliefFilter` holds when the router continues at every step (the tests check
  that the two agree);
- :func:`path_posterior`: the posterior over the paths given all observations and, when known, the final
  answer's correctness ``y``, with ``P(y = 1 | no error) = 1`` and ``P(y = 1 | an error) = rho`` (a final answer
  can be right after an erroneous step); the per-step class weights and the log-likelihood. This is the E-step
  of outcome supervision (:mod:`~trim_pomdp.observation_models.outcome_em`).

:class:`Trajectories` holds the scored solutions as padded arrays.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from scipy.special import logsumexp

from trim_pomdp.exceptions import InvalidParameterError

if TYPE_CHECKING:
    from trim_pomdp.datasets.scored import ScoredItem

__all__ = ["PathPosterior", "Trajectories", "filtered_beliefs", "log_emissions", "path_posterior"]

#: Floor of a bin probability before its logarithm (a zero would make every path impossible).
PROB_FLOOR = 1e-300


@dataclass
class Trajectories:
    """Scored solutions as arrays padded to the longest one (``n`` solutions, ``H`` steps).

    Attributes
    ----------
    r : ndarray of shape (n, H)
        PRM score of each step, NaN beyond the solution's length.
    m : ndarray of shape (n, H)
        Minimum of the earlier scores, NaN at ``t = 1`` and beyond the length.
    lengths : ndarray of int, shape (n,)
    outcome : ndarray of float, shape (n,)
        1 when the final answer is right, 0 when wrong, NaN when unknown.
    labels : ndarray of int, shape (n,)
        0-based first-error step, -1 for none, -2 when the item has no step labels.
    ids : list of str
    """

    r: np.ndarray
    m: np.ndarray
    lengths: np.ndarray
    outcome: np.ndarray
    labels: np.ndarray
    ids: list[str]

    def __len__(self) -> int:
        return int(self.lengths.shape[0])

    @property
    def valid(self) -> np.ndarray:
        """``(n, H)`` mask of the steps that exist."""
        return np.arange(self.r.shape[1])[None, :] < self.lengths[:, None]

    @classmethod
    def from_scored(cls, items: Sequence[ScoredItem]) -> Trajectories:
        """From scored items; placeholder verdicts and labels (``*_known: false``) become unknown."""
        if not items:
            raise InvalidParameterError("no scored items to build trajectories from")
        lengths = np.array([len(si.prm_scores) for si in items], dtype=np.int64)
        H = int(lengths.max())
        r = np.full((len(items), H), np.nan)
        for i, si in enumerate(items):
            r[i, : lengths[i]] = si.prm_scores
        outcome = np.array(
            [float(si.item.final_answer_correct) if si.final_answer_correct_known else np.nan for si in items]
        )
        labels = np.array([si.item.label if si.step_labels_known else -2 for si in items], dtype=np.int64)
        return cls.from_arrays(r, lengths, outcome, labels, [si.item.id for si in items])

    @classmethod
    def from_arrays(
        cls, r: Any, lengths: Any, outcome: Any = None, labels: Any = None, ids: list[str] | None = None
    ) -> Trajectories:
        """From a padded score matrix and lengths (``m`` is derived)."""
        r = np.array(r, dtype=float, copy=True)
        lengths = np.asarray(lengths, dtype=np.int64)
        n, H = r.shape
        if lengths.shape != (n,) or lengths.min(initial=1) < 1 or lengths.max(initial=1) > H:
            raise InvalidParameterError(f"lengths must be ({n},) values in 1..{H}")
        live = np.arange(H)[None, :] < lengths[:, None]
        r[~live] = np.nan
        vals = r[live]
        if not np.all(np.isfinite(vals) & (vals >= 0) & (vals <= 1)):
            raise InvalidParameterError("scores must be finite numbers in [0, 1]")
        m = np.full((n, H), np.nan)
        if H > 1:
            running = np.fmin.accumulate(np.where(live, r, np.inf), axis=1)
            m[:, 1:] = np.where(live[:, 1:], running[:, :-1], np.nan)
        outcome = np.full(n, np.nan) if outcome is None else np.asarray(outcome, dtype=float)
        labels = np.full(n, -2, dtype=np.int64) if labels is None else np.asarray(labels, dtype=np.int64)
        return cls(r, m, lengths, outcome, labels, ids or [str(i) for i in range(n)])

    def select(self, rows: Any) -> Trajectories:
        """The solutions ``rows`` (indices or mask), padding cut to their longest."""
        rows = np.asarray(rows)
        if rows.dtype == bool:
            rows = np.flatnonzero(rows)
        H = int(self.lengths[rows].max(initial=1))
        return Trajectories(
            self.r[rows, :H],
            self.m[rows, :H],
            self.lengths[rows],
            self.outcome[rows],
            self.labels[rows],
            [self.ids[i] for i in rows],
        )

    def true_classes(self) -> np.ndarray:
        """``(n, H)`` class of every step from the labels (0 S0, 1 S1, 2 S2), -1 where unknown or padding."""
        cols = np.arange(self.r.shape[1])[None, :]
        lab = self.labels[:, None]
        z = np.where(lab == -1, 0, np.where(cols < lab, 0, np.where(cols == lab, 2, 1)))
        return np.where(self.valid & (lab != -2), z, -1)


def log_emissions(model: Any, traj: Trajectories) -> np.ndarray:
    """``(n, H, 3)`` log bin probability of every step's observation under each class (0 on padding)."""
    live = traj.valid
    n, H = traj.r.shape
    out = np.zeros((n, H, 3))
    r, m = traj.r[live], traj.m[live]
    idx = model.observation_index_batch(r, m)
    first = np.isnan(m)
    lik = np.empty((r.size, 3))
    lik[first] = model.bin_probs(True)[:, idx[first]].T
    lik[~first] = model.bin_probs(False)[:, idx[~first]].T
    out[live] = np.log(np.maximum(lik, PROB_FLOOR))
    return out


def _check_chain(p_w: float, rho: float) -> None:
    if not 0.0 < p_w < 1.0:
        raise InvalidParameterError(f"p_w must lie in (0, 1), got {p_w!r}")
    if not 0.0 <= rho < 1.0:
        raise InvalidParameterError(f"rho must lie in [0, 1), got {rho!r}")


def _error_paths(
    logL: np.ndarray, lengths: np.ndarray, p_w: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Log joint of the observations with "first error at step k" ``(n, H)`` (-inf beyond the length), with "no
    error" ``(n,)``, and the exclusive prefix sums of ``log O(o | S0)`` ``(n, H + 1)``."""
    n, H, _ = logL.shape
    live = np.arange(H)[None, :] < lengths[:, None]
    L0, L1, L2 = (np.where(live, logL[:, :, c], 0.0) for c in (0, 1, 2))
    zeros = np.zeros((n, 1))
    C0 = np.concatenate([zeros, np.cumsum(L0, axis=1)], axis=1)
    C1 = np.concatenate([zeros, np.cumsum(L1, axis=1)], axis=1)
    k = np.arange(H)[None, :]
    total1 = C1[np.arange(n), lengths][:, None]
    err = k * np.log(p_w) + np.log1p(-p_w) + C0[:, :H] + L2 + (total1 - C1[:, 1:])
    err = np.where(live, err, -np.inf)
    none = lengths * np.log(p_w) + C0[np.arange(n), lengths]
    return err, none, C0


def filtered_beliefs(logL: np.ndarray, lengths: np.ndarray, p_w: float) -> np.ndarray:
    """``(n, H, 3)`` beliefs ``P(z_t | o_1 … o_t)`` over (S0, S1, S2) after each step's observation (NaN padding).

    ``logL`` is :func:`log_emissions`' output; the chain is continue-only (module docstring).
    """
    _check_chain(p_w, 0.0)
    n, H, _ = logL.shape
    live = np.arange(H)[None, :] < lengths[:, None]
    L0, L1, L2 = (np.where(live, logL[:, :, c], 0.0) for c in (0, 1, 2))
    zeros = np.zeros((n, 1))
    C0 = np.concatenate([zeros, np.cumsum(L0, axis=1)], axis=1)
    C1 = np.concatenate([zeros, np.cumsum(L1, axis=1)], axis=1)
    j = np.arange(H)[None, :]
    a0 = (j + 1) * np.log(p_w) + C0[:, 1:]
    a2 = j * np.log(p_w) + np.log1p(-p_w) + C0[:, :H] + L2  # the path "first error at j", up to j
    # S1 at j: a first error at some k < j, then S1 emissions from k + 1 to j
    acc = np.logaddexp.accumulate(a2 - C1[:, 1:], axis=1)
    a1 = np.full((n, H), -np.inf)
    a1[:, 1:] = C1[:, 2:] + acc[:, :-1]
    logb = np.stack([a0, a1, a2], axis=2)
    logb -= logsumexp(logb, axis=2, keepdims=True)
    out = np.exp(logb)
    out[~live] = np.nan
    return out


@dataclass
class PathPosterior:
    """What :func:`path_posterior` returns.

    Attributes
    ----------
    log_likelihood : ndarray of shape (n,)
        ``log P(o_1 … o_T, y)`` per solution (``y`` only where known).
    p_no_error : ndarray of shape (n,)
        Posterior probability that the solution has no erroneous step.
    p_error_at : ndarray of shape (n, H)
        Posterior probability that the first error is at each step (0 on padding).
    class_weights : ndarray of shape (n, H, 3)
        Posterior probability of each class (S0, S1, S2) at each step (0 on padding).
    """

    log_likelihood: np.ndarray
    p_no_error: np.ndarray
    p_error_at: np.ndarray
    class_weights: np.ndarray


def path_posterior(
    logL: np.ndarray, lengths: np.ndarray, p_w: float, rho: float, outcome: np.ndarray | None = None
) -> PathPosterior:
    """The posterior over the first-error position given all observations and the known outcomes.

    Parameters
    ----------
    logL : ndarray of shape (n, H, 3)
        :func:`log_emissions`.
    lengths : ndarray of int, shape (n,)
    p_w : float
        Next-step accuracy given a correct prefix.
    rho : float
        ``P(final answer right | an error)``.
    outcome : ndarray of shape (n,), optional
        1 / 0 for a right / wrong final answer, NaN where unknown (not conditioned on).
    """
    _check_chain(p_w, rho)
    err, none, _ = _error_paths(logL, lengths, p_w)
    n, H = err.shape
    y = np.full(n, np.nan) if outcome is None else np.asarray(outcome, dtype=float)
    with np.errstate(divide="ignore"):
        log_rho, log_1m = np.log(rho), np.log1p(-rho)
    right, wrong = y == 1, y == 0
    err = err + np.where(right, log_rho, np.where(wrong, log_1m, 0.0))[:, None]
    none = np.where(wrong, -np.inf, none)
    total = np.logaddexp(logsumexp(err, axis=1), none)
    p_at = np.exp(err - total[:, None])
    p_none = np.exp(none - total)
    live = np.arange(H)[None, :] < lengths[:, None]
    before = np.cumsum(p_at, axis=1) - p_at  # P(first error at some k < t)
    w = np.stack([1.0 - before - p_at, before, p_at], axis=2)
    w = np.clip(w, 0.0, 1.0)
    w[~live] = 0.0
    return PathPosterior(total, p_none, np.where(live, p_at, 0.0), w)

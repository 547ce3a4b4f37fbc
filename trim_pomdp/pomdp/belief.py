"""The belief filter of the TRIM-POMDP: predict with the action taken, correct with the observation likelihood.

Beliefs are distributions over the model's hidden states: ``(S0, S1, S2)``, or with ``D`` difficulty classes
``(S0|d1, S1, S2|d1, S0|d2, S2|d2, …)`` (:func:`~trim_pomdp.pomdp.problem.hidden_layout`). A *predicted*
belief is the belief over ``z_t`` before the epoch-``t`` observation; a *posterior* belief is after it (what
policies are queried with).

:meth:`BeliefFilter.update` is the updater of POMDPs.jl: ``update(b, a, o)`` takes the posterior ``b`` of the
previous epoch (or :meth:`BeliefFilter.prior` at ``t = 1``), the action ``a`` taken there (``None`` at
``t = 1``) and the new observation ``o``, and returns the new posterior. It runs in scalar Python (a few
microseconds, the cost of one routing decision), and is tested against the vectorised building blocks
:meth:`~BeliefFilter.predict` and :meth:`~BeliefFilter.correct` and their batch forms.
"""

from __future__ import annotations

from bisect import bisect_right
from typing import Any

import numpy as np

from trim_pomdp.exceptions import InvalidParameterError, ZeroLikelihoodError
from trim_pomdp.types import BatchObservation, StepObservation

__all__ = ["BeliefFilter"]

Floats3 = tuple[float, ...]  #: a belief as plain floats (three for the pooled model)

_FLOOR_HINT = "pass floor=... to BeliefFilter (or BeliefRouter) to floor likelihoods instead"


class BeliefFilter:
    """Bayes filter over the hidden class of a :class:`~trim_pomdp.pomdp.problem.TrimPOMDP`.

    Parameters
    ----------
    trim_pomdp : TrimPOMDP
        Supplies ``transition``, ``b0`` and the binned observation model (``bin_probs``, ``edges``,
        ``observation_index``).
    floor : float, optional
        If given, every likelihood is floored at this value before the update, so an observation that no class
        explains does not raise but leaves the prediction (nearly) unchanged. If ``None`` (default), a
        zero-likelihood observation raises :class:`~trim_pomdp.exceptions.ZeroLikelihoodError`.
    continuous : bool, default False
        Correct with the observation model's continuous density ``likelihood(r, m, continuous=True)`` instead
        of the bin probabilities the solver planned with.
    """

    def __init__(self, trim_pomdp: Any, floor: float | None = None, continuous: bool = False):
        if floor is not None and not (floor > 0):
            raise InvalidParameterError(f"floor must be > 0 or None, got {floor}")
        obs = trim_pomdp.obs_model
        if continuous and not getattr(obs, "has_densities", False):
            raise InvalidParameterError(
                "continuous likelihoods need an observation model with likelihood(r, m, continuous=True) "
                "(a fitted ObservationModel); this model only has bin probabilities"
            )
        self.trim_pomdp = trim_pomdp
        self.floor = floor
        self.continuous = bool(continuous)
        self.transition = np.asarray(trim_pomdp.transition, dtype=float)
        self._lik = {
            True: np.asarray(trim_pomdp.observation_probs(1)),
            False: np.asarray(trim_pomdp.observation_probs(2)),
        }
        # the same numbers as plain Python floats, for the scalar path of update()
        self._n = int(obs.n_bins)
        # -- bins of the scalar path: per-axis edges when the model has them (r_edges/m_edges), else `edges`
        edges = getattr(obs, "edges", None)
        r_edges, m_edges = getattr(obs, "r_edges", edges), getattr(obs, "m_edges", edges)
        self._edges = None if r_edges is None else [float(x) for x in np.asarray(r_edges)]
        self._m_edges = None if m_edges is None else [float(x) for x in np.asarray(m_edges)]
        # -- end of the bin edges
        zc_lik = {
            True: np.asarray(trim_pomdp.class_observation_probs(1)),
            False: np.asarray(trim_pomdp.class_observation_probs(2)),
        } if hasattr(trim_pomdp, "class_observation_probs") else self._lik  # fmt: skip
        self._zc = [int(z) for z in getattr(trim_pomdp, "z_class", range(3))]
        self._lik1 = [tuple(float(v) for v in col) for col in zc_lik[True].T]
        self._lik2 = [tuple(float(v) for v in col) for col in zc_lik[False].T]
        self._pair_2d = len(self._lik2) == self._n * self._n
        self._T = [[[float(x) for x in row] for row in Ta] for Ta in self.transition]
        # difficulty classes: the sparse columns of T (k' <- [(k, T[k, k'])]) for the scalar path
        self._n_hidden = int(self.transition.shape[1])
        self._Tcols = [
            [[(j, float(Ta[j, k])) for j in np.flatnonzero(Ta[:, k])] for k in range(self._n_hidden)]
            for Ta in self.transition
        ]

    def prior(self) -> np.ndarray:
        """Predicted belief at ``t = 1``: ``(p_w, 0, 1 − p_w)`` (with difficulty classes, ``π(d) p_w(d)`` on
        ``S0|d`` and ``π(d) (1 − p_w(d))`` on ``S2|d``)."""
        return np.asarray(self.trim_pomdp.b0, dtype=float).copy()

    # -- the updater -----------------------------------------------------------------------------------------
    def update(self, belief: Any, action: int | None, obs: StepObservation) -> np.ndarray:
        """Posterior after ``obs``, from the previous posterior ``belief`` and the ``action`` taken there.

        At ``t = 1`` pass the prior and ``action=None`` (nothing to predict through).
        """
        b = np.asarray(belief, dtype=float)
        _, post, _ = self.update_floats(tuple(float(x) for x in b), action, obs.t, obs.score, obs.prefix_min)
        return np.array(post)

    def update_floats(
        self, belief: Floats3, action: int | None, t: int, r: float, m: float | None
    ) -> tuple[Floats3, Floats3, int | None]:
        """The scalar form of :meth:`update`: ``(predicted, posterior, bin)`` from floats.

        ``bin`` is the observation's bin index (``None`` with continuous likelihoods). Raises
        :class:`ZeroLikelihoodError` when no class explains the observation (unless ``floor`` is set).
        """
        if self._n_hidden != 3:
            return self._update_classes(belief, action, t, r, m)
        if action is None:
            p0, p1, p2 = belief
        else:
            if action not in (0, 1):
                raise InvalidParameterError(f"action must be 0 (continue) or 1 (regenerate), got {action}")
            T = self._T[action]
            b0, b1, b2 = belief
            p0 = b0 * T[0][0] + b1 * T[1][0] + b2 * T[2][0]
            p1 = b0 * T[0][1] + b1 * T[1][1] + b2 * T[2][1]
            p2 = b0 * T[0][2] + b1 * T[1][2] + b2 * T[2][2]
        lik, idx = self._likelihood(t, r, m)
        q0, q1, q2 = p0 * lik[0], p1 * lik[1], p2 * lik[2]
        s = q0 + q1 + q2
        if not s > 0:
            self._zero(r, m, t, (p0, p1, p2), action, idx)
        return (p0, p1, p2), (q0 / s, q1 / s, q2 / s), idx

    def _update_classes(
        self, belief: Floats3, action: int | None, t: int, r: float, m: float | None
    ) -> tuple[Floats3, Floats3, int | None]:
        """:meth:`update_floats` with difficulty classes (any number of hidden states)."""
        if action is None:
            pred = tuple(belief)
        else:
            if action not in (0, 1):
                raise InvalidParameterError(f"action must be 0 (continue) or 1 (regenerate), got {action}")
            out = []
            for col in self._Tcols[action]:
                x = 0.0
                for j, v in col:
                    x += belief[j] * v
                out.append(x)
            pred = tuple(out)
        lik, idx = self._likelihood(t, r, m)
        q = [p * lik[z] for p, z in zip(pred, self._zc, strict=True)]
        s = 0.0
        for x in q:
            s += x
        if not s > 0:
            self._zero(r, m, t, pred, action, idx)
        inv = 1.0 / s
        return pred, tuple([x * inv for x in q]), idx

    def _likelihood(self, t: int, r: float, m: float | None) -> tuple[tuple[float, ...], int | None]:
        """``P(o | z)`` of the classes S0/S1/S2 for the observation ``(r, m)`` at epoch ``t``, and its bin."""
        idx: int | None
        if self.continuous:
            lik = tuple(float(v) for v in self.trim_pomdp.obs_model.likelihood(r, m, continuous=True))
            idx = None
        elif t == 1:
            idx = self._bin(r)
            lik = self._lik1[idx]
        else:
            if m is None:
                raise InvalidParameterError(f"m (min of the earlier scores) is required at t = {t} > 1")
            idx = self._bin(r) * self._n + self._bin(m, self._m_edges) if self._pair_2d else self._bin(r)
            lik = self._lik2[idx]
        if self.floor is not None:
            lik = tuple(max(v, self.floor) for v in lik)
        return lik, idx

    @staticmethod
    def _zero(r: float, m: float | None, t: int, pred: Floats3, action: int | None, idx: int | None) -> None:
        raise ZeroLikelihoodError(
            f"the observation r = {r}, m = {m} at t = {t} has zero likelihood under the predicted belief "
            f"{list(pred)} ({_FLOOR_HINT})",
            belief=np.array(pred),
            action=action,
            observation={"t": int(t), "r": float(r), "m": None if m is None else float(m), "bin": idx},
        )

    def _bin(self, x: float, edges: list[float] | None = None) -> int:
        """The bin of ``x`` on the ``r`` axis, or on the axis of ``edges`` (the ``m`` edges) when given."""
        edges = self._edges if edges is None else edges
        if edges is None:  # a model without edges: its own r-bin lookup (m then shares the r bins)
            return int(self.trim_pomdp.obs_model.observation_index(x, None))
        i = bisect_right(edges, x) - 1
        return 0 if i < 0 else (self._n - 1 if i >= self._n else i)

    # -- building blocks -------------------------------------------------------------------------------------
    def predict(self, posterior: Any, action: int) -> np.ndarray:
        """Predicted belief of the next epoch after taking ``action`` (0 continue, 1 regenerate)."""
        if int(action) not in (0, 1):
            raise InvalidParameterError(f"action must be 0 (continue) or 1 (regenerate), got {action}")
        return np.asarray(posterior, dtype=float) @ self.transition[int(action)]

    def observation_index(self, t: int, r: float, m: float | None = None) -> int:
        """Bin index of ``(r, m)`` at epoch ``t`` (``m`` is ignored at ``t = 1`` and required after)."""
        obs = self.trim_pomdp.obs_model
        if int(t) == 1:
            return int(obs.observation_index(float(r), None))
        if m is None or np.isnan(m):
            raise InvalidParameterError(f"m (min of the earlier scores) is required at t = {t} > 1")
        return int(obs.observation_index(float(r), float(m)))

    def update_index(self, pred_belief: Any, t: int, obs_index: int, action: int | None = None) -> np.ndarray:
        """Posterior from a predicted belief and an observation bin index."""
        pred = np.asarray(pred_belief, dtype=float)
        lik = self._lik[int(t) == 1]
        if not 0 <= int(obs_index) < lik.shape[1]:
            raise InvalidParameterError(
                f"observation index {obs_index} outside 0..{lik.shape[1] - 1} at t = {t}"
            )
        li = lik[:, int(obs_index)]
        if self.floor is not None:
            li = np.maximum(li, self.floor)
        post = pred * li
        s = post.sum()
        if not s > 0:
            raise ZeroLikelihoodError(
                f"observation bin {obs_index} at t = {t} has zero likelihood under belief {pred.tolist()} "
                f"({_FLOOR_HINT})",
                belief=pred,
                action=action,
                observation=int(obs_index),
            )
        return post / s

    def correct(
        self, pred_belief: Any, t: int, r: float, m: float | None = None, action: int | None = None
    ) -> np.ndarray:
        """Posterior after observing PRM score ``r`` (and prefix minimum ``m`` for ``t ≥ 2``) at epoch ``t``.

        ``pred_belief`` is the predicted belief; ``action`` (the action that led to it) is only recorded in a
        :class:`ZeroLikelihoodError`.
        """
        if self.continuous:
            lik = np.asarray(
                self.trim_pomdp.obs_model.likelihood(float(r), None if int(t) == 1 else m, continuous=True),
                dtype=float,
            )[self._zc]
            return self._normalise(np.atleast_2d(np.asarray(pred_belief, dtype=float)), lik[None, :])[0]
        idx = self.observation_index(t, r, m)
        try:
            return self.update_index(pred_belief, t, idx, action=action)
        except ZeroLikelihoodError as exc:
            raise ZeroLikelihoodError(
                str(exc),
                belief=exc.belief,
                action=action,
                observation={"t": int(t), "r": float(r), "m": None if m is None else float(m), "bin": idx},
            ) from None

    # -- batch -----------------------------------------------------------------------------------------------
    def predict_batch(self, B: Any, actions: Any) -> np.ndarray:
        """Predicted beliefs ``(n, 3)`` after one action per row."""
        B = np.asarray(B, dtype=float)
        a = np.asarray(actions, dtype=np.int64)
        if np.any((a < 0) | (a > 1)):
            raise InvalidParameterError("actions must be 0 (continue) or 1 (regenerate)")
        return np.einsum("nz,nzy->ny", B, self.transition[a])

    def update_index_batch(self, B: Any, t: Any, obs_index: Any, actions: Any = None) -> np.ndarray:
        """Posteriors ``(n, 3)`` from predicted beliefs ``B``, epochs ``t`` (scalar or ``(n,)``) and bins."""
        B = np.asarray(B, dtype=float)
        n = B.shape[0]
        t = np.broadcast_to(np.asarray(t), (n,))
        idx = np.asarray(obs_index, dtype=np.int64)
        first = t == 1
        lik = np.empty((n, self._n_hidden))
        if first.any():
            lik[first] = self._lik[True][:, idx[first]].T
        if (~first).any():
            lik[~first] = self._lik[False][:, idx[~first]].T
        if self.floor is not None:
            lik = np.maximum(lik, self.floor)
        post = B * lik
        s = post.sum(axis=1)
        bad = np.flatnonzero(~(s > 0))
        if bad.size:
            i = int(bad[0])
            raise ZeroLikelihoodError(
                f"row {i}: observation bin {int(idx[i])} at t = {int(t[i])} has zero likelihood under belief "
                f"{B[i].tolist()} ({_FLOOR_HINT})",
                belief=B[i],
                action=None if actions is None else int(np.asarray(actions)[i]),
                observation=int(idx[i]),
            )
        return post / s[:, None]

    def correct_batch(self, B: Any, t: Any, r: Any, m: Any) -> np.ndarray:
        """Posteriors ``(n, 3)`` from predicted beliefs, raw scores ``r`` and prefix minima ``m`` (NaN at t = 1)."""
        B = np.asarray(B, dtype=float)
        t_arr = np.broadcast_to(np.asarray(t), (B.shape[0],))
        m = np.where(t_arr == 1, np.nan, np.asarray(m, dtype=float))
        r = np.asarray(r, dtype=float)
        if self.continuous:
            like = self.trim_pomdp.obs_model.likelihood
            lik = np.array(
                [
                    like(float(ri), None if ti == 1 else float(mi), continuous=True)
                    for ri, mi, ti in zip(r, m, t_arr, strict=True)
                ],
                dtype=float,
            ).reshape(-1, 3)
            return self._normalise(B, lik[:, self._zc])
        idx = self.trim_pomdp.obs_model.observation_index_batch(r, m)
        return self.update_index_batch(B, t_arr, idx)

    def update_batch(self, B: Any, actions: Any, obs: BatchObservation, rows: Any = None) -> np.ndarray:
        """:meth:`update` for many episodes: posteriors ``(k, 3)`` of the rows ``rows`` of ``obs``.

        ``B`` holds their previous posteriors (the prior for a row at ``t = 1``) and ``actions`` the actions
        taken there; rows at ``t = 1`` are not predicted. An observation that carries the model's own bin
        (``obs_index``, as :class:`~trim_pomdp.pomdp.process.ModelProcess` returns) is corrected with that bin.
        """
        rows = np.arange(obs.n) if rows is None else np.asarray(rows)
        pred = np.array(B, dtype=float, copy=True)
        t = np.asarray(obs.t)[rows]
        later = t > 1
        if later.any():
            pred[later] = self.predict_batch(pred[later], np.asarray(actions)[later])
        idx = getattr(obs, "obs_index", None)
        if idx is not None and not self.continuous:
            return self.update_index_batch(pred, t, np.asarray(idx)[rows])
        return self.correct_batch(pred, t, obs.score[rows], obs.prefix_min[rows])

    def _normalise(self, pred: np.ndarray, lik: np.ndarray) -> np.ndarray:
        if self.floor is not None:
            lik = np.maximum(lik, self.floor)
        post = pred * lik
        s = post.sum(axis=1)
        if np.any(~(s > 0)):
            i = int(np.flatnonzero(~(s > 0))[0])
            raise ZeroLikelihoodError(
                f"row {i}: the observation has zero likelihood under belief {pred[i].tolist()} ({_FLOOR_HINT})",
                belief=pred[i],
            )
        return post / s[:, None]

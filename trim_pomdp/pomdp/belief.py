"""The belief filter of the TRIM-POMDP: predict with the taken action, update with the observation likelihood.

Beliefs are arrays over ``(S0, S1, S2)``. A *predicted* belief is the belief over ``z_t`` before the
epoch-``t`` observation; a *posterior* belief is after it (what policies are queried with).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from trim_pomdp.exceptions import InvalidParameterError, ZeroLikelihoodError

__all__ = ["BeliefFilter"]


class BeliefFilter:
    """Bayes filter over the hidden class of a :class:`~trim_pomdp.pomdp.problem.TrimPOMDP`.

    Parameters
    ----------
    trim_pomdp : TrimPOMDP
        Supplies ``transition``, ``b0`` and the binned observation model (``bin_probs``,
        ``observation_index``).
    floor : float, optional
        If given, every likelihood is floored at this value before the update, so an observation that no class
        explains does not raise but leaves the prediction (nearly) unchanged. If ``None`` (default), a
        zero-likelihood observation raises :class:`~trim_pomdp.exceptions.ZeroLikelihoodError`.
    """

    def __init__(self, trim_pomdp: Any, floor: float | None = None):
        if floor is not None and not (floor > 0):
            raise InvalidParameterError(f"floor must be > 0 or None, got {floor}")
        self.trim_pomdp = trim_pomdp
        self.floor = floor
        self.transition = np.asarray(trim_pomdp.transition, dtype=float)
        self._lik = {
            True: np.asarray(trim_pomdp.observation_probs(1)),
            False: np.asarray(trim_pomdp.observation_probs(2)),
        }

    def prior(self) -> np.ndarray:
        """Predicted belief at ``t = 1``: ``(p_w, 0, 1 − p_w)``."""
        return np.asarray(self.trim_pomdp.b0, dtype=float).copy()

    # -- single ----------------------------------------------------------------------------------------------
    def observation_index(self, t: int, r: float, m: float | None = None) -> int:
        """Bin index of ``(r, m)`` at epoch ``t`` (``m`` is ignored at ``t = 1`` and required after)."""
        obs = self.trim_pomdp.obs_model
        if int(t) == 1:
            return int(obs.observation_index(float(r), None))
        if m is None or np.isnan(m):
            raise InvalidParameterError(f"m (min of the earlier scores) is required at t = {t} > 1")
        return int(obs.observation_index(float(r), float(m)))

    def update_index(self, pred_belief, t: int, obs_index: int, action: int | None = None) -> np.ndarray:
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
                "(pass floor=... to BeliefFilter to floor likelihoods instead)",
                belief=pred,
                action=action,
                observation=int(obs_index),
            )
        return post / s

    def update(
        self, pred_belief, t: int, r: float, m: float | None = None, action: int | None = None
    ) -> np.ndarray:
        """Posterior after observing PRM score ``r`` (and prefix minimum ``m`` for ``t ≥ 2``) at epoch ``t``.

        ``action`` (the action that led to ``pred_belief``) is only recorded in a
        :class:`ZeroLikelihoodError`.
        """
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

    def predict(self, posterior, action: int) -> np.ndarray:
        """Predicted belief of the next epoch after taking ``action`` (0 continue, 1 regenerate)."""
        if int(action) not in (0, 1):
            raise InvalidParameterError(f"action must be 0 (continue) or 1 (regenerate), got {action}")
        return np.asarray(posterior, dtype=float) @ self.transition[int(action)]

    # -- batch -----------------------------------------------------------------------------------------------
    def update_index_batch(self, B, t, obs_index, actions=None) -> np.ndarray:
        """Posteriors ``(n, 3)`` from predicted beliefs ``B (n, 3)``, epochs ``t`` (scalar or (n,)) and bin
        indices.
        """
        B = np.asarray(B, dtype=float)
        n = B.shape[0]
        t = np.broadcast_to(np.asarray(t), (n,))
        idx = np.asarray(obs_index, dtype=np.int64)
        first = t == 1
        lik = np.empty((n, 3))
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
                f"{B[i].tolist()} (pass floor=... to BeliefFilter to floor likelihoods instead)",
                belief=B[i],
                action=None if actions is None else int(np.asarray(actions)[i]),
                observation=int(idx[i]),
            )
        return post / s[:, None]

    def update_batch(self, B, t, r, m) -> np.ndarray:
        """Posteriors ``(n, 3)`` from raw scores ``r`` and prefix minima ``m`` (NaN at ``t = 1``)."""
        t_arr = np.broadcast_to(np.asarray(t), (np.asarray(B).shape[0],))
        m = np.where(t_arr == 1, np.nan, np.asarray(m, dtype=float))
        idx = self.trim_pomdp.obs_model.observation_index_batch(np.asarray(r, dtype=float), m)
        return self.update_index_batch(B, t_arr, idx)

    def predict_batch(self, B, actions) -> np.ndarray:
        """Predicted beliefs ``(n, 3)`` after one action per row."""
        B = np.asarray(B, dtype=float)
        a = np.asarray(actions, dtype=np.int64)
        if np.any((a < 0) | (a > 1)):
            raise InvalidParameterError("actions must be 0 (continue) or 1 (regenerate)")
        return np.einsum("nz,nzy->ny", B, self.transition[a])

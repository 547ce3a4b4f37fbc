"""Discounted tabular POMDPs: the interchange form read from files and handed to point-based solvers and SARSOP.

Array conventions: ``T[a, s, s']`` transition probabilities, ``O[a, s', o]`` observation probabilities given the
action taken and the state reached, ``R[s, a]`` expected immediate reward, ``b0`` initial belief, ``discount`` γ.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from trim_pomdp._internal.simplex import check_stochastic
from trim_pomdp.exceptions import ModelCheckError

__all__ = ["TabularPOMDP", "check_tabular"]


@dataclass
class TabularPOMDP:
    """A discounted POMDP given by dense numpy arrays.

    Parameters
    ----------
    T : ndarray, shape (n_actions, n_states, n_states)
        ``T[a, s, s'] = P(s' | s, a)``.
    O : ndarray, shape (n_actions, n_states, n_observations)
        ``O[a, s', o] = P(o | s', a)``.
    R : ndarray, shape (n_states, n_actions)
        Expected immediate reward of taking ``a`` in ``s``.
    b0 : ndarray, shape (n_states,)
        Initial belief.
    discount : float
        γ in (0, 1]; point-based solvers need γ < 1.
    state_names, action_names, observation_names : list of str, optional
        Names from the file the model was read from, for display and for writing it back.
    terminal : ndarray of bool, shape (n_states,), optional
        States that are absorbing with zero reward (informative; solvers do not require it).
    meta : dict, optional
        Where the model came from (``source``, ``format``, notes of the reader).
    """

    T: np.ndarray
    O: np.ndarray
    R: np.ndarray
    b0: np.ndarray
    discount: float
    state_names: list[str] | None = None
    action_names: list[str] | None = None
    observation_names: list[str] | None = None
    terminal: np.ndarray | None = None
    meta: dict = field(default_factory=dict)

    @property
    def n_states(self) -> int:
        """Number of states."""
        return int(self.T.shape[1])

    @property
    def n_actions(self) -> int:
        """Number of actions."""
        return int(self.T.shape[0])

    @property
    def n_observations(self) -> int:
        """Number of observations."""
        return int(self.O.shape[2])

    def check(self, atol: float = 1e-8) -> TabularPOMDP:
        """Raise :class:`ModelCheckError` naming the offending index if the arrays are inconsistent."""
        check_tabular(self.T, self.O, self.R, self.b0, self.discount, atol=atol)
        return self


def check_tabular(T: Any, O: Any, R: Any, b0: Any, discount: float, atol: float = 1e-8) -> None:
    """Check shapes, ranges and stochasticity of tabular POMDP arrays.

    Parameters
    ----------
    T, O, R, b0 : array-like
        ``T[a, s, s']``, ``O[a, s', o]``, ``R[s, a]`` and the initial belief.
    discount : float
        Must lie in (0, 1].
    atol : float, default 1e-8
        Tolerance on the range [0, 1] of the probabilities (their sums must be 1 within 1e-6).

    Raises
    ------
    ModelCheckError
        With the first offending index, e.g. ``"T[1, 17, :] sums to 0.93, not 1"``.
    """
    T, O, R, b0 = (np.asarray(x, dtype=float) for x in (T, O, R, b0))
    if T.ndim != 3 or T.shape[1] != T.shape[2]:
        raise ModelCheckError(f"T must have shape (n_actions, n_states, n_states), got {T.shape}")
    A, S, _ = T.shape
    if O.ndim != 3 or O.shape[:2] != (A, S):
        raise ModelCheckError(f"O must have shape ({A}, {S}, n_observations), got {O.shape}")
    if R.shape != (S, A):
        raise ModelCheckError(f"R must have shape ({S}, {A}), got {R.shape}")
    if b0.shape != (S,):
        raise ModelCheckError(f"b0 must have shape ({S},), got {b0.shape}")
    if not (0.0 < float(discount) <= 1.0):
        raise ModelCheckError(f"discount must lie in (0, 1], got {discount}")
    for name, arr in (("T", T), ("O", O), ("b0", b0)):
        check_stochastic(name, arr, error=ModelCheckError, atol=atol)
    if not np.all(np.isfinite(R)):
        idx = tuple(int(i) for i in np.argwhere(~np.isfinite(R))[0])
        raise ModelCheckError(f"R{list(idx)} = {R[idx]!r} is not finite")

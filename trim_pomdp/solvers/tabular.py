"""Discounted tabular POMDPs: the interchange form read from files and handed to point-based solvers and SARSOP.

Array conventions: ``T[a, s, s']`` transition probabilities, ``O[a, s', o]`` observation probabilities given the
action taken and the state reached, ``R[s, a]`` expected immediate reward, ``b0`` initial belief, ``discount`` γ.

``T`` and ``O`` are either dense arrays or, for large models, one ``scipy.sparse`` matrix per action (``T[a]`` of
shape ``(S, S)``, ``O[a]`` of shape ``(S, Z)``); :func:`choose_representation` picks one by size and density,
and the readers use it. Code that needs one form asks for it: :meth:`TabularPOMDP.transition` and
:meth:`TabularPOMDP.observation` give per-action sparse matrices of either form, :meth:`TabularPOMDP.to_dense`
and :meth:`TabularPOMDP.to_sparse` convert.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import scipy.sparse as sp

from trim_pomdp._internal.simplex import check_stochastic
from trim_pomdp.exceptions import ModelCheckError
from trim_pomdp.solvers.memory import MemoryBudget

__all__ = ["DENSE_BYTES", "TabularPOMDP", "check_tabular", "choose_representation"]

#: Models whose dense ``T`` and ``O`` together take at most this many bytes are kept dense (16 MiB).
DENSE_BYTES = 16 * 1024**2
#: Larger models are kept dense only when at least this share of their entries is nonzero.
DENSE_MIN_DENSITY = 0.25


def _is_sparse_stack(x: Any) -> bool:
    return isinstance(x, (list, tuple)) and len(x) > 0 and all(sp.issparse(m) for m in x)


def _as_stack(x: Any, name: str) -> tuple[sp.csr_matrix, ...]:
    mats = tuple(sp.csr_matrix(m, dtype=np.float64) for m in x)
    if len({m.shape for m in mats}) != 1:
        raise ModelCheckError(
            f"the sparse {name} matrices must all have one shape, got {[m.shape for m in mats]}"
        )
    for m in mats:
        m.sum_duplicates()
        m.sort_indices()
    return mats


def choose_representation(n_states: int, n_actions: int, n_observations: int, nnz: int) -> str:
    """``"dense"`` or ``"sparse"`` for a model with these sizes and ``nnz`` nonzeros in ``T`` and ``O``.

    Dense when the dense arrays take at most :data:`DENSE_BYTES`, or when at least
    :data:`DENSE_MIN_DENSITY` of their entries are nonzero (sparse storage would then save little).
    """
    cells = float(n_actions) * n_states * (n_states + n_observations)
    if cells * 8 <= DENSE_BYTES or nnz >= DENSE_MIN_DENSITY * cells:
        return "dense"
    return "sparse"


@dataclass
class TabularPOMDP:
    """A discounted POMDP given by dense arrays or per-action sparse matrices.

    Parameters
    ----------
    T : ndarray of shape (n_actions, n_states, n_states), or sequence of sparse (n_states, n_states)
        ``T[a, s, s'] = P(s' | s, a)``; ``T[a]`` is a ``scipy.sparse`` matrix in the sparse form.
    O : ndarray of shape (n_actions, n_states, n_observations), or sequence of sparse (n_states, n_obs.)
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

    Notes
    -----
    In the sparse form ``T`` and ``O`` are tuples of ``scipy.sparse.csr_matrix`` (sorted indices, no explicit
    duplicates); ``model.T[a]`` is then a matrix, and ``model.T[a, s, s']`` is not available (use
    ``model.transition(a)[s, s']``, or :meth:`to_dense` for small models). :attr:`is_sparse` tells the forms
    apart.
    """

    T: Any
    O: Any
    R: np.ndarray
    b0: np.ndarray
    discount: float
    state_names: list[str] | None = None
    action_names: list[str] | None = None
    observation_names: list[str] | None = None
    terminal: np.ndarray | None = None
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if _is_sparse_stack(self.T):
            self.T = _as_stack(self.T, "T")
        if _is_sparse_stack(self.O):
            self.O = _as_stack(self.O, "O")

    # -- sizes and forms ---------------------------------------------------------------------------------
    @property
    def is_sparse(self) -> bool:
        """Whether ``T`` or ``O`` is held as per-action sparse matrices."""
        return isinstance(self.T, tuple) or isinstance(self.O, tuple)

    @property
    def n_states(self) -> int:
        """Number of states."""
        return int(self.T[0].shape[0] if isinstance(self.T, tuple) else np.shape(self.T)[1])

    @property
    def n_actions(self) -> int:
        """Number of actions."""
        return int(len(self.T) if isinstance(self.T, tuple) else np.shape(self.T)[0])

    @property
    def n_observations(self) -> int:
        """Number of observations."""
        return int(self.O[0].shape[1] if isinstance(self.O, tuple) else np.shape(self.O)[2])

    @property
    def nnz(self) -> int:
        """Number of nonzero entries of ``T`` and ``O`` together."""
        return sum(m.nnz for m in self.transition_matrices()) + sum(
            m.nnz for m in self.observation_matrices()
        )

    def _matrices(self, name: str) -> tuple[sp.csr_matrix, ...]:
        x = getattr(self, name)
        if isinstance(x, tuple):
            return x
        arr = np.asarray(x, dtype=np.float64)
        return tuple(sp.csr_matrix(arr[a]) for a in range(arr.shape[0]))

    def transition_matrices(self) -> tuple[sp.csr_matrix, ...]:
        """``T[a]`` for every action as a CSR matrix ``(S, S)`` (converted on each call for a dense model)."""
        return self._matrices("T")

    def observation_matrices(self) -> tuple[sp.csr_matrix, ...]:
        """``O[a]`` for every action as a CSR matrix ``(S, Z)`` (converted on each call for a dense model)."""
        return self._matrices("O")

    def transition(self, a: int) -> sp.csr_matrix:
        """``T[a]`` as a CSR matrix ``(S, S)``."""
        return self.T[a] if isinstance(self.T, tuple) else sp.csr_matrix(np.asarray(self.T[a], dtype=float))

    def observation(self, a: int) -> sp.csr_matrix:
        """``O[a]`` as a CSR matrix ``(S, Z)``."""
        return self.O[a] if isinstance(self.O, tuple) else sp.csr_matrix(np.asarray(self.O[a], dtype=float))

    def to_dense(self, memory_limit: int | float | str | None = None) -> TabularPOMDP:
        """The same model with dense ``T`` and ``O`` (``self`` if it already is).

        Raises
        ------
        ResourceLimitError
            When the dense arrays would exceed ``memory_limit`` (see :mod:`trim_pomdp.solvers.memory`).
        """
        if not self.is_sparse:
            return self
        S, A, Z = self.n_states, self.n_actions, self.n_observations
        MemoryBudget(memory_limit, f"the {S}-state model").check(
            8.0 * A * S * (S + Z), f"dense T and O ({A} x {S} x ({S} + {Z}) numbers)"
        )
        T = np.stack([m.toarray() for m in self.transition_matrices()])
        O = np.stack([m.toarray() for m in self.observation_matrices()])
        return replace(self, T=T, O=O)

    def to_sparse(self) -> TabularPOMDP:
        """The same model with ``T`` and ``O`` as per-action CSR matrices (``self`` if it already is)."""
        if isinstance(self.T, tuple) and isinstance(self.O, tuple):
            return self
        return replace(self, T=self.transition_matrices(), O=self.observation_matrices())

    def check(self, atol: float = 1e-8) -> TabularPOMDP:
        """Raise :class:`ModelCheckError` naming the offending index if the arrays are inconsistent."""
        if self.is_sparse:
            check_sparse_tabular(
                self.transition_matrices(), self.observation_matrices(), self.R, self.b0, self.discount, atol
            )
        else:
            check_tabular(self.T, self.O, self.R, self.b0, self.discount, atol=atol)
        return self


def _check_common(R: np.ndarray, b0: np.ndarray, S: int, A: int, discount: float, atol: float) -> None:
    if R.shape != (S, A):
        raise ModelCheckError(f"R must have shape ({S}, {A}), got {R.shape}")
    if b0.shape != (S,):
        raise ModelCheckError(f"b0 must have shape ({S},), got {b0.shape}")
    if not (0.0 < float(discount) <= 1.0):
        raise ModelCheckError(f"discount must lie in (0, 1], got {discount}")
    check_stochastic("b0", b0, error=ModelCheckError, atol=atol)
    if not np.all(np.isfinite(R)):
        idx = tuple(int(i) for i in np.argwhere(~np.isfinite(R))[0])
        raise ModelCheckError(f"R{list(idx)} = {R[idx]!r} is not finite")


def check_tabular(T: Any, O: Any, R: Any, b0: Any, discount: float, atol: float = 1e-8) -> None:
    """Check shapes, ranges and stochasticity of dense tabular POMDP arrays.

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
    _check_common(R, b0, S, A, discount, atol)
    for name, arr in (("T", T), ("O", O)):
        check_stochastic(name, arr, error=ModelCheckError, atol=atol)


def check_sparse_tabular(
    T: Sequence[sp.csr_matrix],
    O: Sequence[sp.csr_matrix],
    R: Any,
    b0: Any,
    discount: float,
    atol: float = 1e-8,
    sum_tol: float = 1e-6,
) -> None:
    """:func:`check_tabular` for per-action sparse ``T[a]`` ``(S, S)`` and ``O[a]`` ``(S, Z)``.

    Raises
    ------
    ModelCheckError
        With the first offending index, e.g. ``"T[1][17, :] sums to 0.93, not 1"``.
    """
    R, b0 = np.asarray(R, dtype=float), np.asarray(b0, dtype=float)
    A = len(T)
    if A == 0 or len(O) != A:
        raise ModelCheckError(f"T and O need one matrix per action, got {len(T)} and {len(O)}")
    S = T[0].shape[0]
    for name, mats, cols in (("T", T, S), ("O", O, O[0].shape[1])):
        for a, m in enumerate(mats):
            if m.shape != (S, cols):
                raise ModelCheckError(f"{name}[{a}] must have shape ({S}, {cols}), got {m.shape}")
            d = m.data
            bad = ~np.isfinite(d) | (d < -atol) | (d > 1 + atol)
            if bad.any():
                k = int(np.flatnonzero(bad)[0])
                row = int(np.searchsorted(m.indptr, k, side="right") - 1)
                raise ModelCheckError(
                    f"{name}[{a}][{row}, {int(m.indices[k])}] = {d[k]!r} is not a probability in [0, 1]"
                )
            sums = np.asarray(m.sum(axis=1)).ravel()
            off = np.abs(sums - 1.0) > sum_tol
            if off.any():
                row = int(np.flatnonzero(off)[0])
                raise ModelCheckError(f"{name}[{a}][{row}, :] sums to {sums[row]:.6g}, not 1")
    _check_common(R, b0, S, A, discount, atol)

"""The solution of a rank-2 finite-horizon POMDP: lower-bound lines and upper-bound grid values per epoch."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from trim_pomdp.exceptions import InvalidParameterError
from trim_pomdp.solvers.base import SolveInfo
from trim_pomdp.solvers.finite_horizon.problem import FiniteHorizonPOMDP
from trim_pomdp.solvers.finite_horizon.segments import SegmentFactorization, eval_envelope

__all__ = ["EpochPolicy", "FiniteHorizonPolicy"]

#: ``(at1, at0, breaks)`` of an upper envelope of lines (see :func:`~.segments.upper_envelope`)
Lines = tuple[np.ndarray, np.ndarray, np.ndarray]


def _offsets(xs: Sequence[np.ndarray]) -> np.ndarray:
    return np.concatenate([[0], np.cumsum([len(x) for x in xs])]).astype(np.int64)


class EpochPolicy:
    """Base of the policies of a :class:`~.problem.FiniteHorizonPOMDP`, queried per epoch ``t`` and context.

    Keeps the model's rewards, terminal flags and discount, and the report of the solve (``info``).
    """

    reward: np.ndarray
    terminal: np.ndarray
    discount: float
    info: SolveInfo | None

    context_probs: np.ndarray

    def _keep(self, model: FiniteHorizonPOMDP, info: SolveInfo | None) -> None:
        self.reward = model.reward
        self.terminal = model.terminal
        self.discount = float(model.discount)
        self.info = info

    def _model_arrays(self, prefix: str) -> dict[str, np.ndarray]:
        """The model's arrays every policy format stores, under ``prefix`` (``fh``, ``fv``)."""
        return {
            f"{prefix}_reward": self.reward,
            f"{prefix}_terminal": self.terminal,
            f"{prefix}_discount": np.array(self.discount),
            f"{prefix}_context_probs": self.context_probs,
        }

    def _read_model_arrays(self, arrays: Mapping[str, np.ndarray], prefix: str) -> None:
        """Inverse of :meth:`_model_arrays`."""
        self.reward = np.asarray(arrays[f"{prefix}_reward"], dtype=float)
        self.terminal = np.asarray(arrays[f"{prefix}_terminal"], dtype=bool)
        self.discount = float(arrays[f"{prefix}_discount"])
        self.context_probs = np.asarray(arrays[f"{prefix}_context_probs"], dtype=float)

    @property
    def horizon(self) -> int:
        """Number of epochs ``H``."""
        return int(self.reward.shape[0])

    @property
    def n_contexts(self) -> int:
        """Number of contexts per epoch."""
        return int(self.reward.shape[1])

    def _check(self, t: int, context: int) -> None:
        if not 1 <= int(t) <= self.horizon:
            raise InvalidParameterError(f"epoch t must be in 1..{self.horizon}, got {t}")
        if not 0 <= int(context) < self.n_contexts:
            raise InvalidParameterError(f"context must be in 0..{self.n_contexts - 1}, got {context}")


class FiniteHorizonPolicy(EpochPolicy):
    """The solution of a rank-2 :class:`~.problem.FiniteHorizonPOMDP`.

    Stores, per epoch ``t = 2 … H``, the lower-bound lines (upper envelope; the value at predicted belief
    ``g v1 + (1 − g) v2`` is ``at0 + (at1 − at0) g``) and the upper-bound grid values. Queried at a posterior
    belief ``b`` in context ``c`` of epoch ``t``:

    ``Q_L(a) = b · reward[t-1, c, :, a] + γ [not terminal] max_k line_k(b · M[a, :, 0])``; the greedy policy with
    respect to these is the returned policy, and its value is at least ``lower``. ``Q_U(a)`` is the same with the
    upper-bound interpolation; ``max_a Q_U ≥ V*``.

    Parameters
    ----------
    model : FiniteHorizonPOMDP
        The solved model (its rewards, terminal flags, discount and context probabilities are kept).
    factor : SegmentFactorization
        The rank-2 factorisation of its transitions.
    lines : list
        Per epoch index ``0 … H``: ``(at1, at0, breaks)`` of ``W_t`` (``None`` at 0; index ``H`` is zero).
    grids, uvals : list
        Per epoch index ``0 … H``: the grid of ``g`` and the upper-bound values on it (``None`` at 0).
    info : SolveInfo, optional
        The report of the solve.
    """

    def __init__(
        self,
        model: FiniteHorizonPOMDP,
        factor: SegmentFactorization,
        lines: list[Any],
        grids: list[Any],
        uvals: list[Any],
        info: SolveInfo | None = None,
    ):
        self._keep(model, info)
        self.context_probs = model.context_probs
        self.factor = factor
        self.lines = lines
        self.grids = grids
        self.uvals = uvals

    # -- arrays (for saving without pickle) ------------------------------------------------------------------
    def to_arrays(self) -> dict[str, np.ndarray]:
        """Plain arrays from which :meth:`from_arrays` rebuilds the policy."""
        idx = range(1, self.horizon + 1)
        at1 = [self.lines[i][0] for i in idx]
        at0 = [self.lines[i][1] for i in idx]
        brk = [self.lines[i][2] for i in idx]
        grids = [self.grids[i] for i in idx]
        uv = [self.uvals[i] for i in idx]
        return {
            **self._model_arrays("fh"),
            "fh_V": self.factor.V,
            "fh_M": self.factor.M,
            "fh_at1": np.concatenate(at1),
            "fh_at0": np.concatenate(at0),
            "fh_line_off": _offsets(at1),
            "fh_breaks": np.concatenate(brk),
            "fh_break_off": _offsets(brk),
            "fh_grid": np.concatenate(grids),
            "fh_uval": np.concatenate(uv),
            "fh_grid_off": _offsets(grids),
        }

    @classmethod
    def from_arrays(
        cls, arrays: Mapping[str, np.ndarray], info: SolveInfo | None = None
    ) -> FiniteHorizonPolicy:
        """Inverse of :meth:`to_arrays`."""
        self = cls.__new__(cls)
        self._read_model_arrays(arrays, "fh")
        self.factor = SegmentFactorization(np.asarray(arrays["fh_V"]), np.asarray(arrays["fh_M"]))
        H = self.reward.shape[0]
        lo, bo, go = arrays["fh_line_off"], arrays["fh_break_off"], arrays["fh_grid_off"]
        self.lines = [None] + [
            (
                arrays["fh_at1"][lo[j] : lo[j + 1]],
                arrays["fh_at0"][lo[j] : lo[j + 1]],
                arrays["fh_breaks"][bo[j] : bo[j + 1]],
            )
            for j in range(H)
        ]
        self.grids = [None] + [arrays["fh_grid"][go[j] : go[j + 1]] for j in range(H)]
        self.uvals = [None] + [arrays["fh_uval"][go[j] : go[j + 1]] for j in range(H)]
        self.info = info
        return self

    # -- queries ---------------------------------------------------------------------------------------------
    def action_values(self, t: int, context: int, belief: Any, upper: bool = False) -> np.ndarray:
        """Per-action values ``(n_actions,)`` (or ``(n, n_actions)`` for a 2-D array of beliefs).

        ``upper=False`` gives the lower-bound (policy) Q-values, ``upper=True`` the certified upper bounds.
        """
        self._check(t, context)
        b = np.asarray(belief, dtype=float)
        single = b.ndim == 1
        b = np.atleast_2d(b)
        i = int(t) - 1
        q = b @ self.reward[i, context]  # (n, A)
        if not self.terminal[i, context]:
            x = np.einsum("nz,az->na", b, self.factor.M[:, :, 0])
            s = b.sum(axis=1, keepdims=True)
            xs = np.where(s > 0, x / np.where(s > 0, s, 1), 0.0)
            if upper:
                fut = np.interp(xs, self.grids[i + 1], self.uvals[i + 1])
            else:
                at1, at0, br = self.lines[i + 1]
                fut, _ = eval_envelope(at1, at0, br, xs)
            q = q + self.discount * s * fut
        return q[0] if single else q

    def alphas(self, t: int, context: int) -> tuple[np.ndarray, np.ndarray]:
        """Explicit post-observation alpha vectors ``(n, n_hidden)`` and their actions ``(n,)`` at ``(t, context)``."""
        self._check(t, context)
        i = int(t) - 1
        r = self.reward[i, context]  # (Z, A)
        A = r.shape[1]
        if self.terminal[i, context]:
            return r.T.copy(), np.arange(A)
        at1, at0, _ = self.lines[i + 1]
        M = self.factor.M  # (A, Z, 2)
        out, acts = [], []
        for a in range(A):
            fut = M[a, :, 0][None, :] * at1[:, None] + M[a, :, 1][None, :] * at0[:, None]
            out.append(r[:, a][None, :] + self.discount * fut)
            acts.append(np.full(len(at1), a))
        return np.concatenate(out), np.concatenate(acts)

    def predicted_value(self, t: int, g: Any, upper: bool = False) -> Any:
        """Value bound ``W_t(g)`` before the observation of epoch ``t ≥ 2`` at predicted belief ``g v1 + (1−g) v2``."""
        if not 2 <= int(t) <= self.horizon + 1:
            raise InvalidParameterError(f"predicted values exist for t in 2..{self.horizon + 1}, got {t}")
        i = int(t) - 1
        g = np.asarray(g, dtype=float)
        if upper:
            return np.interp(g, self.grids[i], self.uvals[i])
        at1, at0, br = self.lines[i]
        return eval_envelope(at1, at0, br, g)[0]

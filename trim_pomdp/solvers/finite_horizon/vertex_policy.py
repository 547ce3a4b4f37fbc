"""The solution of a finite-horizon POMDP with ``K ≥ 3`` vertex distributions (:class:`FiniteHorizonVertexPolicy`).

Per epoch ``t = 2 … H`` the policy keeps the lower-bound alpha vectors in *vertex form* — alpha ``a`` (length
``K``) is worth ``λ · a`` at the predicted belief ``λ @ V`` — and, unless it was solved exactly, the upper-bound
values on a rectilinear grid in stick-breaking coordinates (:mod:`~.vertices`). Queried at a posterior belief ``b``
in context ``c`` of epoch ``t``::

    Q_L(a) = b · reward[t-1, c, :, a] + γ [not terminal] max_j (b @ M[a]) · alpha_j
    Q_U(a) = the same with s · U(to_stick((b @ M[a]) / s)),  s = Σ b

The greedy policy with respect to ``Q_L`` is the returned policy; its value is at least ``max_a Q_L``, and
``max_a Q_U`` is at least ``V*``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from trim_pomdp.exceptions import InvalidParameterError
from trim_pomdp.solvers.base import SolveInfo
from trim_pomdp.solvers.finite_horizon.policy import EpochPolicy
from trim_pomdp.solvers.finite_horizon.problem import FiniteHorizonPOMDP
from trim_pomdp.solvers.finite_horizon.vertices import TensorGrid, VertexFactorization, to_stick

__all__ = ["FiniteHorizonVertexPolicy", "VertexLayer"]


@dataclass
class VertexLayer:
    """Bounds on the pre-observation value ``W`` of one epoch.

    Attributes
    ----------
    alphas : ndarray, shape (n, K)
        Lower-bound alpha vectors in vertex form (each the value of a conditional plan).
    grid : TensorGrid or None
        The upper bound's grid; ``None`` when the layer is exact (upper = lower).
    uvals : ndarray, shape (grid.size,) or None
        Upper bounds at the grid nodes.
    """

    alphas: np.ndarray
    grid: TensorGrid | None = None
    uvals: np.ndarray | None = None

    def alpha_columns(self) -> list[np.ndarray]:
        """The alphas' components as contiguous columns (cached), for gathering one per successor."""
        cols = self.__dict__.get("_cols")
        if cols is None:
            cols = self.__dict__["_cols"] = [
                np.ascontiguousarray(self.alphas[:, k]) for k in range(self.alphas.shape[1])
            ]
        return cols

    def lower(self, lam: np.ndarray) -> np.ndarray:
        """Lower bound at (unnormalised) points ``lam (n, K)`` of the simplex."""
        return (lam @ self.alphas.T).max(axis=1)

    def upper(self, lam: np.ndarray) -> np.ndarray:
        """Upper bound at (unnormalised) points ``lam (n, K)``: positively homogeneous of degree 1."""
        if self.grid is None or self.uvals is None:
            return self.lower(lam)
        s = lam.sum(axis=1)
        ok = s > 0
        out = np.zeros(lam.shape[0])
        if ok.any():
            out[ok] = s[ok] * self.grid.interpolate(self.uvals, to_stick(lam[ok] / s[ok, None]))
        return np.maximum(out, self.lower(lam))


class FiniteHorizonVertexPolicy(EpochPolicy):
    """The solution of a :class:`~.problem.FiniteHorizonPOMDP` whose dynamics have ``K ≥ 3`` vertices.

    Same query interface as :class:`~.policy.FiniteHorizonPolicy`.

    Parameters
    ----------
    model : FiniteHorizonPOMDP
        The solved model (its rewards, terminal flags, discount and context probabilities are kept).
    factor : VertexFactorization
        The vertex factorisation of its transitions.
    layers : list of VertexLayer or None
        Per epoch index ``0 … H``: the bounds of ``W_t`` (``None`` at 0; index ``H`` is zero).
    info : SolveInfo, optional
        The report of the solve.
    """

    def __init__(
        self,
        model: FiniteHorizonPOMDP,
        factor: VertexFactorization,
        layers: list[Any],
        info: SolveInfo | None = None,
    ):
        self._keep(model, info)
        self.context_probs = model.context_probs
        self.factor = factor
        self.layers = layers

    @property
    def n_vertices(self) -> int:
        """``K``, the number of vertex distributions."""
        return self.factor.n_vertices

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
        q = b @ self.reward[i, context]
        if not self.terminal[i, context]:
            layer = self.layers[i + 1]
            for a in range(q.shape[1]):
                lam = b @ self.factor.M[a]
                fut = layer.upper(lam) if upper else layer.lower(lam)
                q[:, a] = q[:, a] + self.discount * fut
        return q[0] if single else q

    def alphas(self, t: int, context: int) -> tuple[np.ndarray, np.ndarray]:
        """Explicit post-observation alpha vectors ``(n, n_hidden)`` and their actions ``(n,)`` at ``(t, context)``."""
        self._check(t, context)
        i = int(t) - 1
        r = self.reward[i, context]
        A = r.shape[1]
        if self.terminal[i, context]:
            return r.T.copy(), np.arange(A)
        nxt = self.layers[i + 1].alphas
        out, acts = [], []
        for a in range(A):
            out.append(r[:, a][None, :] + self.discount * nxt @ self.factor.M[a].T)
            acts.append(np.full(len(nxt), a))
        return np.concatenate(out), np.concatenate(acts)

    def predicted_value(self, t: int, lam: Any, upper: bool = False) -> Any:
        """Value bound ``W_t`` before the observation of epoch ``t ≥ 2`` at predicted beliefs ``lam @ V``."""
        if not 2 <= int(t) <= self.horizon + 1:
            raise InvalidParameterError(f"predicted values exist for t in 2..{self.horizon + 1}, got {t}")
        lam = np.atleast_2d(np.asarray(lam, dtype=float))
        layer = self.layers[int(t) - 1]
        return layer.upper(lam) if upper else layer.lower(lam)

    # -- arrays (for saving without pickle) ------------------------------------------------------------------
    def to_arrays(self) -> dict[str, np.ndarray]:
        """Plain arrays from which :meth:`from_arrays` rebuilds the policy."""
        H, m = self.horizon, self.n_vertices - 1
        alphas, a_off, axes, ax_off, uv, u_off, exact = [], [0], [], [0], [], [0], []
        for i in range(1, H + 1):
            lay = self.layers[i]
            alphas.append(lay.alphas)
            a_off.append(a_off[-1] + len(lay.alphas))
            exact.append(lay.grid is None)
            for j in range(m):
                ax = np.zeros(0) if lay.grid is None else lay.grid.axes[j]
                axes.append(ax)
                ax_off.append(ax_off[-1] + ax.size)
            u = np.zeros(0) if lay.uvals is None else lay.uvals
            uv.append(u)
            u_off.append(u_off[-1] + u.size)
        return {
            **self._model_arrays("fv"),
            "fv_V": self.factor.V,
            "fv_M": self.factor.M,
            "fv_alpha": np.concatenate(alphas),
            "fv_alpha_off": np.asarray(a_off, dtype=np.int64),
            "fv_axes": np.concatenate(axes),
            "fv_axes_off": np.asarray(ax_off, dtype=np.int64),
            "fv_uval": np.concatenate(uv),
            "fv_uval_off": np.asarray(u_off, dtype=np.int64),
            "fv_exact": np.asarray(exact, dtype=bool),
        }

    @classmethod
    def from_arrays(
        cls, arrays: Mapping[str, np.ndarray], info: SolveInfo | None = None
    ) -> FiniteHorizonVertexPolicy:
        """Inverse of :meth:`to_arrays`."""
        self = cls.__new__(cls)
        self._read_model_arrays(arrays, "fv")
        self.factor = VertexFactorization(np.asarray(arrays["fv_V"]), np.asarray(arrays["fv_M"]))
        H, m = self.reward.shape[0], self.factor.n_vertices - 1
        ao, xo, uo = arrays["fv_alpha_off"], arrays["fv_axes_off"], arrays["fv_uval_off"]
        exact = np.asarray(arrays["fv_exact"], dtype=bool)
        layers: list[Any] = [None]
        for j in range(H):
            alphas = np.asarray(arrays["fv_alpha"][ao[j] : ao[j + 1]], dtype=float)
            if exact[j]:
                layers.append(VertexLayer(alphas))
                continue
            axes = [arrays["fv_axes"][xo[j * m + k] : xo[j * m + k + 1]] for k in range(m)]
            layers.append(
                VertexLayer(alphas, TensorGrid(axes), np.asarray(arrays["fv_uval"][uo[j] : uo[j + 1]]))
            )
        self.layers = layers
        self.info = info
        return self

"""The point-based solver's view of a tabular POMDP: per-action matrices and the expansion of a belief.

:class:`SparseModel` holds ``T[a]`` and ``O[a]`` as CSR matrices and, for models small enough, dense copies as
well (dense rows are faster to slice when there are few states). :meth:`SparseModel.expand` gives, for a sparse
belief, every child belief of every action at once, on the union of the predicted supports: the dense path does
it in a handful of array operations; the sparse path gathers only the CSR rows of the belief's support, so
nothing touches states outside it (a RockSample belief on 256 of 12,800 states costs 256 rows).

The initial bounds live in :mod:`~trim_pomdp.solvers.pointbased.initial`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from trim_pomdp.solvers.tabular import TabularPOMDP

__all__ = ["DENSE_CELLS", "Expansion", "SparseModel", "gather_rows"]

#: ``T`` (``A·S·S``) or ``O`` (``A·S·Z``) with at most this many cells also get a dense copy (32 MiB each).
DENSE_CELLS = 1 << 22


@dataclass
class Expansion:
    """The children of one belief under every action, stacked on the union of their supports.

    Attributes
    ----------
    union : ndarray of int
        States on which any child has positive probability.
    B : ndarray, shape (n_children, len(union))
        The child beliefs.
    act, obs : ndarray of int, shape (n_children,)
        Action and observation of each child.
    p : ndarray, shape (n_children,)
        ``P(o | b, a)`` of each child.
    pred : ndarray, shape (n_actions, len(union))
        ``b T_a`` restricted to ``union``.
    r : ndarray, shape (n_actions,)
        ``R(b, a)``.
    """

    union: np.ndarray
    B: np.ndarray
    act: np.ndarray
    obs: np.ndarray
    p: np.ndarray
    pred: np.ndarray
    r: np.ndarray
    #: ``B`` with the parent belief appended as a last row, when it lives on ``union``
    Bx: np.ndarray | None = None
    starts: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.starts = np.searchsorted(self.act, np.arange(len(self.r) + 1))

    @property
    def nbytes(self) -> int:
        return int(self.B.nbytes + self.pred.nbytes + 32 * len(self.p) + 8 * len(self.union))

    def rows(self, a: int) -> slice:
        """The rows of action ``a`` (children are sorted by action)."""
        assert self.starts is not None
        return slice(int(self.starts[a]), int(self.starts[a + 1]))


def gather_rows(
    m: sp.csr_matrix, idx: np.ndarray, w: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The entries of rows ``idx`` of ``m``: (position of the row in ``idx``, column, value * w[row])."""
    start = m.indptr[idx]
    cnt = m.indptr[idx + 1] - start
    total = int(cnt.sum())
    pos = np.repeat(start - np.cumsum(cnt) + cnt, cnt) + np.arange(total)
    rowk = np.repeat(np.arange(len(idx)), cnt)
    return rowk, m.indices[pos], m.data[pos] * w[rowk]


class SparseModel:
    """Per-action matrices of a :class:`TabularPOMDP` (CSR, plus dense copies for small models)."""

    def __init__(self, model: TabularPOMDP):
        self.S, self.A, self.Z = model.n_states, model.n_actions, model.n_observations
        self.gamma = float(model.discount)
        self.T = list(model.transition_matrices())
        self.O_sparse = list(model.observation_matrices())
        S, A, Z = self.S, self.A, self.Z
        self.T_dense = (
            (np.asarray(model.T, float) if not model.is_sparse else np.stack([t.toarray() for t in self.T]))
            if A * S * S <= DENSE_CELLS
            else None
        )
        self.O = (
            np.ascontiguousarray(
                np.asarray(model.O, float)
                if not model.is_sparse
                else np.stack([o.toarray() for o in self.O_sparse])
            )
            if A * S * Z <= DENSE_CELLS
            else None
        )
        #: the row of every nonzero of O[a] (for the alpha backups)
        self.O_rows = [np.repeat(np.arange(S), np.diff(o.indptr)) for o in self.O_sparse]
        nnz_o = sum(x.nnz for x in self.O_sparse)
        self.o_is_sparse = nnz_o < 0.25 * A * S * Z
        #: dense expansion (all actions in a few array operations) for small models
        self.dense = self.T_dense is not None and self.O is not None and S * A * max(S, Z) <= 1 << 16
        self.R = np.ascontiguousarray(np.asarray(model.R, float))
        self.b0 = np.asarray(model.b0, float)

    def predict(self, idx: np.ndarray, vals: np.ndarray, a: int) -> tuple[np.ndarray, np.ndarray]:
        """Support and values of ``b T_a`` for the sparse belief ``(idx, vals)``."""
        if self.T_dense is not None:
            bp = vals @ self.T_dense[a][idx]
            nz = np.flatnonzero(bp > 0.0)
            return nz, bp[nz]
        _, cols, w = gather_rows(self.T[a], idx, vals)
        idx2, inv = np.unique(cols, return_inverse=True)
        bp = np.bincount(inv, w, minlength=len(idx2))
        pos = bp > 0.0
        return idx2[pos], bp[pos]

    def children(self, idx: np.ndarray, vals: np.ndarray, a: int):
        """Posterior beliefs after ``a`` for every observation of positive probability.

        Returns
        -------
        idx2 : ndarray of int
            Support of the predicted distribution; every child lives on it.
        obs : ndarray of int
            Observations with ``P(o | b, a) > 0``.
        p : ndarray
            ``P(o | b, a)`` for ``obs``.
        B : ndarray, shape (len(obs), len(idx2))
            Child beliefs restricted to ``idx2``.
        pred : ndarray
            The predicted distribution on ``idx2``.
        """
        idx2, pred = self.predict(idx, vals, a)
        if self.O is not None:
            M = pred[:, None] * self.O[a][idx2]
            p_all = M.sum(axis=0)
            obs = np.flatnonzero(p_all > 1e-300)
            p = p_all[obs]
            B = M.T[obs] / p[:, None]  # contiguous (n_obs, len(idx2))
            return idx2, obs, p, B, pred
        rowk, ocol, w = gather_rows(self.O_sparse[a], idx2, pred)
        obs, inv = np.unique(ocol, return_inverse=True)
        p = np.bincount(inv, w, minlength=len(obs))
        B = np.zeros((len(obs), len(idx2)))
        B[inv, rowk] = w
        keep = p > 1e-300
        if not keep.all():
            obs, p, B = obs[keep], p[keep], B[keep]
        B /= p[:, None]
        return idx2, obs, p, B, pred

    def expand(self, idx: np.ndarray, vals: np.ndarray) -> Expansion:
        """All children of the belief ``(idx, vals)`` under every action (see :class:`Expansion`)."""
        r = vals @ self.R[idx]
        if self.dense:
            assert self.T_dense is not None and self.O is not None
            pred_all = vals @ self.T_dense[:, idx, :]  # (A, S)
            M = pred_all[:, :, None] * self.O  # (A, S, Z)
            p_all = M.sum(axis=1)  # (A, Z)
            act, obs = np.nonzero(p_all > 1e-300)
            p = p_all[act, obs]
            union = np.arange(self.S)  # few states: full rows, so that the parent belief can join the batch
            Bx = np.zeros((len(p) + 1, self.S))
            Bx[:-1] = M[act, :, obs] / p[:, None]
            Bx[-1, idx] = vals
            return Expansion(union, Bx[:-1], act, obs, p, pred_all, r, Bx)
        kids = [self.children(idx, vals, a) for a in range(self.A)]
        union = np.unique(np.concatenate([k[0] for k in kids]))
        n = sum(len(k[1]) for k in kids)
        # the parent joins the batch (one upper-bound query instead of two) when it lives on the union, as
        # it does whenever an action leaves the state where it is (a sensing action, a fully observed factor)
        at = np.searchsorted(union, idx)
        inside = bool(np.all(at < len(union)) and np.array_equal(union[np.minimum(at, len(union) - 1)], idx))
        Bx = np.zeros((n + 1 if inside else n, len(union)))
        if inside:
            Bx[-1, at] = vals
        B = Bx[:n]
        pred = np.zeros((self.A, len(union)))
        row = 0
        for a, (idx2, _, _, Ba, pa) in enumerate(kids):
            cols = np.searchsorted(union, idx2)
            B[row : row + len(Ba), cols] = Ba
            pred[a, cols] = pa
            row += len(Ba)
        act = np.repeat(np.arange(self.A), [len(k[1]) for k in kids])
        obs = np.concatenate([k[1] for k in kids]).astype(np.int64)
        p = np.concatenate([k[2] for k in kids])
        return Expansion(union, B, act, obs, p, pred, r, Bx if inside else None)

"""Sparse building blocks of the readers: assignment logs where later entries win, CSR lookups, row checks.

Model files assign probabilities entry by entry, row by row or matrix by matrix, and later assignments override
earlier ones. :class:`AssignmentLog` records them in file order (with a sequence number, and "clear this row"
marks for row and matrix forms that zero everything else in the row) and resolves them at the end into the
nonzeros of a sparse matrix, in memory proportional to what the file assigns, never to the dense size.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import scipy.sparse as sp

from trim_pomdp.exceptions import DataFormatError
from trim_pomdp.solvers.memory import MemoryBudget

__all__ = ["ENTRY_BYTES", "AssignmentLog", "check_rows", "csr_lookup", "last_wins", "split_actions"]

#: Bytes the readers charge per logged entry (row, column, value, sequence number).
ENTRY_BYTES = 32


def last_wins(keys: list[np.ndarray], seq: np.ndarray) -> np.ndarray:
    """Indices of the last entry (largest ``seq``) of each distinct key tuple, sorted by key."""
    if len(seq) == 0:
        return np.zeros(0, dtype=np.int64)
    order = np.lexsort([seq, *reversed(keys)])  # sorted by keys, then seq
    sk = [k[order] for k in keys]
    last = np.ones(len(order), dtype=bool)
    same = np.ones(len(order) - 1, dtype=bool)
    for k in sk:
        same &= k[1:] == k[:-1]
    last[:-1] = ~same
    return order[last]


class AssignmentLog:
    """Assignments ``M[row, col] = value`` of an ``(n_rows, n_cols)`` matrix, in file order; the last one wins.

    Parameters
    ----------
    n_rows, n_cols : int
        The matrix shape.
    budget : MemoryBudget
        Charged :data:`ENTRY_BYTES` per logged entry, before the entries are stored.
    what : str
        What the matrix is, for messages (``"T"``).
    """

    def __init__(self, n_rows: int, n_cols: int, budget: MemoryBudget, what: str):
        self.n_rows, self.n_cols, self.budget, self.what = int(n_rows), int(n_cols), budget, what
        self._rows: list[np.ndarray] = []
        self._cols: list[np.ndarray] = []
        self._vals: list[np.ndarray] = []
        self._seq: list[np.ndarray] = []
        self._clear_rows: list[np.ndarray] = []
        self._clear_seq: list[np.ndarray] = []
        self.n = 0

    def reserve(self, n: float, where: str) -> None:
        """Charge the budget for ``n`` entries about to be created by ``where`` (raises before they exist)."""
        self.budget.charge(ENTRY_BYTES * float(n), f"{where} ({n:,.0f} {self.what} entries)")

    def add(
        self, rows: np.ndarray, cols: np.ndarray, vals: np.ndarray | float, seq: np.ndarray | int
    ) -> None:
        """Log entries (already charged with :meth:`reserve`); ``seq`` orders them against other entries."""
        rows = np.asarray(rows, dtype=np.int64).ravel()
        n = len(rows)
        if n == 0:
            return
        self._rows.append(rows)
        self._cols.append(np.asarray(cols, dtype=np.int64).ravel())
        self._vals.append(np.broadcast_to(np.asarray(vals, dtype=np.float64), (n,)).copy())
        self._seq.append(np.broadcast_to(np.asarray(seq, dtype=np.int64), (n,)).copy())
        self.n += n

    def clear(self, rows: np.ndarray, seq: np.ndarray | int) -> None:
        """Zero whole rows: entries logged for them with a smaller ``seq`` are dropped."""
        rows = np.asarray(rows, dtype=np.int64).ravel()
        self.budget.charge(16 * len(rows), f"row resets of {self.what}")
        self._clear_rows.append(rows)
        self._clear_seq.append(np.broadcast_to(np.asarray(seq, dtype=np.int64), rows.shape).copy())

    def resolve(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(rows, cols, values)`` of the final nonzeros, sorted by row then column (the logs are freed)."""
        cat = lambda xs, dt: np.concatenate(xs) if xs else np.zeros(0, dtype=dt)  # noqa: E731
        rows, cols = cat(self._rows, np.int64), cat(self._cols, np.int64)
        vals, seq = cat(self._vals, np.float64), cat(self._seq, np.int64)
        self._rows, self._cols, self._vals, self._seq = [], [], [], []
        keep = last_wins([rows, cols], seq)
        rows, cols, vals, seq = rows[keep], cols[keep], vals[keep], seq[keep]
        if self._clear_rows:
            crow, cseq = np.concatenate(self._clear_rows), np.concatenate(self._clear_seq)
            sel = last_wins([crow], cseq)
            crow, cseq = crow[sel], cseq[sel]  # sorted by row
            pos = np.searchsorted(crow, rows)
            pos_c = np.minimum(pos, len(crow) - 1)
            cleared = (crow[pos_c] == rows) & (cseq[pos_c] > seq)
            rows, cols, vals = rows[~cleared], cols[~cleared], vals[~cleared]
        nz = vals != 0.0
        return rows[nz], cols[nz], vals[nz]

    def matrix(self) -> sp.csr_matrix:
        """The resolved matrix, ``(n_rows, n_cols)`` CSR with sorted indices."""
        rows, cols, vals = self.resolve()
        indptr = np.zeros(self.n_rows + 1, dtype=np.int64)
        np.cumsum(np.bincount(rows, minlength=self.n_rows), out=indptr[1:])
        return sp.csr_matrix((vals, cols, indptr), shape=(self.n_rows, self.n_cols))


def csr_lookup(m: sp.csr_matrix, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """``m[rows[i], cols[i]]`` for every ``i`` (0 where there is no entry); ``m`` must have sorted indices."""
    rows = np.asarray(rows, dtype=np.int64)
    cols = np.asarray(cols, dtype=np.int64)
    out = np.zeros(len(rows))
    if m.nnz == 0 or len(rows) == 0:
        return out
    entry_rows = np.repeat(np.arange(m.shape[0], dtype=np.int64), np.diff(m.indptr))
    flat = entry_rows * m.shape[1] + m.indices
    want = rows * m.shape[1] + cols
    pos = np.minimum(np.searchsorted(flat, want), len(flat) - 1)
    hit = flat[pos] == want
    out[hit] = m.data[pos[hit]]
    return out


def check_rows(
    m: sp.csr_matrix, tolerance: float, describe: Callable[[int, float, int], str]
) -> tuple[sp.csr_matrix, int, float]:
    """Check that every row of ``m`` is a distribution; renormalise rows off 1 by more than 1e-12.

    ``describe(row, row_sum, n_bad)`` gives the message of the :class:`DataFormatError` raised for the first bad
    row.

    Returns
    -------
    (matrix, n_renormalised, max_deviation)
    """
    sums = np.asarray(m.sum(axis=1)).ravel()
    neg_rows = np.unique(np.repeat(np.arange(m.shape[0]), np.diff(m.indptr))[m.data < 0])
    bad = np.abs(sums - 1.0) > tolerance
    bad[neg_rows] = True
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise DataFormatError(describe(row, float(sums[row]), int(bad.sum())))
    off = np.abs(sums - 1.0) > 1e-12
    if off.any():
        lens = np.diff(m.indptr)
        mask = np.repeat(off, lens)  # rows within 1e-12 of 1 are kept bit-exact
        m = m.copy()
        m.data[mask] = m.data[mask] / np.repeat(sums, lens)[mask]
    return m, int(off.sum()), float(np.abs(sums - 1).max()) if len(sums) else 0.0


def split_actions(m: sp.csr_matrix, n_actions: int) -> tuple[sp.csr_matrix, ...]:
    """Rows ``a * S ... (a + 1) * S - 1`` of an ``(A * S, C)`` matrix as one ``(S, C)`` matrix per action."""
    S = m.shape[0] // n_actions
    return tuple(m[a * S : (a + 1) * S] for a in range(n_actions))

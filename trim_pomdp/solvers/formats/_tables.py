"""Variables and tables of factored ``.pomdpx`` models: conditional probability and value tables, dense or sparse.

A :class:`Table` is laid out as a matrix whose rows are the combinations of all but its last variable (for a
conditional probability table: the parents) and whose columns are the values of the last one. Small tables are
dense arrays; tables with more than :data:`DENSE_CELLS` cells (a variable with many values, a flat model with
one state variable) keep only what their ``<Entry>`` elements assign, through an
:class:`~trim_pomdp.solvers.formats._sparse.AssignmentLog`. Every cell an entry covers is charged to the
reader's memory budget before anything is allocated.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from trim_pomdp.exceptions import DataFormatError
from trim_pomdp.solvers.formats._common import ROW_SUM_TOLERANCE
from trim_pomdp.solvers.formats._sparse import AssignmentLog, csr_lookup
from trim_pomdp.solvers.memory import MemoryBudget

__all__ = ["DENSE_CELLS", "Table", "Var"]

#: Tables with at most this many cells are dense arrays (128 MiB): factored tables whose entries cover whole
#: blocks with ``*`` are far cheaper dense; only tables beyond this keep a sparse log of their entries.
DENSE_CELLS = 1 << 24


class Var:
    """A variable of a ``.pomdpx`` file: its name, kind (``prev``, ``curr``, ``obs``, ``action``) and values.

    ``NumValues n`` declares values ``{prefix}0 ... {prefix}{n-1}``; their names are made only when asked for,
    so that a variable with 10⁸ values costs nothing until a table over it is built.
    """

    def __init__(
        self,
        name: str,
        kind: str,
        n: int,
        names: list[str] | None,
        prefix: str,
        state: int = -1,
        fully_observed: bool = False,
    ):
        self.name, self.kind, self.n, self._names, self.prefix = name, kind, int(n), names, prefix
        self.state, self.fully_observed = state, fully_observed
        self._lookup: dict[str, int] | None = None

    def value_name(self, i: int) -> str:
        return self._names[i] if self._names is not None else f"{self.prefix}{i}"

    def names(self) -> list[str]:
        return list(self._names) if self._names is not None else [f"{self.prefix}{i}" for i in range(self.n)]

    def index(self, tok: str, where: str) -> int:
        """The index of the value ``tok`` (a name or a 0-based number)."""
        if self._names is not None:
            if self._lookup is None:
                self._lookup = {name: i for i, name in enumerate(self._names)}
            if tok in self._lookup:
                return self._lookup[tok]
        elif tok.startswith(self.prefix) and tok[len(self.prefix) :].isdigit():
            i = int(tok[len(self.prefix) :])
            if i < self.n:
                return i
        if tok.isdigit() and int(tok) < self.n:
            return int(tok)
        shown = [self.value_name(i) for i in range(min(self.n, 6))]
        raise DataFormatError(
            f"{where}: {tok!r} is not a value of variable {self.name!r} "
            f"(expected one of {shown}{'...' if self.n > 6 else ''}, '*' or '-')"
        )


class Table:
    """A table over ``variables`` (the last one is the conditioned variable of a CPT), filled by ``<Entry>``s.

    Parameters
    ----------
    variables : list of Var
        The table's axes.
    budget : MemoryBudget
        Charged for the cells before they are allocated.
    where : str
        The element, for messages.
    """

    def __init__(self, variables: list[Var], budget: MemoryBudget, where: str):
        self.vars, self.budget, self.where = variables, budget, where
        self.shape = [v.n for v in variables]
        cells = float(np.prod(self.shape, dtype=float))
        self.n_cols = self.shape[-1] if variables else 1
        self.n_rows = int(cells // self.n_cols) if variables else 1
        self.strides = (
            np.cumprod([1, *self.shape[::-1]])[:-1][::-1].astype(np.int64) if variables else np.zeros(0)
        )
        self.dense: np.ndarray | None = None
        self.log: AssignmentLog | None = None
        self.seq = 0
        if cells <= DENSE_CELLS:
            budget.charge(8 * cells, f"{where}: its table ({cells:,.0f} cells)")
            self.dense = np.zeros(self.shape)
        else:
            self.log = AssignmentLog(self.n_rows, self.n_cols, budget, f"{where} table")
        self.matrix: sp.csr_matrix | None = None

    # -- filling -------------------------------------------------------------------------------------------
    def apply(self, inst: list[str], raw: str, tag: str, probability: bool, here: str) -> None:
        """Apply one ``<Entry>``: ``inst`` its ``<Instance>`` tokens, ``raw`` the text of its ``tag``."""
        variables = self.vars
        if len(inst) != len(variables):
            names = " ".join(v.name for v in variables)
            raise DataFormatError(
                f"{here}: <Instance> {' '.join(inst)!r} has {len(inst)} values, expected "
                f"{len(variables)} (one per variable: {names})"
            )
        fixed: list[int | None] = []
        dashed: list[int] = []
        for ax, (tok, var) in enumerate(zip(inst, variables, strict=True)):
            if tok in ("*", "-"):
                fixed.append(None)
                if tok == "-":
                    dashed.append(ax)
            else:
                fixed.append(var.index(tok, here))
        if not raw:
            raise DataFormatError(f"{here}: missing <{tag}>")
        free = [ax for ax, f in enumerate(fixed) if f is None]
        region = [self.shape[ax] for ax in free]
        n_cells = float(np.prod(region, dtype=float))
        self.budget.check(16 * n_cells, f"{here} ({n_cells:,.0f} cells)")
        values = self._region_values(raw, tag, probability, here, free, region, dashed)
        self.seq += 1
        if self.dense is not None:
            index = tuple(slice(None) if f is None else f for f in fixed)
            self.dense[index] = (
                values.reshape([self.shape[ax] for ax in free]) if free else values.reshape(())
            )
            return
        assert self.log is not None
        base = sum(int(f) * int(s) for f, s in zip(fixed, self.strides, strict=True) if f is not None)
        flat = np.full(1, base, dtype=np.int64)
        for ax in free:  # row-major over the free axes, as the values are laid out
            flat = (
                flat[:, None] + np.arange(self.shape[ax], dtype=np.int64)[None, :] * self.strides[ax]
            ).ravel()
        values = values.ravel()
        rows, cols = np.divmod(flat, self.n_cols)
        if fixed[-1] is None:  # whole rows are set: reset them, then log the nonzeros only
            first = np.ones(len(rows), bool)
            first[1:] = rows[1:] != rows[:-1]  # rows come sorted (row-major over the free axes)
            self.log.clear(rows[first], self.seq)
            nz = values != 0
            rows, cols, values = rows[nz], cols[nz], values[nz]
        self.log.reserve(len(rows), here)
        self.log.add(rows, cols, values, self.seq)

    def _region_values(
        self,
        raw: str,
        tag: str,
        probability: bool,
        here: str,
        free: list[int],
        region: list[int],
        dashed: list[int],
    ) -> np.ndarray:
        """The values of the cells an entry covers, shaped like its free axes (row-major)."""
        variables = self.vars
        if raw in ("identity", "uniform"):
            if not probability:
                raise DataFormatError(f"{here}: {raw!r} is only allowed in <ProbTable>")
            if raw == "uniform":
                if not free or free[-1] != len(variables) - 1:
                    raise DataFormatError(
                        f"{here}: 'uniform' needs '*' or '-' for variable {variables[-1].name!r}"
                    )
                return np.full(region, 1.0 / variables[-1].n)
            if len(dashed) != 2 or variables[dashed[0]].n != variables[dashed[1]].n:
                raise DataFormatError(
                    f"{here}: 'identity' needs exactly two '-' over variables of equal size"
                )
            grids = np.indices(region, sparse=True)
            i0, i1 = free.index(dashed[0]), free.index(dashed[1])
            return np.broadcast_to((grids[i0] == grids[i1]).astype(float), region).copy()
        try:
            nums = np.array([float(x) for x in raw.split()])
        except ValueError:
            raise DataFormatError(
                f"{here}: <{tag}> must hold numbers{', identity or uniform' if probability else ''}, got {raw[:60]!r}"
            ) from None
        n_expected = int(np.prod([variables[ax].n for ax in dashed])) if dashed else 1
        if nums.size != n_expected:
            raise DataFormatError(
                f"{here}: <{tag}> has {nums.size} numbers, expected {n_expected} "
                f"(one per combination of the '-' variables)"
            )
        if not dashed:
            return np.full(region, nums[0])
        shape = [variables[ax].n if ax in dashed else 1 for ax in free]
        return np.broadcast_to(nums.reshape(shape), region).copy()

    # -- finishing -----------------------------------------------------------------------------------------
    def finish(self, check_rows: bool, vname: str = "") -> Table:
        """Build :attr:`matrix`; for a CPT (``check_rows``) refuse rows that are not distributions, renormalise
        printed roundings."""
        if self.dense is not None:
            table = self.dense.reshape(self.n_rows, self.n_cols)
            if check_rows:
                sums = table.sum(axis=1)
                self._check(sums, table.min(axis=1) < 0, vname)
                off = np.abs(sums - 1.0) > 1e-12  # renormalise printed roundings, keep exact rows bit-exact
                if off.any():
                    table[off] /= sums[off][:, None]
            self.matrix = sp.csr_matrix(table)
        else:
            assert self.log is not None
            m = self.log.matrix()
            if check_rows:
                sums = np.asarray(m.sum(axis=1)).ravel()
                neg = np.zeros(self.n_rows, bool)
                neg[np.repeat(np.arange(self.n_rows), np.diff(m.indptr))[m.data < 0]] = True
                self._check(sums, neg, vname)
                off = np.abs(sums - 1.0) > 1e-12
                if off.any():
                    lens = np.diff(m.indptr)
                    mask = np.repeat(off, lens)
                    m.data[mask] = m.data[mask] / np.repeat(sums, lens)[mask]
            self.matrix = m
            self.log = None
        self.matrix.sort_indices()
        return self

    def _check(self, sums: np.ndarray, negative: np.ndarray, vname: str) -> None:
        off_one = np.abs(sums - 1.0) > ROW_SUM_TOLERANCE
        if not (off_one.any() or negative.any()):
            return
        parents = self.vars[:-1]
        ctx, shown = "", ""
        if off_one.any():
            row = int(np.flatnonzero(off_one)[0])
            digits = np.unravel_index(row, [v.n for v in parents]) if parents else ()
            ctx = ", ".join(f"{v.name}={v.value_name(int(i))}" for v, i in zip(parents, digits, strict=True))
            shown = f" (sums to {sums[row]:.6g})"
        raise DataFormatError(
            f"{self.where}: P({vname} | {ctx or 'parents'}) must be >= 0 and sum to 1{shown}"
        )

    def lookup(self, cols: list[np.ndarray]) -> np.ndarray:
        """The table's values at the cells ``(cols[0][i], cols[1][i], ...)``."""
        if self.dense is not None:
            return self.dense[tuple(cols)]
        assert self.matrix is not None
        flat = np.zeros(len(cols[0]) if cols else 1, dtype=np.int64)
        for c, s in zip(cols, self.strides, strict=True):
            flat = flat + np.asarray(c, dtype=np.int64) * s
        rows, cc = np.divmod(flat, self.n_cols)
        return csr_lookup(self.matrix, rows, cc)

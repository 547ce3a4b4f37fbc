"""Factored ``.pomdpx`` models and their flattening into sparse tabular models, never through a dense array.

:class:`FactoredPOMDP` holds what the file says: the variables and one conditional probability table per state
and observation variable (:class:`~trim_pomdp.solvers.formats._tables.Table`), plus the reward functions.
:meth:`FactoredPOMDP.flatten` expands them into one CSR matrix per action: starting from every joint state, it
multiplies in one variable's table at a time, keeping only the combinations of positive probability, so the
work and memory grow with the nonzeros of the flat model (RockSample_7_8: 12,800 states, ~1 nonzero per row and
action), not with ``|S|²``. The joint state is the product of the state variables (first declared varies
slowest), the joint observation the product of the observation variables followed by the fully observed state
variables (their next value is observed exactly).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

from trim_pomdp.exceptions import DataFormatError
from trim_pomdp.solvers.formats._tables import Table, Var
from trim_pomdp.solvers.memory import MemoryBudget
from trim_pomdp.solvers.tabular import TabularPOMDP, choose_representation

__all__ = ["NAMES_LIMIT", "FactoredPOMDP"]

#: Flat state/observation names are made only for at most this many values (else ``None``).
NAMES_LIMIT = 1 << 20


def _product_names(vs: list[Var], budget: MemoryBudget) -> list[str] | None:
    if not vs:
        return None
    n = int(np.prod([v.n for v in vs], dtype=float))
    if n > NAMES_LIMIT:
        return None
    budget.charge(64.0 * n, f"{n:,} flat value names")
    if len(vs) == 1:
        return vs[0].names()
    out = [""]
    for v in vs:
        names = v.names()
        out = [f"{a}_{b}" if a else b for a in out for b in names]
    return out


def _order(vars_: list[Var], tables: dict[str, Table], where: str) -> list[tuple[Var, Table]]:
    """``vars_`` with their tables, each after the other expanded variables among its parents."""
    names = {v.name for v in vars_}
    done: set[str] = set()
    out: list[tuple[Var, Table]] = []
    todo = list(vars_)
    while todo:
        ready = [
            v for v in todo if all(p.name in done or p.name not in names for p in tables[v.name].vars[:-1])
        ]
        if not ready:
            raise DataFormatError(
                f"{where}: the variables {[v.name for v in todo]} depend on each other in a cycle"
            )
        for v in ready:
            out.append((v, tables[v.name]))
            done.add(v.name)
            todo.remove(v)
    return out


def _expand(
    src: np.ndarray,
    factors: list[tuple[Var, Table]],
    column: Callable[[Var, np.ndarray], np.ndarray],
    budget: MemoryBudget,
    what: str,
) -> tuple[np.ndarray, dict[str, np.ndarray], np.ndarray]:
    """Multiply the tables in one at a time: every (source row, values so far) with positive probability.

    ``column(var, src)`` gives the value of a parent that is not expanded here (a previous state variable, an
    action) for each row. Returns the source rows, the expanded variables' values and the probabilities.
    """
    p = np.ones(len(src))
    vals: dict[str, np.ndarray] = {}
    for var, table in factors:
        assert table.matrix is not None
        m = table.matrix
        row = np.zeros(len(src), dtype=np.int64)
        for pv, stride in zip(table.vars[:-1], table.strides[:-1] // table.n_cols, strict=True):
            row += (vals[pv.name] if pv.name in vals else column(pv, src)) * stride
        start = m.indptr[row]
        cnt = m.indptr[row + 1] - start
        total = int(cnt.sum())
        budget.check((16 + 8 * (len(vals) + 1)) * float(total), f"{what} ({total:,} nonzeros)")
        if total == len(src) and np.all(cnt == 1):  # deterministic: every row keeps its one successor
            pos = start
        else:
            rep = np.repeat(np.arange(len(src)), cnt)
            pos = np.repeat(start - np.cumsum(cnt) + cnt, cnt) + np.arange(total)
            src, p = src[rep], p[rep]
            vals = {k: v[rep] for k, v in vals.items()}
        p = p * m.data[pos]
        vals[var.name] = m.indices[pos].astype(np.int64)
    return src, vals, p


@dataclass
class FactoredPOMDP:
    """A ``.pomdpx`` model as the file gives it: variables and one table per variable and reward function.

    Attributes
    ----------
    discount : float
    states : list of (Var, Var)
        The state variables as (previous, current) pairs, in declaration order.
    observations, actions : list of Var
    initial, transitions, observation_tables : dict of str to Table
        ``P(x_0 | ...)`` per previous-state variable, ``P(x_1 | ...)`` per current-state variable,
        ``P(o | ...)`` per observation variable.
    rewards : list of Table
        The ``Func`` tables (they add up).
    source : str
    """

    discount: float
    states: list[tuple[Var, Var]]
    observations: list[Var]
    actions: list[Var]
    initial: dict[str, Table] = field(default_factory=dict)
    transitions: dict[str, Table] = field(default_factory=dict)
    observation_tables: dict[str, Table] = field(default_factory=dict)
    rewards: list[Table] = field(default_factory=list)
    source: str = "<string>"

    @property
    def n_states(self) -> int:
        return int(np.prod([p.n for p, _ in self.states], dtype=np.int64))

    @property
    def n_actions(self) -> int:
        return int(np.prod([a.n for a in self.actions], dtype=np.int64))

    @property
    def fully_observed(self) -> list[Var]:
        return [c for _, c in self.states if c.fully_observed]

    @property
    def n_observations(self) -> int:
        return int(
            np.prod([v.n for v in self.observations] + [c.n for c in self.fully_observed], dtype=np.int64)
        )

    def check_size(self, budget: MemoryBudget) -> None:
        """Refuse, before any table is read, a flat model whose least possible size exceeds the budget."""
        S = float(np.prod([p.n for p, _ in self.states], dtype=float))
        A = float(np.prod([a.n for a in self.actions], dtype=float))
        need = 8 * S * A + 8 * S + 2 * 12 * S * A  # rewards, b0, one T and one O entry per row and action
        budget.check(
            need,
            f"the flat model ({S:,.0f} states x {A:,.0f} actions: rewards, initial belief and at least one "
            "transition and observation per state and action)",
        )

    # -- flattening ------------------------------------------------------------------------------------------
    def _strides(self) -> tuple[np.ndarray, np.ndarray]:
        sizes = np.array([p.n for p, _ in self.states], dtype=np.int64)
        return sizes, np.cumprod(np.concatenate([[1], sizes[::-1]]))[:-1][::-1].astype(np.int64)

    def _digits(self, budget: MemoryBudget) -> list[np.ndarray]:
        """The value of every state variable at every joint state (computed once per flattening)."""
        sizes, strides = self._strides()
        S = self.n_states
        budget.charge(8.0 * S * len(sizes), "the state variables' values at every state")
        joint = np.arange(S, dtype=np.int64)
        return [(joint // st) % n for n, st in zip(sizes, strides, strict=True)]

    def _column(self, a: int, digits: list[np.ndarray]) -> Callable[[Var, np.ndarray], np.ndarray]:
        """Values of the previous/current state and action variables at joint states ``src`` and action ``a``."""
        adig = np.unravel_index(a, [v.n for v in self.actions]) if self.actions else ()
        aval = {v.name: int(d) for v, d in zip(self.actions, adig, strict=True)}

        def column(var: Var, src: np.ndarray) -> np.ndarray:
            if var.kind == "action":
                return np.full(len(src), aval[var.name], dtype=np.int64)
            if var.kind in ("prev", "curr"):
                return digits[var.state][src]
            raise DataFormatError(f"{self.source}: variable {var.name!r} cannot be a parent here")

        return column

    def flatten(self, budget: MemoryBudget | None = None, representation: str = "auto") -> TabularPOMDP:
        """The flat tabular model (per-action CSR ``T`` and ``O``; dense when small, see ``representation``)."""
        budget = budget if budget is not None else MemoryBudget(None, self.source)
        S, A = self.n_states, self.n_actions
        b0 = self._initial_belief(budget)
        trans = _order(
            [c for _, c in self.states], self.transitions, f"{self.source}: <StateTransitionFunction>"
        )
        obs = _order(self.observations, self.observation_tables, f"{self.source}: <ObsFunction>")
        _, strides = self._strides()
        fo = self.fully_observed
        n_extra = int(np.prod([c.n for c in fo], dtype=np.int64))
        Z = self.n_observations
        digits = self._digits(budget)
        T, O = [], []
        for a in range(A):
            column = self._column(a, digits)
            src, vals, p = _expand(
                np.arange(S), trans, column, budget, f"{self.source}: transitions of action {a}"
            )
            dst = sum((vals[c.name] * strides[c.state] for _, c in self.states), np.zeros(len(src), np.int64))
            budget.charge(12.0 * len(src), f"{self.source}: T of action {a}")
            T.append(sp.csr_matrix((p, (src, dst)), shape=(S, S)))
            src, vals, p = _expand(
                np.arange(S), obs, column, budget, f"{self.source}: observations of action {a}"
            )
            o = np.zeros(len(src), dtype=np.int64)
            for v in self.observations:
                o = o * v.n + vals[v.name]
            extra = np.zeros(len(src), dtype=np.int64)
            for c in fo:
                extra = extra * c.n + digits[c.state][src]
            budget.charge(12.0 * len(src), f"{self.source}: O of action {a}")
            O.append(sp.csr_matrix((p, (src, o * n_extra + extra)), shape=(S, Z)))
        R = self._rewards(T, O, digits, budget)
        obs_name_vars = self.observations + fo
        model = TabularPOMDP(
            T=tuple(T),
            O=tuple(O),
            R=R,
            b0=b0,
            discount=self.discount,
            state_names=_product_names([p for p, _ in self.states], budget),
            action_names=_product_names(self.actions, budget),
            observation_names=_product_names(obs_name_vars, budget) if obs_name_vars else ["none"],
            meta={
                "source": self.source,
                "format": "pomdpx",
                "state_variables": [p.name for p, _ in self.states],
                "fully_observed": [c.name for c in fo],
                "state_sizes": [p.n for p, _ in self.states],
                "state_observed": [c.fully_observed for _, c in self.states],
            },
        )
        if representation == "auto":
            representation = choose_representation(S, A, Z, model.nnz)
        return model.to_dense(budget.limit - budget.used) if representation == "dense" else model

    def _initial_belief(self, budget: MemoryBudget) -> np.ndarray:
        """``b0``: the product over the previous-state variables of their initial tables."""
        prev = [p for p, _ in self.states]
        for p in prev:
            if p.name not in self.initial:
                raise DataFormatError(f"{self.source}: <InitialStateBelief> has no CondProb for {p.name!r}")
            if any(v.kind != "prev" for v in self.initial[p.name].vars):
                raise DataFormatError(
                    f"{self.source}: <InitialStateBelief> CondProb of {p.name!r} may only depend on other state "
                    "variables"
                )
        order = _order(prev, self.initial, f"{self.source}: <InitialStateBelief>")
        S = self.n_states
        budget.charge(8.0 * S, "the initial belief")

        def no_column(var: Var, src: np.ndarray) -> np.ndarray:  # pragma: no cover - _order prevents it
            raise DataFormatError(
                f"{self.source}: <InitialStateBelief>: {var.name!r} is not a state variable"
            )

        src, vals, prob = _expand(
            np.zeros(1, np.int64), order, no_column, budget, f"{self.source}: initial belief"
        )
        _, strides = self._strides()
        idx = sum((vals[v.name] * strides[v.state] for v in prev), np.zeros(len(src), np.int64))
        return np.bincount(idx, prob, minlength=S).astype(float)

    def _rewards(
        self, T: list[sp.csr_matrix], O: list[sp.csr_matrix], digits: list[np.ndarray], budget: MemoryBudget
    ) -> np.ndarray:
        """``R[s, a]``: the sum of the ``Func`` tables, folded into expectations over ``s'`` and ``o``."""
        S, A = self.n_states, self.n_actions
        budget.charge(8.0 * S * A, "the rewards")
        R = np.zeros((S, A))
        n_extra = int(np.prod([c.n for c in self.fully_observed], dtype=np.int64))
        obs_sizes = [v.n for v in self.observations]
        for table in self.rewards:
            kinds = {v.kind for v in table.vars}
            for a in range(A):
                column = self._column(a, digits)
                if not kinds & {"curr", "obs"}:
                    src = np.arange(S)
                    R[:, a] += table.lookup([column(v, src) for v in table.vars])
                    continue
                Ta = T[a].tocoo()
                s, s2, w = Ta.row.astype(np.int64), Ta.col.astype(np.int64), Ta.data
                o_digits: dict[str, np.ndarray] = {}
                if "obs" in kinds:  # pair every transition with every observation of its next state
                    Oa = O[a]
                    cnt = np.diff(Oa.indptr)[s2]
                    total = int(cnt.sum())
                    budget.check(40.0 * total, f"{self.source}: a reward over observations ({total:,} terms)")
                    rep = np.repeat(np.arange(len(s)), cnt)
                    pos = np.repeat(Oa.indptr[s2] - np.cumsum(cnt) + cnt, cnt) + np.arange(total)
                    s, s2, w = s[rep], s2[rep], w[rep] * Oa.data[pos]
                    o_idx = np.unravel_index(Oa.indices[pos].astype(np.int64) // n_extra, obs_sizes)
                    o_digits = {v.name: d for v, d in zip(self.observations, o_idx, strict=True)}
                cols = [
                    o_digits[v.name] if v.kind == "obs" else column(v, s2 if v.kind == "curr" else s)
                    for v in table.vars
                ]
                R[:, a] += np.bincount(s, w * table.lookup(cols), minlength=S)
        return R

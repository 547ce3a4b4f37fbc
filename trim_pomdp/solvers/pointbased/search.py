"""One discounted point-based solve: the sampled belief tree, both bounds, trials, backups and sweeps.

A :class:`Search` holds everything that belongs to one solve (the sparse model, the lower and upper bounds, the
tree of visited beliefs, the random generator and the counters), so that a
:class:`~trim_pomdp.solvers.pointbased.solver.PointBasedSolver` keeps only its settings and one solver object can
solve several models, also from several threads at once.

* **Initial bounds**: the blind policies "always do a" (lower) and the fast informed bound iterated from the
  exact MDP Q-values (upper).
* **Layer seeding**: when the support graph is acyclic apart from self-loops, grids of beliefs on its small
  supports are backed up from the last layer to the first (upper bound only).
* **Trials**: depth-first from ``b0``, the action with the largest upper Q-value, the observation drawn in
  proportion to the weighted excess gap (or its argmax), then backups in reverse order.
* **Sweeps**: lower-bound-only backups over the whole tree, deepest first, for at most a share of the trial time
  that shrinks while they stop improving the bound at ``b0``.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import scipy.sparse as sp

from trim_pomdp._internal.simplex import simplex_grid
from trim_pomdp.solvers.pointbased.bounds import AlphaSet, SawtoothUpper
from trim_pomdp.solvers.pointbased.layers import support_layers
from trim_pomdp.solvers.pointbased.sparse import (
    SparseModel,
    blind_lower_bound,
    fast_informed_bound,
    mdp_upper_bound,
)
from trim_pomdp.solvers.tabular import TabularPOMDP

if TYPE_CHECKING:
    from trim_pomdp.solvers.pointbased.solver import PointBasedSolver

__all__ = ["Search"]


class _Node:
    """A belief of the sampled tree (sparse) with its cached bounds and visited children."""

    __slots__ = ("children", "idx", "lb", "q_up", "ub", "vals")

    def __init__(self, idx: np.ndarray, vals: np.ndarray):
        self.idx, self.vals = idx, vals
        self.lb = -math.inf
        self.ub = math.inf
        self.children: dict[tuple[int, int], _Node] = {}
        self.q_up: np.ndarray | None = None  # upper Q-values of the last backup (valid, possibly stale)


@dataclass
class _Progress:
    """Counters and timers of the main loop."""

    trials: int = 0
    backups: int = 0
    trial_time: float = 0.0
    sweep_time: float = 0.0
    sweep_share: float = 0.5
    last_prune_k: int = 0
    last_callback: float = field(default_factory=time.perf_counter)
    stop: str = "precision reached"


def _witness_matrix(nodes: list[_Node], S: int) -> sp.csc_matrix:
    rows = np.concatenate([n.idx for n in nodes])
    vals = np.concatenate([n.vals for n in nodes])
    cols = np.repeat(np.arange(len(nodes)), [len(n.idx) for n in nodes])
    return sp.csc_matrix((vals, (rows, cols)), shape=(S, len(nodes)))


class Search:
    """The state of one discounted solve of ``model`` with the settings of ``solver``.

    Parameters
    ----------
    solver : PointBasedSolver
        Read for its settings only.
    model : TabularPOMDP
        A checked model with discount < 1.
    """

    def __init__(self, solver: PointBasedSolver, model: TabularPOMDP):
        self.cfg = solver
        self.start = time.perf_counter()
        self.limit = math.inf if solver.time_limit is None else solver.time_limit
        m = self.m = SparseModel(model)
        self.lower = AlphaSet(m.S)
        for a, alpha in enumerate(blind_lower_bound(m)):
            self.lower.add(alpha, a)
        # upper bound: MDP by policy iteration, then FIB (each iterate valid)
        q_mdp = mdp_upper_bound(m)
        fib, self.fib_iterations = fast_informed_bound(
            m, q_mdp, time_budget=max(0.05, 0.2 * min(self.limit, 600.0))
        )
        hull = solver.hull_max_support
        if hull is None:  # small models: the per-query overhead outweighs the gain (Tiger: 0.43 s -> 0.57 s)
            hull = 3 if m.S > 256 else 0
        self.upper = SawtoothUpper(fib, hull_max_support=hull)
        self.init_seconds = time.perf_counter() - self.start
        self.rng = np.random.default_rng(solver.seed)
        b0 = m.b0
        self.root = _Node(np.flatnonzero(b0 > 0), b0[b0 > 0])
        self.nodes = [self.root]
        self.seeded = 0
        self.progress = _Progress()

    # -- the main loop ---------------------------------------------------------------------------------------
    def run(self) -> None:
        """Seed the layers, then run trials (and sweeps) until the precision or the time limit is reached."""
        cfg, root, lower, progress = self.cfg, self.root, self.lower, self.progress
        if cfg.layer_grid:
            self.seeded = self._seed_layers(self.start + cfg.layer_share * self.limit)
        self._backup(root)
        progress.last_prune_k, progress.last_callback = lower.K, time.perf_counter()
        # bound range for the depth cap
        span = float(np.max(self.upper.corner) - np.min(lower.alphas)) + 1e-12
        while True:
            gap = root.ub - root.lb
            elapsed = time.perf_counter() - self.start
            if gap <= cfg.precision:
                break
            if elapsed >= self.limit:
                progress.stop = "time limit reached"
                break
            if (
                cfg.callback is not None
                and time.perf_counter() - progress.last_callback >= cfg.callback_interval
            ):
                progress.last_callback = time.perf_counter()
                self.notify(elapsed, root.lb, root.ub)
            t0 = time.perf_counter()
            path, n_new = self._trial(cfg.zeta * gap, span)
            self.nodes.extend(n_new)
            for node in reversed(path):
                self._backup(node)
                progress.backups += 1
            progress.trials += 1
            progress.trial_time += time.perf_counter() - t0
            if cfg.sweeps and progress.sweep_time < progress.sweep_share * progress.trial_time:
                self._sweep(gap)
            if lower.K > 1.1 * progress.last_prune_k + 10:
                lower.prune_to_witnesses(_witness_matrix(self.nodes, self.m.S))
                progress.last_prune_k = lower.K

    def notify(self, seconds: float, lower_bound: float, upper_bound: float, done: bool = False) -> None:
        """Call the solver's progress callback (if any) with the current bounds."""
        if self.cfg.callback is None:
            return
        report: dict[str, Any] = {
            "seconds": seconds,
            "lower_bound": lower_bound,
            "upper_bound": upper_bound,
            "alphas": self.lower.K,
            "trials": self.progress.trials,
        }
        if done:
            report["done"] = True
        self.cfg.callback(report)

    def _sweep(self, gap: float) -> None:
        """Lower-bound backups over the tree, deepest first, until done or out of time."""
        root, progress = self.root, self.progress
        t1 = time.perf_counter()
        lb_before = root.lb
        for node in reversed(self.nodes):
            self._backup_lower(node)
            progress.backups += 1
            if time.perf_counter() > self.start + self.limit:
                break
        progress.sweep_time += time.perf_counter() - t1
        root.lb = max(root.lb, float((self.lower.alphas[:, root.idx] @ root.vals).max()))
        # back off when sweeps stop paying at b0 (e.g. when the upper bound is what is left to close)
        if root.lb - lb_before > 0.02 * gap:
            progress.sweep_share = min(0.5, 2 * progress.sweep_share)
        else:
            progress.sweep_share = max(0.02, progress.sweep_share / 4)

    # -- backups ---------------------------------------------------------------------------------------------
    def _expand(self, node: _Node) -> list[tuple]:
        """Per action: R(b, a), children (support, obs, probabilities, beliefs) and their bounds.

        The children of all actions are evaluated as one batch on the union of their supports (one bound
        evaluation per node instead of one per action).
        """
        m, lower, upper = self.m, self.lower, self.upper
        kids = [m.children(node.idx, node.vals, a) for a in range(m.A)]
        sizes = [len(k[1]) for k in kids]
        union = np.unique(np.concatenate([k[0] for k in kids]))
        if all(len(k[0]) == len(union) for k in kids):  # common support (e.g. TRIM): no re-indexing needed
            Ball = np.vstack([k[3] for k in kids])
        else:
            Ball = np.zeros((sum(sizes), len(union)))
            row = 0
            for idx2, _, _, B, _ in kids:
                Ball[row : row + len(B), np.searchsorted(union, idx2)] = B
                row += len(B)
        lv_all, lk_all = lower.values(union, Ball)
        uv_all = np.maximum(upper.values(union, Ball), lv_all)  # both valid; never let round-off cross them
        out = []
        row = 0
        for a, (idx2, obs, p, B, pred) in enumerate(kids):
            sl = slice(row, row + sizes[a])
            row += sizes[a]
            r = float(node.vals @ m.R[node.idx, a])
            out.append((r, idx2, obs, p, B, pred, lv_all[sl], lk_all[sl], uv_all[sl]))
        return out

    def _backup(self, node: _Node) -> tuple[list[tuple], np.ndarray]:
        """Recompute Q-bounds at ``node``, add the backed-up alpha vector and the upper point."""
        gamma = self.m.gamma
        exp = self._expand(node)
        q_lo = np.array([r + gamma * p @ lv for (r, _, _, p, _, _, lv, _, _) in exp])
        q_up = np.array([r + gamma * p @ uv for (r, _, _, p, _, _, _, _, uv) in exp])
        a = int(q_lo.argmax())
        _, idx2, obs, _, _, pred, _, lk, _ = exp[a]
        self.lower.add(self._alpha(a, idx2, obs, pred, lk), a)
        node.lb = float(max(q_lo[a], node.lb))
        ub = float(q_up.max())
        current = self.upper.value(node.idx, node.vals)
        node.ub = min(node.ub, ub, current)
        self.upper.add(node.idx, node.vals, node.ub, current=current)
        node.ub = max(node.ub, node.lb)
        node.q_up = q_up
        return exp, q_up

    def _alpha(
        self, a: int, idx2: np.ndarray, obs: np.ndarray, pred: np.ndarray, lk: np.ndarray
    ) -> np.ndarray:
        """Backed-up vector ``R[:, a] + γ T_a g`` with ``g(s') = Σ_o O_a[s', o] α_{k(o)}(s')``.

        ``k(o)`` is the best vector at the child belief for reachable observations and, for the others, the best
        vector at the predicted distribution ``b T_a`` (any choice gives a valid lower bound).
        """
        m, lower = self.m, self.lower
        if len(obs) == m.Z:
            k_of_o = lk
        else:
            k_of_o = np.full(m.Z, int(lower.values(idx2, pred[None, :] / pred.sum())[1][0]), dtype=np.int64)
            k_of_o[obs] = lk
        ks, inv = np.unique(k_of_o, return_inverse=True)
        G = lower.alphas
        if len(ks) == 1:
            g = G[ks[0]].copy()
        elif m.Z <= 64:
            onehot = np.zeros((m.Z, len(ks)))
            onehot[np.arange(m.Z), inv] = 1.0
            g = np.einsum("sk,ks->s", m.O[a] @ onehot, G[ks])
        else:
            onehot = sp.csr_matrix((np.ones(m.Z), (np.arange(m.Z), inv)), shape=(m.Z, len(ks)))
            W = (m.O_sparse[a] @ onehot).toarray()  # (S, n_ks): Σ_{o in group} O_a[s', o]
            g = np.einsum("sk,ks->s", W, G[ks])
        Tg = m.T_dense[a] @ g if m.T_dense is not None else m.T[a] @ g
        return m.R[:, a] + m.gamma * Tg

    def _seed_layers(self, deadline: float) -> int:
        """Bottom-up upper-bound backups on grids over the small supports of a layered model.

        When the support graph (:func:`~trim_pomdp.solvers.pointbased.layers.support_layers`) is acyclic apart
        from self-loops, every support of at most ``layer_max_support`` states gets the beliefs of a
        resolution-``layer_grid`` simplex grid, backed up (upper bound only) in reverse topological order: one
        sweep carries improvements through all layers. Returns the number of beliefs backed up.
        """
        budget = max(0.0, deadline - time.perf_counter())
        layers = support_layers(self.m, deadline=time.perf_counter() + 0.1 * budget)
        if not layers:
            return 0
        grids = {}
        n = 0
        for U in layers:
            k = len(U)
            if k > self.cfg.layer_max_support:
                continue
            if k not in grids:
                grids[k] = simplex_grid(k, self.cfg.layer_grid)[::-1]  # smallest first entry first
            idx = np.asarray(U, dtype=np.int64)
            for row in grids[k]:
                if time.perf_counter() > deadline:
                    return n
                nz = row > 0
                self._backup_upper(idx[nz], row[nz])
                n += 1
        return n

    def _backup_upper(self, idx: np.ndarray, vals: np.ndarray) -> None:
        """Upper-bound-only backup at the belief ``(idx, vals)``; stores the point if it tightens it."""
        m, upper = self.m, self.upper
        q = -math.inf
        for a in range(m.A):
            idx2, _, p, B, _ = m.children(idx, vals, a)
            q = max(q, float(vals @ m.R[idx, a]) + m.gamma * float(p @ upper.values(idx2, B)))
        upper.add(idx, vals, q)

    def _backup_lower(self, node: _Node) -> None:
        """Lower-bound-only backup at ``node`` (no upper-bound evaluation; used by the sweeps)."""
        m, lower = self.m, self.lower
        best = None
        for a in range(m.A):
            idx2, obs, p, B, pred = m.children(node.idx, node.vals, a)
            lv, lk = lower.values(idx2, B)
            q = float(node.vals @ m.R[node.idx, a]) + m.gamma * float(p @ lv)
            if best is None or q > best[0]:
                best = (q, a, idx2, obs, pred, lk)
        assert best is not None  # every model has an action
        q, a, idx2, obs, pred, lk = best
        if q > node.lb + 1e-12:
            lower.add(self._alpha(a, idx2, obs, pred, lk), a)
            node.lb = q

    # -- trials ----------------------------------------------------------------------------------------------
    def _trial(self, eps: float, span: float) -> tuple[list[_Node], list[_Node]]:
        """One depth-first trial from the root; returns its path and the nodes it created."""
        gamma, deadline = self.m.gamma, self.start + self.limit
        path: list[_Node] = []
        new_nodes: list[_Node] = []
        node, t = self.root, 0
        while True:
            if node.q_up is None:
                exp, q_up = self._backup(node)
                a = int(np.argmax(q_up))
                _, idx2, obs, p, B, _, lv, _, uv = exp[a]
            else:  # revisited node: choose by its cached upper Q-values, refresh only that action's children
                a = int(np.argmax(node.q_up))
                idx2, obs, p, B, _ = self.m.children(node.idx, node.vals, a)
                lv, _ = self.lower.values(idx2, B)
                uv = np.maximum(self.upper.values(idx2, B), lv)
            path.append(node)
            thr = eps * gamma ** (-t)
            if (
                node.ub - node.lb <= thr
                or t >= self.cfg.max_depth
                or thr > span
                or time.perf_counter() > deadline
            ):
                break
            excess = p * (uv - lv - eps * gamma ** (-(t + 1)))
            j = int(np.argmax(excess))
            if excess[j] <= 0:
                break
            if self.cfg.sampling == "stochastic":
                pos = np.maximum(excess, 0.0)
                j = int(self.rng.choice(len(pos), p=pos / pos.sum()))
            o = int(obs[j])
            child = node.children.get((a, o))
            if child is None:
                nz = np.flatnonzero(B[j] > 0)
                child = _Node(idx2[nz], B[j, nz])
                node.children[(a, o)] = child
                new_nodes.append(child)
            node, t = child, t + 1
        return path, new_nodes

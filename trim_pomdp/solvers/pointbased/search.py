"""One discounted point-based solve: the sampled belief tree, both bounds, trials, backups and sweeps.

A :class:`Search` holds everything that belongs to one solve (the sparse model, the lower and upper bounds, the
tree of visited beliefs, the random generator and the counters), so that a
:class:`~trim_pomdp.solvers.pointbased.solver.PointBasedSolver` keeps only its settings and one solver object can
solve several models, also from several threads at once.

* **Initial bounds** (:mod:`~trim_pomdp.solvers.pointbased.initial`): the blind policies "always do a" (lower)
  and the fast informed bound iterated from the MDP's Q-values (upper), within a share of the time limit (the
  limit counts from the call to ``solve``, set-up included).
* **Layer seeding**: when the support graph is acyclic apart from self-loops, grids of beliefs on its small
  supports are backed up from the last layer to the first (upper bound only).
* **Trials**: depth-first from ``b0``, the action with the largest upper Q-value, the observation drawn in
  proportion to the weighted excess gap (or its argmax), then backups in reverse order; each trial's depth factor
  is chosen between two by the gap each has closed per second (:class:`_TrialDepth`).
* **Sweeps**: lower-bound-only backups over the whole tree, deepest first, for at most a share of the trial time
  that shrinks while they stop improving the bound at ``b0``.

A node's children under every action (:class:`~trim_pomdp.solvers.pointbased.sparse.Expansion`) are computed
once and kept while the cache has room: trials and sweeps revisit the same beliefs many times.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import scipy.sparse as sp

from trim_pomdp._internal.simplex import simplex_grid
from trim_pomdp.solvers.memory import MemoryBudget
from trim_pomdp.solvers.pointbased.bounds import AlphaSet, SawtoothUpper
from trim_pomdp.solvers.pointbased.initial import (
    blind_lower_bound,
    fast_informed_bound,
    fib_matrices,
    mdp_upper_bound,
)
from trim_pomdp.solvers.pointbased.layers import support_layers
from trim_pomdp.solvers.pointbased.sparse import Expansion, SparseModel
from trim_pomdp.solvers.tabular import TabularPOMDP

if TYPE_CHECKING:
    from trim_pomdp.solvers.pointbased.solver import PointBasedSolver

__all__ = ["Search"]

#: Share of the time limit that the initial bounds may take (at most; small models take milliseconds).
INIT_SHARE = 0.25


class _Node:
    """A belief of the sampled tree (sparse) with its cached bounds, children and expansion."""

    __slots__ = ("children", "exp", "idx", "kid_bounds", "lb", "q_up", "ub", "vals")

    def __init__(self, idx: np.ndarray, vals: np.ndarray):
        self.idx, self.vals = idx, vals
        self.lb = -math.inf
        self.ub = math.inf
        self.children: dict[tuple[int, int], _Node] = {}
        self.q_up: np.ndarray | None = None  # upper Q-values of the last backup (valid, possibly stale)
        self.kid_bounds: tuple[np.ndarray, np.ndarray] | None = None  # children's bounds at that backup
        self.exp: Expansion | None = None


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


#: The second trial depth factor, as a share of ``zeta``: a deeper trial (the gap that stops it is this much
#: smaller) reaches the far rewards of long tasks sooner; on RockSample_7_8 ζ = 0.25 instead of 0.8 took the
#: 60-s lower bound from 20.4-21.1 to 21.2-21.6, but it doubled Tiger's time to 1e-3 and left the flattened
#: TRIM-POMDP's upper bound looser, so each trial picks its depth by the rates measured so far.
DEEP_SHARE = 0.3

#: Seconds of solving before the deeper trials are tried at all: models solved in less (Tiger, cheese.95,
#: mini-hall2) keep the trials that were tuned on them (trying the deeper ones cost them 1.4x the time).
DEEP_AFTER = 1.0


class _TrialDepth:
    """Chooses each trial's depth factor among a few by the rate at which each has closed the gap at ``b0``.

    The rate of a factor is a running mean (weight ``decay`` on the past) of the gap closed per second by its
    trials (the trial, its backups and the sweep after it); each factor is tried ``warmup`` times first, then
    the fastest is used, with a random other one in a ``explore`` share of the trials (seeded by the solve's
    generator), so a factor that paid less early on is retried as the search moves on.
    """

    def __init__(self, zetas: tuple[float, ...], decay: float = 0.9, warmup: int = 2, explore: float = 0.1):
        self.zetas = zetas
        self.decay, self.warmup, self.explore = decay, warmup, explore
        self.rate = np.zeros(len(zetas))
        self.count = np.zeros(len(zetas), dtype=np.int64)

    def choose(self, rng: np.random.Generator) -> int:
        """Index of the factor for the next trial."""
        fresh = np.flatnonzero(self.count < self.warmup)
        if len(fresh):
            return int(fresh[0])
        if rng.random() < self.explore:
            return int(rng.integers(len(self.zetas)))
        return int(np.argmax(self.rate))

    def update(self, arm: int, closed: float, seconds: float) -> None:
        """Record that a trial with factor ``arm`` closed ``closed`` of the gap in ``seconds``."""
        r = max(closed, 0.0) / max(seconds, 1e-9)
        self.rate[arm] = r if self.count[arm] == 0 else self.decay * self.rate[arm] + (1 - self.decay) * r
        self.count[arm] += 1


#: Beliefs whose entries agree to this many decimals are one node of the search graph
KEY_DECIMALS = 13

#: Beliefs are merged into one node only for models with at most this many states. Measured (30-s solves, same
#: machine): Tiger 40 % less CPU to gap 1e-3, Hallway2 unchanged, RockSample_4_4 (257 states) 1.44 -> 1.14 s,
#: but TagAvoid (870 states) ended at a lower bound of -8.7 instead of -6.2, for reasons not yet understood;
#: larger models keep the tree.
MERGE_MAX_STATES = 512


def _belief_key(idx: np.ndarray, vals: np.ndarray) -> bytes:
    """Identity of a sparse belief: its support and its values rounded to ``KEY_DECIMALS`` decimals.

    Beliefs reached along different paths (Tiger's "listen left, then right" and "right, then left"; every
    door opening back to ``b0``) differ only by round-off; sharing their node saves the repeated backups.
    The bounds of the node are those of its first belief, which moves them by at most ``10^-13`` per state
    times the bounds' range, far below the solver's precision.
    """
    return idx.tobytes() + np.round(vals, KEY_DECIMALS).tobytes()


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
    start : float, optional
        ``time.perf_counter()`` at which the time limit started (default: now).
    """

    def __init__(self, solver: PointBasedSolver, model: TabularPOMDP, start: float | None = None):
        self.cfg = solver
        self.start = time.perf_counter() if start is None else start
        self.limit = math.inf if solver.time_limit is None else solver.time_limit
        self.budget = MemoryBudget(solver.memory_limit, "the point-based solve")
        m = self.m = SparseModel(model)
        self.budget.charge(8.0 * (m.S * m.A * 4 + sum(t.nnz for t in m.T) * 2), "the model's matrices")
        init_end = self.start + INIT_SHARE * min(self.limit, 600.0)
        vec = 8.0 * m.S
        self.max_vectors = max(2 * m.A + 16, int(0.4 * (self.budget.limit - self.budget.used) / vec))
        self.lower = AlphaSet(m.S, capacity=min(256, self.max_vectors), dominance_check=m.S * 256 <= 1 << 20)
        for a, alpha in enumerate(blind_lower_bound(m, deadline=init_end)):
            self.lower.add(alpha, a)
        q_mdp = mdp_upper_bound(m, deadline=init_end)
        held = self.budget.used
        mats = fib_matrices(m, self.budget)
        if mats is None:
            fib, self.fib_iterations = q_mdp, 0
        else:
            budget_s = max(0.0, init_end - time.perf_counter())
            fib, self.fib_iterations = fast_informed_bound(m, q_mdp, time_budget=budget_s, matrices=mats)
        del mats
        self.budget.release(self.budget.used - held)
        hull = solver.hull_max_support
        if hull is None:  # small models: the per-query overhead outweighs the gain (Tiger: 0.43 s -> 0.57 s)
            hull = 3 if m.S > 256 else 0
        self.upper = SawtoothUpper(fib, hull_max_support=hull)
        self.init_seconds = time.perf_counter() - self.start
        self.rng = np.random.default_rng(solver.seed)
        b0 = m.b0
        self.root = _Node(np.flatnonzero(b0 > 0), b0[b0 > 0])
        self.nodes = [self.root]
        #: the nodes by belief: a belief reached along several paths is one node (the tree is a graph);
        #: None: every path gets its own nodes (see MERGE_MAX_STATES)
        self.index: dict[bytes, _Node] | None = (
            {_belief_key(self.root.idx, self.root.vals): self.root} if m.S <= MERGE_MAX_STATES else None
        )
        self.seeded = 0
        self.progress = _Progress()
        self.depth = _TrialDepth((solver.zeta, DEEP_SHARE * solver.zeta))
        self.cache_room = min(256 * 1024**2, 0.25 * (self.budget.limit - self.budget.used))

    # -- the main loop ---------------------------------------------------------------------------------------
    def run(self) -> None:
        """Seed the layers, then run trials (and sweeps) until the precision or the time limit is reached."""
        cfg, root, lower, progress = self.cfg, self.root, self.lower, self.progress
        if cfg.layer_grid and time.perf_counter() < self.start + self.limit:
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
            if progress.stop == "memory limit reached":
                break
            if (
                cfg.callback is not None
                and time.perf_counter() - progress.last_callback >= cfg.callback_interval
            ):
                progress.last_callback = time.perf_counter()
                self.notify(elapsed, root.lb, root.ub)
            t0 = time.perf_counter()
            arm = self.depth.choose(self.rng) if elapsed >= DEEP_AFTER else 0
            path, n_new = self._trial(self.depth.zetas[arm] * gap, span)
            self.nodes.extend(n_new)
            for node in reversed(path):
                self._backup(node)
                progress.backups += 1
            progress.trials += 1
            progress.trial_time += time.perf_counter() - t0
            if cfg.sweeps and progress.sweep_time < progress.sweep_share * progress.trial_time:
                self._sweep(gap)
            self.depth.update(arm, gap - (root.ub - root.lb), time.perf_counter() - t0)
            if lower.K > 1.1 * progress.last_prune_k + 10:
                self._prune()

    def _prune(self) -> None:
        """Keep the vectors that are best at some tree belief: a node's lower bound never drops."""
        self.lower.prune_to_witnesses(_witness_matrix(self.nodes, self.m.S))
        self.progress.last_prune_k = self.lower.K

    def _add_alpha(self, alpha: np.ndarray, a: int) -> None:
        """Add a lower-bound vector, pruning (and at worst stopping the solve) at the memory limit."""
        lower = self.lower
        if lower.K >= self.max_vectors:
            self._prune()
            if lower.K >= 0.9 * self.max_vectors:
                self.progress.stop = "memory limit reached"
                return
        lower.add(alpha, a)

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
        root.lb = max(root.lb, float(self.lower.values(root.idx, root.vals[None, :])[0][0]))
        # back off when sweeps stop paying at b0 (e.g. when the upper bound is what is left to close)
        if root.lb - lb_before > 0.02 * gap:
            progress.sweep_share = min(0.5, 2 * progress.sweep_share)
        else:
            progress.sweep_share = max(0.02, progress.sweep_share / 4)

    # -- backups ---------------------------------------------------------------------------------------------
    def _expansion(self, node: _Node) -> Expansion:
        """The node's children under every action (kept on the node while the cache has room)."""
        if node.exp is not None:
            return node.exp
        e = self.m.expand(node.idx, node.vals)
        if e.nbytes <= self.cache_room:
            self.cache_room -= e.nbytes
            node.exp = e
        return e

    def _backup(self, node: _Node) -> tuple[Expansion, np.ndarray, np.ndarray]:
        """Recompute Q-bounds at ``node``, add the backed-up alpha vector and the upper point.

        Returns the node's expansion and its children's lower and upper values (kept on the node for the next
        trial's choice of branch).
        """
        m, gamma, upper = self.m, self.m.gamma, self.upper
        e = self._expansion(node)
        lv, lk = self.lower.values(e.union, e.B)
        if e.Bx is not None:  # the parent's own upper value in the same batch
            ux = upper.values(e.union, e.Bx)
            uv, current = np.maximum(ux[:-1], lv), float(ux[-1])
        else:
            uv = np.maximum(upper.values(e.union, e.B), lv)  # both valid; never let round-off cross them
            current = upper.value(node.idx, node.vals)
        q_lo = e.r + gamma * np.bincount(e.act, e.p * lv, minlength=m.A)
        q_up = e.r + gamma * np.bincount(e.act, e.p * uv, minlength=m.A)
        a = int(q_lo.argmax())
        if q_lo[a] > node.lb + 1e-12:  # else the vectors that gave node.lb are still in the set (see _prune)
            rows = e.rows(a)
            self._add_alpha(self._alpha(a, e.union, e.obs[rows], e.pred[a], lk[rows]), a)
            node.lb = float(q_lo[a])
        node.ub = min(node.ub, float(q_up.max()), current)
        upper.add(node.idx, node.vals, node.ub, current=current)
        node.ub = max(node.ub, node.lb)
        node.q_up = q_up
        node.kid_bounds = (lv, uv)
        return e, lv, uv

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
        if m.O is not None and m.Z <= 64:
            g = np.einsum("so,os->s", m.O[a], lower.alphas[k_of_o])
        else:  # g(s') = Σ over the nonzeros O_a[s', o] of O_a[s', o] α_{k(o)}(s')
            Oa, rows = m.O_sparse[a], m.O_rows[a]
            g = np.bincount(rows, Oa.data * lower.entries(rows, k_of_o[Oa.indices]), minlength=m.S)
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
        m = self.m
        e = m.expand(idx, vals)
        uv = self.upper.values(e.union, e.B)
        q = e.r + m.gamma * np.bincount(e.act, e.p * uv, minlength=m.A)
        self.upper.add(idx, vals, float(q.max()))

    def _backup_lower(self, node: _Node) -> None:
        """Lower-bound-only backup at ``node`` (no upper-bound evaluation; used by the sweeps)."""
        m = self.m
        e = self._expansion(node)
        lv, lk = self.lower.values(e.union, e.B)
        q = e.r + m.gamma * np.bincount(e.act, e.p * lv, minlength=m.A)
        a = int(q.argmax())
        if q[a] > node.lb + 1e-12:
            rows = e.rows(a)
            self._add_alpha(self._alpha(a, e.union, e.obs[rows], e.pred[a], lk[rows]), a)
            node.lb = float(q[a])

    # -- trials ----------------------------------------------------------------------------------------------
    def _trial(self, eps: float, span: float) -> tuple[list[_Node], list[_Node]]:
        """One depth-first trial from the root; returns its path and the nodes it created."""
        gamma, deadline = self.m.gamma, self.start + self.limit
        path: list[_Node] = []
        new_nodes: list[_Node] = []
        node, t = self.root, 0
        while True:
            if node.q_up is None or node.kid_bounds is None:
                e, lv, uv = self._backup(node)
            else:  # revisited node: choose by the bounds of its last backup (valid; the path is backed up after)
                e = self._expansion(node)
                lv, uv = node.kid_bounds
            assert node.q_up is not None  # set by the backup
            a = int(np.argmax(node.q_up))
            rows = e.rows(a)
            lv, uv = lv[rows], uv[rows]
            obs, p, B = e.obs[rows], e.p[rows], e.B[rows]
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
                cum = np.cumsum(pos)  # (Generator.choice with p= costs ~20 µs a call; this ~2 µs)
                j = min(int(np.searchsorted(cum, self.rng.random() * cum[-1], side="right")), len(pos) - 1)
            o = int(obs[j])
            child = node.children.get((a, o))
            if child is None:
                nz = np.flatnonzero(B[j] > 0)
                cidx, cvals = e.union[nz], B[j, nz]
                if self.index is None:
                    child = _Node(cidx, cvals)
                    new_nodes.append(child)
                else:
                    key = _belief_key(cidx, cvals)
                    child = self.index.get(key)
                    if child is None:
                        child = self.index[key] = _Node(cidx, cvals)
                        new_nodes.append(child)
                node.children[(a, o)] = child
            node, t = child, t + 1
        return path, new_nodes

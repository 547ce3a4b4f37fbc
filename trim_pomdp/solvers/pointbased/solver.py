"""Point-based solver for discounted tabular POMDPs (HSVI2/SARSOP style) with certified bounds at ``b0``.

Algorithm
---------
* **Lower bound**: alpha vectors (one action each), initialised with the blind policies "always do a" (exact
  sparse linear solves). Point-based backups at visited beliefs add vectors; a vector is dropped when another
  dominates it pointwise, and the set is periodically pruned to the vectors that are maximal at some belief of
  the sampled tree. ``max_k alpha_k . b0`` is the value of a real conditional plan: a certified lower bound.
* **Upper bound**: the fast informed bound (FIB), iterated from the exact MDP Q-values (policy iteration),
  gives upper-bound planes; visited beliefs add (belief, value) points, combined with the planes by a
  sawtooth-style convexity bound (:class:`~trim_pomdp.solvers.pointbased.bounds.SawtoothUpper`) and, on beliefs
  supported on at most ``hull_max_support`` states, the lower convex envelope of the stored points
  (:class:`~trim_pomdp.solvers.pointbased.hull.FaceHulls`). Every stored value is a valid upper bound, so the bound
  at ``b0`` is certified.
* **Sampling**: depth-first trials from ``b0`` toward the optimal reachable belief space: the action with the
  largest upper Q-value (IE-MAX), the observation drawn in proportion to the weighted excess gap
  ``p(o | b, a) (V̄ - V̲ - ε γ^{-(t+1)})`` (or its argmax, as in HSVI2), ``ε = ζ (V̄(b0) - V̲(b0))``; then
  backups in reverse order, and lower-bound sweeps over the whole tree.
* **Layered models**: when the graph of belief supports is acyclic apart from self-loops (a finite horizon
  encoded in the state), grids of beliefs on its small supports are backed up from the last layer to the
  first before the trials (:mod:`~trim_pomdp.solvers.pointbased.layers`).
* **Stop** when ``V̄(b0) - V̲(b0) <= precision`` or at the time limit.

Beliefs are kept sparse (support + values); a node's children live on the support of ``b T_a``, so nothing in
the hot path loops over states in Python or touches states outside the reachable support.

A finite-horizon mode (``finite_horizon=H``) runs exact value iteration with alpha-vector pruning (see
:mod:`trim_pomdp.solvers.pointbased.exact`), for small problems.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import numpy as np
import scipy.sparse as sp

from trim_pomdp._internal.artifacts import package_versions
from trim_pomdp.exceptions import InvalidParameterError, SolverError
from trim_pomdp.solvers.base import SolveInfo
from trim_pomdp.solvers.pointbased.bounds import AlphaSet, SawtoothUpper
from trim_pomdp.solvers.pointbased.exact import exact_value_iteration
from trim_pomdp.solvers.pointbased.layers import simplex_grid, support_layers
from trim_pomdp.solvers.pointbased.sparse import (
    SparseModel,
    blind_lower_bound,
    fast_informed_bound,
    mdp_upper_bound,
)
from trim_pomdp.solvers.policy import AlphaVectorPolicy
from trim_pomdp.solvers.tabular import TabularPOMDP

__all__ = ["PointBasedSolver"]


@contextlib.contextmanager
def _blas_threads(n: int | None):
    """Limit BLAS threads: the solver's many small products run far slower with threads on a busy machine."""
    if n is None:
        yield
        return
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - threadpoolctl ships with scikit-learn, a core dependency
        yield
        return
    with threadpool_limits(limits=n, user_api="blas"):
        yield


class _Node:
    """A belief of the sampled tree (sparse) with its cached bounds and visited children."""

    __slots__ = ("children", "idx", "lb", "q_up", "ub", "vals")

    def __init__(self, idx: np.ndarray, vals: np.ndarray):
        self.idx, self.vals = idx, vals
        self.lb = -math.inf
        self.ub = math.inf
        self.children: dict[tuple[int, int], _Node] = {}
        self.q_up: np.ndarray | None = None  # upper Q-values of the last backup (valid, possibly stale)


class PointBasedSolver:
    """SARSOP/HSVI-style point-based solver for discounted tabular POMDPs.

    Parameters
    ----------
    precision : float, default 1e-3
        Stop when the gap ``V̄(b0) - V̲(b0)`` is at most this.
    time_limit : float or None, default 60.0
        Wall-clock limit in seconds (bound initialisation included). ``None``: no limit.
    seed : int, default 0
        Seeds the stochastic choice of observation branches and the random witness beliefs of the
        finite-horizon pruning; a solve is deterministic given the seed (up to the time limit).
    finite_horizon : int or None, default None
        If given, solve the ``H``-step problem exactly by value iteration with alpha-vector pruning instead
        (the returned vectors are the ``H``-steps-to-go value function; lower = upper bound = exact value).
    zeta : float, default 0.8
        A trial stops at depth ``t`` once the gap there is at most ``ζ (V̄(b0) - V̲(b0)) γ^{-t}`` (SARSOP's
        trial improvement factor; 0.8 was best of 0.25/0.5/0.8 on Tiger, Hallway and the flattened
        TRIM-POMDP).
    max_depth : int, default 2000
        Hard cap on a trial's depth.
    sweeps : bool, default True
        Interleave lower-bound-only backups over all tree beliefs (deepest first, at most a third of the time,
        less while they stop improving the bound at ``b0``)
        with the trials; they spread improvements of the lower bound through the tree cheaply.
    sampling : {"stochastic", "greedy"}, default "stochastic"
        How a trial picks the observation branch: at random in proportion to the weighted excess gap (seeded
        by
        ``seed``; spreads trials over wide belief trees) or its argmax (HSVI2).
    hull_max_support : int or None, default None
        Beliefs supported on at most this many states (and at least 2) are also bounded by the lower convex
        envelope of the stored points on their face of the simplex (Qhull facets); 0 or 1 turns it off.
        ``None``: 3 for models with more than 256 states, else off (on Tiger its overhead cost 30 %). It
        interpolates between many points where the sawtooth uses one at a time: on the flattened
        TRIM-POMDP (beliefs on 3 states) it took the 60 s gap from 1.10e-3 to 1.0e-3 reached in 45 s.
    layer_grid : int, default 3
        Resolution of the bottom-up seeding of the upper bound (0: off). When the belief supports form a
        graph that is acyclic apart from self-loops (a finite horizon encoded in the state), every support
        of at most ``layer_max_support`` states gets a simplex grid of this resolution, backed up (upper
        bound only) in reverse topological order before the trials, so one sweep reaches every layer. Other
        models are left alone (finding out costs a graph search of at most a tenth of the seeding budget).
    layer_max_support : int, default 3
        Largest support that the layer seeding covers with a grid.
    layer_share : float, default 0.5
        At most this share of ``time_limit`` goes to the layer seeding.
    blas_threads : int or None, default 1
        BLAS threads while solving (``None``: leave as is). The hot path is many small matrix products, which
        threads slow down, badly so when the machine is busy.
    callback : callable, optional
        Called about every ``callback_interval`` seconds with a dict (``seconds``, ``lower_bound``,
        ``upper_bound``, ``alphas``, ``trials``); used by the CLI to show progress.
    callback_interval : float, default 0.5

    Attributes
    ----------
    info : SolveInfo or None
        The report of the last solve: bounds at ``b0``, seconds, trials, sizes.

    Examples
    --------
    >>> from trim_pomdp.solvers.formats import read_pomdp                      # doctest: +SKIP
    >>> policy = PointBasedSolver(precision=1e-3).solve(read_pomdp("Tiger.pomdp"))  # doctest: +SKIP
    """

    name = "pointbased"

    def __init__(
        self,
        precision: float = 1e-3,
        time_limit: float | None = 60.0,
        seed: int = 0,
        finite_horizon: int | None = None,
        *,
        zeta: float = 0.8,
        max_depth: int = 2000,
        sweeps: bool = True,
        sampling: str = "stochastic",
        blas_threads: int | None = 1,
        hull_max_support: int | None = None,
        layer_grid: int = 3,
        layer_max_support: int = 3,
        layer_share: float = 0.5,
        callback: Callable[[dict[str, Any]], None] | None = None,
        callback_interval: float = 0.5,
    ):
        if not (precision > 0 and math.isfinite(precision)):
            raise InvalidParameterError(f"precision must be a positive number, got {precision!r}")
        if time_limit is not None and not time_limit > 0:
            raise InvalidParameterError(f"time_limit must be positive or None, got {time_limit!r}")
        if finite_horizon is not None and (int(finite_horizon) != finite_horizon or finite_horizon < 1):
            raise InvalidParameterError(
                f"finite_horizon must be a positive integer or None, got {finite_horizon!r}"
            )
        if not 0 < zeta < 1:
            raise InvalidParameterError(f"zeta must lie in (0, 1), got {zeta!r}")
        self.precision = float(precision)
        self.time_limit = None if time_limit is None else float(time_limit)
        self.seed = int(seed)
        self.finite_horizon = None if finite_horizon is None else int(finite_horizon)
        self.zeta = float(zeta)
        self.max_depth = int(max_depth)
        self.sweeps = bool(sweeps)
        if sampling not in ("greedy", "stochastic"):
            raise InvalidParameterError(f"sampling must be 'greedy' or 'stochastic', got {sampling!r}")
        self.sampling = sampling
        self.blas_threads = blas_threads
        if int(layer_grid) != layer_grid or layer_grid < 0:
            raise InvalidParameterError(f"layer_grid must be a non-negative integer, got {layer_grid!r}")
        if int(layer_max_support) != layer_max_support or layer_max_support < 1:
            raise InvalidParameterError(
                f"layer_max_support must be a positive integer, got {layer_max_support!r}"
            )
        if not 0 <= layer_share <= 1:
            raise InvalidParameterError(f"layer_share must lie in [0, 1], got {layer_share!r}")
        if hull_max_support is not None and (
            int(hull_max_support) != hull_max_support or hull_max_support < 0
        ):
            raise InvalidParameterError(
                f"hull_max_support must be a non-negative integer or None, got {hull_max_support!r}"
            )
        self.hull_max_support = None if hull_max_support is None else int(hull_max_support)
        self.layer_grid = int(layer_grid)
        self.layer_max_support = int(layer_max_support)
        self.layer_share = float(layer_share)
        self.callback = callback
        self.callback_interval = float(callback_interval)

    # --------------------------------------------------------------------------------------------------------
    def solve(self, model: TabularPOMDP, b0=None) -> AlphaVectorPolicy:
        """Solve ``model`` (optionally from the initial belief ``b0`` instead of ``model.b0``).

        Returns
        -------
        AlphaVectorPolicy
            The lower-bound alpha vectors and their actions; ``policy.card`` holds the bounds and settings.

        Raises
        ------
        ModelCheckError
            If the model's arrays are inconsistent.
        InvalidParameterError
            If the discount is 1 in infinite-horizon mode.
        """
        if not isinstance(model, TabularPOMDP):
            raise InvalidParameterError(f"PointBasedSolver solves a TabularPOMDP, got {type(model).__name__}")
        if b0 is not None:
            model = replace(model, b0=np.asarray(b0, float))
        model.check()
        if self.finite_horizon is None and model.discount >= 1.0:
            raise InvalidParameterError(
                "the point-based solver needs a discount < 1 (use finite_horizon=H for undiscounted problems)"
            )
        with _blas_threads(self.blas_threads):
            if self.finite_horizon is not None:
                return self._solve_finite(model)
            return self._solve_discounted(model)

    # --------------------------------------------------------------------------------------------------------
    def _solve_finite(self, model: TabularPOMDP) -> AlphaVectorPolicy:
        start = time.perf_counter()
        deadline = None if self.time_limit is None else start + self.time_limit
        G, acts, sizes = exact_value_iteration(
            model, self.finite_horizon, rng=np.random.default_rng(self.seed), deadline=deadline
        )
        value = float((G @ model.b0).max())
        seconds = time.perf_counter() - start
        info = SolveInfo(
            solver=self.name,
            seconds=seconds,
            iterations=self.finite_horizon,
            lower_bound=value,
            upper_bound=value,
            converged=True,
            sizes={
                "states": model.n_states,
                "actions": model.n_actions,
                "observations": model.n_observations,
                "alpha_vectors": len(G),
            },
            extra={"mode": "finite_horizon", "horizon": self.finite_horizon, "alphas_per_step": sizes},
        )
        return self._policy(model, G, acts, info)

    def _policy(
        self, model: TabularPOMDP, G: np.ndarray, acts: np.ndarray, info: SolveInfo
    ) -> AlphaVectorPolicy:
        card = {
            "solver": self.name,
            "parameters": {
                "precision": self.precision,
                "time_limit": self.time_limit,
                "seed": self.seed,
                "finite_horizon": self.finite_horizon,
                "zeta": self.zeta,
                "hull_max_support": self.hull_max_support,
                "layer_grid": self.layer_grid,
            },
            "discount": float(model.discount),
            "b0": np.asarray(model.b0, float).tolist() if model.n_states <= 64 else None,
            "lower_bound": info.lower_bound,
            "upper_bound": info.upper_bound,
            "gap": info.gap,
            "solve_seconds": info.seconds,
            "converged": info.converged,
            "solve_info": info.to_dict(),
            "source": model.meta.get("source"),
            "versions": package_versions(),
        }
        return AlphaVectorPolicy(G, acts, model.action_names, card, info=info)

    # --------------------------------------------------------------------------------------------------------
    def _solve_discounted(self, model: TabularPOMDP) -> AlphaVectorPolicy:
        start = time.perf_counter()
        limit = math.inf if self.time_limit is None else self.time_limit
        m = SparseModel(model)
        gamma = m.gamma

        # lower bound: blind policies
        lower = AlphaSet(m.S)
        for a, alpha in enumerate(blind_lower_bound(m)):
            lower.add(alpha, a)
        # upper bound: MDP by policy iteration, then FIB (each iterate valid)
        q_mdp = mdp_upper_bound(m)
        fib, fib_iters = fast_informed_bound(m, q_mdp, time_budget=max(0.05, 0.2 * min(limit, 600.0)))
        hull = self.hull_max_support
        if hull is None:  # small models: the per-query overhead outweighs the gain (Tiger: 0.43 s -> 0.57 s)
            hull = 3 if m.S > 256 else 0
        upper = SawtoothUpper(fib, hull_max_support=hull)
        init_seconds = time.perf_counter() - start

        self._rng = np.random.default_rng(self.seed)
        b0 = m.b0
        root = _Node(np.flatnonzero(b0 > 0), b0[b0 > 0])
        self._m, self._lower, self._upper = m, lower, upper
        seeded = self._seed_layers(start + self.layer_share * limit) if self.layer_grid else 0
        self._backup(root)
        nodes = [root]
        trials = backups = 0
        trial_time = sweep_time = 0.0
        sweep_share = 0.5
        last_prune_k = lower.K
        last_cb = time.perf_counter()
        stop = "precision reached"
        # bound range for the depth cap
        span = float(np.max(upper.corner) - np.min(lower.alphas)) + 1e-12
        while True:
            gap = root.ub - root.lb
            elapsed = time.perf_counter() - start
            if gap <= self.precision:
                break
            if elapsed >= limit:
                stop = "time limit reached"
                break
            if self.callback is not None and time.perf_counter() - last_cb >= self.callback_interval:
                last_cb = time.perf_counter()
                self.callback(
                    {
                        "seconds": elapsed,
                        "lower_bound": root.lb,
                        "upper_bound": root.ub,
                        "alphas": lower.K,
                        "trials": trials,
                    }
                )
            eps = self.zeta * gap
            t0 = time.perf_counter()
            path, n_new = self._trial(root, eps, gamma, span, start + limit)
            nodes.extend(n_new)
            for node in reversed(path):
                self._backup(node)
                backups += 1
            trials += 1
            trial_time += time.perf_counter() - t0
            if self.sweeps and sweep_time < sweep_share * trial_time:
                t1 = time.perf_counter()
                lb_before = root.lb
                for node in reversed(nodes):
                    self._backup_lower(node)
                    backups += 1
                    if time.perf_counter() > start + limit:
                        break
                sweep_time += time.perf_counter() - t1
                root.lb = max(root.lb, float((lower.alphas[:, root.idx] @ root.vals).max()))
                # back off when sweeps stop paying at b0 (e.g. when the upper bound is what is left to close)
                sweep_share = (
                    min(0.5, 2 * sweep_share)
                    if root.lb - lb_before > 0.02 * gap
                    else max(0.02, sweep_share / 4)
                )
            if lower.K > 1.1 * last_prune_k + 10:
                W = self._witness_matrix(nodes, m.S)
                lower.prune_to_witnesses(W)
                last_prune_k = lower.K
        seconds = time.perf_counter() - start
        lb = float((lower.alphas @ b0).max())
        ub = float(root.ub)
        if lb > ub + 1e-9 * (1 + abs(ub)):
            raise SolverError(f"bounds crossed at b0 (lower {lb!r} > upper {ub!r}); please report this model")
        info = SolveInfo(
            solver=self.name,
            seconds=seconds,
            iterations=trials,
            lower_bound=lb,
            upper_bound=ub,
            converged=ub - lb <= self.precision,
            sizes={
                "states": m.S,
                "actions": m.A,
                "observations": m.Z,
                "alpha_vectors": int(lower.K),
                "upper_points": int(upper.n_points),
                "tree_nodes": len(nodes),
                "backups": backups,
            },
            extra={
                "mode": "discounted",
                "stop_reason": stop,
                "init_seconds": init_seconds,
                "fib_iterations": fib_iters,
                "layer_seeded_points": seeded,
                "precision": self.precision,
            },
        )
        if self.callback is not None:
            self.callback(
                {
                    "seconds": seconds,
                    "lower_bound": lb,
                    "upper_bound": ub,
                    "alphas": lower.K,
                    "trials": trials,
                    "done": True,
                }
            )
        G, acts = lower.alphas.copy(), lower.actions.copy()
        del self._m, self._lower, self._upper
        return self._policy(model, G, acts, info)

    @staticmethod
    def _witness_matrix(nodes: list[_Node], S: int) -> sp.csc_matrix:
        rows = np.concatenate([n.idx for n in nodes])
        vals = np.concatenate([n.vals for n in nodes])
        cols = np.repeat(np.arange(len(nodes)), [len(n.idx) for n in nodes])
        return sp.csc_matrix((vals, (rows, cols)), shape=(S, len(nodes)))

    # --------------------------------------------------------------------------------------------------------
    def _expand(self, node: _Node):
        """Per action: R(b, a), children (support, obs, probabilities, beliefs) and their bounds.

        The children of all actions are evaluated as one batch on the union of their supports (one bound
        evaluation per node instead of one per action).
        """
        m, lower, upper = self._m, self._lower, self._upper
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

    def _backup(self, node: _Node):
        """Recompute Q-bounds at ``node``, add the backed-up alpha vector and the upper point."""
        m, lower, upper = self._m, self._lower, self._upper
        gamma = m.gamma
        exp = self._expand(node)
        q_lo = np.array([r + gamma * p @ lv for (r, _, _, p, _, _, lv, _, _) in exp])
        q_up = np.array([r + gamma * p @ uv for (r, _, _, p, _, _, _, _, uv) in exp])
        a = int(q_lo.argmax())
        r, idx2, obs, p, B, pred, lv, lk, uv = exp[a]
        lower.add(self._alpha(a, idx2, obs, pred, lk), a)
        node.lb = float(max(q_lo[a], node.lb))
        ub = float(q_up.max())
        current = upper.value(node.idx, node.vals)
        node.ub = min(node.ub, ub, current)
        upper.add(node.idx, node.vals, node.ub, current=current)
        node.ub = max(node.ub, node.lb)
        node.q_up = q_up
        return exp, q_up

    def _alpha(self, a: int, idx2, obs, pred, lk) -> np.ndarray:
        """Backed-up vector ``R[:, a] + γ T_a g`` with ``g(s') = Σ_o O_a[s', o] α_{k(o)}(s')``.

        ``k(o)`` is the best vector at the child belief for reachable observations and, for the others, the
        best
        vector at the predicted distribution ``b T_a`` (any choice gives a valid lower bound).
        """
        m, lower = self._m, self._lower
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
        resolution-``layer_grid`` simplex grid, backed up (upper bound only) in reverse topological order:
        one sweep carries improvements through all layers. Returns the number of beliefs backed up.
        """
        budget = max(0.0, deadline - time.perf_counter())
        layers = support_layers(self._m, deadline=time.perf_counter() + 0.1 * budget)
        if not layers:
            return 0
        grids = {}
        n = 0
        for U in layers:
            k = len(U)
            if k > self.layer_max_support:
                continue
            if k not in grids:
                grids[k] = simplex_grid(k, self.layer_grid)
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
        m, upper = self._m, self._upper
        q = -math.inf
        for a in range(m.A):
            idx2, obs, p, B, pred = m.children(idx, vals, a)
            q = max(q, float(vals @ m.R[idx, a]) + m.gamma * float(p @ upper.values(idx2, B)))
        upper.add(idx, vals, q)

    def _backup_lower(self, node: _Node) -> None:
        """Lower-bound-only backup at ``node`` (no upper-bound evaluation; used by the sweeps)."""
        m, lower = self._m, self._lower
        best = None
        for a in range(m.A):
            idx2, obs, p, B, pred = m.children(node.idx, node.vals, a)
            lv, lk = lower.values(idx2, B)
            q = float(node.vals @ m.R[node.idx, a]) + m.gamma * float(p @ lv)
            if best is None or q > best[0]:
                best = (q, a, idx2, obs, pred, lk)
        q, a, idx2, obs, pred, lk = best
        if q > node.lb + 1e-12:
            lower.add(self._alpha(a, idx2, obs, pred, lk), a)
            node.lb = q

    def _trial(self, root: _Node, eps: float, gamma: float, span: float, deadline: float):
        path: list[_Node] = []
        new_nodes: list[_Node] = []
        node, t = root, 0
        while True:
            if node.q_up is None:
                exp, q_up = self._backup(node)
                a = int(np.argmax(q_up))
                r, idx2, obs, p, B, pred, lv, lk, uv = exp[a]
            else:  # revisited node: choose by its cached upper Q-values, refresh only that action's children
                a = int(np.argmax(node.q_up))
                idx2, obs, p, B, pred = self._m.children(node.idx, node.vals, a)
                lv, _ = self._lower.values(idx2, B)
                uv = np.maximum(self._upper.values(idx2, B), lv)
            path.append(node)
            thr = eps * gamma ** (-t)
            if (
                node.ub - node.lb <= thr
                or t >= self.max_depth
                or thr > span
                or time.perf_counter() > deadline
            ):
                break
            excess = p * (uv - lv - eps * gamma ** (-(t + 1)))
            j = int(np.argmax(excess))
            if excess[j] <= 0:
                break
            if self.sampling == "stochastic":
                pos = np.maximum(excess, 0.0)
                j = int(self._rng.choice(len(pos), p=pos / pos.sum()))
            o = int(obs[j])
            child = node.children.get((a, o))
            if child is None:
                nz = np.flatnonzero(B[j] > 0)
                child = _Node(idx2[nz], B[j, nz])
                node.children[(a, o)] = child
                new_nodes.append(child)
            node, t = child, t + 1
        return path, new_nodes

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
  ``p(o | b, a) (V̄ - V̲ - ε γ^{-(t+1)})`` (or its argmax, as in HSVI2), ``ε = ζ (V̄(b0) - V̲(b0))`` with ``ζ``
  chosen per trial between two depths by the gap each has closed per second; then backups in reverse order,
  and lower-bound sweeps over the whole tree.
* **Layered models**: when the graph of belief supports is acyclic apart from self-loops (a finite horizon
  encoded in the state), grids of beliefs on its small supports are backed up from the last layer to the
  first before the trials (:mod:`~trim_pomdp.solvers.pointbased.layers`).

The state of a solve (the tree, both bounds, the counters) lives in a
:class:`~trim_pomdp.solvers.pointbased.search.Search` made for that solve, never on the solver.
* **Stop** when ``V̄(b0) - V̲(b0) <= precision`` or at the time limit.

Beliefs are kept sparse (support + values); a node's children live on the support of ``b T_a``, so nothing in
the hot path loops over states in Python or touches states outside the reachable support.

A finite-horizon mode (``finite_horizon=H``) runs exact value iteration with alpha-vector pruning (see
:mod:`trim_pomdp.solvers.pointbased.exact`), for small problems.
"""

from __future__ import annotations

import contextlib
import functools
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any

import numpy as np

from trim_pomdp._internal.artifacts import package_versions
from trim_pomdp.exceptions import InvalidParameterError, SolverError
from trim_pomdp.registry import SOLVERS
from trim_pomdp.solvers.base import SolveInfo
from trim_pomdp.solvers.memory import MemoryBudget, parse_memory_limit
from trim_pomdp.solvers.pointbased.exact import exact_value_iteration
from trim_pomdp.solvers.pointbased.search import Search
from trim_pomdp.solvers.policy import AlphaVectorPolicy
from trim_pomdp.solvers.tabular import TabularPOMDP

__all__ = ["PointBasedSolver"]


@functools.lru_cache(maxsize=1)
def _versions() -> tuple[tuple[str, str], ...]:
    """Package versions for the card, looked up once per process (the lookup costs tens of milliseconds)."""
    return tuple(package_versions().items())


@functools.lru_cache(maxsize=1)
def _threadpools() -> Any:
    """threadpoolctl's view of the loaded BLAS libraries, found once (finding them costs milliseconds)."""
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:  # pragma: no cover - threadpoolctl ships with scikit-learn, a core dependency
        return None
    return ThreadpoolController()


@contextlib.contextmanager
def _blas_threads(n: int | None) -> Iterator[None]:
    """Limit BLAS threads: the solver's many small products run far slower with threads on a busy machine."""
    controller = None if n is None else _threadpools()
    if controller is None:
        yield
        return
    with controller.limit(limits=n, user_api="blas"):
        yield


class PointBasedSolver:
    """SARSOP/HSVI-style point-based solver for discounted tabular POMDPs.

    Parameters
    ----------
    precision : float, default 1e-3
        Stop when the gap ``V̄(b0) - V̲(b0)`` is at most this.
    time_limit : float or None, default 60.0
        Wall-clock limit in seconds, counted from the call to ``solve``: checking the model, building its
        matrices and the initial bounds are included. ``None``: no limit.
    seed : int, default 0
        Seeds the stochastic choice of observation branches and the random witness beliefs of the
        finite-horizon pruning; a solve is deterministic given the seed (up to the time limit).
    finite_horizon : int or None, default None
        If given, solve the ``H``-step problem exactly by value iteration with alpha-vector pruning instead
        (the returned vectors are the ``H``-steps-to-go value function; lower = upper bound = exact value).
    zeta : float, default 0.8
        A trial stops at depth ``t`` once the gap there is at most ``ζ (V̄(b0) - V̲(b0)) γ^{-t}`` (SARSOP's
        trial improvement factor; 0.8 was best of 0.25/0.5/0.8 on Tiger, Hallway and the flattened
        TRIM-POMDP). After the first second of a solve, each trial uses ``ζ`` or ``0.3 ζ``, whichever has
        closed the gap at ``b0`` faster per second so far (one trial in ten at random): the deeper trials
        reach the far rewards of long tasks such as RockSample.
    max_depth : int, default 2000
        Hard cap on a trial's depth.
    sweeps : bool, default True
        Interleave lower-bound-only backups over all tree beliefs (deepest first, at most a third of the time,
        less while they stop improving the bound at ``b0``) with the trials; they spread improvements of the
        lower bound through the tree cheaply.
    sampling : {"stochastic", "greedy"}, default "stochastic"
        How a trial picks the observation branch: at random in proportion to the weighted excess gap (seeded by
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
    memory_limit : int, float or str, optional
        Memory the solve may hold (bytes or ``"8G"``; default 4 GiB or ``TRIM_POMDP_MEMORY_LIMIT``): the alpha
        vectors are pruned, and at worst the solve stops (``stop_reason`` ``"memory limit reached"``), before
        it is exceeded.
    blas_threads : int or None, default 1
        BLAS threads while solving (``None``: leave as is). The hot path is many small matrix products, which
        threads slow down, badly so when the machine is busy.
    callback : callable, optional
        Called about every ``callback_interval`` seconds with a dict (``seconds``, ``lower_bound``,
        ``upper_bound``, ``alphas``, ``trials``), and once more at the end with ``done=True``; used by the CLI
        to show progress.
    callback_interval : float, default 0.5
        Seconds between two progress calls.

    Notes
    -----
    The solver keeps no state between solves (one instance may solve several models, also from several threads
    at once): the report of a solve is the returned policy's ``info``.

    Examples
    --------
    >>> from trim_pomdp.solvers.formats import read_pomdp                      # doctest: +SKIP
    >>> policy = PointBasedSolver(precision=1e-3).solve(read_pomdp("Tiger.pomdp"))  # doctest: +SKIP
    """

    name = SOLVERS["pointbased"].name

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
        memory_limit: int | float | str | None = None,
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
        self.memory_limit = parse_memory_limit(memory_limit)
        self.callback = callback
        self.callback_interval = float(callback_interval)

    # --------------------------------------------------------------------------------------------------------
    def solve(self, model: TabularPOMDP, b0: Any = None) -> AlphaVectorPolicy:
        """Solve ``model`` (optionally from the initial belief ``b0`` instead of ``model.b0``).

        Parameters
        ----------
        model : TabularPOMDP
            The model; its discount must be below 1 unless ``finite_horizon`` is set.
        b0 : array-like, optional
            Initial belief to solve from instead of ``model.b0``.

        Returns
        -------
        AlphaVectorPolicy
            The lower-bound alpha vectors and their actions; ``policy.info`` is the report and ``policy.card``
            holds the bounds and settings.

        Raises
        ------
        ModelCheckError
            If the model's arrays are inconsistent.
        InvalidParameterError
            If the discount is 1 in infinite-horizon mode.
        """
        start = time.perf_counter()
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
                return self._solve_finite(model, self.finite_horizon)
            return self._solve_discounted(model, start)

    # --------------------------------------------------------------------------------------------------------
    def _solve_finite(self, model: TabularPOMDP, horizon: int) -> AlphaVectorPolicy:
        start = time.perf_counter()
        deadline = None if self.time_limit is None else start + self.time_limit
        G, acts, sizes = exact_value_iteration(
            model,
            horizon,
            rng=np.random.default_rng(self.seed),
            deadline=deadline,
            budget=MemoryBudget(self.memory_limit, f"the {horizon}-step exact solve"),
        )
        value = float((G @ model.b0).max())
        seconds = time.perf_counter() - start
        info = SolveInfo(
            solver=self.name,
            seconds=seconds,
            iterations=horizon,
            lower_bound=value,
            upper_bound=value,
            converged=True,
            sizes={
                "states": model.n_states,
                "actions": model.n_actions,
                "observations": model.n_observations,
                "alpha_vectors": len(G),
            },
            extra={"mode": "finite_horizon", "horizon": horizon, "alphas_per_step": sizes},
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
            "versions": dict(_versions()),
        }
        return AlphaVectorPolicy(G, acts, model.action_names, card, info=info)

    def _solve_discounted(self, model: TabularPOMDP, start: float) -> AlphaVectorPolicy:
        search = Search(self, model, start)
        search.run()
        seconds = time.perf_counter() - search.start
        lower, upper, m = search.lower, search.upper, search.m
        lb = float((lower.alphas @ m.b0).max())
        ub = float(search.root.ub)
        if lb > ub + 1e-9 * (1 + abs(ub)):
            raise SolverError(f"bounds crossed at b0 (lower {lb!r} > upper {ub!r}); please report this model")
        ub = max(ub, lb)  # equal up to round-off: report them as equal rather than a negative gap
        progress = search.progress
        info = SolveInfo(
            solver=self.name,
            seconds=seconds,
            iterations=progress.trials,
            lower_bound=lb,
            upper_bound=ub,
            converged=ub - lb <= self.precision,
            sizes={
                "states": m.S,
                "actions": m.A,
                "observations": m.Z,
                "alpha_vectors": int(lower.K),
                "upper_points": int(upper.n_points),
                "tree_nodes": len(search.nodes),
                "backups": progress.backups,
            },
            extra={
                "mode": "discounted",
                "stop_reason": progress.stop,
                "init_seconds": search.init_seconds,
                "fib_iterations": search.fib_iterations,
                "layer_seeded_points": search.seeded,
                "precision": self.precision,
            },
        )
        search.notify(seconds, lb, ub, done=True)
        return self._policy(model, lower.alphas.copy(), lower.actions.copy(), info)

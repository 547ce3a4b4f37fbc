"""Certified backward induction for finite-horizon POMDPs with rank-2 dynamics (:class:`FiniteHorizonSolver`).

With rank-2 dynamics (:mod:`~.segments`) the pre-observation value ``W_t(g)`` of epochs ``t ≥ 2`` is a convex
function of one variable, the weight ``g`` of the first vertex distribution in the predicted belief. The solver
runs backward induction on per-epoch grids of ``g``:

* **upper bound** ``U_t``: exact Bellman backups of the piecewise-linear interpolation of ``U_{t+1}`` at the
  grid points. Chords over-estimate a convex function and the Bellman operator is monotone, so ``U_t ≥ W_t``.
* **lower bound** ``L_t``: point-based backups producing one line ``α + β g`` per grid point, each the value of
  an actual conditional plan; the upper envelope of the lines is ``≤ W_t`` and the greedy policy with respect to
  them achieves at least it (this is the returned policy).
* grids are refined where the chord of ``U`` exceeds the envelope of ``L`` by more than a shrinking tolerance,
  until ``U_1(b0) − L_1(b0) ≤ precision`` or the time limit.
* ``mode="exact"`` places the grid on every breakpoint of the exact value function (the upper envelope of all
  backed-up lines, computed per context and observation), so both bounds equal ``V*`` (for small instances).

Models whose transition rows are mixtures of 3 to 5 vertex distributions (fewer than the hidden states, such as
the TRIM-POMDP with difficulty classes) are solved on tensor grids over the simplex of those vertices
(:mod:`~.vertex_solver`); other models fall back to :func:`~.general.solve_general`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

from trim_pomdp.exceptions import InvalidParameterError, SolverError
from trim_pomdp.registry import SOLVERS
from trim_pomdp.solvers.base import SolveInfo
from trim_pomdp.solvers.finite_horizon.general import FiniteHorizonAlphaPolicy, solve_general
from trim_pomdp.solvers.finite_horizon.policy import FiniteHorizonPolicy
from trim_pomdp.solvers.finite_horizon.problem import FiniteHorizonPOMDP
from trim_pomdp.solvers.finite_horizon.segments import (
    SegmentFactorization,
    eval_envelope,
    segment_factorization,
    upper_envelope,
)
from trim_pomdp.solvers.finite_horizon.vertex_policy import FiniteHorizonVertexPolicy
from trim_pomdp.solvers.finite_horizon.vertex_solver import solve_vertex
from trim_pomdp.solvers.finite_horizon.vertices import vertex_factorization

__all__ = ["FiniteHorizonSolver"]

#: grid points per backup chunk: a (contexts, points, observations) array gets about this many elements,
#: small enough to stay in cache (the backups are memory-bound), large enough to amortise numpy calls
_CHUNK_ELEMENTS = 32_000

#: most vertex distributions of dynamics the tensor-grid method takes (its grids have K − 1 dimensions)
_MAX_VERTICES = 5


@dataclass(frozen=True)
class _Epoch:
    """What the backups at epoch index ``i`` need, restricted to the contexts of positive probability."""

    O: np.ndarray  # (Z, n_o) observation probabilities
    OT: np.ndarray  # (n_o, Z)
    Rc: np.ndarray  # (c, Z, A) rewards of the live contexts
    pc: np.ndarray  # (c,) their probabilities
    nt_idx: np.ndarray  # live contexts that are not terminal
    const: np.ndarray  # (c, A): reward independent of the hidden state
    wF: np.ndarray  # (c,) p_c γ [not terminal]
    gamma: float
    any_future: bool
    M: np.ndarray  # (A, Z, 2) the segment weights of the transitions
    next_lines: tuple[np.ndarray, np.ndarray, np.ndarray]  # (at1, at0, breaks) of L_{t+1}
    next_grid: np.ndarray
    next_u: np.ndarray

    @classmethod
    def make(cls, model: FiniteHorizonPOMDP, M: np.ndarray, i: int, next_lines, next_grid, next_u) -> _Epoch:
        """The arrays of epoch index ``i``, with the next epoch's bounds."""
        O = model.observation[i]  # (Z, n_o)
        p, term = model.context_probs[i], model.terminal[i]
        ctx = np.flatnonzero(p > 0)
        Rc, pc, tc = model.reward[i][ctx], p[ctx], term[ctx]
        nt = (~tc).astype(float)
        gamma = float(model.discount)
        return cls(
            O=O,
            OT=O.T,
            Rc=Rc,
            pc=pc,
            nt_idx=np.flatnonzero(nt > 0),
            const=np.all(Rc == Rc[:, :1, :], axis=1),
            wF=pc * gamma * nt,
            gamma=gamma,
            any_future=bool(np.any(~tc)),
            M=M,
            next_lines=next_lines,
            next_grid=next_grid,
            next_u=next_u,
        )


def _chunk_q(ep: _Epoch, u: np.ndarray, sig: np.ndarray) -> tuple[np.ndarray, np.ndarray, list[Any]]:
    """Q-bounds of every action at a chunk of grid points, per live context and observation.

    ``u[g, z, o] = β_g(z) O[z, o]`` and ``sig = u.sum(axis=1)``. Returns the largest upper-bound Q-values
    ``(c, g, n_o)``, the action with the best lower-bound Q-value (same shape) and, per action, the index of the
    next epoch's line used at each ``(g, o)`` (``None`` without a future).
    """
    at1, at0, br = ep.next_lines
    Rc, M = ep.Rc, ep.M
    Z, A = Rc.shape[1], Rc.shape[2]
    safe = np.where(sig > 0, sig, 1.0)
    qu_max: Any = None
    ql_max: Any = None
    best: Any = None
    chosen: list[Any] = []
    for a in range(A):
        imm = np.empty((len(Rc), u.shape[0], u.shape[2]))
        cc = np.flatnonzero(ep.const[:, a])
        if cc.size:
            imm[cc] = Rc[cc, 0, a, None, None] * sig[None]
        gc = np.flatnonzero(~ep.const[:, a])
        if gc.size:
            acc = Rc[gc, 0, a, None, None] * u[None, :, 0, :]
            for z in range(1, Z):
                acc += Rc[gc, z, a, None, None] * u[None, :, z, :]
            imm[gc] = acc
        k = None
        if ep.any_future:
            x = M[a, 0, 0] * u[:, 0, :]
            for z in range(1, Z):
                x = x + M[a, z, 0] * u[:, z, :]
            x /= safe
            np.clip(x, 0.0, 1.0, out=x)
            lv, k = eval_envelope(at1, at0, br, x)
            qu = imm.copy()
            ql = imm
            ql[ep.nt_idx] += ep.gamma * (sig * lv)[None]
            qu[ep.nt_idx] += ep.gamma * (sig * np.interp(x, ep.next_grid, ep.next_u))[None]
        else:
            qu = ql = imm
        chosen.append(k)
        if a == 0:
            qu_max, ql_max = qu, ql
            best = np.zeros(ql.shape, dtype=np.int8)
        else:
            qu_max = np.maximum(qu_max, qu)
            better = ql > ql_max
            best[better] = a
            ql_max = np.where(better, ql, ql_max)
    return qu_max, best, chosen


def _chunk_alphas(ep: _Epoch, best: np.ndarray, chosen: list[Any], g: int) -> np.ndarray:
    """Lower-bound alpha vector per grid point of a chunk, given the best actions of :func:`_chunk_q`.

    ``alpha[z] = sum_c p_c sum_o O[z, o] alpha_{c,g,o}[z]`` with the chosen action's alpha ``R[c, z, a] + γ [not
    terminal] (M[a, z, 0] at1[k] + M[a, z, 1] at0[k])``. It is linear in the action masks; action 0 takes what
    the others leave (rows of O sum to 1).
    """
    at1, at0, _ = ep.next_lines
    Rc, M, OT = ep.Rc, ep.M, ep.OT
    n_c, Z, A = Rc.shape
    n_o = OT.shape[0]
    alpha = np.zeros((g, Z))
    mo_rest = np.ones((n_c, g, Z))
    w_rest = np.broadcast_to(ep.wF[:, None, None], (n_c, g, n_o)).sum(axis=0)
    for a in [*range(1, A), 0]:
        if a == 0:
            mo, wa = mo_rest, w_rest
        else:
            mask = (best == a).astype(float)  # (c, g, n_o)
            mo = (mask.reshape(-1, n_o) @ OT).reshape(n_c, g, Z)  # sum_o O[z, o] mask
            wa = (ep.wF @ mask.reshape(n_c, -1)).reshape(g, n_o)
            mo_rest = mo_rest - mo
            w_rest = w_rest - wa
        alpha += np.einsum("cz,cgz->gz", ep.pc[:, None] * Rc[:, :, a], mo)
        if ep.any_future:
            ka = chosen[a]
            pa = (wa * at1[ka]) @ OT  # (g, Z)
            pb = (wa * at0[ka]) @ OT
            alpha += M[a, :, 0][None, :] * pa + M[a, :, 1][None, :] * pb
    return alpha


def _backup(
    model: FiniteHorizonPOMDP, M: np.ndarray, i: int, beta: np.ndarray, next_lines, next_grid, next_u
) -> tuple[np.ndarray, np.ndarray]:
    """Bellman backups at predicted beliefs ``beta`` (G, Z) of epoch index ``i``, in cache-sized chunks.

    Returns the upper-bound values (G,) from interpolating ``next_u`` and the lower-bound alpha vectors (G, Z)
    of the point-based backup with ``next_lines``.
    """
    ep = _Epoch.make(model, M, i, next_lines, next_grid, next_u)
    G, Z = beta.shape
    u_out = np.empty(G)
    alpha_out = np.empty((G, Z))
    chunk = max(1, int(_CHUNK_ELEMENTS // max(1, len(ep.pc) * ep.O.shape[1])))
    for s in range(0, G, chunk):
        bt = beta[s : s + chunk]
        u = bt[:, :, None] * ep.O[None, :, :]  # (g, Z, n_o)
        sig = u.sum(axis=1)  # (g, n_o)
        qu_max, best, chosen = _chunk_q(ep, u, sig)
        u_out[s : s + len(bt)] = ep.pc @ qu_max.sum(axis=2)
        alpha_out[s : s + len(bt)] = _chunk_alphas(ep, best, chosen, len(bt))
    return u_out, alpha_out


class FiniteHorizonSolver:
    """Certified backward induction for finite-horizon POMDPs with rank-2 dynamics.

    Parameters
    ----------
    precision : float, default 1e-3
        Target gap ``upper − lower`` at ``b0`` (absolute, in reward units).
    time_limit : float or None
        Seconds; the solver returns its current (still certified) bounds when it runs out.
    mode : {"auto", "grid", "exact"}
        ``auto``: adaptive grids until the precision is met. ``grid``: one pass on uniform grids of
        ``grid_size`` points. ``exact``: grids on every breakpoint of the exact value function (small models).
    grid_size : int, default 9
        Initial (``auto``) or fixed (``grid``) number of grid points per epoch.
    max_grid : int, default 20000
        Upper limit on grid points per epoch (auto/exact); exceeding it in ``exact`` mode raises.

    Notes
    -----
    The solver keeps no state between solves: the report of a solve is the returned policy's ``info``. Models
    without rank-2 dynamics and with at most 4 hidden states are solved by the simplex-grid fallback
    (:func:`~.general.solve_general`, returning a :class:`~.general.FiniteHorizonAlphaPolicy`).
    """

    name = SOLVERS["finite-horizon"].name

    def __init__(
        self,
        precision: float = 1e-3,
        time_limit: float | None = None,
        mode: str = "auto",
        grid_size: int = 9,
        max_grid: int = 20000,
    ):
        if not (precision >= 0):
            raise InvalidParameterError(f"precision must be >= 0, got {precision}")
        if time_limit is not None and not (time_limit > 0):
            raise InvalidParameterError(f"time_limit must be > 0 seconds or None, got {time_limit}")
        if mode not in ("auto", "grid", "exact"):
            raise InvalidParameterError(f"mode must be 'auto', 'grid' or 'exact', got {mode!r}")
        if int(grid_size) < 2:
            raise InvalidParameterError(f"grid_size must be >= 2, got {grid_size}")
        self.precision = float(precision)
        self.time_limit = time_limit
        self.mode = mode
        self.grid_size = int(grid_size)
        self.max_grid = int(max_grid)

    # -- public ----------------------------------------------------------------------------------------------
    def solve(
        self, model: FiniteHorizonPOMDP
    ) -> FiniteHorizonPolicy | FiniteHorizonVertexPolicy | FiniteHorizonAlphaPolicy:
        """Solve ``model`` into a policy whose ``info`` is the solve's report.

        Parameters
        ----------
        model : FiniteHorizonPOMDP or object with ``.structured()``
            The model (a TRIM-POMDP is converted with its ``structured()`` method).

        Returns
        -------
        FiniteHorizonPolicy, FiniteHorizonVertexPolicy or FiniteHorizonAlphaPolicy
            The first for rank-2 dynamics, the second for dynamics with 3 to 5 vertex distributions (the
            TRIM-POMDP with difficulty classes), the third from the simplex-grid fallback.

        Raises
        ------
        SolverError
            For models that are neither rank-2 nor small enough for the fallback, or ``exact`` mode beyond
            ``max_grid`` points.
        """
        if not isinstance(model, FiniteHorizonPOMDP):
            structured = getattr(model, "structured", None)
            if not callable(structured):
                raise SolverError(
                    f"FiniteHorizonSolver solves a FiniteHorizonPOMDP (or an object with .structured()), "
                    f"got {type(model).__name__}; use the point-based solver for tabular POMDPs"
                )
            model = structured()
        model.check()
        # the backups are many small products: BLAS threads only add synchronisation (5-10x on a busy machine)
        with threadpool_limits(limits=1, user_api="blas"):
            return self._solve_checked(model)

    def _solve_checked(
        self, model: FiniteHorizonPOMDP
    ) -> FiniteHorizonPolicy | FiniteHorizonVertexPolicy | FiniteHorizonAlphaPolicy:
        given = model.vertices
        factor = (
            None
            if given is not None and len(given) > 2
            else segment_factorization(model.transition, anchor=model.b0)
        )
        if factor is not None:
            return self._solve_rank2(model, factor)
        vfac = vertex_factorization(model.transition, vertices=given, max_vertices=_MAX_VERTICES)
        # a reduction only when there are fewer vertices than hidden states (else the simplex grid is as small)
        if (
            vfac is not None
            and vfac.n_vertices >= 3
            and (given is not None or vfac.n_vertices < model.n_hidden)
        ):
            return solve_vertex(self, model, vfac)
        if given is not None:
            raise SolverError(
                "the model's vertices do not factorise its transitions: some row is not a mixture of them"
            )
        if self.mode == "exact" or model.n_hidden > 4:
            raise SolverError(
                f"this model's transition rows are not mixtures of at most {_MAX_VERTICES} vertex distributions: "
                f"exact mode and {model.n_hidden} > 4 hidden states are not supported by the simplex-grid "
                "fallback. Flatten it and use the point-based solver (trim_pomdp.solvers.pointbased.solver) "
                "instead."
            )
        return solve_general(
            model,
            precision=self.precision,
            time_limit=self.time_limit,
            mode=self.mode,
            grid_size=self.grid_size,
            max_grid=self.max_grid,
            name=self.name,
        )

    # -- internals -------------------------------------------------------------------------------------------
    def _solve_rank2(self, model: FiniteHorizonPOMDP, factor: SegmentFactorization) -> FiniteHorizonPolicy:
        start = time.perf_counter()
        deadline = None if self.time_limit is None else start + float(self.time_limit)
        H = model.horizon
        grids: list[Any] = [None] + [self._initial_grid() for _ in range(1, H)]
        rng = np.random.default_rng(0)
        iterations = 0
        while True:
            iterations += 1
            result = self._backward(model, factor, grids, exact=self.mode == "exact")
            gap = result["upper"] - result["lower"]
            if self.mode != "auto" or gap <= self.precision or H == 1:
                break
            if deadline is not None and time.perf_counter() >= deadline:
                break
            slacks = self._local_slacks(result)
            occ = self._occupancy(model, factor, result, rng)
            grids = self._refine(result, slacks, occ, gap)
            if max(len(g) for g in grids[1:]) > self.max_grid:
                break
        info = self._report(model, result, iterations, time.perf_counter() - start)
        return FiniteHorizonPolicy(model, factor, result["lines"], result["grids"], result["uvals"], info)

    def _report(self, model: FiniteHorizonPOMDP, result: dict, iterations: int, seconds: float) -> SolveInfo:
        H = model.horizon
        lo, hi = result["lower"], result["upper"]
        n_lines = [len(result["lines"][i][0]) for i in range(1, H)] or [0]
        sizes = {
            "states": model.n_hidden,
            "actions": model.n_actions,
            "observations": int(max(o.shape[1] for o in model.observation)),
            "alpha_vectors": int(sum(n_lines)),
            "max_alpha_vectors": int(max(n_lines)),
            "horizon": H,
            "contexts": model.n_contexts,
            "grid_points": int(sum(len(g) for g in result["grids"][1:H])),
            "max_grid_points": int(max((len(g) for g in result["grids"][1:H]), default=0)),
        }
        return SolveInfo(
            solver=self.name,
            seconds=seconds,
            iterations=iterations,
            lower_bound=float(lo),
            upper_bound=float(hi),
            converged=bool(hi - lo <= self.precision + 1e-12),
            sizes=sizes,
            extra={"mode": self.mode, "precision": self.precision, "time_limit": self.time_limit},
        )

    def _backward(self, model: FiniteHorizonPOMDP, factor: SegmentFactorization, grids, exact: bool) -> dict:
        H = model.horizon
        V, M = factor.V, factor.M
        lines: list[Any] = [None] * (H + 1)
        uvals: list[Any] = [None] * (H + 1)
        out_grids: list[Any] = [None] * (H + 1)
        lines[H] = (np.zeros(1), np.zeros(1), np.zeros(0))
        out_grids[H] = np.array([0.0, 1.0])
        uvals[H] = np.zeros(2)
        for i in range(H - 1, 0, -1):
            if exact:
                grid = self._exact_grid(model, factor, i, lines[i + 1])
                if len(grid) > self.max_grid:
                    raise SolverError(
                        f"exact mode needs {len(grid)} grid points at epoch {i + 1} (> max_grid={self.max_grid}); "
                        "use mode='auto' for models of this size"
                    )
            else:
                grid = grids[i]
            beta = grid[:, None] * V[0][None, :] + (1 - grid[:, None]) * V[1][None, :]
            u_val, alpha = _backup(model, M, i, beta, lines[i + 1], out_grids[i + 1], uvals[i + 1])
            at1, at0 = alpha @ V[0], alpha @ V[1]
            keep, breaks = upper_envelope(at1, at0)
            lines[i] = (at1[keep], at0[keep], breaks)
            uvals[i] = np.maximum(
                u_val, eval_envelope(at1[keep], at0[keep], breaks, grid)[0]
            )  # U ≥ L (rounding)
            out_grids[i] = grid
        b0 = model.b0[None, :]
        u0, alpha0 = _backup(model, M, 0, b0, lines[1], out_grids[1], uvals[1])
        lower = float(alpha0[0] @ model.b0)
        upper = float(max(u0[0], lower))
        return {"lines": lines, "uvals": uvals, "grids": out_grids, "lower": lower, "upper": upper}

    @staticmethod
    def _exact_grid(
        model: FiniteHorizonPOMDP, factor: SegmentFactorization, i: int, next_lines
    ) -> np.ndarray:
        """All breakpoints of the exact ``W`` at epoch index ``i`` (given exact ``W`` at ``i + 1``), plus midpoints."""
        V, M = factor.V, factor.M
        O = model.observation[i]
        R = model.reward[i]
        term = model.terminal[i]
        p = model.context_probs[i]
        gamma = float(model.discount)
        at1, at0, _ = next_lines
        pts = [np.array([0.0, 1.0])]
        for c in np.flatnonzero(p > 0):
            cands = []
            for a in range(R.shape[2]):
                if term[c]:
                    cands.append(R[c, :, a][None, :])
                else:
                    fut = M[a, :, 0][None, :] * at1[:, None] + M[a, :, 1][None, :] * at0[:, None]
                    cands.append(R[c, :, a][None, :] + gamma * fut)
            alph = np.concatenate(cands)  # (n, Z)
            e1 = (V[0][:, None] * O).T @ alph.T  # (n_o, n): value at g = 1 per observation
            e0 = (V[1][:, None] * O).T @ alph.T
            for o in range(O.shape[1]):
                _, b = upper_envelope(e1[o], e0[o])
                if b.size:
                    pts.append(b)
        allp = np.unique(np.clip(np.concatenate(pts), 0.0, 1.0))
        # merge points closer than 1e-12
        allp = allp[np.concatenate([[True], np.diff(allp) > 1e-12])]
        allp[-1] = 1.0
        mids = 0.5 * (allp[1:] + allp[:-1])
        return np.unique(np.concatenate([allp, mids]))

    @staticmethod
    def _local_slacks(result: dict) -> list[np.ndarray]:
        """Per epoch and grid interval: chord of U minus envelope of L at the midpoint, beyond the endpoint gaps."""
        out = []
        H = len(result["grids"]) - 1
        for i in range(1, H):
            grid = result["grids"][i]
            uv = result["uvals"][i]
            at1, at0, br = result["lines"][i]
            gap_pts = uv - eval_envelope(at1, at0, br, grid)[0]
            mids = 0.5 * (grid[1:] + grid[:-1])
            u_mid = 0.5 * (uv[1:] + uv[:-1])
            l_mid = eval_envelope(at1, at0, br, mids)[0]
            out.append((u_mid - l_mid) - 0.5 * (gap_pts[1:] + gap_pts[:-1]))
        return out

    def _initial_grid(self) -> np.ndarray:
        """Uniform grid; in ``auto`` mode plus geometric points towards both ends (boundary layers of W)."""
        grid = np.linspace(0.0, 1.0, self.grid_size)
        if self.mode == "auto":
            h = 1.0 / (self.grid_size - 1)
            lo = float(np.clip(self.precision, 1e-7, 1e-3))
            k = 4 + max(0, round(float(np.log10(1e-3 / lo))))
            ends = np.geomspace(min(lo, h / 2), h, k)[:-1]
            grid = np.unique(np.concatenate([grid, ends, 1.0 - ends]))
        return grid

    def _occupancy(self, model, factor, result, rng, n_particles: int = 2000) -> list[np.ndarray]:
        """Monte Carlo estimate of how much probability mass of predicted ``g`` each grid interval receives.

        Particles start at ``b0`` and follow the lower-bound (returned) policy; only a refinement heuristic.
        """
        H = model.horizon
        V, M = factor.V, factor.M
        gamma = float(model.discount)
        N = n_particles
        beta = np.broadcast_to(model.b0, (N, model.n_hidden)).copy()
        alive = np.ones(N, dtype=bool)
        out: list[np.ndarray] = []
        for i in range(H - 1):
            idx = np.flatnonzero(alive)
            if idx.size == 0:
                out.extend(np.zeros(len(result["grids"][j]) - 1) for j in range(i + 1, H))
                break
            b = beta[idx]
            pc = model.context_probs[i]
            c = np.minimum((np.cumsum(pc)[None, :] < rng.random(idx.size)[:, None]).sum(axis=1), len(pc) - 1)
            O = model.observation[i]
            # sample the hidden state, then the observation given it (same law as o ~ b @ O)
            zc = np.cumsum(b, axis=1)
            z = np.minimum((zc < rng.random(idx.size)[:, None] * zc[:, -1:]).sum(axis=1), b.shape[1] - 1)
            o = np.empty(idx.size, dtype=np.int64)
            ocum = np.cumsum(O, axis=1)
            for zz in np.unique(z):
                sel = z == zz
                o[sel] = np.minimum(
                    np.searchsorted(ocum[zz], rng.random(int(sel.sum())) * ocum[zz, -1]), O.shape[1] - 1
                )
            post = b * O[:, o].T
            post /= np.maximum(post.sum(axis=1, keepdims=True), 1e-300)
            live = ~model.terminal[i, c]
            at1, at0, br = result["lines"][i + 1]
            q = np.einsum("nz,nza->na", post, model.reward[i, c])
            xs = np.einsum("nz,az->na", post, M[:, :, 0])
            for a in range(M.shape[0]):
                q[:, a] += gamma * eval_envelope(at1, at0, br, xs[:, a])[0]
            a_star = q.argmax(axis=1)
            g_next = xs[np.arange(idx.size), a_star]
            alive[idx[~live]] = False
            keep = idx[live]
            gn = g_next[live]
            beta[keep] = gn[:, None] * V[0][None, :] + (1 - gn[:, None]) * V[1][None, :]
            grid = result["grids"][i + 1]
            k = np.clip(np.searchsorted(grid, gn, side="right") - 1, 0, len(grid) - 2)
            out.append(np.bincount(k, minlength=len(grid) - 1) / N)
        return out

    def _refine(self, result: dict, slacks: list[np.ndarray], occ: list[np.ndarray], gap: float) -> list:
        """Subdivide intervals so that the occupancy-weighted local slack drops below half the precision.

        An interval with weighted slack ``w`` (occupancy × slack, plus a small floor so that no interval is
        ignored for ever) is cut into ``ceil((w / μ)^(1/3))`` equal parts: with slack ∝ width², this spends
        grid points optimally for a target sum of weighted slacks, which is scaled by how the current sum
        relates to the gap.
        """
        ws = []
        for sl, oc in zip(slacks, occ, strict=False):
            ws.append(np.clip(sl, 0.0, None) * (oc + 1e-4))
        total = float(sum(w.sum() for w in ws))
        new: list = [None]
        if total <= 0:
            return [None] + [result["grids"][i] for i in range(1, len(slacks) + 1)]
        target = 0.5 * self.precision * total / max(gap, 1e-300)
        cube = float(sum(np.cbrt(w).sum() for w in ws))
        mu = (target / cube) ** 1.5
        for i, w in enumerate(ws, start=1):
            grid = result["grids"][i]
            m = np.ceil(np.cbrt(w / mu)).astype(np.int64)
            m = np.clip(m, 1, 64)
            m[np.diff(grid) <= 1e-12] = 1
            if np.all(m == 1):
                new.append(grid)
                continue
            pieces = [grid]
            for j in np.flatnonzero(m > 1):
                pieces.append(np.linspace(grid[j], grid[j + 1], m[j] + 1)[1:-1])
            new.append(np.unique(np.concatenate(pieces)))
        return new

"""Certified backward induction for finite-horizon POMDPs whose dynamics have ``K ≥ 3`` vertex distributions.

Every predicted belief from epoch 2 on is ``λ @ V`` with ``λ`` in the ``(K − 1)``-simplex (:mod:`~.vertices`), so
the pre-observation value ``W_t(λ)`` is a convex function on that simplex. Per epoch the solver keeps a
rectilinear grid in stick-breaking coordinates and two bounds:

* **upper bound** ``U_t``: at each grid node, the exact Bellman backup of the multilinear interpolation of
  ``U_{t+1}``. Multilinear interpolation lies above a convex function of ``λ`` (it is convex along each
  stick-breaking axis) and the backup is monotone, so by induction ``U_t ≥ W_t``;
* **lower bound** ``L_t``: at each node, one alpha vector built by a point-based backup, each the value of an
  actual conditional plan. Successor beliefs pick their continuation among the alphas of the grid cell they fall
  in (any choice is a plan; the cell's corners are the natural candidates and keep a backup linear in the grid
  size). The returned policy is greedy with respect to all of the epoch's alphas, so its value is at least their
  upper envelope.

The gap at ``b0`` is therefore a proof of how far the returned policy can be from optimal. Grids are refined
along the axis intervals whose edge midpoints show the largest slack, weighted by where the returned policy's
beliefs go, until the gap meets the precision. ``mode="exact"`` instead enumerates the exact alpha sets by
incremental pruning (linear programs on the simplex) for small models: both bounds then equal ``V*``.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
from scipy.optimize import linprog

from trim_pomdp._internal.simplex import nondominated
from trim_pomdp.exceptions import SolverError
from trim_pomdp.solvers.base import SolveInfo
from trim_pomdp.solvers.finite_horizon.problem import FiniteHorizonPOMDP
from trim_pomdp.solvers.finite_horizon.vertex_policy import FiniteHorizonVertexPolicy, VertexLayer
from trim_pomdp.solvers.finite_horizon.vertices import (
    TensorGrid,
    VertexFactorization,
    from_stick,
    stick_columns,
    to_stick,
)

__all__ = ["solve_vertex"]

#: elements of a (contexts, nodes, observations) block per backup chunk (the backups are memory-bound)
_CHUNK_ELEMENTS = 400_000


def _zero_layer(m: int, K: int) -> VertexLayer:
    """``W_{H+1} = 0``."""
    grid = TensorGrid([np.array([0.0, 1.0])] * m)
    return VertexLayer(np.zeros((1, K)), grid, np.zeros(grid.size))


def _successor_values(
    lam: np.ndarray, sig: np.ndarray, nxt: VertexLayer, full: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Lower bound, chosen next alpha and upper bound at unnormalised successors ``lam (K, n)`` of mass ``sig``.

    ``full``: the lower bound maximises over all of ``nxt``'s alphas; otherwise over those of the nodes of the
    grid cell each successor falls in (one alpha per node).
    """
    K = lam.shape[0]
    if full or nxt.grid is None:
        vals = nxt.alphas @ lam  # (N, n)
        k = vals.argmax(axis=0)
        lv = vals[k, np.arange(k.size)]
        if nxt.grid is None or nxt.uvals is None:
            return lv, k, lv
        idx, w = nxt.grid.locate_columns(stick_columns(lam, sig))
    else:
        idx, w = nxt.grid.locate_columns(stick_columns(lam, sig))
        cols = nxt.alpha_columns()
        cand = np.empty(idx.shape)
        for c in range(idx.shape[0]):
            ii = idx[c]
            v = cand[c]
            np.multiply(cols[0][ii], lam[0], out=v)
            for j in range(1, K):
                v += cols[j][ii] * lam[j]
        j = cand.argmax(axis=0)
        rows = np.arange(j.size)
        k, lv = idx[j, rows], cand[j, rows]
    assert nxt.uvals is not None  # a layer with a grid has its upper values
    up = (nxt.uvals[idx] * w).sum(axis=0)
    up *= sig
    return lv, k, np.maximum(up, lv)


def _backup(
    model: FiniteHorizonPOMDP,
    fac: VertexFactorization,
    i: int,
    beta: np.ndarray,
    nxt: VertexLayer,
    full: bool,
) -> tuple[np.ndarray, np.ndarray]:
    """Bellman backups at predicted beliefs ``beta (G, Z)`` of epoch index ``i``: upper values ``(G,)`` and
    lower-bound alpha vectors over the hidden states ``(G, Z)``."""
    O = model.observation[i]
    pc_all = model.context_probs[i]
    ctx = np.flatnonzero(pc_all > 0)
    R, pc, nt = model.reward[i][ctx], pc_all[ctx], ~model.terminal[i][ctx]
    gamma = float(model.discount)
    Z, A = R.shape[1], R.shape[2]
    n_o = O.shape[1]
    step = max(1, _CHUNK_ELEMENTS // max(1, len(ctx) * n_o))
    u_out = np.empty(beta.shape[0])
    a_out = np.empty((beta.shape[0], Z))
    future = gamma * nt[:, None].astype(float)
    R_a = [np.ascontiguousarray(R[:, :, a]) for a in range(A)]
    M_a = [np.ascontiguousarray(fac.M[a].T) for a in range(A)]
    for s in range(0, beta.shape[0], step):
        b = beta[s : s + step]
        G = b.shape[0]
        ut = (b.T[:, :, None] * O[:, None, :]).reshape(Z, G * n_o)  # (Z, G·n_o): u[z, (g, o)]
        sig = ut.sum(axis=0)
        qu_max: Any = None
        ql_max: Any = None
        best: Any = None
        chosen = []
        for a in range(A):
            imm = R_a[a] @ ut  # (c, G·n_o)
            k = None
            if nt.any():
                lv, k, up = _successor_values(M_a[a] @ ut, sig, nxt, full)
                ql = imm + future * lv[None, :]
                qu = imm + future * up[None, :]
                k = k.reshape(G, n_o)
            else:
                ql = qu = imm
            chosen.append(k)
            if a == 0:
                qu_max, ql_max, best = qu.copy(), ql, np.zeros(ql.shape, dtype=np.int8)
            else:
                np.maximum(qu_max, qu, out=qu_max)
                better = ql > ql_max
                best[better] = a
                ql_max = np.where(better, ql, ql_max)
        u_out[s : s + G] = (pc @ qu_max).reshape(G, n_o).sum(axis=1)
        a_out[s : s + G] = _alphas(model, fac, i, ctx, best.reshape(len(ctx), G, n_o), chosen, nxt)
    return u_out, a_out


def _alphas(
    model: FiniteHorizonPOMDP,
    fac: VertexFactorization,
    i: int,
    ctx: np.ndarray,
    best: np.ndarray,
    chosen: list[Any],
    nxt: VertexLayer,
) -> np.ndarray:
    """Alpha vectors ``(G, Z)`` of the plans that take action ``best[c, g, o]`` and continue with ``chosen[a]``."""
    O = model.observation[i]
    R, pc, nt = model.reward[i][ctx], model.context_probs[i][ctx], ~model.terminal[i][ctx]
    gamma = float(model.discount)
    G = best.shape[1]
    alpha = np.zeros((G, O.shape[0]))
    for a in range(R.shape[2]):
        mask = (best == a).astype(float)  # (c, G, n_o)
        if not mask.any():
            continue
        mo = np.einsum("cgo,zo->cgz", mask, O)
        alpha += np.einsum("cz,cgz->gz", pc[:, None] * R[:, :, a], mo)
        if chosen[a] is not None:
            wa = np.einsum("c,cgo->go", pc * gamma * nt, mask)
            fut = nxt.alphas[chosen[a]] @ fac.M[a].T  # (G, n_o, Z)
            alpha += np.einsum("go,zo,goz->gz", wa, O, fut)
    return alpha


class _VertexSolve:
    """One solve: grids per epoch, passes of backward induction, refinement."""

    def __init__(self, solver: Any, model: FiniteHorizonPOMDP, fac: VertexFactorization):
        self.solver, self.model, self.fac = solver, model, fac
        self.K = fac.n_vertices
        self.m = self.K - 1

    def initial_axes(self) -> list[np.ndarray]:
        """The first axis as the rank-2 solver's initial grid (boundary layers at both ends); the others with
        3 points (the value varies slowly between vertex distributions of the same kind, e.g. difficulty classes)."""
        first = self.solver._initial_grid()
        return [first] + [np.linspace(0.0, 1.0, 3) for _ in range(self.m - 1)]

    def backward(self, grids: list[Any]) -> tuple[list[Any], float, float]:
        """One pass: layers ``0 … H`` and the bounds at ``b0``."""
        model, fac, H = self.model, self.fac, self.model.horizon
        layers: list[Any] = [None] * (H + 1)
        layers[H] = _zero_layer(self.m, self.K)
        for i in range(H - 1, 0, -1):
            grid = grids[i]
            beta = from_stick(grid.nodes()) @ fac.V
            full = len(layers[i + 1].alphas) <= 3 * 2**self.m
            u, alpha = _backup(model, fac, i, beta, layers[i + 1], full)
            a_v = alpha @ fac.V.T
            lower = (from_stick(grid.nodes()) * a_v).sum(axis=1)
            layers[i] = VertexLayer(a_v, grid, np.maximum(u, lower))
        u0, alpha0 = _backup(model, fac, 0, model.b0[None, :], layers[1], True)
        lo = float(alpha0[0] @ model.b0)
        return layers, lo, float(max(u0[0], lo))

    def refine(self, layers: list[Any], gap: float, rng: np.random.Generator) -> list[Any] | None:
        """New grids that bisect the axis intervals with the largest weighted slack (``None``: nothing to split).

        Intervals are taken by decreasing weight until those left hold at most the share of the total that the
        precision allows (``precision / (2 · gap)``): bisecting an interval divides its slack by about four, and
        a grid grows by at most ``2^(K−1)`` per pass.
        """
        H = self.model.horizon
        occ = self.occupancy(layers, rng)
        weights = [self.axis_slacks(layers[i], occ[i]) for i in range(1, H)]
        flat = np.concatenate([w for ws in weights for w in ws])
        total = float(flat.sum())
        if total <= 0:
            return None
        allowed = total * min(0.5, 0.5 * self.solver.precision / max(gap, 1e-300))
        order = np.sort(flat)  # ascending: the smallest weights stay unsplit while they fit in the allowance
        threshold = (
            order[np.searchsorted(np.cumsum(order), allowed, side="right")] if allowed < total else np.inf
        )
        grids: list[Any] = [None]
        for i, ws in enumerate(weights, start=1):
            axes = []
            for ax, w in zip(layers[i].grid.axes, ws, strict=True):
                split = np.flatnonzero((w >= threshold) & (w > 0) & (np.diff(ax) > 1e-9))
                axes.append(np.unique(np.concatenate([ax, 0.5 * (ax[split] + ax[split + 1])])))
            grids.append(TensorGrid(axes))
        return grids

    def axis_slacks(self, layer: VertexLayer, occ: np.ndarray) -> list[np.ndarray]:
        """Per axis and interval: occupancy-weighted slack beyond the node gaps, at edge midpoints and centres.

        The slack of a point is the interpolated upper bound there minus the lower envelope, minus the same
        interpolation of the node gaps (what is left is the error this layer's own interpolation adds). Edge
        midpoints charge the interval of their axis; cell centres charge the cell's interval on every axis.
        """
        grid = layer.grid
        assert grid is not None and layer.uvals is not None  # only layers with grids are refined
        m = self.m
        nodes = grid.nodes().reshape((*grid.shape, m))
        lower = (from_stick(grid.nodes()) * layer.alphas).sum(axis=1).reshape(grid.shape)
        uv = layer.uvals.reshape(grid.shape)
        gap, oc = uv - lower, occ.reshape(grid.shape)
        out = [np.zeros(a.size - 1) for a in grid.axes]

        def charge(x: np.ndarray, u: np.ndarray, g: np.ndarray, o: np.ndarray, axes: list[int]) -> None:
            l_mid = layer.lower(from_stick(x.reshape(-1, m))).reshape(x.shape[:-1])
            w = np.clip(u - l_mid - g, 0.0, None) * (o + 1e-4)
            for j in axes:
                other = tuple(k for k in range(m) if k != j)
                out[j] += w.sum(axis=other) if other else w

        for j in range(m):
            lo, hi = [slice(None)] * m, [slice(None)] * m
            lo[j], hi[j] = slice(0, -1), slice(1, None)
            a, b = tuple(lo), tuple(hi)
            charge(
                0.5 * (nodes[a] + nodes[b]), 0.5 * (uv[a] + uv[b]), 0.5 * (gap[a] + gap[b]),
                0.5 * (oc[a] + oc[b]), [j],
            )  # fmt: skip
        if m > 1:  # cell centres: the mean of the 2^m corners of every cell
            corners = [tuple(slice(c, (s - 1 + c) or None) for c, s in zip(bits, grid.shape, strict=True))
                       for bits in np.ndindex(*([2] * m))]  # fmt: skip
            mean = lambda arr: sum(arr[c] for c in corners) / len(corners)  # noqa: E731
            charge(mean(nodes), mean(uv), mean(gap), mean(oc), list(range(m)))
        return out

    def occupancy(self, layers: list[Any], rng: np.random.Generator, n: int = 2000) -> list[np.ndarray]:
        """Monte Carlo estimate of how much predicted-belief mass each grid node receives under the returned
        policy (multilinear weights of the particles); only a refinement heuristic."""
        model, fac, H = self.model, self.fac, self.model.horizon
        gamma = float(model.discount)
        beta = np.broadcast_to(model.b0, (n, model.n_hidden)).copy()
        alive = np.ones(n, dtype=bool)
        out: list[Any] = [None] + [np.zeros(layers[i].grid.size) for i in range(1, H)]
        for i in range(H - 1):
            idx = np.flatnonzero(alive)
            if idx.size == 0:
                break
            b = beta[idx] / beta[idx].sum(axis=1, keepdims=True)
            pc = model.context_probs[i]
            c = np.minimum((np.cumsum(pc)[None, :] < rng.random(idx.size)[:, None]).sum(axis=1), len(pc) - 1)
            z = np.minimum((np.cumsum(b, axis=1) < rng.random(idx.size)[:, None]).sum(axis=1), b.shape[1] - 1)
            O = model.observation[i]
            ocum = np.cumsum(O, axis=1)
            o = np.minimum(
                (ocum[z] < rng.random(idx.size)[:, None] * ocum[z, -1:]).sum(axis=1), O.shape[1] - 1
            )
            post = b * O[:, o].T
            post /= np.maximum(post.sum(axis=1, keepdims=True), 1e-300)
            live = ~model.terminal[i, c]
            q = np.einsum("nz,nza->na", post, model.reward[i, c])
            lams = [post @ fac.M[a] for a in range(fac.M.shape[0])]
            for a, lam in enumerate(lams):
                q[:, a] += gamma * layers[i + 1].lower(lam)
            a_star = q.argmax(axis=1)
            lam_next = np.stack(lams, axis=1)[np.arange(idx.size), a_star]
            alive[idx[~live]] = False
            keep = idx[live]
            beta[keep] = lam_next[live] @ fac.V
            gi, gw = layers[i + 1].grid.locate(to_stick(lam_next[live]))
            np.add.at(out[i + 1], gi.reshape(-1), gw.reshape(-1) / n)
        return out


def solve_vertex(
    solver: Any, model: FiniteHorizonPOMDP, fac: VertexFactorization
) -> FiniteHorizonVertexPolicy:
    """Solve ``model`` (dynamics with ``fac.n_vertices ≥ 3`` vertices) with ``solver``'s settings."""
    start = time.perf_counter()
    if solver.mode == "exact":
        layers, lo = _solve_exact(model, fac, solver.max_grid)
        hi, iterations = lo, 1
    else:
        run = _VertexSolve(solver, model, fac)
        deadline = None if solver.time_limit is None else start + float(solver.time_limit)
        H = model.horizon
        grids: list[Any] = [None] + [TensorGrid(run.initial_axes()) for _ in range(1, H)]
        if solver.mode == "grid":
            grids = [None] + [TensorGrid([np.linspace(0, 1, solver.grid_size)] * run.m) for _ in range(1, H)]
        rng = np.random.default_rng(0)
        iterations = 0
        while True:
            iterations += 1
            layers, lo, hi = run.backward(grids)
            if solver.mode != "auto" or hi - lo <= solver.precision or H == 1:
                break
            if deadline is not None and time.perf_counter() >= deadline:
                break
            new = run.refine(layers, hi - lo, rng)
            if new is None or max(g.size for g in new[1:]) > solver.max_grid:
                break
            grids = new
    info = _report(solver, model, fac, layers, lo, hi, iterations, time.perf_counter() - start)
    return FiniteHorizonVertexPolicy(model, fac, layers, info)


def _report(
    solver: Any,
    model: FiniteHorizonPOMDP,
    fac: VertexFactorization,
    layers: list[Any],
    lo: float,
    hi: float,
    iterations: int,
    seconds: float,
) -> SolveInfo:
    H = model.horizon
    n_alpha = [len(layers[i].alphas) for i in range(1, H)] or [0]
    n_grid = [0 if layers[i].grid is None else layers[i].grid.size for i in range(1, H)] or [0]
    return SolveInfo(
        solver=solver.name,
        seconds=seconds,
        iterations=iterations,
        lower_bound=float(lo),
        upper_bound=float(hi),
        converged=bool(hi - lo <= solver.precision + 1e-12),
        sizes={
            "states": model.n_hidden,
            "actions": model.n_actions,
            "observations": int(max(o.shape[1] for o in model.observation)),
            "vertices": fac.n_vertices,
            "alpha_vectors": int(sum(n_alpha)),
            "max_alpha_vectors": int(max(n_alpha)),
            "horizon": H,
            "contexts": model.n_contexts,
            "grid_points": int(sum(n_grid)),
            "max_grid_points": int(max(n_grid)),
        },
        extra={"mode": solver.mode, "precision": solver.precision, "time_limit": solver.time_limit},
    )


# ---------------------------------------------------------------------- exact mode (small models)
def _hull_candidates(W: np.ndarray) -> np.ndarray:
    """Indices of the vectors that can be maximal somewhere on the hyperplane ``Σ λ = 1`` (a superset of those
    maximal on the simplex): the vertices of the upper facets of the convex hull of the dual points
    ``(w_1 − w_0, …, w_{K−1} − w_0, w_0)``. All indices when the hull is degenerate."""
    from scipy.spatial import ConvexHull, QhullError

    pts = np.column_stack([W[:, 1:] - W[:, :1], W[:, 0]])
    try:
        # Qc: also report the points within Qhull's tolerance of a facet
        hull = ConvexHull(pts, qhull_options="Qc")
    except (QhullError, ValueError):
        return np.arange(len(W))
    upper = hull.equations[:, -2] > -1e-9  # facets that can face up, with slack for rounding
    idx = [hull.simplices[upper].ravel()]
    if hull.coplanar.size:
        near = hull.coplanar[upper[hull.coplanar[:, 1]], 0]
        idx.append(near)
    out = np.unique(np.concatenate(idx))
    return out if out.size else np.arange(len(W))


def _witness(w: np.ndarray, Q: np.ndarray) -> np.ndarray | None:
    """A point of the simplex where ``w`` beats every row of ``Q`` by more than 1e-11, or ``None``."""
    K = w.size
    res = linprog(
        np.r_[np.zeros(K), -1.0],  # maximise δ: λ · (w − q) ≥ δ for every q, λ in the simplex
        A_ub=np.hstack([-(w[None, :] - Q), np.ones((len(Q), 1))]),
        b_ub=np.zeros(len(Q)),
        A_eq=np.r_[np.ones(K), 0.0][None, :],
        b_eq=[1.0],
        bounds=[(0, None)] * K + [(None, None)],
        method="highs",
    )
    if res.status != 0:  # numerically degenerate: keep the vector (a superset is still exact)
        return np.full(K, 1.0 / K)
    return res.x[:K] if -res.fun > 1e-11 else None


def _prune_lp(W: np.ndarray) -> np.ndarray:
    """The vectors of ``W (n, K)`` that are strictly maximal somewhere on the simplex (duplicates dropped).

    Pointwise dominance and the dual convex hull discard most vectors; the maximisers at a set of sample
    points are kept outright; the rest go through Lark's filter (one small linear program against the vectors
    kept so far, and the best vector at each witness point is kept).
    """
    W = np.unique(np.round(W, 13), axis=0)
    W = W[np.argsort(-W.sum(axis=1))]
    W = W[nondominated(W)]
    K = W.shape[1]
    if len(W) <= 1:
        return W
    if len(W) > K + 1:
        W = W[_hull_candidates(W)]
    pts = np.vstack([np.eye(K), np.random.default_rng(0).dirichlet(np.ones(K), size=64 * K)])
    vals = pts @ W.T
    top = vals.max(axis=1, keepdims=True)
    unique_best = (vals >= top - 1e-12).sum(axis=1) == 1  # a strict maximiser is on the envelope
    keep = set(np.unique(vals.argmax(axis=1)[unique_best]).tolist()) or {0}
    queue = [k for k in range(len(W)) if k not in keep]
    while queue:
        k = queue.pop()
        lam = _witness(W[k], W[sorted(keep)])
        if lam is None:
            continue
        cand = [k, *queue]
        j = cand[int(np.argmax(W[cand] @ lam))]
        keep.add(j)
        if j != k:
            queue.remove(j)
            queue.append(k)
    return W[sorted(keep)]


def _solve_exact(
    model: FiniteHorizonPOMDP, fac: VertexFactorization, max_vectors: int
) -> tuple[list[Any], float]:
    """Exact alpha sets per epoch (incremental pruning) and the exact value at ``b0``."""
    H, K = model.horizon, fac.n_vertices
    gamma = float(model.discount)
    layers: list[Any] = [None] * (H + 1)
    layers[H] = VertexLayer(np.zeros((1, K)))
    for i in range(H - 1, -1, -1):
        O, pc, R, term = model.observation[i], model.context_probs[i], model.reward[i], model.terminal[i]
        nxt = layers[i + 1].alphas
        basis = fac.V if i > 0 else model.b0[None, :]  # epoch 1 is evaluated at b0 itself
        acc = np.zeros((1, basis.shape[0]))
        for c in np.flatnonzero(pc > 0):
            for o in range(O.shape[1]):
                cands = []
                for a in range(R.shape[2]):
                    fut = 0.0 if term[c] else gamma * (nxt @ fac.M[a].T)  # (n, Z)
                    vec = R[c, :, a][None, :] + fut if not term[c] else R[c, :, a][None, :]
                    cands.append(pc[c] * (vec * O[:, o][None, :]) @ basis.T)
                S = np.concatenate(cands)
                if i > 0:
                    S = _prune_lp(S)
                    acc = _prune_lp((acc[:, None, :] + S[None, :, :]).reshape(-1, basis.shape[0]))
                else:  # values at b0 itself: the best candidate per (context, observation)
                    acc = acc + S.max()
                if len(acc) > max_vectors:
                    raise SolverError(
                        f"exact mode needs more than {max_vectors} alpha vectors at epoch {i + 1}; use mode='auto' "
                        "for models of this size"
                    )
        if i == 0:
            return layers, float(acc[0, 0])
        layers[i] = VertexLayer(acc)
    raise AssertionError("unreachable")  # pragma: no cover

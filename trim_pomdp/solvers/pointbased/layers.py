"""Layered structure of a tabular POMDP for bottom-up upper-bound seeding of the point-based solver.

Many finite-horizon models written as discounted POMDPs (the horizon encoded in the state, as in the flattened
TRIM-POMDP) have beliefs that live on small supports which the dynamics visit in a fixed order. The
*support graph* makes this explicit: from the support of ``b0``, action ``a`` leads to the support ``P`` of
``b T_a`` and observation ``o`` narrows it to ``P ∩ {s' : O[a, s', o] > 0}``. When that graph is acyclic
apart from self-loops (an absorbing state, a recurrent part), a reverse topological order of its supports
lets upper-bound backups run from the last layer to the first, so one sweep propagates through every layer.

:func:`support_layers` gives the reachable supports in reverse topological order, or ``None`` when the graph is
too large or has a cycle through several supports. The beliefs that seed each small support are the regular
grid of :func:`trim_pomdp._internal.simplex.simplex_grid`.
"""

from __future__ import annotations

import time

import numpy as np

from trim_pomdp.solvers.pointbased.sparse import SparseModel

__all__ = ["support_layers"]


def _weights(n: int) -> np.ndarray:
    """Integer weights that give every 0/1 pattern of length ``n`` a distinct sum (2^i up to 52 bits)."""
    if n <= 52:
        return 2.0 ** np.arange(n)
    return np.random.default_rng(0).random(n)  # distinct with probability one


def _child_supports(m: SparseModel, U: np.ndarray) -> set[tuple[int, ...]]:
    out: set[tuple[int, ...]] = set()
    for a in range(m.A):
        P = np.unique(m.T[a][U].indices)
        if len(P) == 0:
            continue
        # (Z, |P|): which states of P each observation can come from; one child support per distinct row
        patt = (m.O_sparse[a][P].T > 0).tocsr()
        key = patt @ _weights(len(P))  # distinct patterns have distinct keys (exact integer sums)
        _, first = np.unique(key, return_index=True)
        for o in first:
            row = patt.indices[patt.indptr[o] : patt.indptr[o + 1]]
            if len(row):
                out.add(tuple(P[np.sort(row)].tolist()))
    return out


def support_layers(
    m: SparseModel,
    max_supports: int = 5000,
    max_size: int | None = None,
    deadline: float | None = None,
) -> list[tuple[int, ...]] | None:
    """Reachable belief supports in reverse topological order (deepest first), self-loop supports excluded.

    Parameters
    ----------
    m : SparseModel
        The model.
    max_supports : int
        Give up (return ``None``) when more supports than this are reachable.
    max_size : int, optional
        Give up when a support with more states than this is reachable (the grids would be too large).
    deadline : float, optional
        Give up when ``time.perf_counter()`` passes this.

    Returns
    -------
    list of tuple of int, or None
        ``None`` when the support graph is too large or has a cycle other than self-loops; otherwise the
        supports without a self-loop, each after all of its successors.
    """
    start = tuple(np.flatnonzero(m.b0 > 0).tolist())
    if max_size is not None and len(start) > max_size:
        return None
    # depth-first search with colours: a support is "open" while its successors are being explored, so an
    # edge back to an open support (other than itself) is a cycle, found as soon as it is walked (RockSample:
    # a move and its reverse), not after the whole graph has been built; the post-order lists every support
    # after all of its successors
    succ: dict[tuple[int, ...], set[tuple[int, ...]]] = {}
    open_: set[tuple[int, ...]] = set()
    order: list[tuple[int, ...]] = []

    def enter(U: tuple[int, ...]) -> list[tuple[int, ...]] | None:
        if max_size is not None and len(U) > max_size:
            return None
        kids = _child_supports(m, np.asarray(U, dtype=np.int64))
        succ[U] = kids
        open_.add(U)
        return [k for k in kids if k != U]

    first = enter(start)
    if first is None:
        return None
    stack: list[tuple[tuple[int, ...], list[tuple[int, ...]]]] = [(start, first)]
    while stack:
        U, todo = stack[-1]
        if not todo:
            stack.pop()
            open_.discard(U)
            order.append(U)
            continue
        k = todo.pop()
        if k in open_:
            return None  # a cycle through several supports: not layered
        if k in succ:
            continue
        if len(succ) >= max_supports or (deadline is not None and time.perf_counter() > deadline):
            return None
        kids = enter(k)
        if kids is None:
            return None
        stack.append((k, kids))
    return [U for U in order if U not in succ[U]]

"""Finite-horizon POMDPs with an observed exogenous context, and a certified solver for rank-2 dynamics.

The model (:class:`FiniteHorizonPOMDP`)
---------------------------------------
Epochs ``t = 1 … H``. A hidden state ``z`` (``n_hidden`` values) evolves between epochs; at epoch ``t``

1. an observed *context* ``c ~ context_probs[t-1]`` is drawn independently of ``z`` (e.g. a token bucket and
an
   end-of-solution flag),
2. an observation ``o ~ observation[t-1][z, :]`` is drawn,
3. the agent picks action ``a`` and receives ``reward[t-1, c, z, a]`` (expected immediate reward),
4. if ``terminal[t-1, c]`` or ``t = H`` the episode ends; otherwise ``z' ~ transition[a, z, :]`` and the
future is
   discounted by ``discount``.

``b0`` is the belief over ``z`` at epoch 1 *before* its observation. Beliefs *after* an observation
("posterior" beliefs) are what policies are queried with.

The solver (:class:`FiniteHorizonSolver`)
-----------------------------------------
If every transition row lies on one segment of the simplex, ``transition[a] = M[a] @ V`` with two vertex
distributions ``V = (v1, v2)`` (rank-2 dynamics), every predicted belief from epoch 2 on is ``g v1 + (1 − g)
v2`` for a scalar ``g ∈ [0, 1]`` and the pre-observation value ``W_t(g)`` is a convex function of one
variable. The solver runs backward induction on per-epoch grids of ``g``:

* **upper bound** ``U_t``: exact Bellman backups of the piecewise-linear interpolation of ``U_{t+1}`` at the
grid
  points. Chords over-estimate a convex function and the Bellman operator is monotone, so ``U_t ≥ W_t``.
* **lower bound** ``L_t``: point-based backups producing one line ``α + β g`` per grid point, each the value
of an
  actual conditional plan; the upper envelope of the lines is ``≤ W_t`` and the greedy policy w.r.t. them
  achieves at least it (this is the returned policy).
* grids are refined where the chord of ``U`` exceeds the envelope of ``L`` by more than a shrinking tolerance,
  until ``U_1(b0) − L_1(b0) ≤ precision`` or the time limit.
* ``mode="exact"`` places the grid on every breakpoint of the exact value function (the upper envelope of all
  backed-up lines, computed per context and observation), so both bounds equal ``V*`` (for small instances).

Models whose transition rows are not on a segment (and have at most 4 hidden states) fall back to a slower
general method: upper bounds by interpolation on a Freudenthal triangulation of the belief simplex, lower
bounds by point-based alpha-vector backups at its vertices, doubling the resolution until the precision is met
(:class:`FiniteHorizonAlphaPolicy`). Beyond that, :class:`~trim_pomdp.exceptions.SolverError` names the
alternative (the point-based solver on the flattened tabular model).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from trim_pomdp.exceptions import InvalidParameterError, ModelCheckError, SolverError
from trim_pomdp.solvers.base import SolveInfo

__all__ = [
    "FiniteHorizonAlphaPolicy",
    "FiniteHorizonPOMDP",
    "FiniteHorizonPolicy",
    "FiniteHorizonSolver",
    "SegmentFactorization",
    "segment_factorization",
    "simplex_lattice",
    "upper_envelope",
]

_ATOL = 1e-9
#: grid points per backup chunk: a (contexts, points, observations) array gets about this many elements,
#: small enough to stay in cache (the backups are memory-bound), large enough to amortise numpy calls
_CHUNK_ELEMENTS = 32_000


# ------------------------------------------------------------------------------------------------------------
# model
# ------------------------------------------------------------------------------------------------------------
@dataclass
class FiniteHorizonPOMDP:
    """A finite-horizon POMDP with an observed, exogenous per-epoch context.

    Parameters
    ----------
    transition : ndarray, shape (n_actions, n_hidden, n_hidden)
        ``transition[a, z, z'] = P(z' | z, a)`` between non-terminal epochs.
    observation : sequence of H ndarrays, each of shape (n_hidden, n_obs_t)
        ``observation[t-1][z, o] = P(o | z)`` at epoch ``t`` (the number of observations may differ per epoch,
        e.g. a first-step observation without history). The same array object may be repeated.
    context_probs : ndarray, shape (H, n_contexts)
        ``P(context | t)``, independent of the hidden state.
    terminal : ndarray of bool, shape (H, n_contexts)
        Whether the episode ends after the action at this context (row ``H-1`` is treated as all ``True``).
    reward : ndarray, shape (H, n_contexts, n_hidden, n_actions)
        Expected immediate reward, including any terminal reward.
    b0 : ndarray, shape (n_hidden,)
        Belief over the hidden state at epoch 1 before its observation.
    discount : float, default 1.0
        Discount of the future per epoch, in (0, 1].
    hidden_names, action_names : sequence of str, optional
    """

    transition: np.ndarray
    observation: Sequence[np.ndarray]
    context_probs: np.ndarray
    terminal: np.ndarray
    reward: np.ndarray
    b0: np.ndarray
    discount: float = 1.0
    hidden_names: Sequence[str] | None = None
    action_names: Sequence[str] | None = None
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.transition = np.asarray(self.transition, dtype=float)
        self.observation = [np.asarray(o, dtype=float) for o in self.observation]
        self.context_probs = np.asarray(self.context_probs, dtype=float)
        self.terminal = np.asarray(self.terminal, dtype=bool).copy()
        self.reward = np.asarray(self.reward, dtype=float)
        self.b0 = np.asarray(self.b0, dtype=float)
        if self.terminal.ndim == 2 and self.terminal.shape[0] >= 1:
            self.terminal[-1, :] = True

    @property
    def horizon(self) -> int:
        return int(self.context_probs.shape[0])

    @property
    def n_hidden(self) -> int:
        return int(self.transition.shape[1])

    @property
    def n_actions(self) -> int:
        return int(self.transition.shape[0])

    @property
    def n_contexts(self) -> int:
        return int(self.context_probs.shape[1])

    def check(self, atol: float = 1e-8) -> FiniteHorizonPOMDP:
        """Raise :class:`ModelCheckError` naming the offending index if the arrays are inconsistent."""
        T = self.transition
        if T.ndim != 3 or T.shape[1] != T.shape[2]:
            raise ModelCheckError(
                f"transition must have shape (n_actions, n_hidden, n_hidden), got {T.shape}"
            )
        A, Z, _ = T.shape
        if self.context_probs.ndim != 2 or self.context_probs.shape[0] < 1:
            raise ModelCheckError(
                f"context_probs must have shape (H >= 1, n_contexts), got {self.context_probs.shape}"
            )
        H, C = self.context_probs.shape
        if len(self.observation) != H:
            raise ModelCheckError(
                f"observation must hold one array per epoch ({H}), got {len(self.observation)}"
            )
        if self.terminal.shape != (H, C):
            raise ModelCheckError(f"terminal must have shape ({H}, {C}), got {self.terminal.shape}")
        if self.reward.shape != (H, C, Z, A):
            raise ModelCheckError(f"reward must have shape ({H}, {C}, {Z}, {A}), got {self.reward.shape}")
        if self.b0.shape != (Z,):
            raise ModelCheckError(f"b0 must have shape ({Z},), got {self.b0.shape}")
        if not (0.0 < float(self.discount) <= 1.0):
            raise ModelCheckError(f"discount must lie in (0, 1], got {self.discount}")
        arrays = [("transition", T), ("context_probs", self.context_probs), ("b0", self.b0)]
        arrays += [(f"observation[{i}]", o) for i, o in enumerate(self.observation)]
        for name, arr in arrays:
            bad = np.argwhere(~np.isfinite(arr) | (arr < -atol) | (arr > 1 + atol))
            if bad.size:
                idx = tuple(int(i) for i in bad[0])
                raise ModelCheckError(f"{name}{list(idx)} = {arr[idx]!r} is not a probability in [0, 1]")
        for i, o in enumerate(self.observation):
            if o.ndim != 2 or o.shape[0] != Z:
                raise ModelCheckError(f"observation[{i}] must have shape ({Z}, n_obs), got {o.shape}")
            sums = o.sum(axis=1)
            bad = np.flatnonzero(np.abs(sums - 1) > 1e-6)
            if bad.size:
                raise ModelCheckError(f"observation[{i}][{bad[0]}, :] sums to {sums[bad[0]]:.6g}, not 1")
        sums = T.sum(axis=2)
        bad = np.argwhere(np.abs(sums - 1) > 1e-6)
        if bad.size:
            a, z = (int(i) for i in bad[0])
            raise ModelCheckError(f"transition[{a}, {z}, :] sums to {sums[a, z]:.6g}, not 1")
        sums = self.context_probs.sum(axis=1)
        bad = np.flatnonzero(np.abs(sums - 1) > 1e-6)
        if bad.size:
            raise ModelCheckError(f"context_probs[{bad[0]}, :] sums to {sums[bad[0]]:.6g}, not 1")
        if abs(self.b0.sum() - 1) > 1e-6:
            raise ModelCheckError(f"b0 sums to {self.b0.sum():.6g}, not 1")
        if not np.all(np.isfinite(self.reward)):
            idx = tuple(int(i) for i in np.argwhere(~np.isfinite(self.reward))[0])
            raise ModelCheckError(f"reward{list(idx)} is not finite")
        return self


# ------------------------------------------------------------------------------------------------------------
# rank-2 structure and 1-D envelopes
# ------------------------------------------------------------------------------------------------------------
@dataclass
class SegmentFactorization:
    """``transition[a] = M[a] @ V``: every transition row is a mixture of the two rows of ``V``.

    Attributes
    ----------
    V : ndarray, shape (2, n_hidden)
        The vertex distributions ``v1`` (g = 1) and ``v2`` (g = 0).
    M : ndarray, shape (n_actions, n_hidden, 2)
        ``M[a, z] = (g, 1 − g)``: the weight of ``v1`` in row ``transition[a, z]``.
    """

    V: np.ndarray
    M: np.ndarray


def segment_factorization(transition: np.ndarray, anchor: np.ndarray | None = None, tol: float = 1e-9):
    """Factorise ``transition[a] = M[a] @ V`` with two vertex distributions, or return ``None``.

    Parameters
    ----------
    transition : ndarray, shape (n_actions, n_hidden, n_hidden)
    anchor : ndarray, optional
        A belief; the vertex closest to it becomes ``v1`` (so that it has ``g`` close to 1).
    tol : float
        Largest reconstruction error accepted.
    """
    T = np.asarray(transition, dtype=float)
    rows = T.reshape(-1, T.shape[-1])
    centre = rows.mean(axis=0)
    dev = rows - centre
    if np.abs(dev).max() <= tol:  # all rows equal: any g works; use v1 = v2 = that row
        V = np.stack([rows[0], rows[0]])
        M = np.zeros(T.shape[:2] + (2,))
        M[..., 0] = 1.0
        return SegmentFactorization(V, M)
    _, s, vt = np.linalg.svd(dev, full_matrices=False)
    direction = vt[0]
    proj = dev @ direction
    v_hi, v_lo = rows[int(np.argmax(proj))], rows[int(np.argmin(proj))]
    if anchor is not None and np.linalg.norm(np.asarray(anchor) - v_lo) < np.linalg.norm(
        np.asarray(anchor) - v_hi
    ):
        v_hi, v_lo = v_lo, v_hi
    d = v_hi - v_lo
    g = (rows - v_lo) @ d / float(d @ d)
    recon = g[:, None] * v_hi + (1 - g[:, None]) * v_lo
    if np.abs(recon - rows).max() > tol or g.min() < -tol or g.max() > 1 + tol:
        return None
    g = np.clip(g, 0.0, 1.0)
    M = np.stack([g, 1 - g], axis=-1).reshape(T.shape[:2] + (2,))
    return SegmentFactorization(np.stack([v_hi, v_lo]), M)


def upper_envelope(at1, at0) -> tuple[np.ndarray, np.ndarray]:
    """Upper envelope on ``[0, 1]`` of lines ``f_k(g) = at0[k] + (at1[k] − at0[k]) g``.

    Returns
    -------
    keep : ndarray of int
        Indices of the lines on the envelope, ordered left to right.
    breaks : ndarray, shape (len(keep) - 1,)
        Interior breakpoints; line ``keep[i]`` is maximal on ``[breaks[i-1], breaks[i]]``.
    """
    at1 = np.asarray(at1, dtype=float)
    at0 = np.asarray(at0, dtype=float)
    if at1.size == 0:
        raise InvalidParameterError("upper_envelope needs at least one line")
    slope = at1 - at0
    scale = max(1.0, float(np.abs(at0).max()), float(np.abs(at1).max()))
    eps = 1e-13 * scale
    # sort by slope, then intercept (descending) so that the first of equal slopes is the best
    order = np.lexsort((-at0, slope))
    hull: list[int] = []
    starts: list[float] = []  # g from which hull[i] is maximal
    last_slope = None
    for k in order:
        s_k, b_k = slope[k], at0[k]
        if last_slope is not None and abs(s_k - last_slope) <= eps:
            continue  # same slope, lower-or-equal intercept
        last_slope = s_k
        while hull:
            j = hull[-1]
            # intersection of line j and k: b_j + s_j g = b_k + s_k g
            x = (at0[j] - b_k) / (s_k - slope[j])
            if x <= starts[-1] + 1e-15 or (len(hull) == 1 and x <= 0.0):
                hull.pop()
                starts.pop()
                continue
            break
        if not hull:
            hull.append(int(k))
            starts.append(-np.inf)
            continue
        j = hull[-1]
        x = (at0[j] - b_k) / (s_k - slope[j])
        if x >= 1.0:
            continue  # line k only wins right of 1
        hull.append(int(k))
        starts.append(float(x))
    # drop lines that are maximal only left of 0
    starts_arr = np.asarray(starts[1:], dtype=float)
    first = int(np.searchsorted(starts_arr, 0.0, side="right"))
    keep = np.asarray(hull[first:], dtype=np.int64)
    breaks = starts_arr[first:]
    return keep, breaks


def _eval_envelope(at1, at0, breaks, x):
    k = np.searchsorted(breaks, x, side="right")
    return at0[k] + (at1[k] - at0[k]) * x, k


# ------------------------------------------------------------------------------------------------------------
# policy
# ------------------------------------------------------------------------------------------------------------
class FiniteHorizonPolicy:
    """The solution of a rank-2 :class:`FiniteHorizonPOMDP`.

    Stores, per epoch ``t = 2 … H``, the lower-bound lines (upper envelope; value at predicted belief
    ``g v1 + (1 − g) v2`` is ``at0 + (at1 − at0) g``) and the upper-bound grid values. Queried at a posterior
    belief ``b`` in context ``c`` of epoch ``t``:

    ``Q_L(a) = b · reward[t-1, c, :, a] + γ [not terminal] max_k line_k(b · M[a, :, 0])`` — the greedy policy
    w.r.t. these is the returned policy, and its value is at least ``lower``.
    ``Q_U(a)`` is the same with the upper-bound interpolation; ``max_a Q_U ≥ V*``.
    """

    def __init__(
        self, model: FiniteHorizonPOMDP, factor: SegmentFactorization, lines, grids, uvals, info=None
    ):
        self.reward = model.reward
        self.terminal = model.terminal
        self.discount = float(model.discount)
        self.context_probs = model.context_probs
        self.factor = factor
        self.lines = lines  # list over epoch index 0..H: (at1, at0, breaks) of W_{t}; index H is zero
        self.grids = grids  # list over epoch index 0..H: grid of g (None at 0)
        self.uvals = uvals  # upper-bound values at grids
        self.info = info

    @property
    def horizon(self) -> int:
        return int(self.reward.shape[0])

    # -- arrays (for saving without pickle) ------------------------------------------------------------------
    def to_arrays(self) -> dict[str, np.ndarray]:
        """Plain arrays from which :meth:`from_arrays` rebuilds the policy."""
        H = self.horizon
        idx = range(1, H + 1)
        at1 = [self.lines[i][0] for i in idx]
        at0 = [self.lines[i][1] for i in idx]
        brk = [self.lines[i][2] for i in idx]
        grids = [self.grids[i] for i in idx]
        uv = [self.uvals[i] for i in idx]
        off = lambda xs: np.concatenate([[0], np.cumsum([len(x) for x in xs])]).astype(np.int64)  # noqa: E731
        return {
            "fh_reward": self.reward,
            "fh_terminal": self.terminal,
            "fh_discount": np.array(self.discount),
            "fh_context_probs": self.context_probs,
            "fh_V": self.factor.V,
            "fh_M": self.factor.M,
            "fh_at1": np.concatenate(at1),
            "fh_at0": np.concatenate(at0),
            "fh_line_off": off(at1),
            "fh_breaks": np.concatenate(brk),
            "fh_break_off": off(brk),
            "fh_grid": np.concatenate(grids),
            "fh_uval": np.concatenate(uv),
            "fh_grid_off": off(grids),
        }

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], info: SolveInfo | None = None) -> FiniteHorizonPolicy:
        """Inverse of :meth:`to_arrays`."""
        self = cls.__new__(cls)
        self.reward = np.asarray(arrays["fh_reward"], dtype=float)
        self.terminal = np.asarray(arrays["fh_terminal"], dtype=bool)
        self.discount = float(arrays["fh_discount"])
        self.context_probs = np.asarray(arrays["fh_context_probs"], dtype=float)
        self.factor = SegmentFactorization(np.asarray(arrays["fh_V"]), np.asarray(arrays["fh_M"]))
        H = self.reward.shape[0]
        lo, bo, go = arrays["fh_line_off"], arrays["fh_break_off"], arrays["fh_grid_off"]
        self.lines = [None] + [
            (
                arrays["fh_at1"][lo[j] : lo[j + 1]],
                arrays["fh_at0"][lo[j] : lo[j + 1]],
                arrays["fh_breaks"][bo[j] : bo[j + 1]],
            )
            for j in range(H)
        ]
        self.grids = [None] + [arrays["fh_grid"][go[j] : go[j + 1]] for j in range(H)]
        self.uvals = [None] + [arrays["fh_uval"][go[j] : go[j + 1]] for j in range(H)]
        self.info = info
        return self

    @property
    def n_contexts(self) -> int:
        return int(self.reward.shape[1])

    def _check(self, t: int, context: int) -> None:
        if not 1 <= int(t) <= self.horizon:
            raise InvalidParameterError(f"epoch t must be in 1..{self.horizon}, got {t}")
        if not 0 <= int(context) < self.n_contexts:
            raise InvalidParameterError(f"context must be in 0..{self.n_contexts - 1}, got {context}")

    def action_values(self, t: int, context: int, belief, upper: bool = False) -> np.ndarray:
        """Per-action values ``(n_actions,)`` (or ``(n, n_actions)`` for a 2-D array of beliefs).

        ``upper=False`` gives the lower-bound (policy) Q-values, ``upper=True`` the certified upper bounds.
        """
        self._check(t, context)
        b = np.asarray(belief, dtype=float)
        single = b.ndim == 1
        b = np.atleast_2d(b)
        i = int(t) - 1
        q = b @ self.reward[i, context]  # (n, A)
        if not self.terminal[i, context]:
            x = np.einsum("nz,az->na", b, self.factor.M[:, :, 0])
            s = b.sum(axis=1, keepdims=True)
            xs = np.where(s > 0, x / np.where(s > 0, s, 1), 0.0)
            if upper:
                fut = np.interp(xs, self.grids[i + 1], self.uvals[i + 1])
            else:
                at1, at0, br = self.lines[i + 1]
                fut, _ = _eval_envelope(at1, at0, br, xs)
            q = q + self.discount * s * fut
        return q[0] if single else q

    def alphas(self, t: int, context: int) -> tuple[np.ndarray, np.ndarray]:
        """Explicit post-observation alpha vectors ``(n, n_hidden)`` and their actions ``(n,)`` at ``(t,
        context)``.
        """
        self._check(t, context)
        i = int(t) - 1
        r = self.reward[i, context]  # (Z, A)
        A = r.shape[1]
        if self.terminal[i, context]:
            return r.T.copy(), np.arange(A)
        at1, at0, _ = self.lines[i + 1]
        M = self.factor.M  # (A, Z, 2)
        out, acts = [], []
        for a in range(A):
            fut = M[a, :, 0][None, :] * at1[:, None] + M[a, :, 1][None, :] * at0[:, None]
            out.append(r[:, a][None, :] + self.discount * fut)
            acts.append(np.full(len(at1), a))
        return np.concatenate(out), np.concatenate(acts)

    def predicted_value(self, t: int, g, upper: bool = False):
        """Value bound ``W_t(g)`` before the observation of epoch ``t ≥ 2`` at predicted belief ``g v1 +
        (1−g) v2``.
        """
        if not 2 <= int(t) <= self.horizon + 1:
            raise InvalidParameterError(f"predicted values exist for t in 2..{self.horizon + 1}, got {t}")
        i = int(t) - 1
        g = np.asarray(g, dtype=float)
        if upper:
            return np.interp(g, self.grids[i], self.uvals[i])
        at1, at0, br = self.lines[i]
        return _eval_envelope(at1, at0, br, g)[0]


# ------------------------------------------------------------------------------------------------------------
# solver
# ------------------------------------------------------------------------------------------------------------
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
    The solver keeps no state between solves: the report of a solve is the returned policy's ``info``.
    """

    name = "finite-horizon"

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
    def solve(self, model: FiniteHorizonPOMDP) -> FiniteHorizonPolicy:
        """Solve ``model`` into a :class:`FiniteHorizonPolicy` whose ``info`` is the solve's report."""
        if not isinstance(model, FiniteHorizonPOMDP):
            structured = getattr(model, "structured", None)
            if callable(structured):
                model = structured()
            else:
                raise SolverError(
                    f"FiniteHorizonSolver solves a FiniteHorizonPOMDP (or an object with .structured()), "
                    f"got {type(model).__name__}; use the point-based solver for tabular POMDPs"
                )
        model.check()
        factor = segment_factorization(model.transition, anchor=model.b0)
        if factor is None:
            if self.mode == "exact" or model.n_hidden > 4:
                raise SolverError(
                    "this model's transition rows do not lie on a segment (no rank-2 structure): exact mode "
                    "and "
                    f"{model.n_hidden} > 4 hidden states are not supported by the simplex-grid fallback. "
                    "Flatten "
                    "it and use the point-based solver (trim_pomdp.solvers.pointbased.solver) instead."
                )
            return _solve_general(self, model)
        start = time.perf_counter()
        deadline = None if self.time_limit is None else start + float(self.time_limit)
        H = model.horizon
        grids: list[np.ndarray | None] = [None] + [self._initial_grid() for _ in range(1, H)]
        rng = np.random.default_rng(0)
        iterations = 0
        result = None
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
        seconds = time.perf_counter() - start
        lo, hi = result["lower"], result["upper"]
        converged = bool(hi - lo <= self.precision + 1e-12)
        n_lines = [len(result["lines"][i][0]) for i in range(1, H)] or [0]
        sizes = {
            "horizon": H,
            "n_hidden": model.n_hidden,
            "n_contexts": model.n_contexts,
            "n_observations": int(max(o.shape[1] for o in model.observation)),
            "grid_points": int(sum(len(g) for g in result["grids"][1:H])),
            "max_grid_points": int(max((len(g) for g in result["grids"][1:H]), default=0)),
            "lines": int(sum(n_lines)),
            "max_lines": int(max(n_lines)),
        }
        info = SolveInfo(
            solver=self.name,
            seconds=seconds,
            iterations=iterations,
            lower_bound=float(lo),
            upper_bound=float(hi),
            converged=converged,
            sizes=sizes,
            extra={"mode": self.mode, "precision": self.precision, "time_limit": self.time_limit},
        )
        return FiniteHorizonPolicy(model, factor, result["lines"], result["grids"], result["uvals"], info)

    # -- internals -------------------------------------------------------------------------------------------
    def _backward(self, model: FiniteHorizonPOMDP, factor: SegmentFactorization, grids, exact: bool) -> dict:
        H = model.horizon
        V, M = factor.V, factor.M
        zero = (np.zeros(1), np.zeros(1), np.zeros(0))
        lines: list[Any] = [None] * (H + 1)
        uvals: list[Any] = [None] * (H + 1)
        out_grids: list[Any] = [None] * (H + 1)
        lines[H] = zero
        out_grids[H] = np.array([0.0, 1.0])
        uvals[H] = np.zeros(2)
        for i in range(H - 1, 0, -1):
            if exact:
                grid = self._exact_grid(model, factor, i, lines[i + 1])
                if len(grid) > self.max_grid:
                    raise SolverError(
                        f"exact mode needs {len(grid)} grid points at epoch {i + 1} (> "
                        f"max_grid={self.max_grid}); "
                        "use mode='auto' for models of this size"
                    )
            else:
                grid = grids[i]
            beta = grid[:, None] * V[0][None, :] + (1 - grid[:, None]) * V[1][None, :]
            u_val, alpha = self._backup(model, M, i, beta, lines[i + 1], out_grids[i + 1], uvals[i + 1])
            at1, at0 = alpha @ V[0], alpha @ V[1]
            keep, breaks = upper_envelope(at1, at0)
            lines[i] = (at1[keep], at0[keep], breaks)
            uvals[i] = np.maximum(
                u_val, _eval_envelope(*lines[i], grid)[0]
            )  # U ≥ L at grid points (rounding)
            out_grids[i] = grid
        b0 = model.b0[None, :]
        u0, alpha0 = self._backup(model, M, 0, b0, lines[1], out_grids[1], uvals[1])
        lower = float(alpha0[0] @ model.b0)
        upper = float(max(u0[0], lower))
        return {"lines": lines, "uvals": uvals, "grids": out_grids, "lower": lower, "upper": upper}

    @staticmethod
    def _backup(model, M, i, beta, next_lines, next_grid, next_u):
        """Bellman backups at predicted beliefs ``beta`` (G, Z) of epoch index ``i``.

        Returns the upper-bound values (G,) from interpolating ``next_u`` and the lower-bound alpha vectors
        (G, Z) of the point-based backup with ``next_lines``.
        """
        O = model.observation[i]  # (Z, n_o)
        R = model.reward[i]  # (C, Z, A)
        p = model.context_probs[i]  # (C,)
        term = model.terminal[i]  # (C,)
        gamma = float(model.discount)
        G, Z = beta.shape
        C, _, A = R.shape
        n_o = O.shape[1]
        live = p > 0
        ctx = np.flatnonzero(live)
        Rc, pc, tc = R[ctx], p[ctx], term[ctx]
        nt = (~tc).astype(float)
        any_future = bool(np.any(~tc))
        at1, at0, br = next_lines
        u_out = np.empty(G)
        alpha_out = np.empty((G, Z))
        chunk = max(1, int(_CHUNK_ELEMENTS // max(1, len(ctx) * n_o)))
        nt_idx = np.flatnonzero(nt > 0)
        const = np.all(Rc == Rc[:, :1, :], axis=1)  # (c, A): reward independent of the hidden state
        wF = pc * gamma * nt  # (c,)
        OT = O.T  # (n_o, Z)
        for s in range(0, G, chunk):
            bt = beta[s : s + chunk]
            g = bt.shape[0]
            u = bt[:, :, None] * O[None, :, :]  # (g, Z, n_o)
            sig = u.sum(axis=1)  # (g, n_o)
            safe = np.where(sig > 0, sig, 1.0)
            qu_max = ql_max = best = None
            chosen = []  # per action: line index per (g, o) for the alpha vectors
            for a in range(A):
                imm = np.empty((len(ctx), g, n_o))
                cc = np.flatnonzero(const[:, a])
                if cc.size:
                    imm[cc] = Rc[cc, 0, a, None, None] * sig[None]
                gc = np.flatnonzero(~const[:, a])
                if gc.size:
                    acc = Rc[gc, 0, a, None, None] * u[None, :, 0, :]
                    for z in range(1, Z):
                        acc += Rc[gc, z, a, None, None] * u[None, :, z, :]
                    imm[gc] = acc
                k = None
                if any_future:
                    x = M[a, 0, 0] * u[:, 0, :]
                    for z in range(1, Z):
                        x = x + M[a, z, 0] * u[:, z, :]
                    x /= safe
                    np.clip(x, 0.0, 1.0, out=x)
                    lv, k = _eval_envelope(at1, at0, br, x)
                    qu = imm.copy()
                    ql = imm
                    ql[nt_idx] += gamma * (sig * lv)[None]
                    qu[nt_idx] += gamma * (sig * np.interp(x, next_grid, next_u))[None]
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
            u_out[s : s + g] = pc @ qu_max.sum(axis=2)
            # lower-bound alpha vector per grid point: sum_c p_c sum_o O[z, o] alpha_{c,g,o}[z] with the
            # chosen action's alpha  R[c, z, a] + γ [not terminal] (M[a, z, 0] at1[k] + M[a, z, 1] at0[k]).
            # Linear in the action masks; action 0 takes what the others leave (rows of O sum to 1).
            alpha = np.zeros((g, Z))
            mo_rest = np.ones((len(ctx), g, Z))
            w_rest = np.broadcast_to(wF[:, None, None], (len(ctx), g, n_o)).sum(axis=0)
            for a in list(range(1, A)) + [0]:
                if a == 0:
                    mo, wa = mo_rest, w_rest
                else:
                    mask = (best == a).astype(float)  # (c, g, n_o)
                    mo = (mask.reshape(-1, n_o) @ OT).reshape(len(ctx), g, Z)  # sum_o O[z, o] mask
                    wa = wF @ mask.reshape(len(ctx), -1)
                    wa = wa.reshape(g, n_o)
                    mo_rest = mo_rest - mo
                    w_rest = w_rest - wa
                alpha += np.einsum("cz,cgz->gz", pc[:, None] * Rc[:, :, a], mo)
                if any_future:
                    ka = chosen[a]
                    pa = (wa * at1[ka]) @ OT  # (g, Z)
                    pb = (wa * at0[ka]) @ OT
                    alpha += M[a, :, 0][None, :] * pa + M[a, :, 1][None, :] * pb
            alpha_out[s : s + g] = alpha
        return u_out, alpha_out

    @staticmethod
    def _exact_grid(model, factor, i, next_lines) -> np.ndarray:
        """All breakpoints of the exact ``W`` at epoch index ``i`` (given exact ``W`` at ``i + 1``), plus
        midpoints.
        """
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
        """Per epoch and grid interval: chord of U minus envelope of L at the midpoint, beyond the endpoint
        gaps.
        """
        out = []
        H = len(result["grids"]) - 1
        for i in range(1, H):
            grid = result["grids"][i]
            uv = result["uvals"][i]
            at1, at0, br = result["lines"][i]
            gap_pts = uv - _eval_envelope(at1, at0, br, grid)[0]
            mids = 0.5 * (grid[1:] + grid[:-1])
            u_mid = 0.5 * (uv[1:] + uv[:-1])
            l_mid = _eval_envelope(at1, at0, br, mids)[0]
            out.append((u_mid - l_mid) - 0.5 * (gap_pts[1:] + gap_pts[:-1]))
        return out

    def _initial_grid(self) -> np.ndarray:
        """Uniform grid; in ``auto`` mode plus geometric points towards both ends (boundary layers of W)."""
        grid = np.linspace(0.0, 1.0, self.grid_size)
        if self.mode == "auto":
            h = 1.0 / (self.grid_size - 1)
            lo = float(np.clip(self.precision, 1e-7, 1e-3))
            k = 4 + max(0, int(round(np.log10(1e-3 / lo))))
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
        out = []
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
                q[:, a] += gamma * _eval_envelope(at1, at0, br, xs[:, a])[0]
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


# ------------------------------------------------------------------------------------------------------------
# general fallback: full-rank dynamics, beliefs on a Freudenthal-triangulated simplex grid
# ------------------------------------------------------------------------------------------------------------
def simplex_lattice(n: int, resolution: int) -> np.ndarray:
    """All beliefs with coordinates in ``{0, 1/r, …, 1}`` over ``n`` states, shape ``(C(r+n-1, n-1), n)``."""
    r = int(resolution)
    if n == 1:
        return np.ones((1, 1))
    out = []

    def rec(prefix, left, k):
        if k == 1:
            out.append(prefix + [left])
            return
        for v in range(left, -1, -1):
            rec(prefix + [v], left - v, k - 1)

    rec([], r, n)
    return np.asarray(out, dtype=float) / r


class _Freudenthal:
    """Piecewise-linear interpolation on the Freudenthal triangulation of the simplex (Lovejoy 1991).

    Interpolating vertex values of a convex function over any triangulation over-estimates it, which makes the
    interpolated values an upper bound.
    """

    def __init__(self, n: int, resolution: int):
        self.n, self.r = int(n), int(resolution)
        self.points = simplex_lattice(self.n, self.r)
        counts = np.rint(self.points * self.r).astype(np.int64)
        self._base = self.r + 1
        keys = (counts * self._base ** np.arange(self.n)).sum(axis=1)
        self._order = np.argsort(keys)
        self._keys = keys[self._order]

    def _index(self, counts: np.ndarray) -> np.ndarray:
        keys = (counts * self._base ** np.arange(self.n)).sum(axis=-1)
        pos = np.searchsorted(self._keys, keys)
        return self._order[np.clip(pos, 0, len(self._keys) - 1)]

    def vertices(self, B: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Indices ``(m, n)`` of the grid vertices around beliefs ``B (m, n)`` and their barycentric
        weights.
        """
        B = np.clip(np.asarray(B, dtype=float), 0.0, None)
        B = B / B.sum(axis=1, keepdims=True)
        n, r = self.n, self.r
        x = r * np.cumsum(B[:, ::-1], axis=1)[:, ::-1]  # x_i = r * sum_{j >= i} b_j, x_0 = r
        x[:, 0] = r
        v = np.floor(x + 1e-12)
        v = np.minimum(v, r)
        d = np.clip(x - v, 0.0, 1.0)
        d[:, 0] = 0.0
        order = np.argsort(-d[:, 1:], axis=1, kind="stable") + 1  # sort fractional parts (excluding x_0) desc
        ds = np.take_along_axis(d, order, axis=1)  # (m, n-1)
        verts = np.empty((B.shape[0], n, n))
        verts[:, 0] = v
        rows = np.arange(B.shape[0])
        for k in range(1, n):
            verts[:, k] = verts[:, k - 1]
            verts[rows, k, order[:, k - 1]] += 1.0
        w = np.empty((B.shape[0], n))
        full = np.concatenate([np.ones((B.shape[0], 1)), ds, np.zeros((B.shape[0], 1))], axis=1)
        for k in range(n):
            w[:, k] = full[:, k] - full[:, k + 1]
        counts = np.rint(verts - np.concatenate([verts[:, :, 1:], np.zeros((B.shape[0], n, 1))], axis=2))
        counts = counts.astype(np.int64)
        return self._index(counts), w

    def interpolate(self, values: np.ndarray, B: np.ndarray) -> np.ndarray:
        idx, w = self.vertices(B)
        return (values[idx] * w).sum(axis=1)


def _prune_alphas(alphas: np.ndarray) -> np.ndarray:
    """Drop duplicate and pointwise-dominated alpha vectors (exact: the max over the simplex is unchanged)."""
    a = np.unique(np.round(alphas, 14), axis=0)
    a = a[np.argsort(-a.sum(axis=1))]
    keep = np.ones(len(a), dtype=bool)
    for i in range(len(a)):
        if keep[i]:
            dom = np.all(a[i][None, :] >= a, axis=1)
            dom[i] = False
            keep &= ~dom
    return a[keep]


class FiniteHorizonAlphaPolicy:
    """Solution of a :class:`FiniteHorizonPOMDP` without rank-2 structure (simplex-grid fallback).

    Same query interface as :class:`FiniteHorizonPolicy`: ``alphas[i]`` (for ``W`` of epoch index ``i``) are
    pre-observation alpha vectors; ``uvals[i]`` upper-bound values on the Freudenthal grid of resolution
    ``resolution``.
    """

    def __init__(self, model: FiniteHorizonPOMDP, alphas, uvals, resolution: int, info=None):
        self.reward = model.reward
        self.terminal = model.terminal
        self.discount = float(model.discount)
        self.transition = model.transition
        self.alpha_sets = alphas
        self.uvals = uvals
        self.resolution = int(resolution)
        self._grid = _Freudenthal(model.n_hidden, resolution)
        self.info = info

    @property
    def horizon(self) -> int:
        return int(self.reward.shape[0])

    @property
    def n_contexts(self) -> int:
        return int(self.reward.shape[1])

    def action_values(self, t: int, context: int, belief, upper: bool = False) -> np.ndarray:
        """Per-action lower-bound (policy) values, or certified upper bounds with ``upper=True``."""
        if not 1 <= int(t) <= self.horizon or not 0 <= int(context) < self.n_contexts:
            raise InvalidParameterError(f"(t, context) = ({t}, {context}) out of range")
        b = np.asarray(belief, dtype=float)
        single = b.ndim == 1
        b = np.atleast_2d(b)
        i = int(t) - 1
        q = b @ self.reward[i, context]
        if not self.terminal[i, context]:
            s = b.sum(axis=1)
            for a in range(q.shape[1]):
                y = b @ self.transition[a]
                if upper:
                    ys = y / np.where(s > 0, s, 1.0)[:, None]
                    fut = (
                        s * self._grid.interpolate(self.uvals[i + 1], ys) if i + 1 < self.horizon else 0.0 * s
                    )
                else:
                    fut = (y @ self.alpha_sets[i + 1].T).max(axis=1)
                q[:, a] += self.discount * fut
        return q[0] if single else q

    def alphas(self, t: int, context: int) -> tuple[np.ndarray, np.ndarray]:
        """Explicit post-observation alpha vectors and actions at ``(t, context)``."""
        i = int(t) - 1
        r = self.reward[i, context]
        A = r.shape[1]
        if self.terminal[i, context]:
            return r.T.copy(), np.arange(A)
        out, acts = [], []
        for a in range(A):
            out.append(r[:, a][None, :] + self.discount * self.alpha_sets[i + 1] @ self.transition[a].T)
            acts.append(np.full(len(self.alpha_sets[i + 1]), a))
        return np.concatenate(out), np.concatenate(acts)


def _solve_general(solver: FiniteHorizonSolver, model: FiniteHorizonPOMDP):
    """Simplex-grid fallback: Freudenthal upper bound + point-based alpha-vector lower bound, doubling the
    grid.
    """
    start = time.perf_counter()
    deadline = None if solver.time_limit is None else start + float(solver.time_limit)
    H, Z, A = model.horizon, model.n_hidden, model.n_actions
    gamma = float(model.discount)
    res = max(2, solver.grid_size if solver.mode == "grid" else 4)
    iterations = 0
    while True:
        iterations += 1
        grid = _Freudenthal(Z, res)
        P = grid.points
        alphas: list = [None] * (H + 1)
        uvals: list = [None] * (H + 1)
        alphas[H] = np.zeros((1, Z))
        uvals[H] = np.zeros(len(P))
        lo = hi = 0.0
        for i in range(H - 1, -1, -1):
            beta = model.b0[None, :] if i == 0 else P
            O = model.observation[i]
            pc, term, R = model.context_probs[i], model.terminal[i], model.reward[i]
            nxt = alphas[i + 1]
            TA = [nxt @ model.transition[a].T for a in range(A)]  # (N, Z): T_a alpha_k
            u = beta[:, :, None] * O[None]  # (G, Z, n_o)
            sig = u.sum(axis=1)
            G, n_o = sig.shape
            post = np.transpose(u, (0, 2, 1)).reshape(-1, Z)  # (G*n_o, Z), unnormalised
            fl, fu, ks = [], [], []
            for a in range(A):
                vals = post @ TA[a].T  # (G*n_o, N)
                k = vals.argmax(axis=1)
                fl.append(vals[np.arange(len(k)), k].reshape(G, n_o))
                ks.append(k.reshape(G, n_o))
                if i + 1 < H:
                    y = post @ model.transition[a]
                    s = y.sum(axis=1)
                    ok = s > 0
                    up = np.zeros(len(s))
                    up[ok] = s[ok] * grid.interpolate(uvals[i + 1], y[ok] / s[ok, None])
                    fu.append(up.reshape(G, n_o))
                else:
                    fu.append(np.zeros((G, n_o)))
            new_alpha = np.zeros((G, Z))
            u_new = np.zeros(G)
            for c in np.flatnonzero(pc > 0):
                w = 0.0 if term[c] else gamma
                ql = np.stack([np.einsum("gzo,z->go", u, R[c, :, a]) + w * fl[a] for a in range(A)])
                qu = np.stack([np.einsum("gzo,z->go", u, R[c, :, a]) + w * fu[a] for a in range(A)])
                u_new += pc[c] * qu.max(axis=0).sum(axis=1)
                best = ql.argmax(axis=0)  # (G, n_o)
                for a in range(A):
                    m = (best == a).astype(float)
                    vec = R[c, :, a][None, None, :] + w * TA[a][ks[a]]  # (G, n_o, Z)
                    new_alpha += pc[c] * np.einsum("go,zo,goz->gz", m, O, vec)
            if i == 0:
                lo = float(new_alpha[0] @ model.b0)
                hi = float(max(u_new[0], lo))
            else:
                alphas[i] = _prune_alphas(new_alpha)
                uvals[i] = np.maximum(u_new, (P @ alphas[i].T).max(axis=1))
        gap = hi - lo
        timed_out = deadline is not None and time.perf_counter() >= deadline
        if (
            solver.mode == "grid"
            or gap <= solver.precision
            or timed_out
            or len(simplex_lattice(Z, 2 * res)) > solver.max_grid
        ):
            break
        res *= 2
    seconds = time.perf_counter() - start
    info = SolveInfo(
        solver=solver.name,
        seconds=seconds,
        iterations=iterations,
        lower_bound=lo,
        upper_bound=hi,
        converged=bool(hi - lo <= solver.precision + 1e-12),
        sizes={
            "horizon": H,
            "n_hidden": Z,
            "n_contexts": model.n_contexts,
            "grid_points": len(grid.points),
            "resolution": res,
            "alpha_vectors": int(sum(len(a) for a in alphas[1:H])),
        },
        extra={"mode": "simplex", "precision": solver.precision, "time_limit": solver.time_limit},
    )
    return FiniteHorizonAlphaPolicy(model, alphas, uvals, res, info)

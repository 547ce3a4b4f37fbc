"""Policies of the TRIM-POMDP: query at ``(t, bucket, final, belief)``, save/load as ``.npz`` + ``.json``.

A :class:`TrimPolicy` is a set of post-observation alpha vectors over the model's hidden states (``(S0, S1,
S2)``, or with difficulty classes those of :func:`~trim_pomdp.pomdp.problem.hidden_layout`) per context ``(t,
bucket, final)``, each labelled with an action. Policies of the finite-horizon solver also keep its compact
line representation (fast vectorised queries) and its certified upper bound; policies of solvers of the
flattened tabular model are made with :meth:`TrimPolicy.from_alpha_policy`.

:meth:`TrimPolicy.action_values` is the one evaluator of a policy. :meth:`TrimPolicy.action_values_floats`
computes the same numbers for one belief given as three floats, in scalar Python (about a microsecond for a
finite-horizon policy, which is what a routing decision can afford); it is tested against
:meth:`~TrimPolicy.action_values`.
"""

from __future__ import annotations

from bisect import bisect_right
from pathlib import Path
from typing import Any, Literal

import numpy as np

from trim_pomdp._internal.artifacts import load_artifact, save_artifact
from trim_pomdp._internal.simplex import nondominated
from trim_pomdp.exceptions import InvalidParameterError
from trim_pomdp.observation_models.observation import ObservationModel
from trim_pomdp.pomdp.params import TrimParams
from trim_pomdp.pomdp.problem import TrimPOMDP, context_index
from trim_pomdp.registry import canonical_solver
from trim_pomdp.solvers.base import SolveInfo
from trim_pomdp.solvers.finite_horizon import FiniteHorizonPolicy, FiniteHorizonSolver
from trim_pomdp.solvers.finite_horizon.vertex_policy import FiniteHorizonVertexPolicy
from trim_pomdp.solvers.policy import AlphaVectorPolicy

__all__ = ["POLICY_FORMAT", "TrimPolicy", "solve_trim"]

#: Format of policies with explicit alpha vectors (every policy of one difficulty class, and tabular solvers').
POLICY_FORMAT = "trim-pomdp/trim-policy/1"
#: Format of finite-horizon policies with difficulty classes: the solver's compact arrays only (the explicit
#: alpha vectors, hundreds of times larger, are rebuilt from them when asked for).
POLICY_FORMAT_COMPACT = "trim-pomdp/trim-policy/2"
_STEM = "policy"

NativePolicy = FiniteHorizonPolicy | FiniteHorizonVertexPolicy


def _solver_name(name: str) -> str:
    """The registered name of a solver (old cards say ``native``); other names (a user's solver) as given."""
    try:
        return canonical_solver(name)
    except InvalidParameterError:
        return name


def _prune(alphas: np.ndarray, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Drop the vectors that are nowhere maximal (exact: the max stays the same everywhere on the simplex).

    Above 64 vectors the upper convex hull discards most of them first: the pointwise-dominance test
    compares every pair, the hull takes ``O(n log n)``.
    """
    if len(alphas) > 64 and alphas.shape[1] == 3:
        keep_idx = _upper_hull_vertices(alphas)
        if keep_idx is not None:
            alphas, actions = alphas[keep_idx], actions[keep_idx]
    keep = nondominated(alphas)
    return alphas[keep], actions[keep]


def _upper_hull_vertices(alphas: np.ndarray) -> np.ndarray | None:
    """Indices of 3-vectors that can be maximal somewhere (a superset of the useful ones), or ``None``.

    ``alpha · b = a0 + (a1 − a0) b1 + (a2 − a0) b2``: a vector is maximal for some belief only if the point
    ``(a1 − a0, a2 − a0, a0)`` is a vertex of an upper facet (outward normal with a positive last component)
    of the convex hull of all such points.
    """
    from scipy.spatial import ConvexHull, QhullError

    pts = np.column_stack([alphas[:, 1] - alphas[:, 0], alphas[:, 2] - alphas[:, 0], alphas[:, 0]])
    try:
        hull = ConvexHull(pts)
    except (QhullError, ValueError):
        return None
    upper = hull.equations[:, 2] > 0
    idx = np.unique(hull.simplices[upper].ravel())
    return idx if idx.size else None


class _ScalarQ:
    """Q-values of a :class:`FiniteHorizonPolicy` at one belief in scalar Python (the same numbers, ~µs).

    ``Q(a) = b · reward[t-1, ctx, :, a] + γ s · line(x)`` on non-terminal contexts, where ``s = Σ b``,
    ``x = b · M[a, :, 0] / s`` is the coordinate of the predicted belief on the segment the solver's lines
    live on, and ``line`` is the upper envelope of epoch ``t + 1`` (``at0 + (at1 − at0) x`` between breaks).
    """

    @classmethod
    def of(cls, native: FiniteHorizonPolicy) -> _ScalarQ | None:
        """The scalar evaluator, or ``None`` for a solver layout it does not know (then numpy is used)."""
        try:
            return cls(native)
        except (AttributeError, TypeError, ValueError, IndexError):
            return None

    def __init__(self, native: FiniteHorizonPolicy):
        self.reward = native.reward
        self.terminal = native.terminal
        self.discount = float(native.discount)
        self.M0 = [[float(x) for x in row] for row in native.factor.M[:, :, 0]]  # (A, Z)
        self.lines = native.lines
        self._cache: dict[tuple[int, int], tuple] = {}

    def _entry(self, i: int, ctx: int) -> tuple:
        e = self._cache.get((i, ctx))
        if e is None:
            r = [[float(x) for x in row] for row in self.reward[i, ctx]]  # (Z, A)
            if bool(self.terminal[i, ctx]):
                e = (r, True, None, None, None)
            else:
                at1, at0, br = self.lines[i + 1]
                e = (r, False, [float(x) for x in at1], [float(x) for x in at0], [float(x) for x in br])
            self._cache[(i, ctx)] = e
        return e

    def q(self, t: int, ctx: int, belief: tuple[float, ...]) -> tuple[float, float]:
        b0, b1, b2 = belief
        r, term, at1, at0, br = self._entry(t - 1, ctx)
        q0 = b0 * r[0][0] + b1 * r[1][0] + b2 * r[2][0]
        q1 = b0 * r[0][1] + b1 * r[1][1] + b2 * r[2][1]
        if term:
            return q0, q1
        s = b0 + b1 + b2
        out = []
        for a, qa in ((0, q0), (1, q1)):
            m = self.M0[a]
            x = (b0 * m[0] + b1 * m[1] + b2 * m[2]) / s if s > 0 else 0.0
            k = bisect_right(br, x)
            out.append(qa + self.discount * s * (at0[k] + (at1[k] - at0[k]) * x))
        return out[0], out[1]


class _ScalarVertexQ:
    """Q-values of a :class:`FiniteHorizonVertexPolicy` at one belief: the vertex coordinates of the two
    predicted beliefs in scalar Python, then one numpy product with the next epoch's alphas for both actions."""

    def __init__(self, native: FiniteHorizonVertexPolicy):
        self.reward = native.reward
        self.terminal = native.terminal
        self.discount = float(native.discount)
        M = native.factor.M  # (A, Z, K)
        self.K = int(M.shape[2])
        # per action and vertex, the (state, weight) pairs with a non-zero weight
        self.M = [[[(int(z), float(M[a, z, k])) for z in np.flatnonzero(M[a, :, k])] for k in range(self.K)]
                  for a in range(M.shape[0])]  # fmt: skip
        self.layers = native.layers
        self._lam = np.empty((self.K, 2))
        self._cache: dict[tuple[int, int], tuple] = {}

    def _entry(self, i: int, ctx: int) -> tuple:
        e = self._cache.get((i, ctx))
        if e is None:
            r = [(float(row[0]), float(row[1])) for row in self.reward[i, ctx]]  # (Z, A)
            alphas = None
            if not bool(self.terminal[i, ctx]):
                alphas = np.ascontiguousarray(_envelope_alphas(self.layers[i + 1].alphas))
            e = self._cache[(i, ctx)] = (r, alphas)
        return e

    def q(self, t: int, ctx: int, belief: tuple[float, ...]) -> tuple[float, float]:
        r, alphas = self._entry(t - 1, ctx)
        q0 = q1 = 0.0
        for b, (r0, r1) in zip(belief, r, strict=True):
            q0 += b * r0
            q1 += b * r1
        if alphas is None:
            return q0, q1
        lam = self._lam
        for a in (0, 1):
            for k, col in enumerate(self.M[a]):
                x = 0.0
                for z, w in col:
                    x += belief[z] * w
                lam[k, a] = x
        f0, f1 = (alphas @ lam).max(axis=0).tolist()
        return q0 + self.discount * f0, q1 + self.discount * f1


def _envelope_alphas(alphas: np.ndarray) -> np.ndarray:
    """The alphas that are maximal at some point of the simplex (pointwise-dominated and duplicate ones out);
    the envelope, and hence every value, is unchanged."""
    a = np.unique(alphas, axis=0)
    return a[nondominated(a)]


class TrimPolicy:
    """A policy of the TRIM-POMDP.

    Use :func:`solve_trim`, :meth:`from_alpha_policy` or :meth:`load` rather than the constructor.

    Parameters
    ----------
    horizon, n_buckets : int
    alphas : ndarray (N, n_hidden), actions : ndarray (N,), offsets : ndarray (H * 2K + 1,)
        Alpha vectors of context ``k = (t − 1) * 2K + 2 * bucket + final`` are
        ``alphas[offsets[k]:offsets[k+1]]``.
    native : FiniteHorizonPolicy or FiniteHorizonVertexPolicy, optional
        The native solver's solution (compact form and upper bounds).
    info : SolveInfo, optional
    params : TrimParams, optional
    obs_arrays : dict, optional
        ``first`` (3, n), ``pair`` (3, n*n), ``edges`` (n+1,) of the observation model the policy was solved
        with.
    card : dict, optional
        Extra metadata.
    """

    def __init__(
        self,
        horizon: int,
        n_buckets: int,
        alphas=None,
        actions=None,
        offsets=None,
        *,
        native: NativePolicy | None = None,
        info: SolveInfo | None = None,
        params: TrimParams | None = None,
        obs_arrays: dict | None = None,
        card: dict | None = None,
    ):
        self.horizon = int(horizon)
        self.n_buckets = int(n_buckets)
        self.native = native
        self.info = info
        self.params = params
        self.obs_arrays = obs_arrays
        self.card = dict(card or {})
        if alphas is None and native is None:
            raise InvalidParameterError("a TrimPolicy needs alpha vectors or a native solution")
        self._alphas = None if alphas is None else np.asarray(alphas, dtype=float)
        self._actions = None if actions is None else np.asarray(actions, dtype=np.int64)
        self._offsets = None if offsets is None else np.asarray(offsets, dtype=np.int64)
        self._scalar: _ScalarQ | _ScalarVertexQ | Literal[False] | None = None  # built on first use
        if self._offsets is not None and self._offsets.shape != (self.horizon * 2 * self.n_buckets + 1,):
            raise InvalidParameterError(
                f"offsets must have {self.horizon * 2 * self.n_buckets + 1} entries, got "
                f"{self._offsets.shape}"
            )

    # -- basic properties ------------------------------------------------------------------------------------
    @property
    def lam(self) -> float:
        """λ the policy was solved for (``nan`` if unknown)."""
        if self.params is not None:
            return float(self.params.lam)
        return float(self.card.get("lambda", float("nan")))

    @property
    def n_hidden(self) -> int:
        """Number of hidden states a belief is over (3, or ``2D + 1`` with ``D`` difficulty classes)."""
        if self.params is not None:
            return 2 * self.params.n_classes + 1
        if self.native is not None:
            return int(self.native.reward.shape[2])
        return int(np.asarray(self._alphas).shape[1])

    @property
    def n_classes(self) -> int:
        """``D``, the number of difficulty classes."""
        return (self.n_hidden - 1) // 2

    @property
    def kind(self) -> str:
        """``"native"`` for a finite-horizon solution (line form and upper bounds), else ``"alpha"``."""
        return "native" if self.native is not None else "alpha"

    def _ctx(self, t: int, bucket: int, final) -> int:
        t, bucket = int(t), int(bucket)
        if not 1 <= t <= self.horizon:
            raise InvalidParameterError(f"epoch t must be in 1..{self.horizon}, got {t}")
        if not 0 <= bucket < self.n_buckets:
            raise InvalidParameterError(f"bucket must be in 0..{self.n_buckets - 1}, got {bucket}")
        return int(context_index(bucket, bool(final)))

    def _belief(self, belief) -> np.ndarray:
        b = np.asarray(belief, dtype=float)
        n = self.n_hidden
        if b.shape[-1] != n:
            what = (
                "(S0, S1, S2)" if n == 3 else f"the {n} hidden states of {self.n_classes} difficulty classes"
            )
            raise InvalidParameterError(
                f"a belief is over {what}: last axis must have length {n}, got {b.shape}"
            )
        return b

    def _ensure_alphas(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(alphas, actions, offsets)``, made from the finite-horizon solution on first use."""
        if self._alphas is not None and self._actions is not None and self._offsets is not None:
            return self._alphas, self._actions, self._offsets
        assert self.native is not None  # the constructor requires alpha vectors or a native solution
        C = 2 * self.n_buckets
        al, ac, off = [], [], [0]
        for t in range(1, self.horizon + 1):
            for ctx in range(C):
                a, act = self.native.alphas(t, ctx)
                al.append(a)
                ac.append(act)
                off.append(off[-1] + len(a))
        self._alphas = np.concatenate(al)
        self._actions = np.concatenate(ac)
        self._offsets = np.asarray(off, dtype=np.int64)
        return self._alphas, self._actions, self._offsets

    def alphas_at(self, t: int, bucket: int, final: bool) -> tuple[np.ndarray, np.ndarray]:
        """Alpha vectors ``(n, 3)`` and actions ``(n,)`` of context ``(t, bucket, final)``."""
        ctx = self._ctx(t, bucket, final)
        alphas, actions, offsets = self._ensure_alphas()
        k = (int(t) - 1) * 2 * self.n_buckets + ctx
        lo, hi = offsets[k], offsets[k + 1]
        return alphas[lo:hi], actions[lo:hi]

    # -- queries ---------------------------------------------------------------------------------------------
    def action_values(self, t: int, bucket: int, final: bool, belief) -> np.ndarray:
        """Per-action values at posterior belief(s) in one context: ``(2,)``, or ``(n, 2)`` for ``(n, 3)``.

        For native policies these are the lower-bound Q-values (the policy's own guarantee); an action without
        a vector in an alpha policy gets ``-inf``.
        """
        ctx = self._ctx(t, bucket, final)
        b = self._belief(belief)
        if self.native is not None:
            return self.native.action_values(int(t), ctx, b)
        al, ac = self.alphas_at(t, bucket, final)
        vals = np.atleast_2d(b) @ al.T  # (n, N)
        out = np.full((vals.shape[0], 2), -np.inf)
        for a in (0, 1):
            sel = ac == a
            if sel.any():
                out[:, a] = vals[:, sel].max(axis=1)
        return out[0] if b.ndim == 1 else out

    def action_values_floats(self, t: int, ctx: int, belief: tuple[float, ...]) -> tuple[float, float]:
        """:meth:`action_values` at one posterior belief given as three floats, in context index ``ctx``.

        ``ctx = 2 * bucket + final``; the arguments are not checked (the caller already has valid ones). For
        finite-horizon policies this evaluates the solver's lines in scalar Python, about a microsecond per
        call; other policies go through :meth:`action_values`.
        """
        sq = self._scalar
        if sq is None:  # first call: build the scalar evaluator (False when there is none)
            if isinstance(self.native, FiniteHorizonVertexPolicy):
                sq = self._scalar = _ScalarVertexQ(self.native)
            else:
                sq = self._scalar = (_ScalarQ.of(self.native) if self.native is not None else None) or False
        if sq:
            return sq.q(t, ctx, belief)
        v = self.action_values(t, ctx // 2, bool(ctx % 2), np.array(belief))
        return float(v[0]), float(v[1])

    def action(self, t: int, bucket: int, final: bool, belief) -> int:
        """Best action (0 continue, 1 regenerate; ties → continue)."""
        return int(np.argmax(self.action_values(t, bucket, final, belief)))

    def value(self, t: int, bucket: int, final: bool, belief) -> float:
        """Value (lower bound for native policies) at a posterior belief."""
        return float(np.max(self.action_values(t, bucket, final, belief)))

    def value_bounds(self, t: int, bucket: int, final: bool, belief) -> tuple[float, float]:
        """Certified ``(lower, upper)`` bounds on ``V*`` at a posterior belief (``upper`` is nan for alpha
        policies, which have no upper bound)."""
        lo = self.value(t, bucket, final, belief)
        if self.native is None:
            return lo, float("nan")
        ctx = self._ctx(t, bucket, final)
        hi = float(np.max(self.native.action_values(int(t), ctx, self._belief(belief), upper=True)))
        return lo, max(hi, lo)

    def action_batch(self, t, bucket, final, beliefs) -> np.ndarray:
        """Actions ``(n,)`` for beliefs ``(n, 3)``; ``t``, ``bucket`` and ``final`` are scalars or ``(n,)``."""
        B = np.atleast_2d(self._belief(beliefs))
        n = B.shape[0]
        t = np.broadcast_to(np.asarray(t, dtype=np.int64), (n,))
        bucket = np.broadcast_to(np.asarray(bucket, dtype=np.int64), (n,))
        final = np.broadcast_to(np.asarray(final, dtype=bool), (n,))
        if n == 0:
            return np.zeros(0, dtype=np.int64)
        if t.min() < 1 or t.max() > self.horizon:
            raise InvalidParameterError(f"epochs must be in 1..{self.horizon}")
        if bucket.min() < 0 or bucket.max() >= self.n_buckets:
            raise InvalidParameterError(f"buckets must be in 0..{self.n_buckets - 1}")
        key = (t - 1) * 2 * self.n_buckets + context_index(bucket, final)
        out = np.zeros(n, dtype=np.int64)
        order = np.argsort(key, kind="stable")
        ks, starts = np.unique(key[order], return_index=True)
        ends = np.append(starts[1:], n)
        for k, s, e in zip(ks, starts, ends, strict=False):
            rows = order[s:e]
            tt = int(k // (2 * self.n_buckets)) + 1
            ctx = int(k % (2 * self.n_buckets))
            q = self.action_values(tt, ctx // 2, bool(ctx % 2), B[rows])
            out[rows] = np.argmax(q, axis=1)
        return out

    # -- construction ----------------------------------------------------------------------------------------
    @classmethod
    def from_native(
        cls, native: NativePolicy, trim_pomdp: TrimPOMDP, info: SolveInfo | None = None
    ) -> TrimPolicy:
        """Wrap the native solver's solution of ``trim_pomdp.structured()``."""
        return cls(
            trim_pomdp.horizon,
            trim_pomdp.n_buckets,
            native=native,
            info=info or native.info,
            params=trim_pomdp.params,
            obs_arrays=_obs_arrays(trim_pomdp),
            card={"solver": "finite-horizon"},
        )

    @classmethod
    def from_alpha_policy(
        cls, alpha_policy: AlphaVectorPolicy, trim_pomdp: TrimPOMDP, info: SolveInfo | None = None
    ) -> TrimPolicy:
        """A policy of the flattened model (point-based, SARSOP) restricted to the 3 states of each context.

        Values are those of the flattened (discounted) model from the context onwards.
        """
        S = trim_pomdp.n_flat_states
        if alpha_policy.n_states != S:
            raise InvalidParameterError(
                f"alpha policy has {alpha_policy.n_states} states but the flattened TRIM-POMDP has {S}; "
                "was it solved on trim_pomdp.flatten()?"
            )
        H, C = trim_pomdp.horizon, trim_pomdp.n_contexts
        al, ac, off = [], [], [0]
        for t in range(1, H + 1):
            for ctx in range(C):
                idx = trim_pomdp.state_index(np.arange(trim_pomdp.n_hidden), t, ctx // 2, ctx % 2)
                a, act = _prune(alpha_policy.alphas[:, idx], alpha_policy.actions)
                al.append(a)
                ac.append(act)
                off.append(off[-1] + len(a))
        info = info or alpha_policy.info
        return cls(
            H,
            trim_pomdp.n_buckets,
            np.concatenate(al),
            np.concatenate(ac),
            np.asarray(off),
            info=info,
            params=trim_pomdp.params,
            obs_arrays=_obs_arrays(trim_pomdp),
            card={
                "solver": (info.solver if info else alpha_policy.card.get("solver", "unknown")),
                "flattened": True,
                "discount": trim_pomdp.params.discount,
            },
        )

    def trim_pomdp(self) -> TrimPOMDP:
        """Rebuild the model the policy was solved for (needs stored parameters and observation arrays)."""
        if self.params is None or self.obs_arrays is None:
            raise InvalidParameterError("this policy does not store its parameters and observation model")
        oa = self.obs_arrays
        n = oa["first"].shape[1]
        obs = ObservationModel.from_probs(
            oa["pair"].reshape(3, n, n),
            oa["first"],
            oa.get("edges"),
            m_edges=oa.get("m_edges"),  # per-axis bins (policies written before them hold `edges` only)
            card=self.card.get("observation_model"),
        )
        return TrimPOMDP(self.params, obs)

    # -- persistence -----------------------------------------------------------------------------------------
    def card_dict(self) -> dict[str, Any]:
        """The card saved beside the arrays (``format``, ``versions``, ``created`` and the digest are added by
        :func:`~trim_pomdp._internal.artifacts.save_artifact`)."""
        info = self.info
        d: dict[str, Any] = {
            "kind": self.kind,
            "solver": self.card.get("solver", info.solver if info else None),
            "lambda": self.lam,
            "lower_bound": info.lower_bound if info else None,
            "upper_bound": info.upper_bound if info else None,
            "gap": info.gap if info else None,
            "solve_seconds": info.seconds if info else None,
            "horizon": self.horizon,
            "n_buckets": self.n_buckets,
            "solve_info": info.to_dict() if info else None,
            "params": self.params.to_dict() if self.params is not None else None,
        }
        for k in ("lower_bound", "upper_bound", "gap"):
            if d[k] is not None and not np.isfinite(d[k]):
                d[k] = None
        for k, v in self.card.items():
            d.setdefault(k, v)
        return d

    def save(self, directory: str | Path) -> tuple[Path, Path]:
        """Write ``directory/policy.npz`` (arrays) and ``directory/policy.json`` (card). Never pickles.

        The card's digest covers the arrays and the fields they were solved from (``params``, ``lambda``), so
        :meth:`load` refuses a policy whose arrays or parameters were edited afterwards.
        """
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)  # a directory, also when its name has a dot (lambda_0.001)
        compact = isinstance(self.native, FiniteHorizonVertexPolicy)
        arrays: dict[str, Any] = {}
        if not compact:
            alphas, actions, offsets = self._ensure_alphas()
            arrays.update(alphas=alphas, actions=actions, offsets=offsets)
        if self.native is not None:
            arrays.update(self.native.to_arrays())
        if self.obs_arrays is not None:
            for k, v in self.obs_arrays.items():
                if v is not None:
                    arrays[f"obs_{k}"] = np.asarray(v)
        return save_artifact(
            out,
            stem=_STEM,
            format=POLICY_FORMAT_COMPACT if compact else POLICY_FORMAT,
            arrays=arrays,
            card=self.card_dict(),
            signed=("params", "lambda"),
        )

    @classmethod
    def load(cls, directory: str | Path) -> TrimPolicy:
        """Read a policy written by :meth:`save` (a directory, or its ``policy.npz``/``policy.json``).

        Policies written by earlier versions (no digest, ``solver: "native"``, the report under ``info``)
        load as well.

        Raises
        ------
        DataFormatError
            When the files are missing, corrupted, of another format, or changed after they were written.
        """
        path = Path(directory)
        if path.suffix in (".npz", ".json"):
            path = path.parent
        art = load_artifact(
            path / f"{_STEM}.npz",
            stem=_STEM,
            formats=(POLICY_FORMAT, POLICY_FORMAT_COMPACT),
            what="TRIM policy",
            require_card=False,
        )
        meta, arrays = art.card, art.arrays
        if "fv_reward" in arrays:
            art.require("fv_reward", "fv_alpha", "fv_alpha_off", "fv_M", "fv_V")
        else:
            art.require("alphas", "actions", "offsets")
        report = meta.get("solve_info") or meta.get("info")
        info = SolveInfo.from_dict(report) if report else None
        params = TrimParams.from_dict(meta["params"]) if meta.get("params") else None
        native: NativePolicy | None = None
        if "fh_reward" in arrays:
            native = FiniteHorizonPolicy.from_arrays(arrays, info)
        elif "fv_reward" in arrays:
            native = FiniteHorizonVertexPolicy.from_arrays(arrays, info)
        obs = None
        if "obs_first" in arrays:
            obs = {"first": arrays["obs_first"], "pair": arrays["obs_pair"], "edges": arrays.get("obs_edges")}
            obs["m_edges"] = arrays.get("obs_m_edges")  # per-axis bins; absent in older policies
        H = int(meta.get("horizon", params.horizon if params else 0))
        K = int(meta.get("n_buckets", params.n_buckets if params else 0))
        extra = {k: meta[k] for k in ("solver", "flattened", "discount", "observation_model") if k in meta}
        if isinstance(extra.get("solver"), str):
            extra["solver"] = _solver_name(extra["solver"])
        return cls(
            H,
            K,
            arrays.get("alphas"),
            arrays.get("actions"),
            arrays.get("offsets"),
            native=native,
            info=info,
            params=params,
            obs_arrays=obs,
            card=extra,
        )

    def __repr__(self) -> str:
        b = (
            ""
            if self.info is None
            else f", bounds=[{self.info.lower_bound:.6g}, {self.info.upper_bound:.6g}]"
        )
        return f"TrimPolicy(kind={self.kind!r}, λ={self.lam:g}, H={self.horizon}, K={self.n_buckets}{b})"


def _obs_arrays(tp: TrimPOMDP) -> dict[str, Any]:
    edges = getattr(tp.obs_model, "edges", None)
    # -- per-axis bins: `edges` holds the r edges and `m_edges` those of m when they differ
    r_edges = getattr(tp.obs_model, "r_edges", edges)
    m_edges = getattr(tp.obs_model, "m_edges", edges)
    shared = m_edges is None or r_edges is None or np.array_equal(np.asarray(m_edges), np.asarray(r_edges))
    return {
        "first": tp.class_observation_probs(1),
        "pair": tp.class_observation_probs(2),
        "edges": None if r_edges is None else np.asarray(r_edges, dtype=float),
        "m_edges": None if shared else np.asarray(m_edges, dtype=float),
    }


def solve_trim(trim_pomdp: TrimPOMDP, solver: Any = None) -> TrimPolicy:
    """Solve the TRIM-POMDP into a :class:`TrimPolicy`.

    Parameters
    ----------
    trim_pomdp : TrimPOMDP
    solver : optional
        ``None`` → :class:`~trim_pomdp.solvers.finite_horizon.FiniteHorizonSolver` (precision 1e-3). A
        ``FiniteHorizonSolver`` solves the structured form; any other solver (point-based, SARSOP) gets the
        flattened tabular form and must return an :class:`~trim_pomdp.solvers.policy.AlphaVectorPolicy`.
    """
    solver = FiniteHorizonSolver() if solver is None else solver
    if isinstance(solver, FiniteHorizonSolver):
        native = solver.solve(trim_pomdp.structured())
        if not isinstance(
            native, (FiniteHorizonPolicy, FiniteHorizonVertexPolicy)
        ):  # rank 2, or D + 1 vertices
            raise InvalidParameterError(f"{type(solver).__name__} returned {type(native).__name__}")
        pol = TrimPolicy.from_native(native, trim_pomdp)
    else:
        alpha = solver.solve(trim_pomdp.flatten())
        if not isinstance(alpha, AlphaVectorPolicy):
            raise InvalidParameterError(
                f"{type(solver).__name__}.solve returned {type(alpha).__name__}, expected an "
                "AlphaVectorPolicy"
            )
        pol = TrimPolicy.from_alpha_policy(alpha, trim_pomdp)
    oc = getattr(trim_pomdp.obs_model, "card", None)
    if oc:
        pol.card["observation_model"] = oc
    return pol

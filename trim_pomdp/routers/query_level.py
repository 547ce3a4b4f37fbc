"""Query-level baselines: AutoMix-PRM, an oracle query router and a random query router.

A query-level router makes one decision per query after M_w has solved it: keep M_w's solution, or route the
whole query to M_s (paying M_s's output tokens ``C_s``). Each router here maps a list of :class:`QueryOutcome`
records to a boolean "routed" mask and has one knob that traces its cost–accuracy curve:

==========================  ==========  ==============================================================
router                      knob        meaning
==========================  ==========  ==============================================================
:class:`AutoMixRouter`      ``lam``     cost per M_s token in the expected-return decision
:class:`OracleQueryRouter`  ``budget``  fraction of ``sum(C_s)`` it may spend on queries only M_s solves
:class:`RandomQueryRouter`  ``p``       probability of routing a query
==========================  ==========  ==============================================================

:func:`query_level_result` turns a mask into accuracy and cost.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from trim_pomdp.exceptions import DataFormatError, InvalidParameterError, NotFittedError

__all__ = [
    "OUTCOME_CLASSES",
    "AutoMixRouter",
    "OracleQueryRouter",
    "QueryOutcome",
    "RandomQueryRouter",
    "cumulative_score",
    "outcome_class",
    "query_level_result",
]

#: AutoMix's three outcome classes, in array order (AutoMix calls them GOOD, NEEDY, HOPELESS).
OUTCOME_CLASSES: tuple[str, str, str] = ("weak_right", "only_strong_right", "neither")

AGGREGATES = ("product", "mean", "min", "last")


@dataclass(frozen=True)
class QueryOutcome:
    """What is known about one query for query-level routing.

    Attributes
    ----------
    query_id : str
    weak_correct : bool
        Whether M_w's own full solution is correct.
    strong_correct : bool
        Whether M_s's own full solution is correct.
    strong_tokens : float
        ``C_s``: M_s's output tokens when it solves the query alone (the cost of routing the query).
    weak_scores : tuple of float
        PRM step scores of M_w's full solution (the routing signal; what the router may look at).
    """

    query_id: str
    weak_correct: bool
    strong_correct: bool
    strong_tokens: float
    weak_scores: tuple[float, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        object.__setattr__(self, "weak_scores", tuple(float(s) for s in self.weak_scores))
        if not (self.strong_tokens >= 0):
            raise InvalidParameterError(
                f"QueryOutcome {self.query_id!r}: strong_tokens must be >= 0, got {self.strong_tokens!r}"
            )

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["weak_scores"] = list(self.weak_scores)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> QueryOutcome:
        """Build from a mapping with the attribute names as keys (extra keys are ignored)."""
        try:
            return cls(
                query_id=str(d["query_id"]),
                weak_correct=bool(d["weak_correct"]),
                strong_correct=bool(d["strong_correct"]),
                strong_tokens=float(d["strong_tokens"]),
                weak_scores=tuple(d.get("weak_scores") or ()),
            )
        except KeyError as exc:
            raise DataFormatError(
                f"query outcome record is missing the field {exc.args[0]!r}: {d!r}"
            ) from exc


def outcome_class(record: QueryOutcome) -> int:
    """Index into :data:`OUTCOME_CLASSES`: 0 M_w right, 1 only M_s right, 2 neither."""
    if record.weak_correct:
        return 0
    return 1 if record.strong_correct else 2


def cumulative_score(scores: Sequence[float], aggregate: str = "product") -> float:
    """Reduce M_w's step scores to one solution score in [0, 1].

    ``"product"`` (default) is the cumulative PRM score, the probability that every step is right if the step
    scores were independent; ``"mean"``, ``"min"`` (the usual PRM solution score) and ``"last"`` are the
    alternatives. An empty solution scores 0.
    """
    if aggregate not in AGGREGATES:
        raise InvalidParameterError(f"aggregate must be one of {AGGREGATES}, got {aggregate!r}")
    s = np.asarray(scores, dtype=float)
    if s.size == 0:
        return 0.0
    if aggregate == "product":
        return float(np.prod(np.clip(s, 0.0, 1.0)))
    if aggregate == "mean":
        return float(np.mean(s))
    if aggregate == "min":
        return float(np.min(s))
    return float(s[-1])


def _as_records(records: Iterable[QueryOutcome | dict]) -> list[QueryOutcome]:
    out = [r if isinstance(r, QueryOutcome) else QueryOutcome.from_dict(r) for r in records]
    return out


def query_level_result(records: Iterable[QueryOutcome | dict], routed: np.ndarray) -> dict[str, float]:
    """Accuracy and cost of a routing mask.

    Returns
    -------
    dict
        ``accuracy`` (mean correctness: M_s's answer where routed, M_w's elsewhere), ``mean_strong_tokens``
        (mean cost per query) and ``normalized_cost`` (``sum(cost) / sum(C_s)``), ``route_rate``.
    """
    recs = _as_records(records)
    routed = np.asarray(routed, dtype=bool)
    if routed.shape != (len(recs),):
        raise InvalidParameterError(f"routed has shape {routed.shape}, expected ({len(recs)},)")
    weak = np.array([r.weak_correct for r in recs], dtype=bool)
    strong = np.array([r.strong_correct for r in recs], dtype=bool)
    cs = np.array([r.strong_tokens for r in recs], dtype=float)
    correct = np.where(routed, strong, weak)
    cost = np.where(routed, cs, 0.0)
    total = cs.sum()
    return {
        "accuracy": float(correct.mean()) if len(recs) else float("nan"),
        "mean_strong_tokens": float(cost.mean()) if len(recs) else float("nan"),
        "normalized_cost": float(cost.sum() / total) if total > 0 else float("nan"),
        "route_rate": float(routed.mean()) if len(recs) else float("nan"),
    }


class AutoMixRouter:
    """AutoMix-PRM: a binned classifier of outcome classes with a greedy expected-return decision.

    As in AutoMix's code (``POMDPSimple``), the verifier score — here the cumulative PRM score of M_w's full
    solution — is cut into ``n_bins`` equal bins on [0, 1]; per bin the empirical distribution over the three
    outcome classes (M_w right / only M_s right / neither) is estimated from training records (with an
    additive ``prior`` per class so empty bins fall back to uniform), together with the mean ``C_s`` of the
    bin. A query is routed iff routing has the higher expected return::

        keep:  R * P(weak_right)
        route: R * (P(weak_right) + P(only_strong_right)) - lam * E[C_s | bin]

    i.e. iff ``R * P(only_strong_right | bin) > lam * E[C_s | bin]``. Like AutoMix, the rule assumes M_s also
    solves what M_w solves.

    Parameters
    ----------
    lam : float, default=5e-4
        Cost per M_s output token (the knob; :meth:`knob_values` lists the values where the policy changes).
    n_bins : int, default=8
        Number of equal-width score bins (AutoMix's ``BINS=8``).
    aggregate : {"product", "mean", "min", "last"}, default="product"
        How step scores become the solution score (:func:`cumulative_score`).
    reward : float, default=1.0
        ``R``, the value of a correct answer.
    prior : float, default=1.0
        Additive (Dirichlet) pseudo-count per class and bin.

    Attributes
    ----------
    class_probs_ : ndarray of shape (n_bins, 3)
    counts_ : ndarray of shape (n_bins, 3)
    mean_strong_tokens_ : ndarray of shape (n_bins,)
    """

    knob_name = "lam"

    def __init__(
        self,
        lam: float = 5e-4,
        *,
        n_bins: int = 8,
        aggregate: str = "product",
        reward: float = 1.0,
        prior: float = 1.0,
    ) -> None:
        self.lam = lam
        self.n_bins = n_bins
        self.aggregate = aggregate
        self.reward = reward
        self.prior = prior

    def __repr__(self) -> str:
        return f"AutoMixRouter(lam={self.lam!r}, n_bins={self.n_bins!r}, aggregate={self.aggregate!r})"

    def _validate(self) -> None:
        if not (isinstance(self.n_bins, (int, np.integer)) and self.n_bins >= 1):
            raise InvalidParameterError(f"AutoMixRouter's 'n_bins' must be an int >= 1, got {self.n_bins!r}")
        if self.aggregate not in AGGREGATES:
            raise InvalidParameterError(
                f"AutoMixRouter's 'aggregate' must be one of {AGGREGATES}, got {self.aggregate!r}"
            )
        for name in ("lam", "reward", "prior"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float, np.floating)) and math.isfinite(v) and v >= 0):
                raise InvalidParameterError(
                    f"AutoMixRouter's {name!r} must be a finite float >= 0, got {v!r}"
                )

    def fit(self, records: Iterable[QueryOutcome | dict]) -> AutoMixRouter:
        """Estimate the per-bin class probabilities and mean ``C_s`` from training records."""
        self._validate()
        recs = _as_records(records)
        if not recs:
            raise InvalidParameterError("AutoMixRouter.fit needs at least one training record")
        bins = self.bin_of(np.array([cumulative_score(r.weak_scores, self.aggregate) for r in recs]))
        classes = np.array([outcome_class(r) for r in recs])
        cs = np.array([r.strong_tokens for r in recs], dtype=float)
        counts = np.zeros((self.n_bins, 3))
        np.add.at(counts, (bins, classes), 1.0)
        smoothed = counts + self.prior
        totals = smoothed.sum(axis=1, keepdims=True)
        self.counts_ = counts
        self.class_probs_ = np.where(totals > 0, smoothed / np.where(totals > 0, totals, 1.0), 1.0 / 3.0)
        tok_sum = np.bincount(bins, weights=cs, minlength=self.n_bins)
        n = np.bincount(bins, minlength=self.n_bins)
        overall = float(cs.mean())
        self.mean_strong_tokens_ = np.where(n > 0, tok_sum / np.maximum(n, 1), overall)
        return self

    def _check_fitted(self) -> None:
        if not hasattr(self, "class_probs_"):
            raise NotFittedError("this AutoMixRouter is not fitted yet: call fit(training_records) first")

    def bin_of(self, score: float | np.ndarray) -> np.ndarray:
        """Bin index (0 … n_bins-1) of solution score(s) in [0, 1]."""
        s = np.clip(np.asarray(score, dtype=float), 0.0, 1.0)
        return np.minimum((s * self.n_bins).astype(np.int64), self.n_bins - 1)

    def expected_returns(self, weak_scores: Sequence[float]) -> np.ndarray:
        """``[keep, route]`` expected returns of a query whose M_w solution scored ``weak_scores``."""
        self._check_fitted()
        b = int(self.bin_of(cumulative_score(weak_scores, self.aggregate)))
        p = self.class_probs_[b]
        keep = self.reward * p[0]
        route = self.reward * (p[0] + p[1]) - self.lam * self.mean_strong_tokens_[b]
        return np.array([keep, route])

    def _route_bins(self) -> np.ndarray:
        gain = self.reward * self.class_probs_[:, 1] - self.lam * self.mean_strong_tokens_
        return gain > 0

    def decide(self, weak_scores: Sequence[float]) -> bool:
        """Whether to route the query to M_s, given M_w's step scores."""
        self._check_fitted()
        return bool(self._route_bins()[int(self.bin_of(cumulative_score(weak_scores, self.aggregate)))])

    def route_batch(self, records: Iterable[QueryOutcome | dict]) -> np.ndarray:
        """Boolean routed mask over ``records`` (only their ``weak_scores`` are looked at)."""
        self._check_fitted()
        recs = _as_records(records)
        bins = self.bin_of(np.array([cumulative_score(r.weak_scores, self.aggregate) for r in recs]))
        return self._route_bins()[bins] if len(recs) else np.zeros(0, dtype=bool)

    def with_knob(self, lam: float) -> AutoMixRouter:
        """A copy with another ``lam`` sharing the fitted statistics."""
        self._check_fitted()
        other = AutoMixRouter(
            lam, n_bins=self.n_bins, aggregate=self.aggregate, reward=self.reward, prior=self.prior
        )
        other._validate()
        other.counts_, other.class_probs_ = self.counts_, self.class_probs_
        other.mean_strong_tokens_ = self.mean_strong_tokens_
        return other

    def knob_values(self) -> np.ndarray:
        """One ``lam`` per distinct policy, from routing every bin to none (AutoMix's unique policies).

        Bin ``b`` is routed iff ``lam < lam_b = R * P(only_strong_right | b) / E[C_s | b]``; the returned
        values sit between consecutive breakpoints (and beyond the largest), in increasing order.
        """
        self._check_fitted()
        with np.errstate(divide="ignore", invalid="ignore"):
            brk = self.reward * self.class_probs_[:, 1] / self.mean_strong_tokens_
        brk = np.unique(brk[np.isfinite(brk) & (brk > 0)])
        if brk.size == 0:
            return np.array([0.0])
        mids = np.concatenate([[brk[0] / 2.0], (brk[:-1] + brk[1:]) / 2.0, [brk[-1] * 2.0]])
        return mids

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable parameters and fitted statistics."""
        self._check_fitted()
        return {
            "format": "trim-pomdp/automix/1",
            "lam": self.lam,
            "n_bins": self.n_bins,
            "aggregate": self.aggregate,
            "reward": self.reward,
            "prior": self.prior,
            "outcome_classes": list(OUTCOME_CLASSES),
            "counts": self.counts_.tolist(),
            "mean_strong_tokens": self.mean_strong_tokens_.tolist(),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> AutoMixRouter:
        """Inverse of :meth:`to_dict`."""
        if d.get("format") != "trim-pomdp/automix/1":
            raise DataFormatError(f"not a trim-pomdp AutoMix router (format {d.get('format')!r})")
        r = cls(
            d["lam"], n_bins=int(d["n_bins"]), aggregate=d["aggregate"], reward=d["reward"], prior=d["prior"]
        )
        r._validate()
        r.counts_ = np.asarray(d["counts"], dtype=float).reshape(r.n_bins, 3)
        smoothed = r.counts_ + r.prior
        totals = smoothed.sum(axis=1, keepdims=True)
        r.class_probs_ = np.where(totals > 0, smoothed / np.where(totals > 0, totals, 1.0), 1.0 / 3.0)
        r.mean_strong_tokens_ = np.asarray(d["mean_strong_tokens"], dtype=float)
        return r


class OracleQueryRouter:
    """Routes exactly the queries that M_s solves and M_w does not, cheapest ``C_s`` first, within a budget.

    It looks at the outcomes, so it is an upper reference for query-level routing, not a deployable router.

    Parameters
    ----------
    budget : float, default=1.0
        Fraction of ``sum(C_s)`` over the evaluated queries it may spend (the knob). ``budget = 1`` always
        covers every such query.
    """

    knob_name = "budget"

    def __init__(self, budget: float = 1.0) -> None:
        if not (isinstance(budget, (int, float, np.floating)) and 0.0 <= budget and math.isfinite(budget)):
            raise InvalidParameterError(f"OracleQueryRouter's 'budget' must be a float >= 0, got {budget!r}")
        self.budget = float(budget)

    def __repr__(self) -> str:
        return f"OracleQueryRouter(budget={self.budget!r})"

    def fit(self, records: Iterable[QueryOutcome | dict] | None = None) -> OracleQueryRouter:
        """Nothing to learn (present for a uniform API)."""
        return self

    def route_batch(self, records: Iterable[QueryOutcome | dict]) -> np.ndarray:
        """Routed mask: the only-M_s-right queries, cheapest first, while the spend stays within budget."""
        recs = _as_records(records)
        cs = np.array([r.strong_tokens for r in recs], dtype=float)
        needy = np.array([(not r.weak_correct) and r.strong_correct for r in recs], dtype=bool)
        routed = np.zeros(len(recs), dtype=bool)
        if not needy.any():
            return routed
        limit = self.budget * cs.sum()
        idx = np.flatnonzero(needy)
        idx = idx[np.argsort(cs[idx], kind="stable")]
        spent = np.cumsum(cs[idx])
        routed[idx[spent <= limit * (1 + 1e-12)]] = True
        return routed

    def with_knob(self, budget: float) -> OracleQueryRouter:
        return OracleQueryRouter(budget)

    @staticmethod
    def knob_values(n: int = 21) -> np.ndarray:
        """``n`` budgets evenly spaced on [0, 1]."""
        return np.linspace(0.0, 1.0, n)


class RandomQueryRouter:
    """Routes each query with probability ``p``, independently of its outcome.

    The draw for a query is a hash of ``(seed, query_id)``, so a query gets the same draw whatever the order
    of the records, and the routed sets are nested in ``p`` for a fixed seed.

    Parameters
    ----------
    p : float, default=0.5
        Routing probability in [0, 1] (the knob).
    seed : int, default=0
    """

    knob_name = "p"

    def __init__(self, p: float = 0.5, *, seed: int = 0) -> None:
        if not (isinstance(p, (int, float, np.floating)) and 0.0 <= p <= 1.0):
            raise InvalidParameterError(f"RandomQueryRouter's 'p' must be a float in [0, 1], got {p!r}")
        self.p = float(p)
        self.seed = int(seed)

    def __repr__(self) -> str:
        return f"RandomQueryRouter(p={self.p!r}, seed={self.seed!r})"

    def fit(self, records: Iterable[QueryOutcome | dict] | None = None) -> RandomQueryRouter:
        """Nothing to learn (present for a uniform API)."""
        return self

    def draw(self, query_id: str) -> float:
        """The query's uniform draw in [0, 1)."""
        h = hashlib.blake2b(f"{self.seed}:{query_id}".encode(), digest_size=8).digest()
        return int.from_bytes(h, "little") / 2.0**64

    def decide(self, query_id: str) -> bool:
        """Whether to route the query ``query_id``."""
        return self.draw(query_id) < self.p

    def route_batch(self, records: Iterable[QueryOutcome | dict]) -> np.ndarray:
        recs = _as_records(records)
        return np.array([self.draw(r.query_id) < self.p for r in recs], dtype=bool)

    def with_knob(self, p: float) -> RandomQueryRouter:
        return RandomQueryRouter(p, seed=self.seed)

    @staticmethod
    def knob_values(n: int = 21) -> np.ndarray:
        """``n`` probabilities evenly spaced on [0, 1]."""
        return np.linspace(0.0, 1.0, n)

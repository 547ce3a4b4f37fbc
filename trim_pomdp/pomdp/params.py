"""Parameters of the TRIM-POMDP and their JSON form (the model: "The TRIM-POMDP" in ``docs/design.md``).

Everything except the observation model lives here: next-step accuracies ``p_w``/``p_s``, the horizon, token
buckets with ``P(c | t)`` and their mean token counts, the termination hazard ``q(t)``, the strong/weak
step-length ratio, the reward ``R``, the token price ``λ``, the discount of the flattened form and, optionally,
latent difficulty classes (:class:`DifficultyClasses`: a prior over ``D`` classes with their own ``p_w(d)`` and
``p_s(d)``, fixed within a query).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from trim_pomdp._internal.simplex import check_stochastic
from trim_pomdp.exceptions import DataFormatError, InvalidParameterError, ResourceLimitError

__all__ = ["DifficultyClasses", "TrimParams"]

_FORMAT = "trim-pomdp/params/1"


def _check_horizon_size(H: int, K: int) -> None:
    """Refuse a horizon whose per-step tables alone exceed the memory limit, before allocating them.

    ``bucket_probs`` (H × K), ``hazard`` (H) and the copies a solve makes of them cost at least
    ``3 · 8 · H · (K + 1)`` bytes; the solver needs far more (alpha vectors per step), so a horizon refused here
    could never be solved. The limit is that of :func:`trim_pomdp.solvers.memory.parse_memory_limit`
    (``TRIM_POMDP_MEMORY_LIMIT``, default 4 GiB).
    """
    from trim_pomdp.solvers.memory import format_bytes, parse_memory_limit

    need = 3 * 8 * H * (K + 1)
    limit = parse_memory_limit(None)
    if need > limit:
        raise ResourceLimitError(
            f"horizon H={H} needs at least {format_bytes(need)} for its per-step tables, above the memory "
            f"limit of {format_bytes(limit)} (TRIM_POMDP_MEMORY_LIMIT); the horizon counts reasoning steps "
            "(the paper uses 30): lower it"
        )


@dataclass
class DifficultyClasses:
    """Latent per-query difficulty: ``D`` classes with a prior and their own next-step accuracies.

    A query's class ``d`` is drawn once from ``prior`` and fixed for the whole query; given ``d`` the model is
    the pooled TRIM-POMDP with ``p_w(d)``, ``p_s(d)``.

    Parameters
    ----------
    prior : sequence of float, length D
        ``π(d)``, non-negative and summing to 1.
    p_w, p_s : sequence of float, length D
        Next-step accuracies of M_w and M_s given a correct prefix, per class.
    card : dict
        Where the classes came from (data, estimator, held-out likelihoods).
    """

    prior: Any
    p_w: Any
    p_s: Any
    card: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("prior", "p_w", "p_s"):
            try:
                setattr(self, name, np.asarray(getattr(self, name), dtype=float).reshape(-1))
            except (TypeError, ValueError) as exc:
                raise InvalidParameterError(f"difficulty {name} must be a list of numbers") from exc
        self.card = dict(self.card or {})
        self.validate()

    @property
    def n_classes(self) -> int:
        """``D``."""
        return int(self.prior.size)

    def validate(self) -> DifficultyClasses:
        """Raise :class:`InvalidParameterError` naming the first invalid field."""
        D = self.prior.size
        if D < 1:
            raise InvalidParameterError("difficulty classes need at least one class (D >= 1)")
        for name in ("p_w", "p_s"):
            v = getattr(self, name)
            if v.size != D:
                raise InvalidParameterError(
                    f"difficulty {name} has {v.size} values but the prior has {D} classes; give one per class"
                )
            if not np.all((v >= 0) & (v <= 1)):
                raise InvalidParameterError(
                    f"difficulty {name} are probabilities in [0, 1], got {v.tolist()}"
                )
        pr = self.prior
        if not np.all(np.isfinite(pr)) or np.any(pr < 0) or abs(float(pr.sum()) - 1.0) > 1e-6:
            raise InvalidParameterError(
                f"the difficulty prior must be non-negative and sum to 1, got {pr.tolist()} (sum "
                f"{float(pr.sum()):.6g}); fix 'difficulty.prior' in the parameters file"
            )
        self.prior = pr / pr.sum()
        return self

    def to_dict(self) -> dict[str, Any]:
        return {
            "prior": self.prior.tolist(),
            "p_w": self.p_w.tolist(),
            "p_s": self.p_s.tolist(),
            "card": self.card,
        }

    @classmethod
    def from_dict(cls, d: Any) -> DifficultyClasses:
        if isinstance(d, DifficultyClasses):
            return d
        if not isinstance(d, dict):
            raise DataFormatError(f"difficulty must be a JSON object with prior, p_w and p_s, got {d!r}")
        unknown = sorted(set(d) - {"prior", "p_w", "p_s", "card"})
        missing = [k for k in ("prior", "p_w", "p_s") if k not in d]
        if unknown or missing:
            raise DataFormatError(
                f"difficulty classes need the fields prior, p_w, p_s (and optionally card); "
                f"{'unknown ' + str(unknown) if unknown else ''}{' missing ' + str(missing) if missing else ''}"
            )
        return cls(d["prior"], d["p_w"], d["p_s"], d.get("card") or {})


@dataclass
class TrimParams:
    """Parameters of the TRIM-POMDP.

    Parameters
    ----------
    p_w, p_s : float
        Next-step accuracy of the weak and strong model given a correct prefix (probabilities in [0, 1]).
    horizon : int, default 30
        Number of decision epochs H (the paper's cap on steps).
    bucket_edges : sequence of float, default ()
        Interior token-count edges between the K buckets (K − 1 increasing values); a step of ``c`` tokens
        falls in bucket ``searchsorted(bucket_edges, c, side="right")``. Empty means one bucket.
    bucket_probs : ndarray, shape (H, K), optional
        ``P(c | t)``: bucket distribution of M_w's proposal at epoch ``t`` (row ``t − 1``). Default uniform.
    hazard : ndarray, shape (H,), optional
        ``q(t)``: probability that the proposal at epoch ``t`` ends the solution, given epoch ``t`` is
        reached. The last entry is irrelevant (the episode ends at ``t = H`` regardless). Default ``1/8`` per
        step.
    bucket_mean_tokens : ndarray, shape (K,), optional
        Mean M_w tokens of a step in each bucket. Default 150 per bucket.
    strong_weak_ratio : float, default 1.0
        Mean strong-model step length over mean weak-model step length; the expected strong tokens of a
        regeneration in bucket ``c`` are ``strong_weak_ratio * bucket_mean_tokens[c]``.
    reward : float, default 1.0
        R, the reward of a correct final answer.
    lam : float, default 5e-4
        λ, the price of one strong-model output token (in units of R).
    discount : float, default 0.999
        γ of the flattened (tabular) form only; the structured finite-horizon model is undiscounted.
    card : dict
        Provenance (data, generators, estimation choices).
    difficulty : DifficultyClasses or dict, optional
        Latent difficulty classes. ``None`` (default): one class with the pooled ``p_w``, ``p_s``.
    """

    p_w: float
    p_s: float
    horizon: int = 30
    bucket_edges: Any = ()
    bucket_probs: Any = None
    hazard: Any = None
    bucket_mean_tokens: Any = None
    strong_weak_ratio: float = 1.0
    reward: float = 1.0
    lam: float = 5e-4
    discount: float = 0.999
    card: dict = field(default_factory=dict)
    difficulty: Any = None

    def __post_init__(self) -> None:
        if self.difficulty is not None and not isinstance(self.difficulty, DifficultyClasses):
            self.difficulty = DifficultyClasses.from_dict(self.difficulty)
        try:
            self.horizon = int(self.horizon)
        except (TypeError, ValueError) as exc:
            raise InvalidParameterError(f"horizon must be an integer >= 1, got {self.horizon!r}") from exc
        if self.horizon < 1:
            raise InvalidParameterError(f"horizon H must be >= 1, got {self.horizon}")
        self.bucket_edges = np.asarray(self.bucket_edges, dtype=float).reshape(-1)
        K = self.bucket_edges.size + 1
        H = self.horizon
        _check_horizon_size(H, K)
        if self.bucket_probs is None:
            self.bucket_probs = np.full((H, K), 1.0 / K)
        if self.hazard is None:
            self.hazard = np.full(H, 0.125)
        if self.bucket_mean_tokens is None:
            self.bucket_mean_tokens = np.full(K, 150.0)
        self.bucket_probs = np.atleast_2d(np.asarray(self.bucket_probs, dtype=float))
        self.hazard = np.asarray(self.hazard, dtype=float).reshape(-1)
        self.bucket_mean_tokens = np.asarray(self.bucket_mean_tokens, dtype=float).reshape(-1)
        for name in ("p_w", "p_s", "strong_weak_ratio", "reward", "lam", "discount"):
            try:
                setattr(self, name, float(getattr(self, name)))
            except (TypeError, ValueError) as exc:
                raise InvalidParameterError(f"{name} must be a number, got {getattr(self, name)!r}") from exc
        self.card = dict(self.card or {})
        self.validate()

    # -- derived ---------------------------------------------------------------------------------------------
    @property
    def n_buckets(self) -> int:
        """K, the number of token buckets."""
        return int(self.bucket_edges.size + 1)

    @property
    def n_classes(self) -> int:
        """``D``, the number of difficulty classes (1 without :attr:`difficulty`)."""
        return 1 if self.difficulty is None else self.difficulty.n_classes

    @property
    def class_prior(self) -> np.ndarray:
        """``π(d)`` per class (``[1.0]`` without difficulty classes)."""
        return np.ones(1) if self.difficulty is None else self.difficulty.prior

    @property
    def class_p_w(self) -> np.ndarray:
        """``p_w(d)`` per class (``[p_w]`` without difficulty classes)."""
        return np.array([self.p_w]) if self.difficulty is None else self.difficulty.p_w

    @property
    def class_p_s(self) -> np.ndarray:
        """``p_s(d)`` per class (``[p_s]`` without difficulty classes)."""
        return np.array([self.p_s]) if self.difficulty is None else self.difficulty.p_s

    @property
    def strong_tokens(self) -> np.ndarray:
        """Expected M_s tokens of a regeneration per bucket, ``strong_weak_ratio * bucket_mean_tokens``."""
        return self.strong_weak_ratio * self.bucket_mean_tokens

    # -- checks ----------------------------------------------------------------------------------------------
    def validate(self) -> TrimParams:
        """Raise :class:`InvalidParameterError` naming the first invalid field."""
        for name in ("p_w", "p_s"):
            v = getattr(self, name)
            if not (0.0 <= v <= 1.0):
                raise InvalidParameterError(f"{name} is a probability and must lie in [0, 1], got {v}")
        if self.lam < 0 or not math.isfinite(self.lam):
            raise InvalidParameterError(
                f"lam (λ, the price per strong token) must be finite and >= 0, got {self.lam}"
            )
        if not (self.reward > 0 and math.isfinite(self.reward)):
            raise InvalidParameterError(f"reward R must be finite and > 0, got {self.reward}")
        if not (0.0 < self.discount <= 1.0):
            raise InvalidParameterError(f"discount γ must lie in (0, 1], got {self.discount}")
        if not (self.strong_weak_ratio >= 0 and math.isfinite(self.strong_weak_ratio)):
            raise InvalidParameterError(
                f"strong_weak_ratio must be finite and >= 0, got {self.strong_weak_ratio}"
            )
        e = self.bucket_edges
        if e.size and (not np.all(np.isfinite(e)) or np.any(np.diff(e) <= 0)):
            raise InvalidParameterError(
                f"bucket_edges must be finite and strictly increasing, got {e.tolist()}"
            )
        H, K = self.horizon, self.n_buckets
        if self.bucket_probs.shape != (H, K):
            raise InvalidParameterError(
                f"bucket_probs must have shape (horizon, n_buckets) = ({H}, {K}), got "
                f"{self.bucket_probs.shape}"
            )
        check_stochastic(
            "bucket_probs",
            self.bucket_probs,
            atol=0.0,
            error=lambda msg: InvalidParameterError(f"{msg} (row t - 1 is P(c | t))"),
        )
        if self.hazard.shape != (H,):
            raise InvalidParameterError(
                f"hazard must have shape (horizon,) = ({H},), got {self.hazard.shape}"
            )
        bad = np.flatnonzero(~np.isfinite(self.hazard) | (self.hazard < 0) | (self.hazard > 1))
        if bad.size:
            raise InvalidParameterError(
                f"hazard[{bad[0]}] = {self.hazard[bad[0]]} is not a probability in [0, 1]"
            )
        if self.bucket_mean_tokens.shape != (K,):
            raise InvalidParameterError(
                f"bucket_mean_tokens must have shape (n_buckets,) = ({K},), got "
                f"{self.bucket_mean_tokens.shape}"
            )
        if np.any(~np.isfinite(self.bucket_mean_tokens) | (self.bucket_mean_tokens < 0)):
            raise InvalidParameterError(
                f"bucket_mean_tokens must be finite and >= 0, got {self.bucket_mean_tokens.tolist()}"
            )
        return self

    def replace(self, **changes: Any) -> TrimParams:
        """A copy with some fields changed (validated).

        Changing ``horizon`` alone truncates or extends the per-epoch arrays (extending repeats the last row).
        """
        if "horizon" in changes and not ({"bucket_probs", "hazard"} & set(changes)):
            H = int(changes["horizon"])
            if H < 1:
                raise InvalidParameterError(f"horizon H must be >= 1, got {H}")
            _check_horizon_size(H, self.n_buckets)
            idx = np.minimum(np.arange(H), self.horizon - 1)
            changes.setdefault("bucket_probs", self.bucket_probs[idx])
            changes.setdefault("hazard", self.hazard[idx])
        return dataclasses.replace(self, **changes)

    # -- JSON ------------------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"format": _FORMAT}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if f.name == "difficulty":
                if v is not None:  # absent for one class: files of earlier versions stay identical
                    d[f.name] = v.to_dict()
                continue
            d[f.name] = v.tolist() if isinstance(v, np.ndarray) else v
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrimParams:
        if not isinstance(d, dict):
            raise DataFormatError(f"TRIM parameters must be a JSON object, got {type(d).__name__}")
        d = dict(d)
        fmt = d.pop("format", _FORMAT)
        if fmt != _FORMAT:
            raise DataFormatError(f"unknown parameters format {fmt!r} (expected {_FORMAT!r})")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise DataFormatError(f"unknown TRIM parameter field(s) {unknown}; known fields: {sorted(names)}")
        missing = [n for n in ("p_w", "p_s") if n not in d]
        if missing:
            raise DataFormatError(f"TRIM parameters lack required field(s) {missing}")
        return cls(**d)

    def to_json(self, path: str | os.PathLike | None = None) -> str:
        """JSON text of the parameters; also written to ``path`` when given."""
        text = json.dumps(self.to_dict(), indent=2) + "\n"
        if path is not None:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            Path(path).write_text(text)
        return text

    @classmethod
    def from_json(cls, source: str | os.PathLike) -> TrimParams:
        """Parameters from a JSON file path or a JSON string."""
        text = None
        if isinstance(source, (str, os.PathLike)) and not str(source).lstrip().startswith("{"):
            path = Path(source)
            if not path.is_file():
                raise DataFormatError(f"parameters file {path} does not exist")
            text = path.read_text()
            where = str(path)
        else:
            text = str(source)
            where = "<string>"
        try:
            d = json.loads(text)
        except json.JSONDecodeError as exc:
            raise DataFormatError(f"{where} is not valid JSON: {exc}") from exc
        return cls.from_dict(d)

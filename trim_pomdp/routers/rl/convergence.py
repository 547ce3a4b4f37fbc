"""A training budget chosen by convergence: train until the return on a fixed held-out batch stops improving.

PPO's return on its own training episodes is noisy and lags the policy. The criterion here instead evaluates the
deterministic (argmax) router every ``eval_every`` environment steps on the *same* held-out episodes (the same
seed every time: common random numbers, so two evaluations differ only through the policy) and stops once the
best held-out return has not improved by more than ``min_delta`` for ``patience`` evaluations in a row, and at
least ``min_timesteps`` steps were trained. The router kept is the best one evaluated (early stopping), and the
whole curve is kept: :func:`write_curve` writes it as CSV and JSON and :func:`plot_curve` draws it.

A router whose held-out decisions are all the same (it never or always regenerates) has *collapsed* to a
constant policy; :func:`collapse` names that, so a sweep reports it instead of keeping it silently.
"""

from __future__ import annotations

import csv
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from trim_pomdp._internal.artifacts import write_json
from trim_pomdp.exceptions import InvalidParameterError

__all__ = [
    "CURVE_COLUMNS",
    "HELDOUT_SEED",
    "Convergence",
    "ConvergenceTracker",
    "collapse",
    "plot_curve",
    "write_curve",
]

#: Seed of the held-out episodes by default: far from the seeds training and evaluation sweeps use (0, 1, ...).
HELDOUT_SEED = 7_919_123

#: Columns of the learning curve (one row per held-out evaluation).
CURVE_COLUMNS = (
    "timesteps",
    "ret",
    "ret_se",
    "accuracy",
    "strong_tokens",
    "regenerate_rate",
    "best",
    "train_seconds",
)


@dataclass(frozen=True)
class Convergence:
    """When PPO training stops: the held-out return stopped improving.

    Attributes
    ----------
    eval_every : int
        Environment steps between two held-out evaluations.
    eval_episodes : int
        Episodes of the held-out batch (the same ones at every evaluation).
    patience : int
        Evaluations in a row without an improvement of the best return by more than ``min_delta`` before
        training stops.
    min_delta : float
        Improvement of the held-out return (in units of R) that counts.
    min_timesteps : int
        Never stop before this many steps (an untrained policy's return can stall for a while).
    seed : int
        Seed of the held-out episodes.
    """

    eval_every: int = 20_000
    eval_episodes: int = 2000
    patience: int = 5
    min_delta: float = 1e-3
    min_timesteps: int = 100_000
    seed: int = HELDOUT_SEED

    def __post_init__(self) -> None:
        for name in ("eval_every", "eval_episodes", "patience"):
            if int(getattr(self, name)) < 1:
                raise InvalidParameterError(f"convergence {name} must be >= 1, got {getattr(self, name)!r}")
        if int(self.min_timesteps) < 0:
            raise InvalidParameterError(f"convergence min_timesteps must be >= 0, got {self.min_timesteps!r}")
        if not (math.isfinite(self.min_delta) and self.min_delta >= 0):
            raise InvalidParameterError(
                f"convergence min_delta must be a finite number >= 0, got {self.min_delta!r}"
            )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Convergence:
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})


@dataclass
class ConvergenceTracker:
    """The learning curve and the stopping rule of :class:`Convergence` (plain Python, saved in checkpoints)."""

    criterion: Convergence
    curve: list[dict[str, Any]] = field(default_factory=list)
    best_index: int | None = None
    stale: int = 0
    stopped: str | None = None

    @property
    def best(self) -> dict[str, Any] | None:
        """The curve's row of the best router so far."""
        return None if self.best_index is None else self.curve[self.best_index]

    @property
    def last_timesteps(self) -> int | None:
        return int(self.curve[-1]["timesteps"]) if self.curve else None

    def due(self, timesteps: int) -> bool:
        """Whether an evaluation is due at ``timesteps``."""
        last = self.last_timesteps
        return last is None or timesteps - last >= self.criterion.eval_every

    def record(self, timesteps: int, result: Any, train_seconds: float) -> bool:
        """Add an evaluation (a :class:`~trim_pomdp.routers.rollout.RolloutResult`); whether it is the new best."""
        row = {
            "timesteps": int(timesteps),
            "ret": float(result.ret),
            "ret_se": float(result.ret_se),
            "accuracy": float(result.accuracy),
            "strong_tokens": float(result.strong_tokens),
            "regenerate_rate": float(result.regenerate_rate),
            "best": False,
            "train_seconds": float(train_seconds),
        }
        best = self.best
        improved = best is None or row["ret"] > best["ret"] + self.criterion.min_delta
        self.curve.append(row)
        if improved:
            if best is not None:
                best["best"] = False
            row["best"] = True
            self.best_index = len(self.curve) - 1
            self.stale = 0
        else:
            self.stale += 1
        if self.stale >= self.criterion.patience and timesteps >= self.criterion.min_timesteps:
            self.stopped = "converged"
        return improved

    def state(self) -> dict[str, Any]:
        """What a checkpoint stores to resume the rule where it was."""
        return {
            "criterion": self.criterion.to_dict(),
            "curve": self.curve,
            "best_index": self.best_index,
            "stale": self.stale,
            "stopped": self.stopped,
        }

    @classmethod
    def from_state(cls, criterion: Convergence, state: dict[str, Any] | None) -> ConvergenceTracker:
        """Resume from :meth:`state` when it was written for the same criterion, else start afresh."""
        if not state or state.get("criterion") != criterion.to_dict():
            return cls(criterion)
        return cls(
            criterion,
            [dict(r) for r in state.get("curve", [])],
            state.get("best_index"),
            int(state.get("stale", 0)),
            state.get("stopped"),
        )

    def summary(self) -> dict[str, Any]:
        """For the router's card: the criterion, why training stopped, the best evaluation and the curve."""
        return {**self.state(), "best": self.best}


def collapse(regenerate_rate: float | None) -> str | None:
    """``"never regenerates"`` / ``"always regenerates"`` for a constant policy, else ``None``."""
    if regenerate_rate is None:
        return None
    if regenerate_rate <= 0.0:
        return "never regenerates"
    if regenerate_rate >= 1.0:
        return "always regenerates"
    return None


def _finite_or_zero(x: Any) -> float:
    return float(x) if isinstance(x, (int, float)) and math.isfinite(x) else 0.0


def write_curve(
    curve: list[dict[str, Any]], directory: str | Path, meta: dict[str, Any] | None = None
) -> Path:
    """``DIR/learning_curve.csv`` (one row per evaluation) and ``DIR/learning_curve.json`` (with ``meta``)."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    path = d / "learning_curve.csv"
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=list(CURVE_COLUMNS), extrasaction="ignore")
        w.writeheader()
        for row in curve:
            w.writerow(row)
    tmp.replace(path)
    write_json(d / "learning_curve.json", {**(meta or {}), "curve": curve})
    return path


def plot_curve(
    curve: list[dict[str, Any]], path: str | Path, *, title: str = "", note: str | None = None
) -> Path:
    """Draw the held-out return (± one standard error) and the regenerate rate against training steps.

    Needs matplotlib (``pip install 'trim-pomdp[plots]'``).
    """
    from trim_pomdp._internal.optional import require

    require("matplotlib", "plots", "the learning-curve plot")
    from matplotlib.figure import Figure

    x = [r["timesteps"] for r in curve]
    y = [r["ret"] for r in curve]
    se = [_finite_or_zero(r.get("ret_se")) for r in curve]  # NaN (one episode; None once read back): no band
    fig = Figure(figsize=(7, 4))
    ax = fig.add_subplot()
    ax.fill_between(x, [a - b for a, b in zip(y, se, strict=True)], [a + b for a, b in zip(y, se, strict=True)],
                    alpha=0.2, color="C0")  # fmt: skip
    ax.plot(x, y, marker="o", ms=3, color="C0", label="held-out return")
    best = [r for r in curve if r.get("best")]
    if best:
        ax.plot([best[-1]["timesteps"]], [best[-1]["ret"]], marker="*", ms=14, color="C3", ls="",
                label="kept (best)")  # fmt: skip
    ax.set_xlabel("PPO environment steps")
    ax.set_ylabel("return  R·correct − λ·M_s tokens")
    ax2 = ax.twinx()
    ax2.plot(x, [r["regenerate_rate"] for r in curve], color="C2", ls="--", label="regenerate rate")
    ax2.set_ylabel("regenerate rate")
    ax2.set_ylim(-0.02, 1.02)
    h1, l1 = ax.get_legend_handles_labels()
    h2, l2 = ax2.get_legend_handles_labels()
    ax.legend(h1 + h2, l1 + l2, loc="lower right", fontsize=8)
    ax.set_title(title, fontsize=10)
    if note:
        fig.text(0.01, 0.01, note, fontsize=7, color="0.4")
    fig.tight_layout()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    return out

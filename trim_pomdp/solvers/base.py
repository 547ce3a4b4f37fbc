"""The ``Solver`` protocol, ``SolveInfo`` and the general alpha-vector policy.

Array conventions (used by every solver): ``T[a, s, s']``, ``O[a, s', o]``, ``R[s, a]``; beliefs are 1-D float64
arrays of length ``n_states`` that sum to 1. Policies are plain numpy alpha vectors with one action per vector and
are saved as ``.npz`` + ``.json`` card, never pickled.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from trim_pomdp._internal.artifacts import json_default
from trim_pomdp.exceptions import DataFormatError, InvalidParameterError

__all__ = ["AlphaVectorPolicy", "SolveInfo", "Solver", "package_versions"]


@dataclass
class SolveInfo:
    """What a solver reports about one solve.

    Attributes
    ----------
    solver : str
        Name of the solver that produced the policy.
    seconds : float
        Wall-clock solve time.
    iterations : int
        Backups, sweeps or trials, as the solver counts them.
    lower_bound, upper_bound : float
        Certified bounds on the optimal value at the initial belief: ``lower_bound`` is the value of the returned
        policy (or a lower bound on it), ``upper_bound`` dominates ``V*(b0)``. ``nan`` where a solver has none.
    converged : bool
        Whether the requested precision was reached (``gap <= precision``) before any time limit.
    sizes : dict
        Problem and solution sizes (states, observations, alpha vectors, grid points, ...).
    """

    solver: str
    seconds: float
    iterations: int
    lower_bound: float
    upper_bound: float
    converged: bool
    sizes: dict[str, int] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def gap(self) -> float:
        """``upper_bound - lower_bound`` (``nan`` if either is unknown)."""
        return float(self.upper_bound - self.lower_bound)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["gap"] = self.gap
        for key in ("lower_bound", "upper_bound", "gap"):
            if isinstance(d[key], float) and not math.isfinite(d[key]):
                d[key] = None
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SolveInfo:
        d = dict(d)
        d.pop("gap", None)
        for key in ("lower_bound", "upper_bound"):
            if d.get(key) is None:
                d[key] = float("nan")
        return cls(**d)


@runtime_checkable
class Solver(Protocol):
    """Anything that turns a model into a policy.

    ``solve`` returns the policy, whose ``info`` is the :class:`SolveInfo` of that solve; solvers keep no state
    from one solve to the next (the same solver object may solve many models, also concurrently).
    Which model types a solver accepts is its own business (the native finite-horizon solver takes the structured
    TRIM model, the point-based and SARSOP solvers take any :class:`~trim_pomdp.solvers.tabular.TabularPOMDP`).
    """

    def solve(self, model: Any) -> Any:  # pragma: no cover - protocol
        ...


def package_versions(*names: str) -> dict[str, str]:
    """Installed versions of ``names`` (plus numpy, scipy and trim-pomdp), for artifact cards."""
    from importlib import metadata

    out: dict[str, str] = {}
    for name in ("trim-pomdp", "numpy", "scipy", *names):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


class AlphaVectorPolicy:
    """A policy given by alpha vectors over the states of a tabular POMDP.

    ``value(b) = max_k alphas[k] @ b`` and ``action(b) = actions[argmax_k alphas[k] @ b]``.

    Parameters
    ----------
    alphas : ndarray of shape (n_vectors, n_states)
    actions : ndarray of int, shape (n_vectors,)
    action_names : sequence of str, optional
    card : dict, optional
        Metadata stored beside the arrays (solver, bounds, parameters, versions).
    info : SolveInfo, optional
        The report of the solve that produced the policy (restored from the card's ``solve_info`` on load).
    """

    def __init__(
        self,
        alphas,
        actions,
        action_names=None,
        card: dict[str, Any] | None = None,
        info: SolveInfo | None = None,
    ):
        alphas = np.atleast_2d(np.asarray(alphas, dtype=float))
        actions = np.asarray(actions, dtype=np.int64).reshape(-1)
        if alphas.shape[0] != actions.shape[0]:
            raise InvalidParameterError(
                f"alphas has {alphas.shape[0]} vectors but actions has {actions.shape[0]} entries"
            )
        if alphas.shape[0] == 0:
            raise InvalidParameterError("an alpha-vector policy needs at least one vector")
        self.alphas = alphas
        self.actions = actions
        self.action_names = tuple(action_names) if action_names is not None else None
        self.card = dict(card or {})
        if info is None:
            report = self.card.get("solve_info") or self.card.get("info")  # "info": cards before 0.2
            if isinstance(report, dict):
                try:
                    info = SolveInfo.from_dict(report)
                except TypeError:
                    info = None
        self.info = info

    @property
    def n_states(self) -> int:
        return int(self.alphas.shape[1])

    def _check_belief(self, belief) -> np.ndarray:
        b = np.asarray(belief, dtype=float)
        if b.shape[-1] != self.n_states:
            raise InvalidParameterError(
                f"belief has length {b.shape[-1]}, the policy has {self.n_states} states"
            )
        return b

    def value(self, belief) -> float | np.ndarray:
        """Value of the belief (or of each row of a 2-D array of beliefs)."""
        b = self._check_belief(belief)
        return (b @ self.alphas.T).max(axis=-1)

    def action(self, belief) -> int | np.ndarray:
        """Index of the action of the best alpha vector at the belief (or at each row)."""
        b = self._check_belief(belief)
        return self.actions[(b @ self.alphas.T).argmax(axis=-1)]

    def action_values(self, belief, n_actions: int | None = None) -> np.ndarray:
        """Best alpha value per action at a single belief (``-inf`` for an action with no vector)."""
        b = self._check_belief(belief)
        n_actions = n_actions or int(self.actions.max()) + 1
        vals = self.alphas @ b
        out = np.full(n_actions, -np.inf)
        np.maximum.at(out, self.actions, vals)
        return out

    # -- persistence -------------------------------------------------------------------------------------------
    def save(self, path: str | Path) -> tuple[Path, Path]:
        """Write ``PATH.npz`` (arrays) and ``PATH.json`` (card). ``path`` may end in ``.npz`` or have no suffix."""
        base = Path(path)
        if base.suffix in (".npz", ".json"):
            base = base.with_suffix("")
        base.parent.mkdir(parents=True, exist_ok=True)
        npz, card = base.with_suffix(".npz"), base.with_suffix(".json")
        np.savez_compressed(
            npz, alphas=self.alphas, actions=self.actions, format=np.array("trim-pomdp/alpha-vectors/1")
        )
        meta = dict(self.card)
        meta.setdefault("format", "trim-pomdp/alpha-vectors/1")
        meta["action_names"] = list(self.action_names) if self.action_names else None
        meta["n_vectors"] = int(self.alphas.shape[0])
        meta["n_states"] = self.n_states
        card.write_text(json.dumps(meta, indent=2, default=json_default) + "\n")
        return npz, card

    @classmethod
    def load(cls, path: str | Path) -> AlphaVectorPolicy:
        """Read a policy written by :meth:`save`; a corrupted or foreign file raises :class:`DataFormatError`."""
        base = Path(path)
        if base.suffix in (".npz", ".json"):
            base = base.with_suffix("")
        npz, card = base.with_suffix(".npz"), base.with_suffix(".json")
        try:
            with np.load(npz, allow_pickle=False) as data:
                fmt = str(data["format"]) if "format" in data else ""
                if fmt != "trim-pomdp/alpha-vectors/1":
                    raise DataFormatError(f"{npz} is not a trim-pomdp alpha-vector policy (format {fmt!r})")
                alphas, actions = data["alphas"], data["actions"]
        except DataFormatError:
            raise
        except (OSError, ValueError, KeyError) as exc:
            raise DataFormatError(f"cannot read policy arrays from {npz}: {exc}") from exc
        try:
            meta = json.loads(card.read_text()) if card.exists() else {}
        except json.JSONDecodeError as exc:
            raise DataFormatError(f"policy card {card} is not valid JSON: {exc}") from exc
        return cls(alphas, actions, meta.get("action_names"), meta)

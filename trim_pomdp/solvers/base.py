"""What every solver shares: the :class:`Solver` protocol and the :class:`SolveInfo` report of a solve.

Array conventions (used by every solver): ``T[a, s, s']``, ``O[a, s', o]``, ``R[s, a]``; beliefs are 1-D float64
arrays of length ``n_states`` that sum to 1. The general alpha-vector policy lives in
:mod:`trim_pomdp.solvers.policy`.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol, runtime_checkable

from trim_pomdp.exceptions import InvalidParameterError
from trim_pomdp.registry import canonical_sarsop_backend, canonical_solver

__all__ = ["SIZE_ALIASES", "SolveInfo", "Solver"]

#: Keys of ``SolveInfo.sizes`` in reports written before the names were unified -> the key used now.
SIZE_ALIASES: dict[str, str] = {
    "n_states": "states",
    "n_hidden": "states",
    "n_actions": "actions",
    "n_observations": "observations",
    "alphas": "alpha_vectors",
    "n_vectors": "alpha_vectors",
    "lines": "alpha_vectors",
    "max_lines": "max_alpha_vectors",
    "n_contexts": "contexts",
    "n_beliefs": "beliefs",
}


@dataclass
class SolveInfo:
    """What a solver reports about one solve (POMDPs.jl's ``solve_info``).

    Attributes
    ----------
    solver : str
        Registered name of the solver that produced the policy (``"finite-horizon"``, ``"pointbased"`` or
        ``"sarsop"``; see :data:`trim_pomdp.registry.SOLVERS`). Variants of a solver, such as the SARSOP
        backend, are in ``extra``.
    seconds : float
        Wall-clock solve time.
    iterations : int
        Backups, sweeps or trials, as the solver counts them.
    lower_bound, upper_bound : float
        Certified bounds on the optimal value at the initial belief: ``lower_bound`` is the value of the returned
        policy (or a lower bound on it), ``upper_bound`` dominates ``V*(b0)``. ``nan`` where a solver has none.
    converged : bool
        Whether the requested precision was reached (``gap <= precision``) before any time limit.
    sizes : dict of str to int
        Problem and solution sizes. Every solver reports

        - ``states``: states of the model it solved (hidden states for the finite-horizon solver),
        - ``actions``, ``observations`` (the largest per-epoch count for the finite-horizon solver),
        - ``alpha_vectors``: vectors of the returned lower bound (for the finite-horizon solver's rank-2
          method, its lines, one per alpha vector restricted to the segment of predicted beliefs, summed over
          the epochs);

        and may add its own: ``horizon``, ``contexts``, ``grid_points``, ``max_grid_points``,
        ``max_alpha_vectors``, ``resolution`` (finite-horizon); ``upper_points``, ``tree_nodes``, ``backups``
        (point-based); ``nnz_T``, ``nnz_O``, ``beliefs`` (SARSOP).
    extra : dict
        Solver-specific settings and diagnostics (mode, stop reason, backend, ...).
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
        """Plain JSON values (non-finite bounds become ``None``), with the ``gap`` added."""
        d = asdict(self)
        d["gap"] = self.gap
        for key in ("lower_bound", "upper_bound", "gap"):
            if isinstance(d[key], float) and not math.isfinite(d[key]):
                d[key] = None
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SolveInfo:
        """Inverse of :meth:`to_dict`; also reads reports written by earlier versions.

        Older reports used other ``sizes`` keys (``n_states``, ``alphas``, ... : :data:`SIZE_ALIASES`), named
        SARSOP solves ``"sarsop[<backend>]"`` and NativeSARSOP.jl ``"native"``; all are mapped to today's names
        (:mod:`trim_pomdp.registry`). A solver name the registry does not know is kept as it is.
        """
        d = dict(d)
        d.pop("gap", None)
        for key in ("lower_bound", "upper_bound"):
            if d.get(key) is None:
                d[key] = float("nan")
        sizes = dict(d.get("sizes") or {})
        for old, new in SIZE_ALIASES.items():
            if old in sizes:
                value = sizes.pop(old)
                sizes.setdefault(new, value)
        d["sizes"] = sizes
        solver = str(d.get("solver", ""))
        extra = dict(d.get("extra") or {})
        if solver.startswith("sarsop[") and solver.endswith("]"):
            solver = "sarsop"
            extra.setdefault("backend", d["solver"][len("sarsop[") : -1])
        try:
            d["solver"] = canonical_solver(solver)
        except InvalidParameterError:
            d["solver"] = solver
        if d["solver"] == "sarsop" and isinstance(extra.get("backend"), str):
            try:
                extra["backend"] = canonical_sarsop_backend(extra["backend"])
            except InvalidParameterError:
                pass
        d["extra"] = extra
        return cls(**d)


@runtime_checkable
class Solver(Protocol):
    """Anything that turns a model into a policy.

    ``solve`` returns the policy, whose ``info`` is the :class:`SolveInfo` of that solve; solvers keep no state
    from one solve to the next (the same solver object may solve many models, also concurrently). Which model
    types a solver accepts is its own business (the finite-horizon solver takes the structured TRIM model, the
    point-based and SARSOP solvers take any :class:`~trim_pomdp.solvers.tabular.TabularPOMDP`).
    """

    def solve(self, model: Any) -> Any:  # pragma: no cover - protocol
        """Solve ``model`` into a policy whose ``info`` is the :class:`SolveInfo` of the solve."""
        ...

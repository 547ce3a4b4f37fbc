"""One name per solver and per router, shared by the Python API, the command line, artifact cards and ``serve``.

Every place that shows or parses a solver or router name reads it from here: ``trim-pomdp solve --solver``,
``SolveInfo.solver`` and the ``solver`` field of policy cards; ``trim-pomdp run --router``, the ``policy``
column of per-query records, the labels of tables and plots, and the model ids of the HTTP endpoint. Older
spellings stay accepted as aliases (``canonical_solver("native") == "finite-horizon"``) so that scripts and
artifacts from earlier versions keep working; they are never written.

Names only: this module imports nothing heavier than the standard library, so the CLI can list and check names
before it loads any solver.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from trim_pomdp.exceptions import InvalidParameterError

__all__ = [
    "ROUTERS",
    "SARSOP_BACKENDS",
    "SOLVERS",
    "RouterName",
    "SolverName",
    "canonical_router",
    "canonical_sarsop_backend",
    "canonical_solver",
    "did_you_mean",
    "router_label",
]


@dataclass(frozen=True)
class SolverName:
    """A solver's name, where its class lives and what it solves."""

    name: str
    target: str  #: ``"module:Class"``
    solves: str  #: ``"structured"`` (the TRIM-POMDP's own finite-horizon form) or ``"tabular"`` (any flattened POMDP)
    summary: str
    aliases: tuple[str, ...] = ()


@dataclass(frozen=True)
class RouterName:
    """A router's record name (the ``policy`` column), display label, endpoint model-id prefix and knob."""

    name: str
    label: str
    model_prefix: str
    knob: str | None
    summary: str
    step_level: bool = True
    aliases: tuple[str, ...] = field(default=())


SOLVERS: dict[str, SolverName] = {
    s.name: s
    for s in (
        SolverName(
            "finite-horizon",
            "trim_pomdp.solvers.finite_horizon:FiniteHorizonSolver",
            "structured",
            "certified backward induction on the TRIM-POMDP's rank-2 structure (default; milliseconds)",
            aliases=("native",),
        ),
        SolverName(
            "pointbased",
            "trim_pomdp.solvers.pointbased:PointBasedSolver",
            "tabular",
            "point-based value iteration with a sawtooth/hull upper bound on the flattened model",
            aliases=("point-based",),
        ),
        SolverName(
            "sarsop",
            "trim_pomdp.solvers.sarsop:SarsopSolver",
            "tabular",
            "SARSOP (Kurniawati et al. 2008) on the flattened model, as in the TRIM paper",
        ),
    )
}

#: Backends of :class:`~trim_pomdp.solvers.sarsop.SarsopSolver`: name -> (aliases, summary).
SARSOP_BACKENDS: dict[str, tuple[tuple[str, ...], str]] = {
    "sarsop.jl": ((), "SARSOP.jl through Julia: APPL's C++ pomdpsol, the paper's solver"),
    "nativesarsop.jl": (("native",), "NativeSARSOP.jl through Julia: a pure-Julia SARSOP"),
    "appl": (("pomdpsol",), "APPL's pomdpsol run directly, without Julia (the C++ SARSOP; needs pomdpsol)"),
}

ROUTERS: dict[str, RouterName] = {
    r.name: r
    for r in (
        RouterName(
            "pomdp", "TRIM-POMDP", "trim-pomdp", "lambda", "belief over the hidden class, planned policy"
        ),
        RouterName("thr", "TRIM-Thr", "trim-thr", "k", "regenerate when the PRM score falls below k"),
        RouterName("agg", "TRIM-Agg", "trim-agg", "lambda", "PPO-trained MLP on aggregated PRM features"),
        RouterName("seq", "TRIM-Seq", "trim-seq", "lambda", "PPO-trained transformer on the score sequence"),
        RouterName(
            "automix", "AutoMix-PRM", "automix", "lambda", "query-level: route on the final PRM score", False
        ),
        RouterName(
            "oracle", "Oracle (query)", "oracle", "budget", "query-level oracle under a token budget", False
        ),
        RouterName(
            "random",
            "Random (query)",
            "random",
            "p",
            "query-level: route each query with probability p",
            False,
        ),
        RouterName("weak", "M_w only", "weak", None, "the cheap model alone", False),
        RouterName("strong", "M_s only", "strong", None, "the expensive model alone", False),
    )
}


def did_you_mean(value: str, choices: Iterable[str]) -> str:
    """``" (did you mean 'x'?)"`` for the closest of ``choices``, or ``""`` when none is close."""
    close = difflib.get_close_matches(value, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _canonical(kind: str, value: str, names: Mapping[str, tuple[str, ...]]) -> str:
    v = str(value).strip().lower()
    for name, aliases in names.items():
        if v == name or v in aliases:
            return name
    raise InvalidParameterError(
        f"unknown {kind} {value!r}{did_you_mean(v, [*names, *(a for al in names.values() for a in al)])}; "
        f"choose one of {', '.join(names)}"
    )


def canonical_solver(name: str) -> str:
    """The solver's registered name (``"native"`` → ``"finite-horizon"``)."""
    return _canonical("solver", name, {s.name: s.aliases for s in SOLVERS.values()})


def canonical_sarsop_backend(name: str) -> str:
    """The SARSOP backend's registered name (``"native"`` → ``"nativesarsop.jl"``)."""
    return _canonical("SARSOP backend", name, {k: v[0] for k, v in SARSOP_BACKENDS.items()})


def canonical_router(name: str) -> str:
    """The router's registered name (the ``policy`` column of records)."""
    return _canonical("router", name, {r.name: r.aliases for r in ROUTERS.values()})


def router_label(name: str) -> str:
    """Display label of a router (``"pomdp"`` → ``"TRIM-POMDP"``); unknown names are shown as they are."""
    r = ROUTERS.get(name)
    return r.label if r is not None else name

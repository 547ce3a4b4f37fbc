"""Router specifications: what ``trim-pomdp run --router SPEC`` accepts.

=========================  ==================================================================================
``weak``                   M_w alone (records policy ``weak``)
``strong``                 M_s writes every step (records policy ``strong``; its tokens are C_s)
``thr:K``                  TRIM-Thr: regenerate iff r_t < K (policy ``thr``, knob K)
``agg:DIR``                TRIM-Agg loaded from ``trim-pomdp train-agg`` output (policy ``agg``, knob λ)
``seq:DIR``                TRIM-Seq loaded from its training output (policy ``seq``, knob λ)
``pomdp:DIR`` or ``DIR``   BeliefRouter loaded from ``trim-pomdp solve`` output (policy ``pomdp``, knob λ)
=========================  ==================================================================================

The names, and the ``policy`` column they give the per-query records, are those of
:data:`trim_pomdp.registry.ROUTERS`. The query-level routers of the registry (``automix``, ``oracle``,
``random``) decide from a finished solution and have no place in the step-by-step loop.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trim_pomdp.exceptions import InvalidParameterError
from trim_pomdp.registry import ROUTERS, canonical_router, did_you_mean
from trim_pomdp.routers.base import Router

__all__ = ["LIVE_ROUTERS", "RouterSpec", "resolve_router"]

#: The routers of the live loop: the two single-model baselines, then those that take an argument.
LIVE_ROUTERS = ("weak", "strong", "thr", "agg", "seq", "pomdp")
_WITH_ARGUMENT = {"thr": "K", "agg": "DIR", "seq": "DIR", "pomdp": "DIR"}
_FORMS = "'weak', 'strong', 'thr:K', 'agg:DIR', 'seq:DIR' or a `trim-pomdp solve` output directory"


@dataclass
class RouterSpec:
    """A resolved router: the loop mode, the record labels and a factory of fresh router instances.

    Attributes
    ----------
    mode : {"route", "weak", "strong"}
        How the loop runs (see :data:`trim_pomdp.generation.loop.MODES`).
    policy : str
        The registry name of the router, written as the ``policy`` of every record.
    knob : Any
        The router's knob (``K`` of ``thr:K``, λ of a planned or trained router), written as ``knob``.
    factory : callable or None
        Makes a fresh router (one per concurrent worker); ``None`` for ``weak`` and ``strong``.
    spec : str
        The specification as given (stripped).
    """

    mode: str
    policy: str
    knob: Any
    factory: Callable[[], Router] | None
    spec: str


def _registered(name: str) -> str | None:
    """The registry name of ``name``, or ``None`` when it names no router."""
    try:
        return canonical_router(name)
    except InvalidParameterError:
        return None


def _split(spec: str) -> tuple[str, str]:
    """``(router name, argument)`` of a specification; a bare path is ``("pomdp", path)``."""
    whole = _registered(spec)
    if whole in ("weak", "strong"):
        return whole, ""
    head, sep, arg = spec.partition(":")
    name = _registered(head) if sep else None
    if name in _WITH_ARGUMENT:
        return str(name), arg
    return "pomdp", spec


def _knob_from_dir(d: Path) -> Any:
    for name in ("policy.json", "agg.json", "router.json", "params.json"):
        p = d / name
        if p.is_file():
            try:
                meta = json.loads(p.read_text())
            except json.JSONDecodeError:
                continue
            for key in ("lambda", "lam", "knob"):
                if isinstance(meta, dict) and key in meta:
                    return meta[key]
                if isinstance(meta, dict) and isinstance(meta.get("params"), dict) and key in meta["params"]:
                    return meta["params"][key]
    return None


def _prototype_factory(proto: Router) -> Callable[[], Router]:
    def make() -> Router:
        r = copy.deepcopy(proto)
        r.reset()
        return r

    return make


def _not_a_router(spec: str) -> InvalidParameterError:
    """The error for a specification that names no live router and no directory."""
    head, sep, arg = spec.partition(":")
    name = _registered(head)
    if name is None:
        return InvalidParameterError(f"router {spec!r}: not {_FORMS}{did_you_mean(head, LIVE_ROUTERS)}")
    if name not in LIVE_ROUTERS:
        return InvalidParameterError(
            f"router {spec!r}: {ROUTERS[name].label} routes whole queries and has no step-level form; "
            f"use {_FORMS}"
        )
    if not sep:
        return InvalidParameterError(f"router {spec!r} needs an argument: {name}:{_WITH_ARGUMENT[name]}")
    return InvalidParameterError(f"router {spec!r}: {arg!r} is not a directory (use {_FORMS})")


def _threshold(spec: str, arg: str) -> RouterSpec:
    from trim_pomdp.routers.threshold import ThresholdRouter

    try:
        k = float(arg)
    except ValueError:
        raise InvalidParameterError(
            f"router {spec!r}: thr:K needs a number K in [0, 1], e.g. thr:0.5"
        ) from None
    if not 0.0 <= k <= 1.0:  # PRM scores are probabilities: K outside [0, 1] is a typo, not a router
        raise InvalidParameterError(
            f"router {spec!r}: K must be in [0, 1] (thr:0 never regenerates, thr:1 regenerates every step "
            "scored below 1; use --router strong to regenerate every step)"
        )
    ThresholdRouter(k)  # checks K now rather than in every worker
    return RouterSpec("route", "thr", k, lambda: ThresholdRouter(k), spec)


def resolve_router(spec: str) -> RouterSpec:
    """Parse a router specification (see the module docstring) and load the router it names.

    Raises
    ------
    InvalidParameterError
        The specification names no live router and no directory (the message suggests the closest name).
    """
    s = spec.strip()
    name, arg = _split(s)
    if name in ("weak", "strong"):
        return RouterSpec(mode=name, policy=name, knob=None, factory=None, spec=s)
    if name == "thr":
        return _threshold(s, arg)
    d = Path(arg)
    if not d.is_dir():
        raise _not_a_router(s)
    from trim_pomdp import routers

    if name == "agg":
        proto = routers.AggRouter.load(d)
    elif name == "seq":
        proto = routers.SeqRouter.load(d)
    else:
        proto = routers.BeliefRouter.load(d)
    knob = getattr(proto, "lam", None)
    if knob is None:
        knob = _knob_from_dir(d)
    return RouterSpec("route", ROUTERS[name].name, knob, _prototype_factory(proto), s)

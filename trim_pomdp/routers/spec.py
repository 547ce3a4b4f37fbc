"""Router specifications for ``trim-pomdp run --router SPEC``.

=================  ==========================================================================================
``weak``           M_w alone (records policy ``weak``)
``strong``         M_s writes every step (records policy ``strong``; its tokens are C_s)
``thr:K``          TRIM-Thr: regenerate iff r_t < K (policy ``thr``, knob K)
``agg:DIR``        TRIM-Agg loaded from ``trim-pomdp train-agg`` output (policy ``agg``)
``DIR`` / ``pomdp:DIR``  BeliefRouter loaded from ``trim-pomdp solve`` output (policy ``pomdp``, knob λ)
=================  ==========================================================================================
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trim_pomdp.exceptions import InvalidParameterError
from trim_pomdp.routers.base import Router

__all__ = ["RouterSpec", "resolve_router"]


@dataclass
class RouterSpec:
    """A resolved router: the loop mode, the record labels and a factory of fresh router instances."""

    mode: str
    policy: str
    knob: Any
    factory: Callable[[], Router] | None
    spec: str


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


def resolve_router(spec: str) -> RouterSpec:
    """Parse a router specification (see the module docstring)."""
    s = spec.strip()
    if s in ("weak", "strong"):
        return RouterSpec(mode=s, policy=s, knob=None, factory=None, spec=s)
    if s.startswith("thr:"):
        try:
            k = float(s[4:])
        except ValueError as exc:
            raise InvalidParameterError(
                f"router {spec!r}: thr:K needs a number K in [0, 1], e.g. thr:0.5"
            ) from exc
        from trim_pomdp.routers import ThresholdRouter

        return RouterSpec("route", "thr", k, lambda: ThresholdRouter(k), s)
    kind, _, path = s.partition(":") if s.startswith(("agg:", "pomdp:", "seq:")) else ("pomdp", "", s)
    d = Path(path)
    if not d.is_dir():
        raise InvalidParameterError(
            f"router {spec!r}: not 'weak', 'strong', 'thr:K', 'agg:DIR' "
            "or a `trim-pomdp solve` output directory"
        )
    from trim_pomdp import routers

    if kind == "agg":
        proto = routers.AggRouter.load(d)
    elif kind == "seq":
        proto = routers.SeqRouter.load(d)
    else:
        proto = routers.BeliefRouter.load(d)
    knob = getattr(proto, "lam", None)
    if knob is None:
        knob = _knob_from_dir(d)
    return RouterSpec("route", kind, knob, _prototype_factory(proto), s)

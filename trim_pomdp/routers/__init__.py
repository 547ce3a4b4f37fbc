"""Step-level routers (BeliefRouter, TRIM-Thr, TRIM-Agg, TRIM-Seq) and query-level baselines.

All step routers implement :class:`~trim_pomdp.routers.base.Router` and
:class:`~trim_pomdp.routers.base.BatchRouter`. Names are imported on first use so that importing this package
stays light (gymnasium, torch and stable-baselines3 load only for training).
"""

from __future__ import annotations

import importlib
from typing import Any

from trim_pomdp.routers.base import ACTION_NAMES, BatchRouter, Router

# imported eagerly: the function shares its name with its module, and a lazy attribute would be shadowed by the
# submodule as soon as anything imported trim_pomdp.routers.rollout
from trim_pomdp.routers.rollout import RolloutResult, rollout

_LAZY: dict[str, str] = {
    "ThresholdRouter": "threshold",
    "BeliefRouter": "belief",
    "AggRouter": "rl.agg",
    "train_agg": "rl.agg",
    "SeqRouter": "rl.seq",
    "train_seq": "rl.seq",
    "RoutingEnv": "rl.env",
    "QueryOutcome": "query_level",
    "AutoMixRouter": "query_level",
    "OracleQueryRouter": "query_level",
    "RandomQueryRouter": "query_level",
    "query_level_result": "query_level",
    "cumulative_score": "query_level",
}

__all__ = ["ACTION_NAMES", "BatchRouter", "RolloutResult", "Router", "rollout", *sorted(_LAZY)]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))

"""trim-pomdp: step-level routing between a cheap and an expensive LLM in multi-step reasoning (TRIM).

The public API is re-exported lazily so that ``import trim_pomdp`` stays light: it never imports torch,
transformers, vllm, anthropic, juliacall or matplotlib (a test checks it).
"""

from __future__ import annotations

import importlib
from typing import Any

from trim_pomdp._version import __version__
from trim_pomdp.constants import ACTIONS, HIDDEN_CLASSES

#: public name -> module that defines it (imported on first attribute access); ``module:attribute`` when the
#: public name is another name of that attribute
_LAZY: dict[str, str] = {
    "AlphaVectorPolicy": "trim_pomdp.solvers.policy",
    "SolveInfo": "trim_pomdp.solvers.base",
    "Solver": "trim_pomdp.solvers.base",
    "TabularPOMDP": "trim_pomdp.solvers.tabular",
    "FiniteHorizonPOMDP": "trim_pomdp.solvers.finite_horizon",
    "FiniteHorizonSolver": "trim_pomdp.solvers.finite_horizon",
    "PointBasedSolver": "trim_pomdp.solvers.pointbased.solver",
    "SarsopSolver": "trim_pomdp.solvers.sarsop.solver",
    "read_pomdp": "trim_pomdp.solvers.formats",
    "write_pomdp": "trim_pomdp.solvers.formats",
    "ReflectedKDE": "trim_pomdp.observation_models.kde",
    "ObservationModel": "trim_pomdp.observation_models.observation",
    "load_shipped_observation_model": "trim_pomdp.observation_models.observation",
    "load_processbench": "trim_pomdp.datasets.processbench",
    "load_scored_items": "trim_pomdp.datasets.scored",
    "step_table": "trim_pomdp.datasets.scored",
    "SyntheticPRM": "trim_pomdp.prm.synthetic",
    "TrimParams": "trim_pomdp.pomdp",
    "TrimPOMDP": "trim_pomdp.pomdp",
    "TrimPolicy": "trim_pomdp.pomdp",
    "BeliefFilter": "trim_pomdp.pomdp",
    "ModelProcess": "trim_pomdp.pomdp",
    "build_trim_pomdp": "trim_pomdp.pomdp",
    "load_default_params": "trim_pomdp.pomdp",
    "estimate_params": "trim_pomdp.pomdp",
    "solve_trim": "trim_pomdp.pomdp",
    "monte_carlo": "trim_pomdp.routers:rollout",  # rollout's earlier name: the same function
    "BeliefRouter": "trim_pomdp.routers",
    "ThresholdRouter": "trim_pomdp.routers",
    "AggRouter": "trim_pomdp.routers",
    "SeqRouter": "trim_pomdp.routers",
    "AutoMixRouter": "trim_pomdp.routers",
    "OracleQueryRouter": "trim_pomdp.routers",
    "RandomQueryRouter": "trim_pomdp.routers",
    "train_agg": "trim_pomdp.routers",
    "rollout": "trim_pomdp.routers",
    "RolloutResult": "trim_pomdp.routers",
    "Simulator": "trim_pomdp.evaluation",
    "SimulatorParams": "trim_pomdp.evaluation",
    "summarize": "trim_pomdp.evaluation",
    "read_records": "trim_pomdp.evaluation",
    "write_records": "trim_pomdp.evaluation",
    "StepObservation": "trim_pomdp.types",
    "BatchObservation": "trim_pomdp.types",
}

__all__ = ["__version__", "ACTIONS", "HIDDEN_CLASSES", *sorted(_LAZY)]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        module, _, attr = _LAZY[name].partition(":")
        value = getattr(importlib.import_module(module), attr or name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'trim_pomdp' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))

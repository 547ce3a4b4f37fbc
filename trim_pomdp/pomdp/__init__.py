"""The TRIM-POMDP: parameters, builder, policies, belief filter, generative process, λ sweeps.

See the "The TRIM-POMDP" section of ``docs/design.md`` for the model.

Heavy pieces (matplotlib for region plots, the ProcessBench loader) are imported only when used.
"""

from trim_pomdp.pomdp.belief import BeliefFilter
from trim_pomdp.pomdp.defaults import (
    default_observation_model,
    load_default_params,
    load_observation_model,
    load_trim_pomdp,
)
from trim_pomdp.pomdp.params import TrimParams
from trim_pomdp.pomdp.policy import TrimPolicy, solve_trim
from trim_pomdp.pomdp.problem import TrimPOMDP, build_trim_pomdp
from trim_pomdp.pomdp.process import ModelObservation, ModelProcess
from trim_pomdp.pomdp.regions import (
    format_region_table,
    plot_regenerate_regions,
    regenerate_region,
    regenerate_region_table,
)

__all__ = [
    "BeliefFilter",
    "ModelObservation",
    "ModelProcess",
    "TrimPOMDP",
    "TrimParams",
    "TrimPolicy",
    "build_trim_pomdp",
    "default_observation_model",
    "estimate_difficulty",
    "estimate_params",
    "format_region_table",
    "load_default_params",
    "load_observation_model",
    "load_trim_pomdp",
    "plot_regenerate_regions",
    "regenerate_region",
    "regenerate_region_table",
    "solve_lambdas",
    "solve_trim",
    "with_difficulty",
]


def __getattr__(name: str):
    # estimation is also run as a script (python -m trim_pomdp.pomdp.estimation): importing it eagerly here
    # would make runpy warn that the module was already imported.
    if name == "estimate_params":
        from trim_pomdp.pomdp.estimation import estimate_params

        return estimate_params
    if name in ("estimate_difficulty", "with_difficulty"):
        from trim_pomdp.pomdp import difficulty

        return getattr(difficulty, name)
    if name == "solve_lambdas":
        from trim_pomdp.pomdp.sweep import solve_lambdas

        return solve_lambdas
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

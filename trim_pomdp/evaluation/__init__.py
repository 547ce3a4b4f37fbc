"""Evaluation: per-query records, the paper's metrics (PGR, CPT, ΔIBC), the offline simulator, knob sweeps,
Table-1-style tables and Figure-6-style cost–accuracy curves.

The simulator, sweep and evaluation modules load on first access: ``import trim_pomdp.evaluation`` is light.
"""

from __future__ import annotations

import importlib
from typing import Any

from trim_pomdp.evaluation.metrics import (
    CPT_LEVELS,
    PGR_LEVELS,
    Frontier,
    cpt,
    delta_ibc,
    delta_ibc_levels,
    frontier_cost_at,
    pareto_frontier,
    pgr,
    summarize,
)
from trim_pomdp.evaluation.records import (
    RECORD_COLUMNS,
    RESERVED_POLICIES,
    Records,
    RecordWriter,
    read_records,
    write_records,
)

__all__ = [
    "CPT_LEVELS",
    "PGR_LEVELS",
    "RECORD_COLUMNS",
    "RESERVED_POLICIES",
    "SIMULATED_NOTE",
    "Benchmark",
    "Frontier",
    "QueryBatch",
    "RecordWriter",
    "Records",
    "Simulator",
    "SimulatorParams",
    "SweepSettings",
    "comparison_lines",
    "cpt",
    "delta_ibc",
    "delta_ibc_levels",
    "estimate_simulator_params",
    "estimate_trim_params",
    "evaluate",
    "evaluate_simulated",
    "frontier_cost_at",
    "load_default_simulator_params",
    "markdown_table",
    "pareto_frontier",
    "pgr",
    "plot_curves",
    "read_records",
    "rich_table",
    "run_sweep",
    "simulator_params",
    "summarize",
    "train_and_evaluate_agg",
    "write_records",
    "write_reports",
]

_LAZY = {
    "Simulator": "simulator",
    "SimulatorParams": "simulator",
    "QueryBatch": "simulator",
    "load_default_simulator_params": "simulator",
    "plot_curves": "plots",
    "markdown_table": "tables",
    "rich_table": "tables",
    "comparison_lines": "tables",
    "SweepSettings": "sweep",
    "Benchmark": "sweep",
    "run_sweep": "sweep",
    "write_reports": "sweep",
    "estimate_trim_params": "sweep",
    "estimate_simulator_params": "simulator_estimation",
    "SIMULATED_NOTE": "simulator",
    "evaluate": "runner",
    "evaluate_simulated": "runner",
    "simulator_params": "runner",
    "train_and_evaluate_agg": "runner",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        module = importlib.import_module(f"{__name__}.{_LAZY[name]}")
        return getattr(module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

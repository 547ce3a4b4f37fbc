"""Data loading.

- :mod:`~trim_pomdp.datasets.processbench`: ProcessBench items and the hidden class of every step;
- :mod:`~trim_pomdp.datasets.scored`: items with PRM scores, their JSONL files and the flat step table;
- :mod:`~trim_pomdp.datasets.problems`: the math evaluation sets of ``trim-pomdp run``;
- :mod:`~trim_pomdp.datasets.answers`: extracting and checking final answers.
"""

from __future__ import annotations

from trim_pomdp.datasets.answers import check_answer, extract_boxed
from trim_pomdp.datasets.problems import DATASETS, Problem, load_dataset, load_problems_file
from trim_pomdp.datasets.processbench import SPLITS, ProcessBenchItem, load_processbench, step_classes
from trim_pomdp.datasets.scored import (
    ScoredItem,
    StepTable,
    load_scored_items,
    processbench_metrics,
    save_scored_items,
    step_table,
)

__all__ = [
    "DATASETS",
    "SPLITS",
    "Problem",
    "ProcessBenchItem",
    "ScoredItem",
    "StepTable",
    "check_answer",
    "extract_boxed",
    "load_dataset",
    "load_problems_file",
    "load_processbench",
    "load_scored_items",
    "processbench_metrics",
    "save_scored_items",
    "step_classes",
    "step_table",
]

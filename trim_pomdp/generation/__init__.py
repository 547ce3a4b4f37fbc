"""End-to-end TRIM with real models: stepwise generation backends, PRM batching, cache, the concurrent loop.

:func:`run_experiment` runs a whole :class:`RunConfig` (what ``trim-pomdp run`` does); :func:`run_loop` runs the
loop over generators, a PRM and a router built by the caller (e.g. with :func:`build_weak`,
:func:`build_strong` and :func:`build_prm`). Heavy SDKs (openai, anthropic, transformers, torch, vllm) are
imported only when a backend is used.
"""

from __future__ import annotations

from trim_pomdp.datasets.answers import check_answer, extract_boxed
from trim_pomdp.datasets.problems import Problem, load_dataset, load_problems_file
from trim_pomdp.generation.backends import (
    AnthropicStepGenerator,
    GenerationError,
    OpenAICompatibleGenerator,
    OpenAIStrongGenerator,
    RetryPolicy,
    TransformersStepGenerator,
    VLLMStepGenerator,
    build_prm,
    build_strong,
    build_weak,
)
from trim_pomdp.generation.base import StepGenerator, StepResult, StrongStepGenerator, solution_prefix
from trim_pomdp.generation.cache import Cache, CachedGenerator
from trim_pomdp.generation.experiment import RunConfig, run_experiment
from trim_pomdp.generation.loop import LoopConfig, RunSummary, run, run_loop, solve_problem
from trim_pomdp.generation.runs import merge_runs
from trim_pomdp.generation.scoring import BatchedPRM, StepScorer

__all__ = [
    "AnthropicStepGenerator",
    "BatchedPRM",
    "Cache",
    "CachedGenerator",
    "GenerationError",
    "LoopConfig",
    "OpenAICompatibleGenerator",
    "OpenAIStrongGenerator",
    "Problem",
    "RetryPolicy",
    "RunConfig",
    "RunSummary",
    "StepGenerator",
    "StepResult",
    "StepScorer",
    "StrongStepGenerator",
    "TransformersStepGenerator",
    "VLLMStepGenerator",
    "build_prm",
    "build_strong",
    "build_weak",
    "check_answer",
    "extract_boxed",
    "load_dataset",
    "load_problems_file",
    "merge_runs",
    "run",
    "run_experiment",
    "run_loop",
    "solution_prefix",
    "solve_problem",
]

"""End-to-end TRIM with real models: stepwise generation backends, PRM batching, cache, the concurrent loop.

Heavy SDKs (openai, anthropic, transformers, torch, vllm) are imported only when a backend is used.
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
)
from trim_pomdp.generation.base import StepGenerator, StepResult, StrongStepGenerator, solution_prefix
from trim_pomdp.generation.cache import Cache, CachedGenerator
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
    "RunSummary",
    "StepGenerator",
    "StepResult",
    "StepScorer",
    "StrongStepGenerator",
    "TransformersStepGenerator",
    "VLLMStepGenerator",
    "check_answer",
    "extract_boxed",
    "load_dataset",
    "load_problems_file",
    "merge_runs",
    "run",
    "run_loop",
    "solution_prefix",
    "solve_problem",
]

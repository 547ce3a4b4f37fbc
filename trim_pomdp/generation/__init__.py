"""End-to-end TRIM with real models: stepwise generation backends, PRM batching, cache, the concurrent loop.

Heavy SDKs (openai, anthropic, transformers, torch, vllm) are imported only when a backend is used.
"""

from __future__ import annotations

from .answers import check_answer, extract_boxed
from .backends import (
    AnthropicStepGenerator,
    GenerationError,
    OpenAICompatibleGenerator,
    OpenAIStrongGenerator,
    RetryPolicy,
    TransformersStepGenerator,
    VLLMStepGenerator,
)
from .base import StepGenerator, StepResult, StrongStepGenerator, solution_prefix
from .cache import Cache, CachedGenerator
from .datasets import Problem, load_dataset, load_problems_file
from .loop import LoopConfig, RunSummary, run, run_loop, solve_problem
from .records import merge_runs
from .scoring import BatchedPRM, PRMScorer

__all__ = [
    "AnthropicStepGenerator",
    "BatchedPRM",
    "Cache",
    "CachedGenerator",
    "GenerationError",
    "LoopConfig",
    "OpenAICompatibleGenerator",
    "OpenAIStrongGenerator",
    "PRMScorer",
    "Problem",
    "RetryPolicy",
    "RunSummary",
    "StepGenerator",
    "StepResult",
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
    "solve_problem",
    "solution_prefix",
]

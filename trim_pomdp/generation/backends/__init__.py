"""Model backends of the generation loop; each imports its SDK (openai, anthropic, vllm, ...) lazily.

:mod:`~trim_pomdp.generation.backends.factory` builds them from a specification (a server URL or a model id).
"""

from __future__ import annotations

from trim_pomdp.generation.backends._common import (
    GenerationError,
    MicroBatcher,
    RetryPolicy,
    user_turn_messages,
)
from trim_pomdp.generation.backends.factory import build_prm, build_strong, build_weak
from trim_pomdp.generation.backends.strong_anthropic import (
    AnthropicStepGenerator,
    MissingAPIKeyError,
    prefill_allowed,
)
from trim_pomdp.generation.backends.strong_openai import OpenAIStrongGenerator
from trim_pomdp.generation.backends.weak_openai import OpenAICompatibleGenerator
from trim_pomdp.generation.backends.weak_transformers import TransformersStepGenerator
from trim_pomdp.generation.backends.weak_vllm import VLLMStepGenerator

__all__ = [
    "AnthropicStepGenerator",
    "GenerationError",
    "MicroBatcher",
    "MissingAPIKeyError",
    "OpenAICompatibleGenerator",
    "OpenAIStrongGenerator",
    "RetryPolicy",
    "TransformersStepGenerator",
    "VLLMStepGenerator",
    "build_prm",
    "build_strong",
    "build_weak",
    "prefill_allowed",
    "user_turn_messages",
]

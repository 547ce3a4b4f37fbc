"""Model backends of the generation loop; each imports its SDK (openai, anthropic, vllm, ...) lazily."""

from __future__ import annotations

from trim_pomdp.generation.backends._common import (
    GenerationError,
    MicroBatcher,
    RetryPolicy,
    user_turn_messages,
)
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
    "prefill_allowed",
    "user_turn_messages",
]

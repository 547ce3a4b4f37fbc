"""Model backends of the generation loop; each imports its SDK (openai, anthropic, vllm, ...) lazily."""

from __future__ import annotations

from ._common import GenerationError, MicroBatcher, RetryPolicy, user_turn_messages
from .strong_anthropic import AnthropicStepGenerator, MissingAPIKeyError, prefill_allowed
from .strong_openai import OpenAIStrongGenerator
from .weak_openai import OpenAICompatibleGenerator
from .weak_transformers import TransformersStepGenerator
from .weak_vllm import VLLMStepGenerator

__all__ = [
    "GenerationError",
    "MicroBatcher",
    "RetryPolicy",
    "user_turn_messages",
    "AnthropicStepGenerator",
    "MissingAPIKeyError",
    "prefill_allowed",
    "OpenAIStrongGenerator",
    "OpenAICompatibleGenerator",
    "TransformersStepGenerator",
    "VLLMStepGenerator",
]

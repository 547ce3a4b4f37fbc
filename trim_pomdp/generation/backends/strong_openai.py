"""Strong model (M_s) through any OpenAI-compatible endpoint (OpenAI, a vLLM server with a big model, ...).

By default the partial solution is continued in the user turn (``mode="user"``: problem + accepted steps in
the user message, "write only the next step"), which every chat endpoint accepts; ``"\\n\\n"`` is a legal stop
sequence there, and the reply is also cut client-side at its first blank line. For a vLLM-served strong model,
``mode="completions"`` or ``"chat"`` continues the solution literally, exactly like the weak backend. Cost =
``usage.completion_tokens`` of the call.
"""

from __future__ import annotations

from typing import Any

from trim_pomdp.generation.backends._common import DEFAULT_SYSTEM_PROMPT
from trim_pomdp.generation.backends.weak_openai import OpenAICompatibleGenerator

__all__ = ["OpenAIStrongGenerator"]


class OpenAIStrongGenerator(OpenAICompatibleGenerator):
    """:class:`OpenAICompatibleGenerator` with user-turn continuation by default (see module docstring)."""

    def __init__(
        self,
        model: str,
        *,
        mode: str = "user",
        system_prompt: str | None = DEFAULT_SYSTEM_PROMPT,
        max_tokens_per_step: int = 1024,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            model, mode=mode, system_prompt=system_prompt, max_tokens_per_step=max_tokens_per_step, **kwargs
        )

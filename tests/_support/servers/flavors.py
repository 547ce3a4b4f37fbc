"""How the OpenAI-compatible servers differ where the generation loop cares: one :class:`Flavor` per server family.

Each flavor carries the documented behaviour of its server (the sources are named on each constant):

* how a completion that stopped is reported: vLLM's ``stop_reason`` (the matched stop string, ``null`` for
  EOS), SGLang's ``matched_stop`` (the stop string, or the EOS token id), TGI's ``finish_reason``
  (``"stop_sequence"`` for a stop string, ``"stop"`` for EOS), or nothing (llama.cpp's and llama-cpp-python's
  ``/v1/completions``: ``"stop"`` either way);
* whether the matched stop string stays in ``text`` (``transformers serve`` keeps it; the others drop it), and
  whether the text then runs on to the end of the token the match ended in (``transformers serve`` checks stop
  strings on decoded tokens: asked to stop at ``"o "``, SmolLM2 answered ``"To solve"``);
* whether a final assistant message is continued (vLLM's and SGLang's ``continue_final_message``) or a new
  assistant turn is opened (llama.cpp), or the field is refused (``transformers serve``: HTTP 422 on any field
  outside its schema);
* whether ``usage.completion_tokens`` counts the EOS token (``transformers serve`` does: it counts every
  generated id);
* the error a request too long for the context gets.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = ["EOS_TOKEN_ID", "FLAVORS", "Flavor"]

#: the EOS token id SGLang reports in ``matched_stop`` (Qwen2.5's ``<|im_end|>``)
EOS_TOKEN_ID = 151645

# OpenAI's completion/chat request fields plus those transformers serve adds (cli/serving/completion.py,
# chat_completion.py: TransformersTextCompletionCreateParams, TransformersCompletionCreateParamsStreaming)
_OPENAI_FIELDS = frozenset(
    {
        "model", "prompt", "messages", "max_tokens", "max_completion_tokens", "temperature", "top_p", "stop",
        "stream", "stream_options", "seed", "n", "logprobs", "echo", "suffix", "user", "frequency_penalty",
        "presence_penalty", "best_of", "logit_bias", "generation_config", "chat_template_kwargs", "tools",
    }
)  # fmt: skip


def _vllm_context_error(limit: int, prompt: int, max_tokens: int) -> tuple[int, dict[str, Any]]:
    # vllm/entrypoints/openai/serving_engine.py (_validate_input)
    return 400, {
        "object": "error",
        "message": (
            f"This model's maximum context length is {limit} tokens. However, you requested "
            f"{prompt + max_tokens} tokens ({prompt} in the messages, {max_tokens} in the completion). "
            "Please reduce the length of the messages or completion."
        ),
        "type": "BadRequestError",
        "param": None,
        "code": 400,
    }


def _llamacpp_context_error(limit: int, prompt: int, max_tokens: int) -> tuple[int, dict[str, Any]]:
    # llama.cpp tools/server: ERROR_TYPE_EXCEED_CONTEXT_SIZE with n_prompt_tokens and n_ctx
    return 400, {
        "error": {
            "code": 400,
            "message": "the request exceeds the available context size, try increasing it",
            "type": "exceed_context_size_error",
            "n_prompt_tokens": prompt,
            "n_ctx": limit,
        }
    }


@dataclass(frozen=True)
class Flavor:
    """The wire behaviour of one server family (see the module docstring)."""

    name: str
    stop_field: str | None = None
    keeps_stop_string: bool = False
    stop_ends_token: bool = False
    stop_finish_reason: str = "stop"
    continues_assistant: bool = True
    accepted_fields: frozenset[str] | None = None
    usage_counts_eos: bool = False
    context_error: Callable[[int, int, int], tuple[int, dict[str, Any]]] = _vllm_context_error

    def choice_fields(self, matched: str | None, eos: bool) -> dict[str, Any]:
        """The extra fields of a choice that stopped at ``matched`` (a stop string) or at EOS."""
        if self.stop_field == "stop_reason":
            return {"stop_reason": matched}
        if self.stop_field == "matched_stop":
            return {"matched_stop": matched if matched is not None else (EOS_TOKEN_ID if eos else None)}
        return {}

    def unexpected(self, body: dict[str, Any]) -> set[str]:
        """Request fields this server refuses (transformers serve answers HTTP 422)."""
        return set() if self.accepted_fields is None else set(body) - self.accepted_fields


FLAVORS: dict[str, Flavor] = {
    # vLLM: CompletionResponseChoice.stop_reason; min_tokens, include_stop_str_in_output,
    # continue_final_message / add_generation_prompt
    "vllm": Flavor("vllm", stop_field="stop_reason"),
    # SGLang: CompletionResponseChoice.matched_stop: Union[None, int, str]; continue_final_message
    "sglang": Flavor("sglang", stop_field="matched_stop"),
    # TGI's OpenAI routes: FinishReason::format(true): "length" | "stop" (EOS) | "stop_sequence"
    "tgi": Flavor("tgi", stop_finish_reason="stop_sequence", continues_assistant=False),
    # llama.cpp's server and llama-cpp-python's llama_cpp.server: finish_reason "stop" for EOS and stop strings,
    # the stop string removed, continue_final_message ignored (a new assistant turn is opened)
    "llamacpp": Flavor("llamacpp", continues_assistant=False, context_error=_llamacpp_context_error),
    # transformers serve (transformers 5): the stop string kept in text, usage counts the EOS token, HTTP 422
    # on fields outside its schema
    "transformers": Flavor(
        "transformers",
        keeps_stop_string=True,
        stop_ends_token=True,
        continues_assistant=False,
        accepted_fields=_OPENAI_FIELDS,
        usage_counts_eos=True,
    ),
}

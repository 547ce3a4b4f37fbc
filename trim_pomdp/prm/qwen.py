"""The Qwen2.5-Math-PRM input format and step-score extraction.

Format (model card of ``Qwen/Qwen2.5-Math-PRM-7B``): a chat with

- system: ``"Please reason step by step, and put your final answer within \\boxed{}."``,
- user: the problem,
- assistant: the steps joined with ``<extra_0>`` and ending with ``<extra_0>``,

rendered by the tokenizer's chat template without a generation prompt (or, without a tokenizer, written in the
Qwen2.5 ChatML format that template produces). The model emits two logits per token
(negative, positive); the score of step ``k`` is the softmax probability of the positive class at the ``k``-th
``<extra_0>`` token, i.e. P(step correct) in [0, 1].

This module needs only numpy; the tokenizer is any object with ``apply_chat_template`` (transformers tokenizers).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from trim_pomdp.exceptions import DataFormatError, InvalidParameterError

__all__ = [
    "POSITIVE_LABEL",
    "STEP_SEPARATOR",
    "SYSTEM_PROMPT",
    "build_messages",
    "format_prm_input",
    "render_chatml",
    "softmax",
    "step_scores_from_logits",
    "step_scores_from_probs",
]

#: Token placed after every step; the PRM's score is read at each occurrence.
STEP_SEPARATOR = "<extra_0>"

#: System prompt of the Qwen2.5-Math-PRM recipe.
SYSTEM_PROMPT = "Please reason step by step, and put your final answer within \\boxed{}."

#: Index of the positive ("step is correct") class in the PRM's two labels.
POSITIVE_LABEL = 1


def _check_steps(steps: Sequence[str], separator: str) -> list[str]:
    if isinstance(steps, str):
        raise InvalidParameterError("steps must be a list of step strings, not one string")
    steps = list(steps)
    if not steps:
        raise InvalidParameterError("steps is empty: a PRM scores at least one step")
    for k, s in enumerate(steps):
        if not isinstance(s, str):
            raise InvalidParameterError(f"step {k} is {type(s).__name__}, expected str")
        if separator in s:
            raise InvalidParameterError(
                f"step {k} contains the step separator {separator!r}; remove it so scores align with steps"
            )
    return steps


def build_messages(
    problem: str, steps: Sequence[str], system: str | None = SYSTEM_PROMPT, separator: str = STEP_SEPARATOR
) -> list[dict[str, str]]:
    """Chat messages of the Qwen2.5-Math-PRM recipe (system, user = problem, assistant = separated steps).

    Parameters
    ----------
    problem : str
    steps : sequence of str
        The solution's steps (without separators).
    system : str or None
        System prompt; ``None`` leaves it out.
    separator : str
        Step separator token.
    """
    steps = _check_steps(steps, separator)
    messages = [] if system is None else [{"role": "system", "content": system}]
    messages.append({"role": "user", "content": problem})
    messages.append({"role": "assistant", "content": separator.join(steps) + separator})
    return messages


def render_chatml(messages: Sequence[Mapping[str, str]]) -> str:
    """Messages in the Qwen2.5 ChatML format, as Qwen2.5-Math-PRM's chat template renders them."""
    return "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in messages)


def format_prm_input(
    problem: str,
    steps: Sequence[str],
    tokenizer: Any = None,
    *,
    system: str | None = SYSTEM_PROMPT,
    separator: str = STEP_SEPARATOR,
) -> str:
    """The PRM's input text: :func:`build_messages` rendered by the tokenizer's chat template.

    Parameters
    ----------
    problem : str
    steps : sequence of str
    tokenizer : optional
        A tokenizer with ``apply_chat_template`` and a chat template (Qwen2.5-Math-PRM's own). Without one, the
        messages are written in the Qwen2.5 ChatML format directly (:func:`render_chatml`, identical to what
        Qwen2.5-Math-PRM's template renders), e.g. for a PRM behind a server.
    system, separator
        See :func:`build_messages`.

    Returns
    -------
    str
        The rendered conversation (no generation prompt); it contains ``separator`` exactly ``len(steps)``
        times.
    """
    steps = _check_steps(steps, separator)
    messages = build_messages(problem, steps, system=system, separator=separator)
    if tokenizer is None:
        text = render_chatml(messages)
    elif getattr(tokenizer, "chat_template", None) is None:
        raise InvalidParameterError(
            f"tokenizer {type(tokenizer).__name__} has no chat template; load the PRM's own tokenizer "
            "(e.g. AutoTokenizer.from_pretrained('Qwen/Qwen2.5-Math-PRM-7B')) or set tokenizer.chat_template"
        )
    else:
        text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=False)
    n = text.count(separator)
    if n != len(steps):
        raise InvalidParameterError(
            f"the chat template changed the number of {separator!r} separators ({n} for {len(steps)} steps); "
            "the problem or system prompt must not contain the separator"
        )
    return text


def softmax(logits: np.ndarray, axis: int = -1) -> np.ndarray:
    """Numerically stable softmax (float64)."""
    x = np.asarray(logits, dtype=np.float64)
    x = x - np.max(x, axis=axis, keepdims=True)
    e = np.exp(x)
    return e / e.sum(axis=axis, keepdims=True)


def step_scores_from_probs(probs, positive_label: int = POSITIVE_LABEL, atol: float = 1e-2) -> list[float]:
    """Step scores from per-step class probabilities, e.g. vLLM's ``[P(neg), P(pos)]`` pairs.

    Parameters
    ----------
    probs : array-like, shape (n_steps, n_labels)
        Class probabilities at each separator (rows sum to 1 within ``atol``; half precision output is allowed).
    positive_label : int
        Column of the positive class.

    Returns
    -------
    list of float
        P(positive) per step, clipped to [0, 1].
    """
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] < 2:
        raise DataFormatError(
            f"expected per-step class probabilities of shape (n_steps, n_labels>=2), got {p.shape}"
        )
    if not np.all(np.isfinite(p)) or np.any(p < 0) or np.any(np.abs(p.sum(axis=1) - 1.0) > atol):
        raise DataFormatError("per-step class probabilities must be finite, >= 0 and sum to 1 per step")
    return np.clip(p[:, positive_label], 0.0, 1.0).tolist()


def step_scores_from_logits(
    logits,
    input_ids,
    separator_id: int,
    *,
    attention_mask=None,
    n_steps: int | None = None,
    positive_label: int = POSITIVE_LABEL,
) -> list[float]:
    """Step scores of one sequence from token logits: softmax P(positive) at every separator token.

    Parameters
    ----------
    logits : array-like, shape (seq_len, n_labels)
        Per-token logits of the PRM head.
    input_ids : array-like of int, shape (seq_len,)
    separator_id : int
        Token id of :data:`STEP_SEPARATOR`.
    attention_mask : array-like, shape (seq_len,), optional
        Padding positions (0) are ignored.
    n_steps : int, optional
        Expected number of steps; a different number of separators raises :class:`DataFormatError`.
    positive_label : int

    Returns
    -------
    list of float
        One score per separator, in order.
    """
    logits = np.asarray(logits)
    ids = np.asarray(input_ids)
    if logits.ndim != 2 or logits.shape[0] != ids.shape[0]:
        raise DataFormatError(f"logits of shape {logits.shape} do not match input_ids of shape {ids.shape}")
    if logits.shape[1] < 2:
        raise DataFormatError(f"the PRM head must have at least 2 labels, got logits with {logits.shape[1]}")
    mask = ids == separator_id
    if attention_mask is not None:
        mask &= np.asarray(attention_mask).astype(bool)
    positions = np.flatnonzero(mask)
    if n_steps is not None and positions.size != n_steps:
        raise DataFormatError(
            f"found {positions.size} step separators in the tokenized input for {n_steps} steps "
            "(was the input truncated, or does the tokenizer split the separator?)"
        )
    return step_scores_from_probs(softmax(logits[positions]), positive_label) if positions.size else []

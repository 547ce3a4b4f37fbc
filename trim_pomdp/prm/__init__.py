"""Process reward models (PRMs): the Qwen2.5-Math-PRM input format and scoring backends.

- :class:`~trim_pomdp.prm.base.PRMBackend` — the protocol of every backend (``score``, ``score_batch``).
- :mod:`trim_pomdp.prm.qwen` — the prompt format (steps separated by ``<extra_0>`` inside the chat template) and
  the extraction of step scores (softmax positive-class probability at each separator). No heavy imports.
- :mod:`trim_pomdp.prm.transformers_backend` — :class:`~trim_pomdp.prm.transformers_backend.TransformersPRM`,
  batched scoring with a transformers model (``pip install 'trim-pomdp[hf]'``); torch/transformers load on first use.
"""

from __future__ import annotations

from trim_pomdp.prm.base import PRMBackend
from trim_pomdp.prm.qwen import (
    STEP_SEPARATOR,
    SYSTEM_PROMPT,
    format_prm_input,
    step_scores_from_logits,
    step_scores_from_probs,
)

__all__ = [
    "STEP_SEPARATOR",
    "SYSTEM_PROMPT",
    "PRMBackend",
    "TransformersPRM",
    "format_prm_input",
    "step_scores_from_logits",
    "step_scores_from_probs",
]


def __getattr__(name: str):
    if name == "TransformersPRM":
        from trim_pomdp.prm.transformers_backend import TransformersPRM

        return TransformersPRM
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

"""Process reward models (PRMs): the Qwen2.5-Math-PRM input format, scoring backends and a simulated PRM.

- :class:`~trim_pomdp.prm.base.PRMBackend` — the protocol of every backend (``score``, ``score_batch``).
- :mod:`trim_pomdp.prm.qwen` — the prompt format (steps separated by ``<extra_0>`` inside the chat template)
  and the extraction of step scores (softmax positive-class probability at each separator). No heavy imports.
- :mod:`trim_pomdp.prm.transformers_backend` — :class:`~trim_pomdp.prm.transformers_backend.TransformersPRM`,
  batched scoring with a transformers model (``pip install 'trim-pomdp[hf]'``); torch and transformers load on
  first use.
- :mod:`trim_pomdp.prm.vllm_backend` — :class:`~trim_pomdp.prm.vllm_backend.VLLMPoolingPRM`, scoring through a
  vLLM pooling server.
- :mod:`trim_pomdp.prm.synthetic` — :class:`~trim_pomdp.prm.synthetic.SyntheticPRM`, **simulated** scores
  calibrated to Qwen2.5-Math-PRM-7B's published ProcessBench accuracies, for when no real PRM can run.
- :mod:`trim_pomdp.prm.scoring` — scoring ProcessBench resumably into a scored-items file, and the scored steps
  an observation model is fitted on.
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

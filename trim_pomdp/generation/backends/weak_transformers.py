"""Weak model from a local transformers causal LM (small models, CPU or one GPU; no server).

The prompt is the tokenizer's chat template (system + user, generation prompt) followed by the partial
solution text, re-encoded each step; generation stops at ``"\\n\\n"`` (a stopping criterion on the decoded
tail), at EOS or at the step's token cap. Concurrent requests from the loop are grouped by a
:class:`~._common.MicroBatcher` and generated one after another in a worker thread (greedy decoding of a small
model; batching with padding would change greedy outputs on some models, so it is not done).
"""

from __future__ import annotations

import threading
import time
from typing import Any

from trim_pomdp._internal.optional import require
from trim_pomdp.exceptions import InvalidParameterError
from trim_pomdp.generation.backends._common import (
    DEFAULT_SYSTEM_PROMPT,
    LocalStepGenerator,
    MicroBatcher,
    prompt_head,
)
from trim_pomdp.generation.base import (
    STEP_SEPARATOR,
    StepResult,
    ends_solution,
    settle_finish,
    solution_prefix,
    split_first_step,
)

__all__ = ["TransformersStepGenerator"]

_FEATURE = "the transformers step generator"


class TransformersStepGenerator(LocalStepGenerator):
    """Step generator backed by ``model.generate``.

    Parameters
    ----------
    model : transformers causal LM or str
        A loaded model or a hub id / path (loaded with ``AutoModelForCausalLM``).
    tokenizer : optional
        Required with a loaded model.
    model_name : str, optional
        Name used in cache keys and records (default ``model.name_or_path``).
    system_prompt : str or None
    prompt_template : str, optional
        ``"...{problem}..."`` used instead of the chat template (for tokenizers without one).
    temperature : float
        0 = greedy.
    max_tokens_per_step : int
    seed : int, optional
        Sampling seed (``temperature > 0``).
    device : str, optional
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any = None,
        *,
        model_name: str | None = None,
        system_prompt: str | None = DEFAULT_SYSTEM_PROMPT,
        prompt_template: str | None = None,
        temperature: float = 0.0,
        max_tokens_per_step: int = 256,
        seed: int | None = None,
        device: str | None = None,
    ) -> None:
        transformers = require("transformers", "hf", _FEATURE)
        if isinstance(model, str):
            tokenizer = tokenizer or transformers.AutoTokenizer.from_pretrained(model)
            model = transformers.AutoModelForCausalLM.from_pretrained(model)
        if tokenizer is None:
            raise InvalidParameterError("tokenizer is required when model is a loaded module")
        if prompt_template is None and getattr(tokenizer, "chat_template", None) is None:
            raise InvalidParameterError(
                "the tokenizer has no chat template: pass prompt_template='...{problem}...'"
            )
        if device is not None:
            model.to(device)
        self.hf_model = model.eval()
        self.tokenizer = tokenizer
        self.model = model_name or str(getattr(model, "name_or_path", "") or type(model).__name__)
        self.system_prompt = system_prompt
        self.prompt_template = prompt_template
        self.temperature = temperature
        self.max_tokens_per_step = max_tokens_per_step
        self.seed = seed
        self._lock = threading.Lock()
        self._batcher = MicroBatcher(self._generate_many, max_batch=8, max_wait_s=0.0)

    def cache_params(self) -> dict[str, Any]:
        return {
            "backend": "transformers",
            "system": self.system_prompt,
            "template": self.prompt_template,
            "temperature": self.temperature,
            "max_tokens": self.max_tokens_per_step,
            "seed": self.seed,
        }

    def build_prompt(self, problem: str, steps: list[str]) -> str:
        head = prompt_head(
            problem, self.system_prompt, template=self.prompt_template, tokenizer=self.tokenizer
        )
        return head + solution_prefix(steps)

    def _generate_one(self, prompt: str, cap: int) -> StepResult:
        torch = require("torch", "hf", _FEATURE)
        t0 = time.perf_counter()
        enc = self.tokenizer(prompt, return_tensors="pt", add_special_tokens=False)
        device = next(self.hf_model.parameters()).device
        input_ids = enc["input_ids"].to(device)
        eos = self.tokenizer.eos_token_id
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else eos
        transformers = require("transformers", "hf", _FEATURE)
        start = input_ids.shape[1]
        tokenizer = self.tokenizer
        stopping_criteria: Any = transformers.StoppingCriteria  # a base class known only at run time

        class _StopAtBlankLine(stopping_criteria):
            # decodes the tail of the new tokens: works with any tokenizer (``stop_strings`` needs the
            # separator to be representable in the vocabulary's token pieces)
            def __call__(self, ids, scores, **kwargs):
                tail = tokenizer.decode(ids[0, max(start, ids.shape[1] - 8) :], skip_special_tokens=True)
                return STEP_SEPARATOR in tail

        kw: dict[str, Any] = {
            "max_new_tokens": cap,
            "pad_token_id": pad,
            "eos_token_id": eos,
            "stopping_criteria": transformers.StoppingCriteriaList([_StopAtBlankLine()]),
        }
        if self.temperature > 0:
            kw.update(do_sample=True, temperature=self.temperature)
            if self.seed is not None:
                torch.manual_seed(self.seed)
        else:
            kw.update(do_sample=False)
        with torch.inference_mode():
            out = self.hf_model.generate(input_ids, attention_mask=torch.ones_like(input_ids), **kw)
        new = out[0, input_ids.shape[1] :].tolist()
        ended_eos = bool(new) and eos is not None and new[-1] == eos
        raw = self.tokenizer.decode(new, skip_special_tokens=True)
        text, went_on = split_first_step(raw)
        if went_on or raw.endswith(STEP_SEPARATOR):
            finish = "step"
        elif ended_eos:
            finish = "eos"
        elif len(new) >= cap:
            finish = "length"
        else:
            finish = "step"
        finish = settle_finish(text, finish)
        return StepResult(
            text=text,
            tokens=len(new),
            finish=finish,
            final=ends_solution(text, finish),
            model=self.model,
            latency_s=time.perf_counter() - t0,
        )

    def _generate_many(self, items: list[tuple[str, int]]) -> list[StepResult]:
        with self._lock:
            return [self._generate_one(p, c) for p, c in items]

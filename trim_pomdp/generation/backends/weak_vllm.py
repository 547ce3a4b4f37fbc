"""Weak model in-process with ``vllm.LLM`` (one GPU machine, no server).

Concurrent step requests of the loop are gathered by a :class:`~._common.MicroBatcher` into one
``llm.generate(prompts, SamplingParams(stop=["\\n\\n"]))`` call, so vLLM batches all in-flight problems;
enable prefix caching (``enable_prefix_caching=True``, the default on V1 engines) so the growing prefix is
nearly free. End of solution: ``finish_reason == "stop"`` with ``stop_reason is None`` is EOS; ``"length"`` is
the step cap. vLLM is imported only when the generator is built (``pip install 'trim-pomdp[vllm]'``).
"""

from __future__ import annotations

import time
from typing import Any

from trim_pomdp._internal.optional import require
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

__all__ = ["VLLMStepGenerator"]


class VLLMStepGenerator(LocalStepGenerator):
    """Step generator on an in-process ``vllm.LLM``.

    Parameters
    ----------
    model : str
        Model id or path (ignored when ``llm`` is given, except as the name in records).
    llm : vllm.LLM, optional
        An existing engine; otherwise one is built with ``llm_kwargs`` (default
        ``enable_prefix_caching=True``).
    system_prompt : str or None
    prompt_template : str, optional
        ``"...{problem}..."``; default: the model's chat template via ``llm.get_tokenizer()``.
    temperature, top_p, seed : sampling parameters.
    max_tokens_per_step : int
    max_batch : int
        Largest ``generate`` batch.
    """

    def __init__(
        self,
        model: str,
        *,
        llm: Any = None,
        system_prompt: str | None = DEFAULT_SYSTEM_PROMPT,
        prompt_template: str | None = None,
        temperature: float = 0.0,
        top_p: float = 1.0,
        seed: int | None = None,
        max_tokens_per_step: int = 512,
        max_batch: int = 256,
        llm_kwargs: dict[str, Any] | None = None,
    ) -> None:
        if llm is None:
            vllm = require("vllm", "vllm", "the in-process vLLM generator")
            llm = vllm.LLM(model=model, **{"enable_prefix_caching": True, **(llm_kwargs or {})})
        self.llm = llm
        self.model = model
        self.system_prompt = system_prompt
        self.prompt_template = prompt_template
        self.temperature = temperature
        self.top_p = top_p
        self.seed = seed
        self.max_tokens_per_step = max_tokens_per_step
        self._batcher = MicroBatcher(self._generate_many, max_batch=max_batch, max_wait_s=0.005)
        self._head_cache: dict[str, str] = {}

    def cache_params(self) -> dict[str, Any]:
        return {
            "backend": "vllm",
            "system": self.system_prompt,
            "template": self.prompt_template,
            "temperature": self.temperature,
            "top_p": self.top_p,
            "seed": self.seed,
            "max_tokens": self.max_tokens_per_step,
        }

    def build_prompt(self, problem: str, steps: list[str]) -> str:
        head = self._head_cache.get(problem)
        if head is None:
            tokenizer = self.llm.get_tokenizer() if self.prompt_template is None else None
            head = prompt_head(
                problem, self.system_prompt, template=self.prompt_template, tokenizer=tokenizer
            )
            self._head_cache[problem] = head
        return head + solution_prefix(steps)

    def _sampling_params(self, cap: int) -> Any:
        vllm = require("vllm", "vllm", "the in-process vLLM generator")
        return vllm.SamplingParams(
            temperature=self.temperature,
            top_p=self.top_p,
            seed=self.seed,
            max_tokens=cap,
            stop=[STEP_SEPARATOR],
        )

    def _generate_many(self, items: list[tuple[str, int]]) -> list[StepResult]:
        t0 = time.perf_counter()
        prompts = [p for p, _ in items]
        params = [self._sampling_params(c) for _, c in items]
        outputs = self.llm.generate(prompts, params, use_tqdm=False)
        latency = time.perf_counter() - t0
        results = []
        for out in outputs:
            o = out.outputs[0]
            text, went_on = split_first_step(o.text)
            if o.finish_reason == "length":
                finish = "length"
            elif went_on or o.stop_reason == STEP_SEPARATOR:
                finish = "step"
            elif o.finish_reason == "stop" and (o.stop_reason is None or isinstance(o.stop_reason, int)):
                finish = "eos"
            else:
                finish = "step"
            finish = settle_finish(text, finish)
            results.append(
                StepResult(
                    text=text,
                    tokens=len(o.token_ids),
                    finish=finish,
                    final=ends_solution(text, finish),
                    model=self.model,
                    latency_s=latency,
                    extra={"finish_reason": o.finish_reason, "stop_reason": o.stop_reason},
                )
            )
        return results

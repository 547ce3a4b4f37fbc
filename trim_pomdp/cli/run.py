"""``trim-pomdp run``: TRIM end to end with real models."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import click

from trim_pomdp.exceptions import TrimPomdpError

__all__ = ["build_prm", "build_strong", "build_weak", "command"]


def _is_url(s: str) -> bool:
    return s.startswith(("http://", "https://"))


def build_weak(
    spec: str,
    *,
    model_name: str | None,
    mode: str,
    temperature: float,
    max_tokens_per_step: int,
    timeout: float,
    max_retries: int,
    template: str = "qwen",
) -> Any:
    """``http(s)://...`` → OpenAI-compatible server (vLLM); a model id → in-process vLLM if installed, else
    transformers.

    ``template`` (completions mode): ``qwen`` (Qwen2.5-Math chat format), ``auto`` (the served model's own
    chat template, through its tokenizer from the hub or a local folder) or a file holding a template with a
    ``{problem}`` field."""
    from trim_pomdp.generation.backends import OpenAICompatibleGenerator, RetryPolicy

    retry = RetryPolicy(max_retries=max_retries, timeout=timeout)
    if _is_url(spec):
        url = spec.rstrip("/")
        if not url.endswith("/v1"):
            url += "/v1"
        name = model_name or _first_served_model(url, timeout)
        kw: dict[str, Any] = {}
        if template == "auto":
            from trim_pomdp._internal.optional import require

            transformers = require("transformers", "hf", "--weak-template auto")
            kw["tokenizer"] = transformers.AutoTokenizer.from_pretrained(name)
        elif template != "qwen":
            path = Path(template)
            if not path.is_file():
                raise click.BadParameter(
                    f"{template!r} is not 'qwen', 'auto' or a file", param_hint="--weak-template"
                )
            kw["prompt_template"] = path.read_text()
        return OpenAICompatibleGenerator(
            name,
            base_url=url,
            mode=mode,
            **kw,
            temperature=temperature,
            max_tokens_per_step=max_tokens_per_step,
            retry=retry,
        )
    try:
        import vllm  # noqa: F401

        from trim_pomdp.generation.backends import VLLMStepGenerator

        return VLLMStepGenerator(spec, temperature=temperature, max_tokens_per_step=max_tokens_per_step)
    except ImportError:
        from trim_pomdp.generation.backends import TransformersStepGenerator

        return TransformersStepGenerator(
            spec, temperature=temperature, max_tokens_per_step=max_tokens_per_step
        )


def _first_served_model(url: str, timeout: float) -> str:
    from trim_pomdp._internal.optional import require

    openai = require("openai", "openai", "the OpenAI-compatible weak backend")
    try:
        client = openai.OpenAI(
            base_url=url, api_key=os.environ.get("OPENAI_API_KEY") or "EMPTY", timeout=timeout, max_retries=2
        )
        models = client.models.list().data
    except Exception as exc:
        raise click.ClickException(
            f"could not list the models served at {url} ({type(exc).__name__}); pass --weak-model NAME"
        ) from exc
    if not models:
        raise click.ClickException(f"{url} serves no model; pass --weak-model NAME")
    return models[0].id


def build_strong(
    model: str,
    *,
    url: str | None,
    step_mode: str,
    continuation: str,
    temperature: float | None,
    max_tokens_per_step: int,
    timeout: float,
    max_retries: int,
    prompt_cache: bool = False,
) -> Any:
    """``--strong-url`` given → OpenAI-compatible endpoint; otherwise Claude through the Anthropic API."""
    from trim_pomdp.generation.backends import AnthropicStepGenerator, OpenAIStrongGenerator, RetryPolicy

    retry = RetryPolicy(max_retries=max_retries, timeout=timeout)
    if url:
        u = url.rstrip("/")
        return OpenAIStrongGenerator(
            model,
            base_url=u if u.endswith("/v1") else u + "/v1",
            temperature=temperature or 0.0,
            max_tokens_per_step=max_tokens_per_step,
            retry=retry,
        )
    if not (os.environ.get("ANTHROPIC_API_KEY")):
        raise click.ClickException(
            "the strong model is Claude but ANTHROPIC_API_KEY is not set: export ANTHROPIC_API_KEY=... "
            "(or use --strong-url URL for an OpenAI-compatible strong model)"
        )
    return AnthropicStepGenerator(
        model,
        continuation=continuation,
        step_mode=step_mode,
        temperature=temperature,
        max_tokens_per_step=max_tokens_per_step,
        retry=retry,
        base_url=os.environ.get("ANTHROPIC_BASE_URL"),
        prompt_cache=prompt_cache,
    )


def build_prm(spec: str, *, model_name: str | None, batch_size: int, device: str | None) -> tuple[Any, str]:
    """``http(s)://...`` → vLLM pooling server; otherwise a transformers PRM loaded by name."""
    if _is_url(spec):
        from trim_pomdp.prm.vllm_backend import VLLMPoolingPRM

        name = model_name or "Qwen/Qwen2.5-Math-PRM-7B"
        return VLLMPoolingPRM(spec, name), name
    from trim_pomdp.prm.transformers_backend import TransformersPRM

    return TransformersPRM.from_pretrained(spec, batch_size=batch_size, device=device), spec


@click.command("run")
@click.option(
    "--dataset", required=True, help="math500 | aime | aime24 | gsm8k | minerva | olympiadbench | FILE."
)
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False),
    default=None,
    help="Folder with local copies of the evaluation sets (default: the Hugging Face hub).",
)
@click.option(
    "--weak", "weak_spec", default=None, help="URL of an OpenAI-compatible (vLLM) server, or a model id."
)
@click.option(
    "--weak-model", default=None, help="Model name on the weak server (default: the first it serves)."
)
@click.option(
    "--weak-mode",
    type=click.Choice(["completions", "chat"]),
    default="completions",
    show_default=True,
    help="Literal continuation via /v1/completions (prompt in Qwen chat format) or chat continuation.",
)
@click.option(
    "--weak-template",
    default="qwen",
    show_default=True,
    help="Completions-mode prompt format: qwen (Qwen2.5-Math chat format), auto (the weak model's own chat "
    "template via its tokenizer), or a FILE with a {problem} (and optional {system}) field.",
)
@click.option(
    "--strong", "strong_model", default="claude-sonnet-4-6", show_default=True, help="Strong model id."
)
@click.option(
    "--strong-url", default=None, help="OpenAI-compatible endpoint for the strong model (else Anthropic)."
)
@click.option("--claude-step-mode", type=click.Choice(["marker", "cut"]), default="marker", show_default=True)
@click.option(
    "--claude-continuation", type=click.Choice(["user", "prefill"]), default="user", show_default=True
)
@click.option(
    "--claude-prompt-cache/--no-claude-prompt-cache",
    default=False,
    show_default=True,
    help="Ask Anthropic to cache the growing prompt of each problem (cheaper input tokens on later steps).",
)
@click.option(
    "--prm", "prm_spec", default=None, help="PRM model id (transformers) or URL of a vLLM pooling server."
)
@click.option("--prm-model", default=None, help="Served PRM name on a vLLM pooling server.")
@click.option("--prm-batch-size", type=int, default=16, show_default=True)
@click.option("--device", default=None, help="Device of local models (default: cuda if available).")
@click.option(
    "--router",
    "router_spec",
    required=True,
    help="weak | strong | thr:K | agg:DIR | a `trim-pomdp solve` output DIR.",
)
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False), help="Run directory.")
@click.option("--concurrency", type=int, default=64, show_default=True, help="Problems in flight.")
@click.option("--limit", type=int, default=None, help="Only the first N problems (after sharding).")
@click.option("--shard", default=None, help="K/N: this process runs shard K of N (interleaved).")
@click.option(
    "--cache",
    "cache_path",
    default=None,
    help="SQLite cache of model/PRM calls (default OUT/cache.sqlite; share one across runs).",
)
@click.option("--max-steps", type=int, default=30, show_default=True)
@click.option("--max-tokens-per-step", type=int, default=512, show_default=True)
@click.option("--max-solution-tokens", type=int, default=4096, show_default=True)
@click.option("--temperature", type=float, default=0.0, show_default=True, help="Weak model temperature.")
@click.option(
    "--strong-temperature", type=float, default=None, help="Strong model temperature (default: unset)."
)
@click.option("--timeout", type=float, default=120.0, show_default=True, help="Per-call timeout (s).")
@click.option("--max-retries", type=int, default=6, show_default=True)
def command(
    dataset,
    data_dir,
    weak_spec,
    weak_model,
    weak_mode,
    weak_template,
    strong_model,
    strong_url,
    claude_step_mode,
    claude_continuation,
    claude_prompt_cache,
    prm_spec,
    prm_model,
    prm_batch_size,
    device,
    router_spec,
    out_dir,
    concurrency,
    limit,
    shard,
    cache_path,
    max_steps,
    max_tokens_per_step,
    max_solution_tokens,
    temperature,
    strong_temperature,
    timeout,
    max_retries,
):
    """Run TRIM on a dataset: M_w proposes each step, the PRM scores it, the router decides, M_s regenerates.

    Writes OUT/traces.jsonl (every step), OUT/records.jsonl (policy,knob,query_id,correct,strong_tokens — the
    input of `trim-pomdp metrics`) incrementally; rerun the same command to resume a killed run.
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from trim_pomdp.datasets.problems import shard as shard_items
    from trim_pomdp.generation import BatchedPRM, Cache, CachedGenerator, LoopConfig, load_dataset, run_loop
    from trim_pomdp.routers.spec import resolve_router

    try:
        spec = resolve_router(router_spec)
        if spec.mode in ("route", "weak") and not weak_spec:
            raise click.UsageError(f"--router {router_spec} needs --weak URL_OR_MODEL")
        if spec.mode == "route" and not prm_spec:
            raise click.UsageError(f"--router {router_spec} needs --prm MODEL_OR_URL")
        problems = load_dataset(dataset, data_dir)
        problems = shard_items(problems, shard)
        if limit is not None:
            problems = problems[:limit]
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        cache = Cache(cache_path or out / "cache.sqlite")
        weak = strong = prm = None
        prm_name = None
        if spec.mode in ("route", "weak"):
            weak = CachedGenerator(
                build_weak(
                    weak_spec,
                    model_name=weak_model,
                    mode=weak_mode,
                    temperature=temperature,
                    max_tokens_per_step=max_tokens_per_step,
                    timeout=timeout,
                    max_retries=max_retries,
                    template=weak_template,
                ),
                cache,
            )
        if spec.mode in ("route", "strong"):
            strong = CachedGenerator(
                build_strong(
                    strong_model,
                    url=strong_url,
                    step_mode=claude_step_mode,
                    continuation=claude_continuation,
                    prompt_cache=claude_prompt_cache,
                    temperature=strong_temperature,
                    max_tokens_per_step=max_tokens_per_step,
                    timeout=timeout,
                    max_retries=max_retries,
                ),
                cache,
            )
        if spec.mode == "route":
            backend, prm_name = build_prm(
                prm_spec, model_name=prm_model, batch_size=prm_batch_size, device=device
            )
            prm = BatchedPRM(backend, prm_name, cache=cache, max_batch=prm_batch_size)
        config = LoopConfig(
            max_steps=max_steps,
            max_solution_tokens=max_solution_tokens,
            concurrency=concurrency,
            mode=spec.mode,
            policy=spec.policy,
            knob=spec.knob,
        )
        settings = {
            "dataset": dataset,
            "shard": shard,
            "router": router_spec,
            "weak": weak.model if weak else None,
            "strong": strong.model if strong else None,
            "prm": prm_name,
            "weak_params": weak.cache_params() if weak else None,
            "strong_params": strong.cache_params() if strong else None,
        }
    except TrimPomdpError as exc:
        raise click.ClickException(str(exc)) from exc
    except OSError as exc:  # a model id that is neither local nor reachable on the hub, an unreadable file
        raise click.ClickException(
            f"could not load a model or file: {str(exc).rstrip('.')}. Give a server URL (http://...), "
            "an existing local model folder, or a hub id reachable from this machine."
        ) from exc

    state = {"done": 0, "correct": 0, "tokens": 0}
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[stats]}"),
    ) as progress:
        task = progress.add_task(
            f"{spec.policy} {'' if spec.knob is None else spec.knob}".strip(), total=len(problems), stats=""
        )

        def on_result(trace: dict) -> None:
            state["done"] += 1
            state["correct"] += int(trace["correct"])
            state["tokens"] += trace["strong_tokens"]
            n = state["done"]
            progress.update(
                task,
                advance=1,
                stats=(
                    f"acc {state['correct'] / n:.3f}  strong tok/q "
                    f"{state['tokens'] / n:.0f}  cache hits {cache.hits}"
                ),
            )

        def on_error(problem, exc) -> None:
            progress.console.print(f"[red]{problem.id} failed: {exc}")

        async def go():
            try:
                summary = await run_loop(
                    problems,
                    weak,
                    strong,
                    prm,
                    spec.factory,
                    config,
                    out,
                    settings=settings,
                    on_result=on_result,
                    on_error=on_error,
                )
                progress.update(task, completed=summary.finished)
                return summary
            finally:
                for g in (weak, strong):
                    if g is not None:
                        await g.aclose()
                if prm is not None and hasattr(prm.backend, "aclose"):
                    await prm.backend.aclose()

        try:
            summary = asyncio.run(go())
        except TrimPomdpError as exc:
            raise click.ClickException(str(exc)) from exc
    cache.close()
    click.echo(
        f"{summary.finished}/{summary.total} problems done ({summary.done_before} before this run, "
        f"{summary.failed} failed): accuracy {summary.accuracy:.4f}, strong tokens/query "
        f"{summary.strong_tokens / max(1, summary.finished):.1f}; records in {out / 'records.jsonl'}"
    )
    if summary.failed:
        raise click.ClickException(
            f"{summary.failed} problems failed (see {out / 'errors.jsonl'}); rerun to retry them"
        )

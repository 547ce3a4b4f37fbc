"""``trim-pomdp run``: TRIM end to end with real models (:func:`trim_pomdp.generation.experiment.run_experiment`)."""

from __future__ import annotations

import click

from trim_pomdp.cli._common import SECONDS, data_dir_option, device_option, out_option

__all__ = ["command"]

COUNT = click.IntRange(min=1)


@click.command("run")
@click.option(
    "--dataset",
    required=True,
    metavar="NAME|FILE",
    help="math500 | aime | aime24 | gsm8k | minerva | olympiadbench | FILE.",
)
@data_dir_option(
    "Folder with local copies of the evaluation sets (default: the Hugging Face hub).", aliases=()
)
@click.option(
    "--router",
    required=True,
    metavar="SPEC",
    help="weak | strong | thr:K | agg:DIR | seq:DIR | a `trim-pomdp solve` output DIR.",
)
@out_option("Run directory.")
@click.option(
    "--weak",
    metavar="URL|MODEL",
    default=None,
    help="URL of an OpenAI-compatible (vLLM) server, or a model id (in-process vLLM, else transformers).",
)
@click.option(
    "--weak-model",
    metavar="NAME",
    default=None,
    help="Model name on the weak server (default: the first it serves).",
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
    metavar="qwen|auto|FILE",
    default="qwen",
    show_default=True,
    help="Completions-mode prompt format: qwen (Qwen2.5-Math chat format), auto (the weak model's own chat "
    "template via its tokenizer), or a FILE with a {problem} (and optional {system}) field, filled in "
    "literally (other braces, e.g. LaTeX, are kept).",
)
@click.option(
    "--weak-tokenizer",
    metavar="DIR|ID",
    default=None,
    help="Tokenizer of --weak-template auto: a local folder or a hub id (default: the served model's name).",
)
@click.option(
    "--step-detection",
    type=click.Choice(["auto", "stop_reason", "matched_stop", "finish_reason", "stop_in_text", "stream"]),
    default="auto",
    show_default=True,
    help="How the weak server tells a step boundary from the end of the solution: auto (found once per "
    "server), a server's own report, or stream (cut at the first blank line client-side).",
)
@click.option(
    "--strong", metavar="MODEL", default="claude-sonnet-4-6", show_default=True, help="Strong model id."
)
@click.option(
    "--strong-url",
    metavar="URL",
    default=None,
    help="OpenAI-compatible endpoint for the strong model (else Claude, with ANTHROPIC_API_KEY).",
)
@click.option(
    "--claude-step-mode",
    type=click.Choice(["marker", "cut"]),
    default="marker",
    show_default=True,
    help="End a Claude step at a marker stop sequence, or cut the stream at the first blank line.",
)
@click.option(
    "--claude-continuation",
    type=click.Choice(["user", "prefill"]),
    default="user",
    show_default=True,
    help="Continue in the user turn, or prefill the assistant turn (models before Claude 4.6 only).",
)
@click.option(
    "--claude-prompt-cache/--no-claude-prompt-cache",
    default=False,
    show_default=True,
    help="Ask Anthropic to cache the growing prompt of each problem (cheaper input tokens on later steps).",
)
@click.option(
    "--prm",
    metavar="MODEL|URL",
    default=None,
    help="PRM model id (transformers) or URL of a vLLM pooling server (its key, if any, from "
    "TRIM_POMDP_PRM_API_KEY).",
)
@click.option("--prm-model", metavar="NAME", default=None, help="Served PRM name on a vLLM pooling server.")
@click.option(
    "--prm-batch-size",
    type=COUNT,
    metavar="N",
    default=16,
    show_default=True,
    help="Batch size of a local PRM.",
)
@device_option("Device of local models (default: cuda if available).")
@click.option(
    "--concurrency", type=COUNT, metavar="N", default=64, show_default=True, help="Problems in flight."
)
@click.option(
    "--limit", type=COUNT, metavar="N", default=None, help="Only the first N problems (after sharding)."
)
@click.option("--shard", metavar="K/N", default=None, help="Run shard K of N (interleaved).")
@click.option(
    "--cache",
    metavar="FILE",
    default=None,
    help="SQLite cache of model/PRM calls (default OUT/cache.sqlite; share one across runs).",
)
@click.option(
    "--max-steps", type=COUNT, metavar="N", default=30, show_default=True, help="Step cap per problem."
)
@click.option(
    "--max-tokens-per-step",
    type=COUNT,
    metavar="N",
    default=512,
    show_default=True,
    help="Output cap of one step.",
)
@click.option(
    "--max-solution-tokens",
    type=COUNT,
    metavar="N",
    default=4096,
    show_default=True,
    help="Output cap of one solution (weak and strong tokens, accepted or not).",
)
@click.option(
    "--answer-format",
    metavar="LIST",
    default=None,
    help="How final answers are read, tried in order: a comma list of boxed, hash (GSM8K's '#### N') and "
    "answer-is ('The answer is N'). Default: all three.",
)
@click.option(
    "--repetition",
    type=click.Choice(["stop", "off"]),
    default="stop",
    show_default=True,
    help="A step that repeats its predecessor or ends in a loop stops the problem (stop) or is accepted (off).",
)
@click.option("--temperature", type=float, default=0.0, show_default=True, help="Weak model temperature.")
@click.option(
    "--strong-temperature", type=float, default=None, help="Strong model temperature (default: unset)."
)
@click.option(
    "--timeout", type=SECONDS, metavar="SECONDS", default=120.0, show_default=True, help="Per-call timeout."
)
@click.option(
    "--max-retries",
    type=click.IntRange(min=0),
    metavar="N",
    default=6,
    show_default=True,
    help="Retries of a failed call.",
)
def command(**options: object) -> None:
    """Run TRIM on a dataset: M_w proposes each step, the PRM scores it, the router decides, M_s regenerates.

    Writes OUT/traces.jsonl (every step) and OUT/records.jsonl (policy, knob, query_id, correct, strong_tokens:
    the input of `trim-pomdp metrics`) incrementally; rerun the same command to resume a killed run.
    """
    from trim_pomdp.generation.experiment import RunConfig, run_experiment

    config = RunConfig(**options)  # type: ignore[arg-type]
    summary = run_experiment(config)
    records = f"{config.out_dir}/records.jsonl"
    click.echo(
        f"{summary.finished}/{summary.total} problems done ({summary.done_before} before this run, "
        f"{summary.failed} failed): accuracy {summary.accuracy:.4f}, strong tokens/query "
        f"{summary.strong_tokens / max(1, summary.finished):.1f}; records in {records}"
    )
    if summary.failed:
        raise click.ClickException(
            f"{summary.failed} problems failed (see {config.out_dir}/errors.jsonl); rerun to retry them"
        )

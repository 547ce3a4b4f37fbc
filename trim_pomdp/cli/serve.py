"""``trim-pomdp serve``: TRIM behind an OpenAI-compatible endpoint (:func:`trim_pomdp.serve.app.run_server`).

The model options (``--weak``, ``--strong``, ``--prm``, the caps, timeouts and retries) are those of
``trim-pomdp run``, taken from its command so that they are declared once.
"""

from __future__ import annotations

import copy

import click

from trim_pomdp.cli._common import SECONDS
from trim_pomdp.cli.run import command as run_command

__all__ = ["command"]

#: Options of ``trim-pomdp run`` that ``serve`` takes as they are.
_MODEL_OPTIONS = (
    "weak",
    "weak_model",
    "weak_mode",
    "weak_template",
    "strong",
    "strong_url",
    "claude_step_mode",
    "claude_continuation",
    "claude_prompt_cache",
    "prm",
    "prm_model",
    "prm_batch_size",
    "device",
    "max_steps",
    "max_tokens_per_step",
    "max_solution_tokens",
    "temperature",
    "strong_temperature",
    "timeout",
    "max_retries",
)


def _model_options(f: click.Command) -> click.Command:
    taken = {p.name: p for p in run_command.params}
    missing = [n for n in _MODEL_OPTIONS if n not in taken]
    if missing:  # pragma: no cover - a renamed option of `run` must be renamed here too
        raise RuntimeError(f"trim-pomdp run has no option(s) {missing}")
    f.params[1:1] = [copy.copy(taken[n]) for n in _MODEL_OPTIONS]
    return f


@_model_options
@click.command("serve")
@click.option(
    "--router",
    "routers",
    required=True,
    multiple=True,
    metavar="SPEC",
    help="A router to serve (repeat for several): weak | strong | thr:K | agg:DIR | seq:DIR | a "
    "`trim-pomdp solve` or `trim-pomdp calibrate` output DIR. Each is one model id of /v1/models.",
)
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on.")
@click.option("--port", type=click.IntRange(0, 65535), default=8080, show_default=True, help="Port.")
@click.option(
    "--max-in-flight",
    type=click.IntRange(min=1),
    metavar="N",
    default=64,
    show_default=True,
    help="Requests solved at once; more are answered 429 with Retry-After.",
)
@click.option(
    "--request-timeout",
    type=SECONDS,
    metavar="SECONDS",
    default=600.0,
    show_default=True,
    help="Deadline of one request (all its steps); past it the request ends with a 504.",
)
@click.option(
    "--retry-after",
    type=click.FloatRange(min=0),
    metavar="SECONDS",
    default=1.0,
    show_default=True,
    help="Retry-After a refused client is told.",
)
@click.option(
    "--keepalive",
    "keepalive_s",
    type=SECONDS,
    metavar="SECONDS",
    default=15.0,
    show_default=True,
    help="Seconds between SSE keep-alive comments while a streamed request waits for its next step.",
)
@click.option(
    "--token-env",
    metavar="NAME",
    default="TRIM_POMDP_SERVE_API_KEY",
    show_default=True,
    help="Environment variable holding the bearer token clients must send (required beyond 127.0.0.1).",
)
@click.option(
    "--allow-no-auth",
    is_flag=True,
    help="Listen beyond the loopback interface without a bearer token.",
)
@click.option(
    "--cache",
    metavar="FILE",
    default=None,
    help="SQLite cache of model/PRM calls (default: none, so memory stays bounded).",
)
@click.option(
    "--log-level",
    type=click.Choice(["critical", "error", "warning", "info", "debug"]),
    default="info",
    show_default=True,
    help="Server log level.",
)
def command(log_level: str, **options: object) -> None:
    """Serve routers behind an OpenAI-compatible endpoint: POST /v1/chat/completions (plain or streamed).

    The last user message is the problem; the answer is the solution the TRIM loop writes for it. Also GET
    /v1/models, /health and /metrics (Prometheus). Secrets come from the environment only: the strong model's
    ANTHROPIC_API_KEY (or OPENAI_API_KEY) and the endpoint's bearer token (--token-env).
    """
    from trim_pomdp.serve.app import run_server
    from trim_pomdp.serve.config import ServeConfig

    options["routers"] = tuple(options["routers"])  # type: ignore[arg-type]
    run_server(ServeConfig(**options), log_level=log_level)  # type: ignore[arg-type]

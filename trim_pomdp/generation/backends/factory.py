"""Model backends from a specification: what ``trim-pomdp run`` and the examples build their models with.

A weak-model specification is a server URL or a model id:

``http(s)://...``
    an OpenAI-compatible server (``vllm serve MODEL``), continued literally through ``/v1/completions`` (or
    ``/v1/chat/completions`` with ``mode="chat"``);
a model id or a local folder
    the model in this process: with vLLM when it is installed, else with transformers.

The strong model is Claude through the Anthropic API (the key from ``ANTHROPIC_API_KEY``), unless ``url`` names
an OpenAI-compatible endpoint. A PRM specification is the URL of a vLLM pooling server (its key, if it needs one,
from :data:`PRM_API_KEY_ENV`) or a model id loaded with transformers.

Errors are one-line :class:`~trim_pomdp.exceptions.TrimPomdpError` messages that say what to change.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trim_pomdp._internal.optional import require
from trim_pomdp.exceptions import InvalidParameterError
from trim_pomdp.generation.backends._common import (
    GenerationError,
    RetryPolicy,
    check_template,
    register_secret,
)
from trim_pomdp.generation.backends.strong_anthropic import MissingAPIKeyError

__all__ = [
    "DEFAULT_PRM",
    "PRM_API_KEY_ENV",
    "WEAK_TEMPLATES",
    "ModelSettings",
    "build_models",
    "build_prm",
    "build_strong",
    "build_weak",
    "is_url",
    "model_load_errors",
    "openai_base_url",
]

#: The PRM name sent to a pooling server when none is given.
DEFAULT_PRM = "Qwen/Qwen2.5-Math-PRM-7B"

#: The named prompt formats of the weak model in completions mode (anything else is a template file).
WEAK_TEMPLATES = ("qwen", "auto")

#: The environment variable holding the API key of a PRM server (``vllm serve --api-key``), when it needs one.
PRM_API_KEY_ENV = "TRIM_POMDP_PRM_API_KEY"


@dataclass(kw_only=True)
class ModelSettings:
    """The weak model, the strong model and the PRM, under the names of ``trim-pomdp run``'s options.

    The one set of model settings that a run (:class:`~trim_pomdp.generation.experiment.RunConfig`) and a
    server (:class:`~trim_pomdp.serve.config.ServeConfig`) share; :func:`build_models` turns it into backends.

    Attributes
    ----------
    weak, weak_model, weak_mode, weak_template, weak_tokenizer, step_detection, temperature :
        The weak model: specification, name on its server, continuation mode, prompt format, where the
        tokenizer of ``weak_template="auto"`` comes from, how steps and the end of the solution are detected,
        temperature (see :func:`build_weak`).
    strong, strong_url, strong_temperature, claude_step_mode, claude_continuation, claude_prompt_cache :
        The strong model (see :func:`build_strong`).
    prm, prm_model, prm_batch_size, device :
        The PRM (see :func:`build_prm`).
    max_tokens_per_step, timeout, max_retries :
        Output cap of one step, per-call timeout (s), retries of a call (the PRM's calls included).
    """

    weak: str | None = None
    weak_model: str | None = None
    weak_mode: str = "completions"
    weak_template: str = "qwen"
    weak_tokenizer: str | None = None
    step_detection: str = "auto"
    temperature: float = 0.0
    strong: str = "claude-sonnet-4-6"
    strong_url: str | None = None
    strong_temperature: float | None = None
    claude_step_mode: str = "marker"
    claude_continuation: str = "user"
    claude_prompt_cache: bool = False
    prm: str | None = None
    prm_model: str | None = None
    prm_batch_size: int = 16
    device: str | None = None
    max_tokens_per_step: int = 512
    timeout: float = 120.0
    max_retries: int = 6


def build_models(settings: ModelSettings, *, weak: bool, strong: bool, prm: bool) -> dict[str, Any]:
    """The backends ``settings`` name that are asked for: ``"weak"``, ``"strong"`` (generators) and ``"prm"``
    (a ``(backend, name)`` pair, as :func:`build_prm` returns it).

    The strong model is built first, so that a missing or wrong API key is reported before any model is loaded.
    """
    common: dict[str, Any] = {
        "max_tokens_per_step": settings.max_tokens_per_step,
        "timeout": settings.timeout,
        "max_retries": settings.max_retries,
    }
    models: dict[str, Any] = {}
    if strong:
        models["strong"] = build_strong(
            settings.strong,
            url=settings.strong_url,
            step_mode=settings.claude_step_mode,
            continuation=settings.claude_continuation,
            prompt_cache=settings.claude_prompt_cache,
            temperature=settings.strong_temperature,
            **common,
        )
    if weak:
        models["weak"] = build_weak(
            str(settings.weak),
            model_name=settings.weak_model,
            mode=settings.weak_mode,
            temperature=settings.temperature,
            template=settings.weak_template,
            tokenizer=settings.weak_tokenizer,
            step_detection=settings.step_detection,
            **common,
        )
    if prm:
        models["prm"] = build_prm(
            str(settings.prm),
            model_name=settings.prm_model,
            batch_size=settings.prm_batch_size,
            device=settings.device,
            timeout=settings.timeout,
        )
    return models


def is_url(spec: str) -> bool:
    """Whether a model specification is a server URL (``http://`` or ``https://``)."""
    return spec.startswith(("http://", "https://"))


def openai_base_url(url: str) -> str:
    """The base URL of an OpenAI-compatible server: ``url`` without a trailing slash, ending in ``/v1``."""
    u = url.rstrip("/")
    return u if u.endswith("/v1") else u + "/v1"


@contextlib.contextmanager
def model_load_errors() -> Iterator[None]:
    """Turn an ``OSError`` while loading models or files into a one-line :class:`InvalidParameterError`.

    A model id that is neither a local folder nor reachable on the hub, or an unreadable file, surfaces as an
    ``OSError`` from transformers, vLLM or the file system.
    """
    try:
        yield
    except OSError as exc:
        raise InvalidParameterError(
            f"could not load a model or file: {str(exc).rstrip('.')}. Give a server URL (http://...), "
            "an existing local model folder, or a hub id reachable from this machine."
        ) from exc


def build_weak(
    spec: str,
    *,
    model_name: str | None = None,
    mode: str = "completions",
    temperature: float = 0.0,
    max_tokens_per_step: int = 512,
    timeout: float = 120.0,
    max_retries: int = 6,
    template: str = "qwen",
    tokenizer: str | None = None,
    step_detection: str = "auto",
) -> Any:
    """The weak model (M_w) of a specification (see the module docstring).

    Parameters
    ----------
    spec : str
        Server URL or model id.
    model_name : str, optional
        The model's name on the server (default: the first model it serves). Ignored for a model id.
    mode : {"completions", "chat"}
        How a server continues the partial solution (see
        :class:`~trim_pomdp.generation.backends.weak_openai.OpenAICompatibleGenerator`).
    temperature : float
        Sampling temperature (0: greedy).
    max_tokens_per_step : int
        Output cap of one step.
    timeout, max_retries :
        Per-call limit in seconds and retries of a server call.
    template : str
        Completions-mode prompt format on a server: ``"qwen"`` (Qwen2.5-Math's chat format), ``"auto"`` (the
        served model's own chat template, through its tokenizer) or the path of a file holding a template with
        a ``{problem}`` (and optional ``{system}``) field, filled in literally (LaTeX braces stay as written).
    tokenizer : str, optional
        For ``template="auto"``: where the tokenizer comes from, a local folder or a hub id (default: the
        served model's name, which works when the server names the model by its hub id or local folder).
    step_detection : str
        How step boundaries and the end of the solution are told apart on a server
        (:mod:`~trim_pomdp.generation.backends.stop_detection`; ``"auto"`` finds the server's way).

    Returns
    -------
    StepGenerator
    """
    if is_url(spec):
        url = openai_base_url(spec)
        name = model_name or _first_served_model(url, timeout)
        return _openai_weak(
            name,
            url,
            mode=mode,
            temperature=temperature,
            max_tokens_per_step=max_tokens_per_step,
            retry=RetryPolicy(max_retries=max_retries, timeout=timeout),
            template=template,
            tokenizer=tokenizer,
            step_detection=step_detection,
        )
    with model_load_errors():
        try:
            import vllm  # noqa: F401
        except ImportError:
            from trim_pomdp.generation.backends.weak_transformers import TransformersStepGenerator

            return TransformersStepGenerator(
                spec, temperature=temperature, max_tokens_per_step=max_tokens_per_step
            )
        from trim_pomdp.generation.backends.weak_vllm import VLLMStepGenerator

        return VLLMStepGenerator(spec, temperature=temperature, max_tokens_per_step=max_tokens_per_step)


def _openai_weak(name: str, url: str, *, template: str, tokenizer: str | None, **kwargs: Any) -> Any:
    from trim_pomdp.generation.backends.weak_openai import OpenAICompatibleGenerator

    if template == "auto":
        transformers = require("transformers", "hf", "the weak template 'auto'")
        with model_load_errors():
            kwargs["tokenizer"] = transformers.AutoTokenizer.from_pretrained(tokenizer or name)
    elif template != "qwen":
        path = Path(template)
        if not path.is_file():
            raise InvalidParameterError(
                f"weak template {template!r} is not 'qwen', 'auto' or a file (--weak-template)"
            )
        with model_load_errors():
            text = path.read_text(encoding="utf-8")
        kwargs["prompt_template"] = check_template(text, f"the weak template {path}")
    return OpenAICompatibleGenerator(name, base_url=url, **kwargs)


def _first_served_model(url: str, timeout: float) -> str:
    openai = require("openai", "openai", "the OpenAI-compatible weak backend")
    key = os.environ.get("OPENAI_API_KEY") or "EMPTY"
    register_secret(key)
    try:
        client = openai.OpenAI(base_url=url, api_key=key, timeout=min(timeout, 30.0), max_retries=1)
        models = client.models.list().data
    except openai.APIConnectionError as exc:
        raise GenerationError(
            f"nothing answers at {url} ({type(exc).__name__}: {exc.__cause__ or exc}): start the model server "
            "there, or give the right URL"
        ) from exc
    except Exception as exc:
        raise GenerationError(
            f"could not list the models served at {url} ({type(exc).__name__}); pass --weak-model NAME"
        ) from exc
    if not models:
        raise GenerationError(f"{url} serves no model; pass --weak-model NAME")
    return str(models[0].id)


def build_strong(
    model: str,
    *,
    url: str | None = None,
    step_mode: str = "marker",
    continuation: str = "user",
    temperature: float | None = None,
    max_tokens_per_step: int = 1024,
    timeout: float = 120.0,
    max_retries: int = 6,
    prompt_cache: bool = False,
) -> Any:
    """The strong model (M_s): an OpenAI-compatible endpoint when ``url`` is given, else Claude.

    Parameters
    ----------
    model : str
        Model id (e.g. ``"claude-sonnet-4-6"``).
    url : str, optional
        OpenAI-compatible endpoint; the partial solution is then continued in the user turn.
    step_mode, continuation, prompt_cache :
        Claude only (see :class:`~trim_pomdp.generation.backends.strong_anthropic.AnthropicStepGenerator`).
    temperature : float or None
        ``None`` sends none to Claude (newer models reject it) and 0 to an OpenAI-compatible endpoint.
    max_tokens_per_step, timeout, max_retries :
        Output cap of one step, per-call limit in seconds, retries of a call.

    Raises
    ------
    MissingAPIKeyError
        Claude is asked for but ``ANTHROPIC_API_KEY`` is not set.
    """
    retry = RetryPolicy(max_retries=max_retries, timeout=timeout)
    if url:
        from trim_pomdp.generation.backends.strong_openai import OpenAIStrongGenerator

        return OpenAIStrongGenerator(
            model,
            base_url=openai_base_url(url),
            temperature=temperature or 0.0,
            max_tokens_per_step=max_tokens_per_step,
            retry=retry,
        )
    if not os.environ.get("ANTHROPIC_API_KEY"):
        raise MissingAPIKeyError(
            "the strong model is Claude but ANTHROPIC_API_KEY is not set: export ANTHROPIC_API_KEY=... "
            "(or use --strong-url URL for an OpenAI-compatible strong model)"
        )
    from trim_pomdp.generation.backends.strong_anthropic import AnthropicStepGenerator

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


def build_prm(
    spec: str,
    *,
    model_name: str | None = None,
    batch_size: int = 16,
    device: str | None = None,
    timeout: float = 120.0,
    api_key: str | None = None,
) -> tuple[Any, str]:
    """A PRM backend and its name: a vLLM pooling server for a URL, else a transformers PRM loaded by name.

    Parameters
    ----------
    spec : str
        Server URL or model id.
    model_name : str, optional
        The PRM's name on the server (default :data:`DEFAULT_PRM`). Ignored for a model id.
    batch_size : int
        Batch size of a local PRM.
    device : str, optional
        Device of a local PRM (default: CUDA when available).
    timeout : float
        Per-request limit of a PRM server, in seconds (the retries are
        :class:`~trim_pomdp.generation.scoring.BatchedPRM`'s).
    api_key : str, optional
        Key of a PRM server (default: the :data:`PRM_API_KEY_ENV` environment variable; none when unset).

    Returns
    -------
    (backend, name)
        A :class:`~trim_pomdp.prm.base.PRMBackend` (or a pooling client with ``ascore_batch``) and the name
        under which its scores are cached.
    """
    if is_url(spec):
        from trim_pomdp.prm.vllm_backend import VLLMPoolingPRM

        name = model_name or DEFAULT_PRM
        key = api_key or os.environ.get(PRM_API_KEY_ENV)
        register_secret(key)
        return VLLMPoolingPRM(spec, name, api_key=key, timeout=timeout, max_retries=0), name
    from trim_pomdp.prm.transformers_backend import TransformersPRM

    with model_load_errors():
        return TransformersPRM.from_pretrained(spec, batch_size=batch_size, device=device), spec

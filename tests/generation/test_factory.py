"""Backends from a specification (generation/backends/factory): what `trim-pomdp run` and the examples build."""

from __future__ import annotations

import pytest

pytest.importorskip("openai")

from trim_pomdp.exceptions import InvalidParameterError
from trim_pomdp.generation.backends import (
    MissingAPIKeyError,
    OpenAICompatibleGenerator,
    OpenAIStrongGenerator,
    build_prm,
    build_strong,
    build_weak,
)
from trim_pomdp.generation.backends.factory import model_load_errors, openai_base_url


def test_server_urls_end_in_v1():
    assert openai_base_url("http://h:8000") == openai_base_url("http://h:8000/v1/") == "http://h:8000/v1"


def test_weak_from_a_url(tmp_path):
    gen = build_weak("http://localhost:1", model_name="m", max_tokens_per_step=7, max_retries=2, timeout=3)
    assert isinstance(gen, OpenAICompatibleGenerator) and gen.base_url == "http://localhost:1/v1"
    assert (gen.model, gen.mode, gen.max_tokens_per_step, gen.retry.max_retries, gen.retry.timeout) == (
        "m",
        "completions",
        7,
        2,
        3,
    )
    tpl = tmp_path / "tpl.txt"
    tpl.write_text("Q {problem}\n")
    assert (
        build_weak("http://localhost:1", model_name="m", template=str(tpl)).prompt_template == "Q {problem}\n"
    )
    with pytest.raises(InvalidParameterError, match="--weak-template"):
        build_weak("http://localhost:1", model_name="m", template=str(tmp_path / "missing.txt"))


def test_strong_openai_or_claude(monkeypatch):
    gen = build_strong("big", url="http://localhost:2/")
    assert isinstance(gen, OpenAIStrongGenerator) and gen.base_url == "http://localhost:2/v1"
    assert gen.mode == "user" and gen.temperature == 0.0
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    with pytest.raises(MissingAPIKeyError, match="ANTHROPIC_API_KEY"):
        build_strong("claude-sonnet-4-6")


def test_prm_from_a_url():
    backend, name = build_prm("http://localhost:3")
    assert name == "Qwen/Qwen2.5-Math-PRM-7B" and hasattr(backend, "ascore_batch")
    assert build_prm("http://localhost:3", model_name="p")[1] == "p"


def test_load_errors_are_one_line():
    with pytest.raises(InvalidParameterError, match="could not load a model or file: no such model"):
        with model_load_errors():
            raise OSError("no such model")

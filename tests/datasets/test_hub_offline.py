"""Offline hub loading: a clear error that says to use local files, never a traceback from ``datasets``."""

from __future__ import annotations

import socket
import sys
import time
import types

import pytest
from click.testing import CliRunner

from trim_pomdp.cli import main
from trim_pomdp.datasets import _hub
from trim_pomdp.datasets.problems import load_dataset
from trim_pomdp.datasets.processbench import load_processbench
from trim_pomdp.exceptions import BackendUnavailableError


@pytest.fixture
def offline_datasets(monkeypatch):
    """A stand-in for the ``datasets`` package whose hub loading fails like it does without network.

    The connection check is made to pass, so that what ``datasets`` raises is what the loader handles.
    """
    calls = []

    def load(path, *args, **kwargs):
        calls.append(path)
        raise ConnectionError(f"Couldn't reach '{path}' on the Hub (LocalEntryNotFoundError)")

    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=load))
    monkeypatch.setattr(_hub, "hub_unreachable", lambda timeout=_hub.HUB_PROBE_TIMEOUT: None)
    return calls


@pytest.fixture
def unreachable_hub(monkeypatch):
    """``datasets`` that records calls, and a hub endpoint that refuses connections (a closed local port)."""
    calls = []
    monkeypatch.setitem(
        sys.modules, "datasets", types.SimpleNamespace(load_dataset=lambda path, *a, **k: calls.append(path))
    )
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again on leaving: nothing listens there
    for var in (
        "HF_HUB_OFFLINE",
        "HF_DATASETS_OFFLINE",
        "HTTPS_PROXY",
        "https_proxy",
        "ALL_PROXY",
        "all_proxy",
    ):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
    return calls


def test_unreachable_hub_fails_fast_without_asking_datasets(unreachable_hub):
    start = time.perf_counter()
    with pytest.raises(
        BackendUnavailableError, match=r"not reachable.*--data-dir DIR.*HF_HUB_OFFLINE"
    ) as info:
        load_processbench(["math"])
    assert time.perf_counter() - start < _hub.HUB_PROBE_TIMEOUT + 1
    assert isinstance(info.value.__cause__, OSError)
    assert unreachable_hub == []  # no retries by datasets


def test_offline_mode_skips_the_check_and_reads_the_cache(unreachable_hub, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert _hub.hub_unreachable() is None
    _hub.load_hub_split("Qwen/ProcessBench", "math", what="x", offline_hint="y")
    assert unreachable_hub == ["Qwen/ProcessBench"]


def test_processbench_hub_offline_says_use_data_dir(offline_datasets):
    with pytest.raises(BackendUnavailableError, match=r"--data-dir DIR.*math\.json") as info:
        load_processbench(["math"])
    assert isinstance(info.value.__cause__, ConnectionError)
    assert offline_datasets == ["Qwen/ProcessBench"]


def test_eval_set_hub_offline_says_use_data_dir(offline_datasets, monkeypatch):
    monkeypatch.delenv("TRIM_POMDP_EVAL_DATA", raising=False)
    with pytest.raises(BackendUnavailableError, match=r"--data-dir DIR.*math500\.jsonl"):
        load_dataset("math500")
    assert len(offline_datasets) == 1


def test_fit_observations_offline_is_a_one_line_error(offline_datasets, tmp_path):
    args = ["fit-observations", "--bench", "processbench", "--synthetic-prm", "--out", str(tmp_path / "obs")]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    assert "Error: could not load ProcessBench split" in result.output
    assert "--data-dir" in result.output

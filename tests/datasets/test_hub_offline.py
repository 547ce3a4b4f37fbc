"""Offline hub loading: a clear error that says to use local files, never a traceback from ``datasets``."""

from __future__ import annotations

import sys
import types

import pytest
from click.testing import CliRunner

from trim_pomdp.cli import main
from trim_pomdp.datasets.problems import load_dataset
from trim_pomdp.datasets.processbench import load_processbench
from trim_pomdp.exceptions import BackendUnavailableError


@pytest.fixture
def offline_datasets(monkeypatch):
    """A stand-in for the ``datasets`` package whose hub loading fails like it does without network."""
    calls = []

    def load(path, *args, **kwargs):
        calls.append(path)
        raise ConnectionError(f"Couldn't reach '{path}' on the Hub (LocalEntryNotFoundError)")

    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=load))
    return calls


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

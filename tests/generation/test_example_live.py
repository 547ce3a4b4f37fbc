"""examples/live_vllm_claude.py runs end to end against the local fakes, with Claude or an OpenAI-compatible
strong model."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("strong", [[], ["--strong-url", "http://set-by-offline", "--strong", "big"]])
def test_the_live_example_runs_offline(tmp_path, strong):
    out = tmp_path / "live"
    cmd = [sys.executable, str(REPO / "examples" / "live_vllm_claude.py"), "--offline", "--problems", "4"]
    res = subprocess.run(
        [*cmd, *strong, "--out", str(out)],
        cwd=tmp_path,
        env=dict(os.environ, PYTHONPATH=str(REPO)),
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert res.returncode == 0, res.stderr[-2000:]
    assert "accuracy 1.000 over 4 problems" in res.stdout
    assert len((out / "records.jsonl").read_text().splitlines()) == 4

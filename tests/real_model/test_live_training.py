"""``trim-pomdp train-agg --source live`` against a real LLM server: a few PPO episodes on SmolLM2-135M-Instruct.

Weak and strong model from ``transformers serve`` (CPU), the PRM a tiny random model with SmolLM2's real tokenizer,
the first GSM8K test problems (two trained on, one held out). Only the machinery is checked (the model is tiny):
real episodes finish, the held-out batch is run, a second λ reuses the first one's cached generations and scores,
and a finished run resumes.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from tests.real_model.test_smollm2_run import GSM8K_FIRST
from trim_pomdp.cli import main

pytestmark = pytest.mark.real_model


@pytest.fixture(scope="module")
def gsm8k(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The first GSM8K test problems that ship with the real-model tests (no network needed)."""
    problems = [{"id": i, "problem": q, "answer": a} for i, q, a in GSM8K_FIRST]
    path = tmp_path_factory.mktemp("data") / "gsm8k.jsonl"
    path.write_text("".join(json.dumps(p) + "\n" for p in problems), encoding="utf-8")
    return path


def _train(served, prm_dir: Path, data: Path, tmp: Path, lam: str, out: str, *extra: str):
    args = ["train-agg", "--source", "live", "--lambda", lam, "--dataset", str(data), "--out", str(tmp / out)]
    args += ["--weak", served.url, "--weak-model", served.model, "--weak-template", "auto"]
    args += ["--strong", served.model, "--strong-url", served.url, "--prm", str(prm_dir), "--device", "cpu"]
    args += ["--max-steps", "6", "--max-tokens-per-step", "32", "--max-solution-tokens", "512"]
    args += ["--timesteps", "128", "--n-envs", "2", "--eval-every", "64", "--min-timesteps", "0"]
    args += ["--holdout", "1", "--timeout", "600", "--max-retries", "1", "--cache", str(tmp / "cache.sqlite")]
    return CliRunner().invoke(main, [*args, *extra])


def test_live_training_on_a_real_server(served, prm_dir, gsm8k, tmp_path):
    res = _train(served, prm_dir, gsm8k, tmp_path, "1e-3", "a")
    assert res.exit_code == 0, res.output + served.tail()
    first = json.loads((tmp_path / "a" / "training.json").read_text())
    assert first["timesteps_trained"] == 128 and first["steps_per_second"] > 0
    assert first["training_episodes"]["finished"] > 0 and first["training_episodes"]["failed"] == 0
    assert first["heldout_best"] is not None and first["cache"]["misses"] > 0
    res = _train(served, prm_dir, gsm8k, tmp_path, "5e-4", "b")  # a second λ on the same cache
    assert res.exit_code == 0, res.output + served.tail()
    second = json.loads((tmp_path / "b" / "training.json").read_text())
    assert second["cache"]["hits"] > 0 and second["cache"]["hit_rate"] > first["cache"]["hit_rate"]
    res = _train(served, prm_dir, gsm8k, tmp_path, "1e-3", "a")  # done already: resumes, asks nothing new
    assert res.exit_code == 0, res.output + served.tail()
    again = json.loads((tmp_path / "a" / "training.json").read_text())
    assert again["resumed_from_timesteps"] == 128 and again["cache"]["misses"] == 0

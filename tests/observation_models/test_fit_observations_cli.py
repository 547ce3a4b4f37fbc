"""`trim-pomdp fit-observations`: score sources, outputs, card, plot, errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from tests._support.data import require_shared_data
from trim_pomdp.cli import main
from trim_pomdp.observation_models.observation import ObservationModel

SPLITS = ("gsm8k", "math", "olympiadbench", "omnimath")


def _write_processbench(folder: Path, per_split: int = 40, seed: int = 0) -> Path:
    """A tiny ProcessBench look-alike: <split>.json files of items with 2-7 steps and random labels."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for split in SPLITS:
        items = []
        for i in range(per_split):
            n = int(rng.integers(2, 8))
            label = int(rng.integers(0, n)) if rng.random() < 0.6 else -1
            items.append(
                {
                    "id": f"{split}-{i}",
                    "generator": "fixture",
                    "problem": f"What is {i} + {i}?",
                    "steps": [f"Step {k}: think about {i}." for k in range(n)],
                    "final_answer_correct": label == -1,
                    "label": label,
                }
            )
        (folder / f"{split}.json").write_text(json.dumps(items))
    return folder


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    return _write_processbench(tmp_path_factory.mktemp("pb"))


def test_no_score_source_names_the_three_ways(tmp_path):
    res = CliRunner().invoke(
        main, ["fit-observations", "--bench", "processbench", "--out", str(tmp_path / "o")]
    )
    assert res.exit_code != 0
    for way in ("--scores", "--prm", "--synthetic-prm"):
        assert way in res.output
    assert not (tmp_path / "o").exists()


def test_two_score_sources_are_refused(tmp_path, data_dir):
    scores = tmp_path / "s.jsonl"
    scores.write_text("")
    res = CliRunner().invoke(
        main,
        [
            "fit-observations",
            "--synthetic-prm",
            "--scores",
            str(scores),
            "--data-dir",
            str(data_dir),
            "--out",
            str(tmp_path / "o"),
        ],
    )
    assert res.exit_code == 2 and "exactly one" in res.output


def test_bad_bandwidth_is_a_usage_error(tmp_path, data_dir):
    res = CliRunner().invoke(
        main,
        [
            "fit-observations",
            "--synthetic-prm",
            "--bandwidth",
            "wide",
            "--data-dir",
            str(data_dir),
            "--out",
            str(tmp_path / "o"),
        ],
    )
    assert res.exit_code == 2 and "scott" in res.output


def test_synthetic_prm_writes_model_card_and_plot(tmp_path, data_dir):
    out = tmp_path / "obs"
    res = CliRunner().invoke(
        main,
        [
            "fit-observations",
            "--bench",
            "processbench",
            "--data-dir",
            str(data_dir),
            "--synthetic-prm",
            "--n-bins",
            "8",
            "--seed",
            "3",
            "--plot",
            "--out",
            str(out),
        ],
    )
    assert res.exit_code == 0, res.output
    assert (out / "observation_model.npz").is_file() and (out / "observation_model.json").is_file()
    assert (out / "observation_densities.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    card = json.loads((out / "observation_model.json").read_text())
    assert card["simulated"] is True and "simulated" in card["prm"]
    # math is left out by default: its problems overlap MATH-500
    assert card["splits"] == ["gsm8k", "olympiadbench", "omnimath"] and card["n_bins"] == 8
    assert card["excluded_splits"] == ["math"] and "MATH-500" in card["exclusion_reason"]
    assert card["supervision"] == "steps" and 0 < card["p_w"] < 1 and card["chain_counts"]["S2"] > 0
    assert set(card["counts"]) == {"S0", "S1", "S2"} and sum(card["counts"].values()) > 0
    assert "--synthetic-prm" in card["command"] and "--seed 3" in card["command"]
    assert (
        str(data_dir) not in card["command"] and str(out) not in card["command"]
    )  # no paths of this machine
    assert any("score-processbench" in c for c in card["replace_with_real_scores"])
    assert set(card["held_out_loglik"]["nats_per_step"]) == {"S0", "S1", "S2"}
    assert "numpy" in card["package_versions"]
    for word in ("S0", "S1", "S2", "held-out"):
        assert word in res.output
    model = ObservationModel.load(out)
    assert model.pair_probs.shape == (3, 8, 8)
    np.testing.assert_allclose(model.pair_probs.sum(axis=(1, 2)), 1.0, atol=1e-12)


def test_scores_file_and_split_filter(tmp_path, data_dir):
    from trim_pomdp.datasets.processbench import load_processbench
    from trim_pomdp.datasets.scored import ScoredItem, save_scored_items

    items = load_processbench(("gsm8k", "math"), data_dir=data_dir)
    rng = np.random.default_rng(0)
    scored = [ScoredItem(it, rng.random(len(it.steps)).tolist(), prm="my-prm") for it in items]
    path = save_scored_items(tmp_path / "scores.jsonl", scored)
    out = tmp_path / "obs"
    res = CliRunner().invoke(
        main,
        [
            "fit-observations",
            "--scores",
            str(path),
            "--split",
            "math",
            "--r-only",
            "--cv-folds",
            "0",
            "--out",
            str(out),
        ],
    )
    assert res.exit_code == 0, res.output
    card = json.loads((out / "observation_model.json").read_text())
    assert card["prm"] == "my-prm" and card["simulated"] is False and card["splits"] == ["math"]
    assert card["n_items"] == 40 and card["r_only"] is True and "held_out_loglik" not in card
    res = CliRunner().invoke(
        main,
        ["fit-observations", "--scores", str(path), "--split", "omnimath", "--out", str(tmp_path / "none")],
    )
    assert res.exit_code == 1 and "no items of split(s) 'omnimath'" in res.output
    assert "present are 'gsm8k', 'math'" in res.output
    # by default math is excluded: only gsm8k is left
    res = CliRunner().invoke(
        main, ["fit-observations", "--scores", str(path), "--cv-folds", "0", "--out", str(out)]
    )
    assert res.exit_code == 0, res.output
    assert json.loads((out / "observation_model.json").read_text())["splits"] == ["gsm8k"]
    res = CliRunner().invoke(
        main,
        [
            "fit-observations",
            "--scores",
            str(path),
            "--exclude-split",
            "gsm8k",
            "--exclude-split",
            "math",
            "--out",
            str(tmp_path / "none"),
        ],
    )
    assert res.exit_code == 1 and "no items left" in res.output


def test_prm_option_scores_then_fits(tmp_path, data_dir, monkeypatch):
    from trim_pomdp.prm import transformers_backend

    calls = []

    class FakePRM:
        def score_batch(self, solutions):
            calls.append(len(solutions))
            return [[0.9 - 0.1 * (k % 3) for k in range(len(steps))] for _, steps in solutions]

    monkeypatch.setattr(
        transformers_backend.TransformersPRM,
        "from_pretrained",
        classmethod(lambda cls, name, **kw: FakePRM()),
    )
    out = tmp_path / "obs"
    res = CliRunner().invoke(
        main,
        [
            "fit-observations",
            "--prm",
            "fake/prm",
            "--data-dir",
            str(data_dir),
            "--split",
            "gsm8k",
            "--batch-size",
            "16",
            "--cv-folds",
            "0",
            "--out",
            str(out),
        ],
    )
    assert res.exit_code == 0, res.output
    assert sum(calls) == 40 and max(calls) <= 16
    card = json.loads((out / "observation_model.json").read_text())
    assert card["prm"] == "fake/prm" and card["simulated"] is False
    assert (out / "scores.jsonl").is_file()
    # rerunning resumes: everything is already scored, so the PRM is not asked again
    calls.clear()
    res = CliRunner().invoke(
        main,
        [
            "fit-observations",
            "--prm",
            "fake/prm",
            "--data-dir",
            str(data_dir),
            "--split",
            "gsm8k",
            "--cv-folds",
            "0",
            "--out",
            str(out),
        ],
    )
    assert res.exit_code == 0, res.output
    assert calls == []


def _scored_file(tmp_path, data_dir, split_name="prmbench", **extra):
    from trim_pomdp.datasets.processbench import load_processbench
    from trim_pomdp.datasets.scored import ScoredItem, save_scored_items

    items = load_processbench(("gsm8k", "olympiadbench"), data_dir=data_dir)
    rng = np.random.default_rng(1)
    scored = []
    for it in items:
        it.split = split_name
        z = it.classes
        s = np.where(z == 0, rng.beta(8, 1, z.size), rng.beta(1, 3, z.size))
        scored.append(ScoredItem(it, s.tolist(), prm="toy-prm", extra=dict(extra)))
    return save_scored_items(tmp_path / "scores.jsonl", scored)


def test_any_split_names_and_placeholder_labels(tmp_path, data_dir):
    path = _scored_file(tmp_path, data_dir, step_labels_known=False, source_file="x.jsonl")
    res = CliRunner().invoke(
        main,
        ["fit-observations", "--scores", str(path), "--supervision", "steps", "--out", str(tmp_path / "o")],
    )
    assert (
        res.exit_code == 1
        and "step_labels_known: false" in res.output
        and "--supervision outcome" in res.output
    )
    assert "Traceback" not in res.output
    out = tmp_path / "em"
    res = CliRunner().invoke(
        main,
        ["fit-observations", "--scores", str(path), "--n-bins", "6", "--em-restarts", "1", "--out", str(out)],
    )
    assert res.exit_code == 0, res.output
    card = json.loads((out / "observation_model.json").read_text())
    assert card["supervision"] == "outcome" and card["splits"] == ["prmbench"] and card["r_only"] is True
    assert card["em"]["converged"] is True and card["rho_source"] == "estimated by EM"
    assert "EM:" in res.output and "converged" in res.output and "p_w" in res.output


@pytest.mark.parametrize(
    "args, match",
    [
        (["--bandwidth", "1e-300"], "must lie in \\[0.0001, 1\\]"),
        (["--rho", "1"], "--rho"),
        (["--em-tol", "nan"], "--em-tol"),
    ],
)
def test_bad_options_are_usage_errors(tmp_path, data_dir, args, match):
    path = _scored_file(tmp_path, data_dir)
    res = CliRunner().invoke(
        main, ["fit-observations", "--scores", str(path), *args, "--out", str(tmp_path / "o")]
    )
    assert res.exit_code == 2 and "Traceback" not in res.output
    import re

    assert re.search(match, res.output), res.output


def test_bad_files_are_one_line_errors(tmp_path, data_dir):
    path = _scored_file(tmp_path, data_dir)
    lines = path.read_text().splitlines()
    dup = tmp_path / "dup.jsonl"
    dup.write_text("\n".join([*lines, lines[0]]) + "\n")
    res = CliRunner().invoke(main, ["fit-observations", "--scores", str(dup), "--out", str(tmp_path / "o")])
    assert res.exit_code == 1 and "already appeared on line 1" in res.output and "Traceback" not in res.output
    latin = tmp_path / "latin.jsonl"
    latin.write_bytes(lines[0].encode() + b"\n" + '{"problem": "caf\u00e9"}\n'.encode("latin-1"))
    res = CliRunner().invoke(main, ["fit-observations", "--scores", str(latin), "--out", str(tmp_path / "o")])
    assert res.exit_code == 1 and "not UTF-8" in res.output and "Traceback" not in res.output


def test_prm_without_its_extra_fails_before_loading_data(tmp_path, monkeypatch):
    import sys

    from trim_pomdp.prm import scoring

    monkeypatch.setitem(sys.modules, "transformers", None)  # import fails as if not installed
    monkeypatch.setattr(
        scoring, "load_processbench", lambda *a, **k: pytest.fail("data loaded before the check")
    )
    res = CliRunner().invoke(main, ["fit-observations", "--prm", "x/y", "--out", str(tmp_path / "o")])
    assert res.exit_code == 1 and "pip install 'trim-pomdp[hf]'" in res.output


def test_real_processbench_counts(tmp_path):
    data = require_shared_data("processbench")
    out = tmp_path / "obs"
    res = CliRunner().invoke(
        main,
        [
            "fit-observations",
            "--data-dir",
            str(data),
            "--synthetic-prm",
            "--exclude-split",
            "none",
            "--cv-folds",
            "0",
            "--out",
            str(out),
        ],
    )
    assert res.exit_code == 0, res.output
    card = json.loads((out / "observation_model.json").read_text())
    assert card["counts"] == {"S0": 14329, "S1": 9147, "S2": 2221}
    assert card["n_items"] == 3400 and card["excluded_splits"] == []

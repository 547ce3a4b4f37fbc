"""`trim-pomdp evaluate-observations`: outputs, the summary's keys, shipped names, bad input as one-line errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from tests._support.data import require_shared_data
from trim_pomdp.cli import main


def _records(n=60, seed=0, all_right=False, split="toy"):
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        T = int(rng.integers(2, 7))
        right = True if all_right else bool(rng.random() < 0.6)
        scores = rng.beta(9, 1, T) if right else np.minimum(rng.beta(9, 1, T), rng.beta(1, 2, T))
        out.append(
            {
                "id": f"q{i}",
                "generator": "toy",
                "problem": "p",
                "steps": [f"s{k}" for k in range(T)],
                "final_answer_correct": right,
                "label": -1,
                "split": split,
                "prm_scores": [round(float(x), 6) for x in scores],
                "step_labels_known": False,
            }
        )
    return out


def _write(path, recs):
    path.write_text("".join(json.dumps(r) + "\n" for r in recs))
    return path


def _run(*args):
    return CliRunner().invoke(main, ["evaluate-observations", *args])


def test_writes_the_summary_with_exactly_its_keys(tmp_path):
    scores = _write(tmp_path / "s.jsonl", _records())
    res = _run(
        "--scores", str(scores), "--obs", "synthetic-processbench", "--no-plot", "--out", str(tmp_path / "o")
    )
    assert res.exit_code == 0, res.output
    summary = json.loads((tmp_path / "o" / "summary.json").read_text())
    assert set(summary) == {"n_items", "outcome", "steps"} and summary["n_items"] == 60
    assert set(summary["outcome"]) == {"belief", "min", "last", "product"} and summary["steps"] is None
    report = json.loads((tmp_path / "o" / "report.json").read_text())
    assert report["sources"]["p_w"] and report["n_items_with_outcome"] == 60
    preds = (tmp_path / "o" / "predictions.jsonl").read_text().splitlines()
    assert len(preds) == 60 and set(json.loads(preds[0])) == {"id", "y", "belief", "min", "last", "product"}
    for word in ("AUROC", "ECE", "belief", "product", "step labels"):
        assert word in res.output


def test_reliability_diagram(tmp_path):
    pytest.importorskip("matplotlib")
    scores = _write(tmp_path / "s.jsonl", _records())
    res = _run("--scores", str(scores), "--out", str(tmp_path / "o"))
    assert res.exit_code == 0, res.output
    assert (tmp_path / "o" / "reliability.png").read_bytes()[:4] == b"\x89PNG"


def test_only_right_answers_give_a_null_auroc_with_the_reason(tmp_path):
    scores = _write(tmp_path / "s.jsonl", _records(all_right=True))
    res = _run("--scores", str(scores), "--no-plot", "--out", str(tmp_path / "o"))
    assert res.exit_code == 0, res.output
    summary = json.loads((tmp_path / "o" / "summary.json").read_text())
    assert summary["outcome"]["belief"]["auroc"] is None and summary["outcome"]["belief"]["brier"] >= 0
    assert "AUROC is undefined: every final answer is right" in res.output


@pytest.mark.parametrize(
    "change, match",
    [
        (
            lambda r: r.update(prm_scores=[float("nan")] * len(r["steps"])),
            r"s\.jsonl, line 4.*'prm_scores'\[0\] is NaN",
        ),
        (lambda r: r.update(prm_scores=[1.5] * len(r["steps"])), r"line 4.*outside \[0, 1\]"),
        (lambda r: r.pop("final_answer_correct"), r"line 4.*missing field.*final_answer_correct"),
    ],
)
def test_bad_records_are_one_line_errors_naming_file_line_and_field(tmp_path, change, match):
    recs = _records()
    change(recs[3])
    scores = _write(tmp_path / "s.jsonl", recs)
    res = _run("--scores", str(scores), "--out", str(tmp_path / "o"))
    assert res.exit_code == 1 and "Traceback" not in res.output
    import re

    assert re.search(match, res.output), res.output
    assert not (tmp_path / "o").exists()


def test_a_filter_that_leaves_nothing_lists_the_splits(tmp_path):
    scores = _write(tmp_path / "s.jsonl", _records())
    res = _run("--scores", str(scores), "--split", "math", "--out", str(tmp_path / "o"))
    assert res.exit_code == 1 and "no items of split(s) 'math'" in res.output and "'toy'" in res.output


def test_unknown_observation_model_names_the_shipped_ones(tmp_path):
    scores = _write(tmp_path / "s.jsonl", _records())
    res = _run("--scores", str(scores), "--obs", "nope", "--out", str(tmp_path / "o"))
    assert res.exit_code == 1 and "skywork-prmbench" in res.output


def test_real_qwen_traces_reproduce_the_plain_aggregates(tmp_path):
    data = require_shared_data("prm-real/qwen-prm7b_math500-qwen1.5b_dev.jsonl")
    res = _run("--scores", str(data), "--no-plot", "--out", str(tmp_path / "o"))
    assert res.exit_code == 0, res.output
    s = json.loads((tmp_path / "o" / "summary.json").read_text())
    assert s["n_items"] == 1000 and s["steps"] is None
    # the aggregates do not depend on the model: the README's figures of the file
    assert s["outcome"]["min"]["auroc"] == pytest.approx(0.956, abs=5e-4)
    assert s["outcome"]["product"]["auroc"] == pytest.approx(0.958, abs=5e-4)

"""ProcessBench loading, step labelling, scored-items files, step table and the ProcessBench protocol."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from tests._support.data import require_shared_data
from trim_pomdp.datasets import _hub
from trim_pomdp.datasets.processbench import SPLITS, load_processbench, step_classes
from trim_pomdp.datasets.scored import (
    ScoredItem,
    load_scored_items,
    predicted_error_index,
    processbench_metrics,
    require_outcomes,
    require_step_labels,
    save_scored_items,
    scored_item_ids,
    select_splits,
    step_table,
)
from trim_pomdp.exceptions import DataFormatError, InvalidParameterError


def _rec(i, label, n, split="gsm8k"):
    return {
        "id": f"{split}-{i}",
        "generator": "tiny",
        "problem": f"problem {i}",
        "steps": [f"step {k}" for k in range(n)],
        "final_answer_correct": label == -1,
        "label": label,
    }


@pytest.fixture
def data_dir(tmp_path):
    d = tmp_path / "pb"
    d.mkdir()
    (d / "gsm8k.json").write_text(json.dumps([_rec(0, 1, 4), _rec(1, -1, 3), _rec(2, 0, 2)]))
    (d / "math.json").write_text(json.dumps([_rec(0, 2, 3, "math")]))
    return d


def test_step_classes():
    assert step_classes(-1, 3).tolist() == [0, 0, 0]
    assert step_classes(1, 4).tolist() == [0, 2, 1, 1]
    assert step_classes(0, 2).tolist() == [2, 1]
    assert step_classes(2, 3).tolist() == [0, 0, 2]
    with pytest.raises(InvalidParameterError):
        step_classes(3, 3)
    with pytest.raises(InvalidParameterError):
        step_classes(-2, 3)


def test_load_local(data_dir):
    items = load_processbench(data_dir=data_dir, splits=("gsm8k", "math"))
    assert [it.id for it in items] == ["gsm8k-0", "gsm8k-1", "gsm8k-2", "math-0"]
    assert items[0].split == "gsm8k" and items[3].split == "math"
    assert items[0].classes.tolist() == [0, 2, 1, 1]
    assert load_processbench("math", data_dir=data_dir)[0].label == 2


def test_missing_split_file(data_dir):
    with pytest.raises(FileNotFoundError, match="omnimath"):
        load_processbench(data_dir=data_dir)


@pytest.mark.parametrize(
    "mutate, match",
    [
        (lambda r: r.pop("label"), "missing field"),
        (lambda r: r.update(label=7), "'label' = 7 is outside"),
        (lambda r: r.update(label="1"), "'label' must be an integer"),
        (lambda r: r.update(steps="abc"), "'steps' must be a list"),
        (lambda r: r.update(steps=[]), "'steps' is empty"),
        (lambda r: r.update(final_answer_correct="yes"), "final_answer_correct"),
    ],
)
def test_malformed_item_names_file_and_item(tmp_path, mutate, match):
    recs = [_rec(0, -1, 2), _rec(1, 1, 3)]
    mutate(recs[1])
    (tmp_path / "gsm8k.json").write_text(json.dumps(recs))
    with pytest.raises(DataFormatError, match=match) as info:
        load_processbench("gsm8k", data_dir=tmp_path)
    msg = str(info.value)
    assert "gsm8k.json" in msg and "item 1" in msg


def test_malformed_json_file(tmp_path):
    (tmp_path / "gsm8k.json").write_text('[{"id": ')
    with pytest.raises(DataFormatError, match=r"gsm8k\.json: invalid JSON"):
        load_processbench("gsm8k", data_dir=tmp_path)
    (tmp_path / "gsm8k.json").write_text('{"id": 1}')
    with pytest.raises(DataFormatError, match="expected a JSON list"):
        load_processbench("gsm8k", data_dir=tmp_path)


def test_hub_loader_uses_datasets(monkeypatch):
    import datasets

    calls = []

    def fake_load_dataset(name, split):
        calls.append((name, split))
        return [_rec(0, 1, 3, split)]

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    monkeypatch.setattr(_hub, "hub_unreachable", lambda timeout=0: None)  # this machine may be offline
    items = load_processbench(("gsm8k", "omnimath"))
    assert calls == [("Qwen/ProcessBench", "gsm8k"), ("Qwen/ProcessBench", "omnimath")]
    assert [it.split for it in items] == ["gsm8k", "omnimath"]


def _scored(data_dir):
    items = load_processbench(("gsm8k", "math"), data_dir=data_dir)
    scores = [[0.9, 0.2, 0.8, 0.95], [0.99, 0.7, 0.6], [0.3, 1.0], [0.9, 0.4, 0.1]]
    return [ScoredItem(it, s) for it, s in zip(items, scores, strict=True)]


def test_scored_roundtrip_and_append(tmp_path, data_dir):
    scored = _scored(data_dir)
    path = tmp_path / "out" / "scores.jsonl"
    save_scored_items(path, scored[:2])
    save_scored_items(path, scored[2:], append=True)
    back = load_scored_items(path)
    assert [b.item for b in back] == [s.item for s in scored]
    for b, s in zip(back, scored, strict=True):
        assert b.prm_scores == s.prm_scores and b.simulated is False
    assert scored_item_ids(path) == {(s.item.split, s.item.id) for s in scored}
    save_scored_items(path, scored[:1])  # overwrite
    assert len(load_scored_items(path)) == 1


def test_append_repairs_torn_last_line(tmp_path, data_dir):
    scored = _scored(data_dir)
    path = tmp_path / "scores.jsonl"
    save_scored_items(path, scored[:1])
    with path.open("a") as fh:
        fh.write('{"id": "gsm8k-1", "prm_sc')  # interrupted write
    assert scored_item_ids(path) == {("gsm8k", "gsm8k-0")}
    save_scored_items(path, scored[1:], append=True)
    assert [b.item.id for b in load_scored_items(path)] == [s.item.id for s in scored]


@pytest.mark.parametrize(
    "change, match",
    [
        (lambda r: r.update(prm_scores=[0.5]), "line 2.*'prm_scores' has 1 values but the item has 3 steps"),
        (lambda r: r.update(prm_scores=[0.5, float("nan"), 0.5]), r"line 2.*'prm_scores'\[1\] is NaN"),
        (
            lambda r: r.update(prm_scores=[0.5, 1.5, 0.5]),
            r"line 2.*'prm_scores'\[1\] = 1.5 is outside \[0, 1\]",
        ),
        (lambda r: r.update(prm_scores=[0.5, -0.1, 0.5]), r"outside \[0, 1\]"),
        (lambda r: r.update(prm_scores=[0.5, "x", 0.5]), "is not a number"),
        (lambda r: r.pop("prm_scores"), "line 2: missing field 'prm_scores'"),
        (lambda r: r.pop("split"), "line 2: missing field 'split'"),
        (lambda r: r.pop("problem"), r"line 2.*missing field\(s\) \['problem'\]"),
    ],
)
def test_scored_loader_names_line_and_field(tmp_path, data_dir, change, match):
    scored = _scored(data_dir)
    lines = [s.to_dict() for s in scored[:2]]
    change(lines[1])
    path = tmp_path / "bad.jsonl"
    path.write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    with pytest.raises(DataFormatError, match=match) as info:
        load_scored_items(path)
    assert "bad.jsonl" in str(info.value)


def test_scored_loader_bad_json_and_missing_file(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text("\n{nope\n")
    with pytest.raises(DataFormatError, match="line 2: invalid JSON"):
        load_scored_items(path)
    with pytest.raises(FileNotFoundError, match="score-processbench"):
        load_scored_items(tmp_path / "absent.jsonl")


def test_scored_loader_names_a_non_utf8_line(tmp_path, data_dir):
    path = tmp_path / "latin1.jsonl"
    good = json.dumps(_scored(data_dir)[0].to_dict())
    path.write_bytes(good.encode() + b"\n" + '{"problem": "caf\u00e9"}\n'.encode("latin-1"))
    with pytest.raises(DataFormatError, match=r"latin1\.jsonl, line 2: .*not UTF-8"):
        load_scored_items(path)


def test_hub_split_that_does_not_exist(monkeypatch):
    import datasets

    def fake_load_dataset(name, split):
        raise ValueError(f"Unknown split {split!r}")

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    monkeypatch.setattr(_hub, "hub_unreachable", lambda timeout=0: None)  # this machine may be offline
    with pytest.raises(InvalidParameterError, match="Qwen/ProcessBench has no split 'nope'"):
        load_processbench("nope")


def test_extra_fields_survive_load_and_save(tmp_path, data_dir):
    recs = [s.to_dict() for s in _scored(data_dir)]
    recs[0].update(step_labels_known=True, error_class="deception", source_idx=[1, 2], level=3)
    path = tmp_path / "extra.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in recs))
    back = load_scored_items(path)
    assert back[0].extra == {
        "step_labels_known": True,
        "error_class": "deception",
        "source_idx": [1, 2],
        "level": 3,
    }
    assert back[1].extra == {}
    again = save_scored_items(tmp_path / "again.jsonl", back)
    assert [json.loads(line) for line in again.read_text().splitlines()] == [
        {**r, "simulated": False} for r in recs
    ]


def test_duplicate_items_are_refused_naming_both_lines(tmp_path, data_dir):
    recs = [s.to_dict() for s in _scored(data_dir)]
    path = tmp_path / "dup.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in [*recs, recs[1]]))
    with pytest.raises(
        DataFormatError, match=r"dup\.jsonl, line 5: item 'gsm8k-1' of split 'gsm8k' .*line 2"
    ):
        load_scored_items(path)
    # the same id in two splits is two items
    recs[3]["id"] = "gsm8k-0"
    path.write_text("".join(json.dumps(r) + "\n" for r in recs))
    assert len(load_scored_items(path)) == 4


def test_select_splits_takes_any_names_and_lists_them(data_dir):
    scored = _scored(data_dir)
    scored[3].item.split = "prmbench"
    assert [s.item.split for s in select_splits(scored)] == ["gsm8k"] * 3 + ["prmbench"]
    assert len(select_splits(scored, ["prmbench"])) == 1
    assert len(select_splits(scored, exclude=["gsm8k"])) == 1
    with pytest.raises(
        InvalidParameterError, match=r"no items of split\(s\) 'math'.*present are 'gsm8k', 'prmbench'"
    ):
        select_splits(scored, ["math"], source="f.jsonl")
    with pytest.raises(InvalidParameterError, match=r"no items left.*'gsm8k', 'prmbench' excluded"):
        select_splits(scored, exclude=["gsm8k", "prmbench"])


def test_placeholder_labels_and_verdicts_are_refused(data_dir):
    scored = _scored(data_dir)
    require_step_labels(scored)
    require_outcomes(scored)
    scored[2].extra["step_labels_known"] = False
    scored[1].extra["final_answer_correct_known"] = False
    with pytest.raises(
        DataFormatError, match=r"f\.jsonl: 1 of 4 records say step_labels_known: false.*outcome"
    ):
        require_step_labels(scored, "f.jsonl")
    with pytest.raises(DataFormatError, match=r"final_answer_correct_known: false.*'gsm8k-1'"):
        require_outcomes(scored)
    with pytest.raises(DataFormatError, match="must be true/false"):
        from trim_pomdp.datasets.scored import _parse_scored

        _parse_scored({**scored[0].to_dict(), "step_labels_known": "no"}, "x")


def test_scored_item_checks_on_construction(data_dir):
    item = load_processbench("gsm8k", data_dir=data_dir)[0]
    with pytest.raises(DataFormatError, match="4 steps"):
        ScoredItem(item, [0.5])


def test_step_table(data_dir):
    table = step_table(_scored(data_dir))
    assert len(table) == 4 + 3 + 2 + 3
    np.testing.assert_allclose(table.r[:4], [0.9, 0.2, 0.8, 0.95])
    assert math.isnan(table.m[0]) and math.isnan(table.m[4])
    np.testing.assert_allclose(table.m[1:4], [0.9, 0.2, 0.2])
    np.testing.assert_allclose(table.m[5:7], [0.99, 0.7])
    assert table.z.tolist() == [0, 2, 1, 1, 0, 0, 0, 2, 1, 0, 0, 2]
    assert table.t.tolist() == [1, 2, 3, 4, 1, 2, 3, 1, 2, 1, 2, 3]
    assert table.item_index.tolist() == [0] * 4 + [1] * 3 + [2] * 2 + [3] * 3
    assert table.split.tolist() == ["gsm8k"] * 9 + ["math"] * 3
    assert table.counts() == {"S0": 6, "S1": 3, "S2": 3}
    sub = table.select(table.split == "math")
    assert len(sub) == 3 and sub.counts() == {"S0": 2, "S1": 0, "S2": 1}
    assert len(step_table([])) == 0


def test_protocol(data_dir):
    assert predicted_error_index([0.9, 0.4, 0.1]) == 1
    assert predicted_error_index([0.9, 0.5]) == -1
    m = processbench_metrics(_scored(data_dir))
    # gsm8k: item0 label 1 pred 1 right; item1 label -1 pred -1 right; item2 label 0 pred 0 right
    assert m["gsm8k"]["error"] == 100.0 and m["gsm8k"]["correct"] == 100.0 and m["gsm8k"]["n_error"] == 2
    # math: label 2, pred 1 -> wrong; no correct samples
    assert m["math"]["error"] == 0.0 and math.isnan(m["math"]["correct"])


# ----------------------------------------------------------------------------------------------- real data


EXPECTED_COUNTS = {
    "gsm8k": (1361, 207, 514),
    "math": (3774, 594, 2137),
    "olympiadbench": (5161, 661, 2997),
    "omnimath": (4033, 759, 3499),
}


def test_real_processbench_class_counts():
    data = require_shared_data("processbench")
    items = load_processbench(data_dir=data)
    assert len(items) == 3400
    sizes = {s: sum(it.split == s for it in items) for s in SPLITS}
    assert sizes == {"gsm8k": 400, "math": 1000, "olympiadbench": 1000, "omnimath": 1000}
    total = np.zeros(3, dtype=int)
    for split, (s0, s2, s1) in EXPECTED_COUNTS.items():
        z = np.concatenate([it.classes for it in items if it.split == split])
        c = np.bincount(z, minlength=3)
        assert (c[0], c[2], c[1]) == (s0, s2, s1), split
        total += c
    assert (total[0], total[2], total[1]) == (14329, 2221, 9147)

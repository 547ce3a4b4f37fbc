"""Answer extraction and checking, including the real evaluation sets' reference answers."""

from __future__ import annotations

import json

import pytest

from tests._support.data import require_shared_data
from trim_pomdp.datasets.answers import (
    ANSWER_FORMATS,
    answers_match,
    check_answer,
    extract_answer,
    extract_boxed,
    has_boxed,
    normalize_answer,
    parse_answer_formats,
)
from trim_pomdp.datasets.problems import DATASETS, load_dataset, load_problems_file, shard
from trim_pomdp.exceptions import DataFormatError, InvalidParameterError


def test_extract_boxed_nested_and_last():
    assert extract_boxed(r"so \boxed{\frac{1}{2}} and finally \boxed{\left( 3, \frac{\pi}{2} \right)}") == (
        r"\left( 3, \frac{\pi}{2} \right)"
    )
    assert extract_boxed("no answer") is None
    assert extract_boxed(r"\boxed{unbalanced") is None
    assert has_boxed(r"x \boxed{2}") and not has_boxed(r"\boxed{")


@pytest.mark.parametrize(
    "a,b",
    [
        ("27.0", "27"),
        ("\\dfrac{1}{2}", "\\frac12"),
        ("x = 5", "5"),
        ("1,000", "1000"),
        ("45^\\circ", "45"),
        ("\\text{(B)}", "(B)"),
        ("0.50", "0.5"),
        ("\\frac{\\sqrt{3}}{2}", "\\frac{\\sqrt3}{2}"),
        ("2\\pi", "2 \\pi"),
    ],
)
def test_equivalent_answers(a, b):
    assert answers_match(a, b)


@pytest.mark.parametrize(
    "a,b", [("27", "28"), ("\\frac{1}{2}", "\\frac{1}{3}"), ("(1,2)", "(2,1)"), ("x", "y")]
)
def test_different_answers(a, b):
    assert not answers_match(a, b)


def test_check_answer_with_only_the_boxed_format_requires_a_box():
    assert check_answer("the answer is 4", "4", ("boxed",)) == (None, False)
    assert check_answer(r"so \boxed{4}.", "4") == ("4", True)
    assert normalize_answer("$5$ cm") == "5"


@pytest.mark.parametrize(
    ("text", "answer", "fmt"),
    [
        ("She makes 9 * 2 = 18 dollars.\n#### 18\nThe answer is: 18", "18", "hash"),  # SmolLM2's GSM8K ending
        ("So the answer is 18 eggs per day.", "18", "answer-is"),
        ("**The final answer is $42$.**", "42", "answer-is"),
        (r"first \boxed{3}, then #### 4", "3", "boxed"),  # a box wins over the others
        (r"put it within \boxed{} ... The answer is 7", "7", "answer-is"),  # an empty box is no answer
    ],
)
def test_answers_beyond_boxed(text, answer, fmt):
    assert extract_answer(text) == (answer, fmt)


def test_an_empty_box_is_not_an_answer():
    assert extract_boxed(r"within \boxed{}") is None and not has_boxed(r"within \boxed{ }")
    assert extract_answer(r"within \boxed{}") == (None, None)
    assert extract_answer("#### 5", ("boxed", "answer-is")) == (None, None)


def test_answer_formats_are_checked():
    assert parse_answer_formats("hash, boxed") == ("hash", "boxed")
    assert parse_answer_formats(None) == ANSWER_FORMATS
    with pytest.raises(InvalidParameterError, match="use a comma list of boxed, hash, answer-is"):
        parse_answer_formats("boxed,last-number")


@pytest.mark.data
@pytest.mark.parametrize("name", [d for d in DATASETS if d != "aime24"])
def test_real_reference_answers_check_against_themselves(name):
    folder = require_shared_data("eval-sets")
    problems = load_dataset(name, folder)
    assert len(problems) >= 30 and len({p.id for p in problems}) == len(problems)
    ok = sum(check_answer(f"Thus \\boxed{{{p.answer}}}.", p.answer)[1] for p in problems)
    assert ok == len(problems)
    # a different problem's answer must (almost always) be judged wrong
    wrong = sum(
        answers_match(problems[i].answer, problems[i - 1].answer)
        for i in range(1, min(len(problems), 30))
        if normalize_answer(problems[i].answer) != normalize_answer(problems[i - 1].answer)
    )
    assert wrong <= 1


@pytest.mark.data
def test_math500_solutions_agree_with_answer_field():
    folder = require_shared_data("eval-sets/math500.jsonl")
    rows = [json.loads(line) for line in folder.read_text().splitlines()]
    agree = sum(check_answer(r["solution"], r["answer"])[1] for r in rows)
    assert agree >= 0.97 * len(rows), agree


def test_problems_file_formats(tmp_path):
    p = tmp_path / "p.jsonl"
    p.write_text(
        '{"question": "q1", "answer": "a #### 1,234"}\n{"problem": "q2", "solution": "so \\\\boxed{7}"}\n'
    )
    probs = load_problems_file(p)
    assert [(q.id, q.answer) for q in probs] == [("0", "1234"), ("1", "7")]
    c = tmp_path / "p.csv"
    c.write_text("Title line\nID,Question,Answer\nx-1,What?,5\n")
    assert load_problems_file(c)[0].id == "x-1"
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"problem": "no answer"}\n')
    with pytest.raises(DataFormatError, match="no answer"):
        load_problems_file(bad)
    with pytest.raises(InvalidParameterError, match="unknown dataset"):
        load_dataset("nope")


def test_duplicate_ids_are_refused_not_renumbered(tmp_path):
    p = tmp_path / "dup.jsonl"
    rows = [{"id": "a", "problem": "p", "answer": "1"}, {"id": "b", "problem": "q", "answer": "2"}]
    p.write_text("\n".join(json.dumps(r) for r in [*rows, {**rows[0], "problem": "r"}]) + "\n")
    with pytest.raises(DataFormatError, match=r"1 problem ids appear more than once: 'a' in rows 0, 2"):
        load_problems_file(p)
    p.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    assert [q.id for q in load_problems_file(p)] == ["a", "b"]


def test_shard_partitions():
    items = list(range(10))
    parts = [shard(items, f"{k}/3") for k in (1, 2, 3)]
    assert sorted(x for part in parts for x in part) == items and parts[0] == [0, 3, 6, 9]
    with pytest.raises(InvalidParameterError):
        shard(items, "4/3")

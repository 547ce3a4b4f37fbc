"""Cassandra .pomdp and APPL .pomdpx readers/writers: fixtures, round trips, errors, shared data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests._support.data import require_shared_data
from trim_pomdp.exceptions import DataFormatError, InvalidParameterError
from trim_pomdp.solvers import TabularPOMDP
from trim_pomdp.solvers.formats import parse_cassandra, parse_pomdpx, read_pomdp, write_pomdp
from trim_pomdp.solvers.formats.cassandra import format_float

FIX = Path(__file__).parents[1] / "fixtures" / "pomdp"


def test_corridor_every_cassandra_form():
    m = read_pomdp(FIX / "corridor.pomdp")
    m.check()
    assert (
        m.state_names == ["a", "b", "c"] and m.action_names is None and m.observation_names == ["near", "far"]
    )
    assert m.discount == 0.9
    T = np.zeros((2, 3, 3))
    T[0] = np.eye(3)
    T[1] = [[0, 1, 0], [0, 0.3, 0.7], [1 / 3, 1 / 3, 1 / 3]]
    O = np.full((2, 3, 2), 0.5)
    O[1, 1] = [0.9, 0.1]
    R4 = np.ones((2, 3, 3, 2))
    R4[1, 1, 2, 0] = 5.0
    R4[0, 2, 2, :] = [2.0, 3.0]
    R4[1, 0] = [[1, 2], [3, 4], [5, 6]]
    expected_R = -np.einsum("ast,ato,asto->sa", T, O, R4)  # values: cost -> negated
    np.testing.assert_allclose(m.T, T, atol=1e-15)
    np.testing.assert_allclose(m.O, O, atol=1e-15)
    np.testing.assert_allclose(m.R, expected_R, atol=1e-12)
    np.testing.assert_allclose(m.b0, [0.5, 0.0, 0.5])


def test_counted_start_vector_and_named_actions():
    m = read_pomdp(FIX / "counted.pomdp")
    assert m.state_names is None and m.action_names == ["go", "wait"]
    np.testing.assert_allclose(m.b0, [0.2, 0.3, 0.5])
    np.testing.assert_array_equal(m.T[0], [[0, 1, 0], [0, 0, 1], [1, 0, 0]])
    np.testing.assert_array_equal(m.T[1], np.eye(3))
    np.testing.assert_array_equal(m.O[0], [[1, 0], [0, 1], [0.5, 0.5]])
    np.testing.assert_array_equal(m.R, [[0, -1], [0, -1], [10, -1]])


@pytest.mark.parametrize(
    "start, expected",
    [
        ("start: uniform", [1 / 3, 1 / 3, 1 / 3]),
        ("start: b", [0, 1, 0]),
        ("start: 2", [0, 0, 1]),
        ("start exclude: a", [0, 0.5, 0.5]),
        ("start include: 0 2", [0.5, 0, 0.5]),
        ("", [1 / 3, 1 / 3, 1 / 3]),
    ],
)
def test_start_forms(start, expected):
    text = (
        f"discount: 0.9\nvalues: reward\nstates: a b c\nactions: x\nobservations: 1\n{start}\n"
        "T: x identity\nO: x uniform\n"
    )
    np.testing.assert_allclose(parse_cassandra(text).b0, expected)


def test_later_entries_override_and_reward_wildcards_reset_full_entries():
    text = (
        "discount: 0.9\nstates: 2\nactions: 1\nobservations: 2\n"
        "T: * uniform\nT: 0 : 0 : 0 1.0\nT: 0 : 0 : 1 0.0\nO: 0 uniform\n"
        "R: 0 : 0 : 1 : 0 7\nR: 0 : * : * : * 2\nR: 0 : 1 : 1 : 1 4\n"
    )
    m = parse_cassandra(text)
    np.testing.assert_array_equal(m.T[0], [[1, 0], [0.5, 0.5]])
    # state 0: the later full wildcard replaced the specific 7; state 1: 2 except (s'=1, o=1) -> 4
    np.testing.assert_allclose(m.R[:, 0], [2.0, 2.0 + 0.5 * 0.5 * 2.0])


@pytest.mark.parametrize(
    "body, line, fragment",
    [
        ("T: 0 : 0 : z 0.5\n", 6, "a state"),
        ("T: 0\n1 0 0\n", 7, "transition matrix"),
        ("O: 0 : 0 : 0 abc\n", 6, "observation probability"),
        ("discount: 0.9\nR: 0 : 0 : 0 : 0\n", 7, "reward value"),
        ("T: 0 : 0 : 1 0.5\nbogus: 1\n", 7, "a statement"),
        ("start: 0.5 0.5 0.5\n", 6, "start"),
    ],
)
def test_parse_errors_name_line_and_expectation(body, line, fragment):
    text = "discount: 0.9\nvalues: reward\nstates: 2\nactions: 1\nobservations: 2\n" + body
    with pytest.raises(DataFormatError) as err:
        parse_cassandra(text, "bad.pomdp")
    msg = str(err.value)
    assert f"bad.pomdp: line {line}:" in msg and fragment in msg, msg


def test_values_keyword_error_and_missing_preamble():
    with pytest.raises(DataFormatError, match=r"line 2: expected 'reward' or 'cost', got 'profit'"):
        parse_cassandra("discount: 0.9\nvalues: profit\n")
    with pytest.raises(DataFormatError, match="declare states"):
        parse_cassandra("discount: 0.9\nactions: 2\nT: 0 : 0 : 0 1\n")
    with pytest.raises(DataFormatError, match="missing 'discount:'"):
        parse_cassandra("states: 1\nactions: 1\nobservations: 1\nT: 0 identity\nO: 0 uniform\n")


def test_rows_must_be_stochastic():
    text = (
        "discount: 0.9\nstates: a b\nactions: go\nobservations: 1\n"
        "T: go : a : b 0.5\nT: go : b : b 1\nO: go uniform\n"
    )
    with pytest.raises(DataFormatError, match=r"action 'go', start state 'a' sums to 0\.5"):
        parse_cassandra(text)


def test_factored_pomdpx_is_flattened():
    m = read_pomdp(FIX / "factored.pomdpx")
    m.check()
    assert m.state_names == ["left_s0", "left_s1", "right_s0", "right_s1"]
    assert m.observation_names == ["hl_s0", "hl_s1", "hr_s0", "hr_s1"]
    t_pos = np.array([np.eye(2), [[0, 1], [1, 0]]])
    t_lit = np.array([np.eye(2), [[0.8, 0.2], [0.8, 0.2]]])
    T = np.array([np.kron(t_pos[a], t_lit[a]) for a in range(2)])
    o_sense = np.array([[[0.9, 0.1], [0.2, 0.8]], np.full((2, 2), 0.5)])
    O = np.zeros((2, 4, 4))
    for a in range(2):
        for p in range(2):
            for lit in range(2):
                for o in range(2):
                    O[a, p * 2 + lit, o * 2 + lit] = o_sense[a, p, o]
    R = np.zeros((4, 2))
    R[:, 0] = -1
    R[:2, 1] = 2
    p_right_next = T[:, :, 2:].sum(axis=2).T  # (s, a)
    R += 10 * p_right_next
    np.testing.assert_allclose(m.T, T)
    np.testing.assert_allclose(m.O, O)
    np.testing.assert_allclose(m.R, R)
    np.testing.assert_allclose(m.b0, [0.25, 0, 0.75, 0])


@pytest.mark.parametrize(
    "change, fragment",
    [
        (("<ProbTable>0.25 0.75</ProbTable>", "<ProbTable>0.25</ProbTable>"), "expected 2"),
        (
            (
                "<Instance>stay - -</Instance><ProbTable>identity",
                "<Instance>stay -</Instance><ProbTable>identity",
            ),
            "expected 3",
        ),
        (("<Instance>flip left</Instance>", "<Instance>flip middle</Instance>"), "'middle' is not a value"),
        (("<Discount>0.9</Discount>", "<Discount>x</Discount>"), "<Discount>"),
        (("</pomdpx>", ""), "not well-formed XML"),
        (('type="TBL"', 'type="DD"'), "not supported"),
    ],
)
def test_pomdpx_errors(change, fragment):
    text = (FIX / "factored.pomdpx").read_text().replace(*change, 1)
    with pytest.raises(DataFormatError, match=fragment):
        parse_pomdpx(text, "bad.pomdpx")


def _random_model(rng, S=6, A=3, Z=4, names=True) -> TabularPOMDP:
    T = rng.random((A, S, S)) * (rng.random((A, S, S)) < 0.4)
    T[:, np.arange(S), np.arange(S)] += 0.1
    T /= T.sum(axis=2, keepdims=True)
    O = rng.random((A, S, Z)) * (rng.random((A, S, Z)) < 0.7)
    O[:, :, 0] += 0.05
    O /= O.sum(axis=2, keepdims=True)
    R = rng.normal(size=(S, A)) * (rng.random((S, A)) < 0.8)
    b0 = rng.random(S)
    b0 /= b0.sum()
    kw = {}
    if names:
        kw = dict(
            state_names=[f"s-{i}" for i in range(S)],
            action_names=[f"act_{i}" for i in range(A)],
            observation_names=[f"o{i}x" for i in range(Z)],
        )
    return TabularPOMDP(T=T, O=O, R=R, b0=b0, discount=0.93, **kw)


@pytest.mark.parametrize("fmt", ["pomdp", "pomdpx"])
@pytest.mark.parametrize("names", [True, False])
def test_round_trip_is_exact(tmp_path, fmt, names):
    model = _random_model(np.random.default_rng(3), names=names)
    path = write_pomdp(model, tmp_path / f"m.{fmt}")
    back = read_pomdp(path)
    for key in ("T", "O", "R", "b0"):
        np.testing.assert_array_equal(getattr(back, key), getattr(model, key), err_msg=key)
    assert back.discount == model.discount
    if names:
        assert back.state_names == model.state_names and back.action_names == model.action_names
    # the writer is sparse: zero transitions are not written
    if fmt == "pomdp":
        n_t_lines = sum(line.startswith("T:") for line in path.read_text().splitlines())
        assert n_t_lines == int(np.count_nonzero(model.T))


def test_write_pomdp_format_argument(tmp_path):
    model = _random_model(np.random.default_rng(0))
    p = write_pomdp(model, tmp_path / "model.txt", format="pomdpx")
    assert p.read_text().startswith("<?xml")
    assert read_pomdp(p).n_states == model.n_states  # sniffed from content
    with pytest.raises(InvalidParameterError, match="format must be one of"):
        write_pomdp(model, tmp_path / "x", format="json")
    with pytest.raises(DataFormatError, match="does not exist"):
        read_pomdp(tmp_path / "missing.pomdp")


def test_format_float_is_exact_and_positional():
    for x in (0.1, 1 / 3, 1e-7, 123456.789, -100.0, 0.0, 5e-324, 1.0):
        s = format_float(x)
        assert "e" not in s and "." in s and float(s) == x and s[0] != "."


def test_shared_tiger_pomdp_equals_pomdpx():
    root = require_shared_data("pomdp")
    a, b = read_pomdp(root / "Tiger.pomdp"), read_pomdp(root / "Tiger.pomdpx")
    for key in ("T", "O", "R", "b0"):
        np.testing.assert_array_equal(getattr(a, key), getattr(b, key), err_msg=key)
    assert a.discount == b.discount == 0.95
    np.testing.assert_array_equal(a.R, [[-1, -100, 10], [-1, 10, -100]])


@pytest.mark.parametrize(
    "name, shape",
    [
        ("Hallway.pomdp", (5, 60, 21)),
        ("cheese.95.POMDP", (4, 11, 7)),
        ("1d.POMDP", (2, 4, 2)),
        ("tiger.95.POMDP", (3, 2, 2)),
    ],
)
def test_shared_classic_files_parse(name, shape, tmp_path):
    m = read_pomdp(require_shared_data(f"pomdp/{name}"))
    m.check()
    assert (m.n_actions, m.n_states, m.n_observations) == shape
    for fmt in ("pomdp", "pomdpx"):
        back = read_pomdp(write_pomdp(m, tmp_path / f"x.{fmt}"))
        np.testing.assert_array_equal(back.T, m.T)
        np.testing.assert_array_equal(back.R, m.R)


_ENTRIES = (
    "discount: 0.9\nvalues: reward\nstates: a b c\nactions: 2\nobservations: 2\n"
    "T: * uniform\nO: * uniform\n"
    "T: 0 : a : b 0.5   # a trailing comment\n  T : 0 :a:c 0.5\nT: * : * : * 0.0\nT: * : a : a 1\n"
    "T: 1 : a : a 0.5\nT: 1 : a : c 0.5\nT: * : b : c 1.0\nT: 0 : c : 2 1\nT: 1 : c : a 1\nT: 1 : * : b 0.0\n"
    "\n# a comment line\nO: * : * : 0 0.25\nO: * : * : 1 0.75\nO: 0 : 2 : * 0.5\n"
    "R: * : * : * : * 1\nR: 0 : a : * : 1 5\nR: 1 : b : c : * -2\nR: 0 : a : b : 0 3\nR: * : c : * : * 4\n"
)


def _split_entries(text: str) -> str:
    """The same statements with each one-line entry's value on a line of its own (the statement parser's path)."""
    out = []
    for line in text.splitlines():
        head = line.partition("#")[0]
        if head.strip()[:1] in ("T", "O", "R") and head.count(":") >= 3:
            *idx, value = head.split()
            out.append(" ".join(idx) + "\n" + value)
        else:
            out.append(line)
    return "\n".join(out) + "\n"


def test_runs_of_one_line_entries_mean_what_the_statement_parser_reads():
    runs, split = parse_cassandra(_ENTRIES), parse_cassandra(_split_entries(_ENTRIES))
    for key in ("T", "O", "R", "b0"):
        np.testing.assert_array_equal(getattr(runs, key), getattr(split, key), err_msg=key)
    np.testing.assert_array_equal(
        runs.T, [[[1, 0, 0], [0, 0, 1], [0, 0, 1]], [[0.5, 0, 0.5], [0, 0, 1], [1, 0, 0]]]
    )
    np.testing.assert_array_equal(runs.O[1], np.tile([0.25, 0.75], (3, 1)))
    np.testing.assert_array_equal(runs.O[0, 2], [0.5, 0.5])


@pytest.mark.parametrize("block", [1, 7, 40])
def test_blocks_of_any_size_and_line_breaks_give_the_same_model(block):
    from trim_pomdp.solvers.formats._tokens import text_blocks
    from trim_pomdp.solvers.formats.cassandra import _parse

    whole = parse_cassandra(_ENTRIES)
    for text in (_ENTRIES, _ENTRIES.replace("\n", "\r\n"), _ENTRIES.replace("\n", "\x0c")):
        m = _parse(text_blocks(text, block), "m.pomdp", None, "auto", None)
        for key in ("T", "O", "R"):
            np.testing.assert_array_equal(getattr(m, key), getattr(whole, key), err_msg=key)


def test_a_run_of_entries_reports_its_first_bad_line():
    head = "discount: 0.9\nstates: 2\nactions: 1\nobservations: 2\nT: * uniform\nO: * uniform\n"
    with pytest.raises(
        DataFormatError, match=r"bad\.pomdp: line 8: expected a action \(0\.\.0 or '\*'\), got 'q'"
    ):
        parse_cassandra(head + "T: 0 : 0 : 0 1\nR: q : 0 : 0 : 0 1\nT: 0 : 5 : 0 1\n", "bad.pomdp")
    with pytest.raises(DataFormatError, match=r"line 7: expected a transition probability, got 'x'"):
        parse_cassandra(head + "T: 0 : 0 : 0 x\nbogus: 1\n", "bad.pomdp")

"""The shared helpers of ``trim_pomdp._internal`` and the name registry."""

from __future__ import annotations

import io
import itertools
import json

import numpy as np
import pytest

from trim_pomdp import registry
from trim_pomdp._internal.jsonl import JsonlWriter, iter_jsonl, read_jsonl, read_text, repair_torn_tail
from trim_pomdp._internal.progress import Progress
from trim_pomdp._internal.simplex import check_stochastic, nondominated, simplex_grid
from trim_pomdp.exceptions import DataFormatError, InvalidParameterError, ModelCheckError


# ------------------------------------------------------------------------------------------------ JSON Lines
def test_torn_tail_is_dropped_and_repaired_a_complete_one_is_kept(tmp_path):
    p = tmp_path / "a.jsonl"
    p.write_text('{"a": 1}\n{"b": 2}\n{"c": ')  # killed in the middle of a write
    assert read_jsonl(p) == [{"a": 1}, {"b": 2}]
    with pytest.raises(DataFormatError, match="line 3"):
        list(iter_jsonl(p, torn_tail="error"))
    with JsonlWriter(p) as w:  # repairs, then appends on a fresh line
        w.write({"d": np.int64(4), "e": float("nan")})
    assert read_jsonl(p) == [{"a": 1}, {"b": 2}, {"d": 4, "e": None}]
    q = tmp_path / "b.jsonl"
    q.write_text('{"a": 1}\n{"b": 2}')  # written by hand without the last newline: a complete record
    repair_torn_tail(q)
    assert q.read_text() == '{"a": 1}\n{"b": 2}\n' and read_jsonl(q) == [{"a": 1}, {"b": 2}]


def test_bad_lines_name_the_file_and_line(tmp_path):
    p = tmp_path / "bad.jsonl"
    p.write_text('{"a": 1}\nnot json\n{"c": 3}\n')
    with pytest.raises(DataFormatError, match=r"bad\.jsonl, line 2: invalid JSON"):
        read_jsonl(p)
    p.write_text('{"a": 1}\n[1, 2]\n')
    with pytest.raises(DataFormatError, match="line 2: expected a JSON object"):
        read_jsonl(p)
    p.write_bytes(b'{"a": 1}\n{"b": "\xff"}\n')
    with pytest.raises(DataFormatError, match=r"line 2: the .* is not UTF-8"):
        read_text(p)
    assert read_jsonl(tmp_path / "missing.jsonl") == []


# ------------------------------------------------------------------------------------------------ simplex
@pytest.mark.parametrize(("n", "r"), [(1, 3), (2, 4), (3, 5), (4, 3)])
def test_simplex_grid_is_every_lattice_point_once(n, r):
    g = simplex_grid(n, r)
    expected = [c for c in itertools.product(range(r + 1), repeat=n) if sum(c) == r]
    assert len(g) == len(expected) and np.allclose(g.sum(axis=1), 1.0)
    assert {tuple(np.rint(row * r).astype(int)) for row in g} == set(expected)
    assert tuple(np.rint(g[0] * r)) == (r,) + (0,) * (n - 1)  # largest first entry first
    with pytest.raises(ValueError, match="resolution"):
        simplex_grid(n, 0)


def test_nondominated_keeps_the_upper_surface_exactly():
    rng = np.random.default_rng(3)
    V = rng.normal(size=(200, 3))
    V = np.vstack([V, V[:5] - 0.1, V[:3]])  # dominated copies and exact duplicates
    keep = nondominated(V)
    B = rng.dirichlet(np.ones(3), size=2000)
    np.testing.assert_array_equal((B @ V.T).max(axis=1), (B @ V[keep].T).max(axis=1))
    for i, j in itertools.permutations(keep, 2):
        assert not np.all(V[j] >= V[i])  # no survivor dominates another
    assert len(keep) < len(V) - 8


def test_check_stochastic_names_the_first_offending_index():
    check_stochastic("T", np.full((2, 3, 3), 1 / 3))
    bad = np.full((2, 3, 3), 1 / 3)
    bad[1, 2] = [0.5, 0.5, 0.1]
    with pytest.raises(ModelCheckError, match=r"T\[1, 2, :\] sums to 1.1, not 1"):
        check_stochastic("T", bad, error=ModelCheckError)
    with pytest.raises(ValueError, match=r"b0 sums to 0.9"):
        check_stochastic("b0", np.array([0.5, 0.4]))
    with pytest.raises(ValueError, match=r"O\[1, 0\] = -0.2 is not a probability"):
        check_stochastic("O", np.array([[1.0, 0.0], [-0.2, 1.2]]))


# ------------------------------------------------------------------------------------------------ progress
def test_progress_prints_plain_lines_when_not_a_terminal():
    out = io.StringIO()
    with Progress(10, "solving", stream=out, interval=0.0, unit="steps") as bar:
        for _ in range(10):
            bar.advance(note="gap 1e-3")
    lines = out.getvalue().splitlines()
    assert lines and lines[-1].startswith("solving: 10/10 (100%)") and "steps/s" in lines[-1]
    assert "gap 1e-3" in lines[-1]
    silent = io.StringIO()
    with Progress(3, "x", stream=silent, enabled=False) as bar:
        bar.advance(3)
    assert silent.getvalue() == ""


# ------------------------------------------------------------------------------------------------ registry
def test_registry_names_aliases_and_suggestions():
    assert registry.canonical_solver("native") == "finite-horizon"
    assert registry.canonical_solver("Point-Based") == "pointbased"
    assert registry.canonical_sarsop_backend("NATIVE") == "nativesarsop.jl"
    assert registry.router_label("pomdp") == "TRIM-POMDP" and registry.router_label("mine") == "mine"
    with pytest.raises(InvalidParameterError, match="did you mean 'sarsop'"):
        registry.canonical_solver("sarsopp")
    for s in registry.SOLVERS.values():
        module, _, cls = s.target.partition(":")
        assert cls and module.startswith("trim_pomdp.solvers."), s
    assert len({r.model_prefix for r in registry.ROUTERS.values()}) == len(registry.ROUTERS)
    json.dumps({k: v.label for k, v in registry.ROUTERS.items()})  # plain strings, usable in cards

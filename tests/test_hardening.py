"""Corrupted artifacts: every truncation and every flipped bit of a policy, an observation model or a router file
is refused with a :class:`~trim_pomdp.exceptions.DataFormatError` (never a traceback of another kind, never a
silently different artifact).

Each artifact type is fuzzed with seeded truncations and single-bit flips of both its files (``.npz`` and the
``.json`` card); every load must raise ``DataFormatError``: the card's digest covers both files, so even a change
that leaves the arrays readable is caught.
"""

from __future__ import annotations

import shutil
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from tests._support.toys import small_obs_model, small_trim
from trim_pomdp.exceptions import DataFormatError
from trim_pomdp.observation_models.observation import ObservationModel
from trim_pomdp.pomdp.policy import TrimPolicy, solve_trim
from trim_pomdp.routers.rl.agg import AggRouter
from trim_pomdp.solvers.base import SolveInfo
from trim_pomdp.solvers.policy import AlphaVectorPolicy

N_TRUNCATIONS = 60
N_FLIPS = 60


def _trim_policy(d: Path) -> tuple[Callable[[Path], object], list[Path]]:
    solve_trim(small_trim(horizon=4, n_bins=4)).save(d)
    return TrimPolicy.load, [d / "policy.npz", d / "policy.json"]


def _observation_model(d: Path) -> tuple[Callable[[Path], object], list[Path]]:
    npz, js = small_obs_model(5).save(d)
    return ObservationModel.load, [npz, js]


def _alpha_policy(d: Path) -> tuple[Callable[[Path], object], list[Path]]:
    info = SolveInfo("pointbased", 0.1, 3, 1.0, 1.5, False, {"states": 3})
    npz, js = AlphaVectorPolicy(np.arange(9.0).reshape(3, 3), [0, 1, 0], ["a", "b"], info=info).save(
        d / "policy"
    )
    return lambda p: AlphaVectorPolicy.load(p / "policy"), [npz, js]


def _agg_router(d: Path) -> tuple[Callable[[Path], object], list[Path]]:
    rng = np.random.default_rng(0)
    weights = [(rng.normal(size=(4, 8)), rng.normal(size=8)), (rng.normal(size=(8, 2)), rng.normal(size=2))]
    AggRouter(weights, horizon=10, card={"lam": 5e-4}).save(d)
    return AggRouter.load, sorted(p for p in d.iterdir() if p.suffix in (".npz", ".json"))


ARTIFACTS = {
    "trim-policy": _trim_policy,
    "observation-model": _observation_model,
    "alpha-policy": _alpha_policy,
    "agg-router": _agg_router,
}


def _fingerprint(obj: object) -> bytes:
    """Everything numeric an artifact holds, to compare a load with the original."""
    parts: list[np.ndarray] = []
    for name in ("alphas", "actions", "pair_probs", "first_probs", "edges"):
        value = getattr(obj, name, None)
        if value is not None:
            parts.append(np.asarray(value, dtype=float).ravel())
    for W, b in getattr(obj, "weights", []):
        parts += [np.asarray(W, dtype=float).ravel(), np.asarray(b, dtype=float).ravel()]
    if isinstance(obj, TrimPolicy):
        obj._ensure_alphas()
        parts += [obj._alphas.ravel(), np.asarray(obj.lam, float).ravel()]
    return b"".join(p.tobytes() for p in parts)


@pytest.mark.parametrize("kind", sorted(ARTIFACTS))
def test_every_truncation_and_bit_flip_is_a_data_format_error(kind, tmp_path):
    original = tmp_path / "original"
    load, files = ARTIFACTS[kind](original)
    reference = _fingerprint(load(original))
    rng = np.random.default_rng(zlib.crc32(kind.encode()))
    work = tmp_path / "work"
    attempts = [("truncate", i) for i in range(N_TRUNCATIONS)] + [("flip", i) for i in range(N_FLIPS)]
    for what, _ in attempts:
        shutil.rmtree(work, ignore_errors=True)
        shutil.copytree(original, work)
        target = work / files[int(rng.integers(len(files)))].name
        data = bytearray(target.read_bytes())
        if what == "truncate":
            data = data[: int(rng.integers(len(data)))]
        else:
            bit = int(rng.integers(8 * len(data)))
            data[bit // 8] ^= 1 << (bit % 8)
        target.write_bytes(bytes(data))
        try:
            loaded = load(work)
        except DataFormatError:
            continue
        same = _fingerprint(loaded) == reference
        pytest.fail(
            f"{what} of {target.name} was not detected: the {kind} loaded ({'same' if same else 'different'} data)"
        )


def test_sizes_that_cannot_fit_are_refused_before_allocating(monkeypatch):
    """Issue 15 item 8: ``solve --horizon 1e9`` and ``--lambda 1e-4:1e-2:1e9`` used to exhaust memory."""
    import resource

    from click.testing import CliRunner

    from trim_pomdp.cli import main
    from trim_pomdp.exceptions import InvalidParameterError, ResourceLimitError
    from trim_pomdp.pomdp import TrimParams
    from trim_pomdp.pomdp.sweep import MAX_LAMBDAS, parse_lambdas

    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(ResourceLimitError, match=r"horizon H=1000000000 needs at least .* GiB"):
        TrimParams(0.8, 0.9, horizon=10**9)
    with pytest.raises(ResourceLimitError, match="memory limit"):
        TrimParams(0.8, 0.9).replace(horizon=10**9)
    monkeypatch.setenv("TRIM_POMDP_MEMORY_LIMIT", "1M")  # the limit is configurable
    with pytest.raises(ResourceLimitError, match=r"1\.0 MiB"):
        TrimParams(0.8, 0.9, horizon=10**5)
    monkeypatch.delenv("TRIM_POMDP_MEMORY_LIMIT")
    assert TrimParams(0.8, 0.9, horizon=10**5).horizon == 10**5  # large but fits
    with pytest.raises(InvalidParameterError, match=f"more than {MAX_LAMBDAS}"):
        parse_lambdas("1e-4:1e-2:1000000000")
    with pytest.raises(InvalidParameterError, match="must be >= 1"):
        parse_lambdas("1e-4:1e-2:0")
    assert len(parse_lambdas(f"1e-4:1e-2:{MAX_LAMBDAS}")) == MAX_LAMBDAS
    res = CliRunner().invoke(main, ["solve", "--horizon", "1000000000", "--out", "unused"])
    assert res.exit_code == 1 and "Traceback" not in res.output and "memory limit" in res.output
    # nothing near the 134 GiB was ever allocated (ru_maxrss is in KiB on Linux)
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 300 * 1024

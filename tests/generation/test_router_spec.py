"""Router specifications of ``trim-pomdp run --router SPEC``: names and record labels from the registry."""

from __future__ import annotations

import pytest

from tests._support.toys import small_trim
from trim_pomdp.exceptions import InvalidParameterError
from trim_pomdp.registry import ROUTERS
from trim_pomdp.routers.spec import LIVE_ROUTERS, resolve_router


def test_baselines_and_threshold():
    weak, strong = resolve_router("weak"), resolve_router(" strong ")
    assert (weak.mode, weak.policy, weak.knob, weak.factory) == ("weak", "weak", None, None)
    assert (strong.mode, strong.policy, strong.spec) == ("strong", "strong", "strong")
    thr = resolve_router("thr:0.5")
    assert (thr.mode, thr.policy, thr.knob) == ("route", "thr", 0.5)
    assert thr.factory is not None and thr.factory() is not thr.factory()  # one router per worker
    assert set(LIVE_ROUTERS) <= set(ROUTERS) and all(ROUTERS[name].name == name for name in LIVE_ROUTERS)


def test_solve_output_directory(tmp_path):
    from trim_pomdp.pomdp.policy import solve_trim

    solve_trim(small_trim(horizon=3, n_bins=3, lam=1e-3)).save(tmp_path / "pol")
    for spec in (str(tmp_path / "pol"), f"pomdp:{tmp_path / 'pol'}"):
        r = resolve_router(spec)
        assert (r.mode, r.policy, r.knob) == ("route", "pomdp", 1e-3)
        assert r.factory is not None and r.factory() is not r.factory()


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("bogus", "`trim-pomdp solve` output directory"),
        ("wek", "did you mean 'weak'?"),
        ("thr", "needs an argument: thr:K"),
        ("thr:x", "thr:K needs a number K"),
        ("thr:nan", "K must be in [0, 1]"),
        ("thr:5", "K must be in [0, 1]"),
        ("thr:-1", "K must be in [0, 1]"),
        ("agg:nowhere", "'nowhere' is not a directory"),
        ("automix", "routes whole queries"),
    ],
)
def test_bad_specifications_say_what_to_write(spec, message):
    with pytest.raises(InvalidParameterError) as info:
        resolve_router(spec)
    assert message in str(info.value)

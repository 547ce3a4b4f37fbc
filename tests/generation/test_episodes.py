"""Live episodes for the RL routers against the wire-format fakes: real HTTP, the run's cache, many in flight.

The weak fake errs at step 2 of every problem ``What is A + B?`` with ``(A + B) % 3 == 0`` (the PRM scores that
step 0.1) unless the strong model wrote step 2, so the outcome of every episode follows from its decisions.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

pytest.importorskip("stable_baselines3")

from tests._support.servers.fake import FakeOpenAIServer, ScriptedMathModel
from trim_pomdp.cli import main
from trim_pomdp.datasets.problems import load_dataset
from trim_pomdp.exceptions import InvalidParameterError
from trim_pomdp.generation import RunConfig
from trim_pomdp.generation.episodes import LiveModels, split_problems

N = 9


def _data(tmp_path: Path, n: int = N) -> Path:
    path = tmp_path / "p.jsonl"
    rows = [{"id": f"q{i}", "problem": f"What is {i} + {i + 1}?", "answer": str(2 * i + 1)} for i in range(n)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _weak_right(qid: str) -> bool:
    i = int(qid[1:])
    return (2 * i + 1) % 3 != 0


@pytest.fixture()
def servers():
    with FakeOpenAIServer() as weak, FakeOpenAIServer(ScriptedMathModel(weak=False)) as strong:
        yield weak, strong


def _run_config(tmp_path: Path, weak: FakeOpenAIServer, strong: FakeOpenAIServer, **kw) -> RunConfig:
    base = {
        "dataset": str(_data(tmp_path)), "router": "training", "out_dir": tmp_path / "out", "weak": weak.url,
        "weak_model": "weak", "strong": "big", "strong_url": strong.url, "prm": weak.url, "max_steps": 6,
        "timeout": 10, "max_retries": 0, "cache": tmp_path / "cache.sqlite",
    }  # fmt: skip
    return RunConfig(**{**base, **kw})


def _play(src, n: int, action: int, seed: int = 3) -> list[dict]:
    """Run a fixed batch of ``n`` episodes with one action throughout; the finished traces."""
    obs = src.reset(n, seed=seed)
    while obs.active.any():
        obs = src.step(np.full(n, action))
    return src.traces


def test_a_fixed_batch_runs_every_problem_once_and_the_cache_serves_repeats(tmp_path, servers):
    weak, strong = servers
    run = _run_config(tmp_path, weak, strong)
    problems = load_dataset(run.dataset)
    with LiveModels.from_run_config(run, tmp_path / "out") as models:
        src = models.episodes(problems)
        traces = _play(src, N, action=0)
        assert sorted(t["query_id"] for t in traces) == sorted(p.id for p in problems)
        assert [bool(c) for c in src.correct] == [_weak_right(t["query_id"]) for t in traces]
        assert (src.strong_tokens == 0).all() and not src.failed.any()
        # every row's calls were in flight together: the PRM batcher sent several solutions per request
        pooled = [len(r["body"]["input"]) for r in weak.requests if r["path"].endswith("/pooling")]
        assert max(pooled) > 1
        first = models.cache_stats()
        assert first["misses"] > 0 and first["entries"] > 0
        mark, calls = models.mark(), len(weak.requests)
        _play(models.episodes(problems), N, action=0, seed=11)  # the same decisions again: lookups only
        again = models.cache_stats(since=mark)
        assert again["misses"] == 0 and again["hits"] > 0 and again["hit_rate"] == 1.0
        assert len(weak.requests) == calls
        traces = _play(src, N, action=1)  # always regenerate: the strong model fixes step 2
        assert src.correct.all() and (src.strong_tokens > 0).all()
        assert src.stats()["episodes"] == 2 * N and src.stats()["failed"] == 0
    with LiveModels.from_run_config(run, tmp_path / "out") as models:  # a second process: the file's cache
        _play(models.episodes(problems), N, action=1)
        assert models.cache_stats()["misses"] == 0


def test_reset_rows_starts_the_next_problems_and_the_env_checker_passes(tmp_path, servers):
    from gymnasium.utils.env_checker import check_env

    from trim_pomdp.routers.rl.env import RoutingEnv

    weak, strong = servers
    run = _run_config(tmp_path, weak, strong)
    problems = load_dataset(run.dataset)
    with LiveModels.from_run_config(run, tmp_path / "out") as models:
        src = models.episodes(problems)
        obs = src.reset(3, seed=0)
        assert obs.active.all() and (obs.t == 1).all() and np.isfinite(obs.scores[:, 0]).all()
        before = [r.problem.id for r in src._rows]
        obs = src.reset_rows(np.array([1]))  # row 1 restarts with the next problem of the shuffled order
        after = [r.problem.id for r in src._rows]
        assert after[0] == before[0] and after[2] == before[2] and after[1] not in before
        assert obs.active.all() and src.stats()["episodes"] == 4
        check_env(RoutingEnv(lambda: models.episodes(problems), 1e-3), skip_render_check=True)


def test_failed_problems_end_truncated_and_a_dead_server_is_raised(tmp_path, servers):
    from trim_pomdp.generation.backends import GenerationError
    from trim_pomdp.routers.rl.vec import EpisodeVecEnv

    weak, strong = servers
    run = _run_config(tmp_path, weak, strong)
    problems = load_dataset(run.dataset)
    with LiveModels.from_run_config(run, tmp_path / "out") as models:
        _play(models.episodes(problems), 2, action=0)  # some problems finished: later failures are not fatal
        env = EpisodeVecEnv(models.episodes(problems), 2, 1e-3, seed=0)
        env.reset()
        strong.fail_next("500", 1000)
        _, reward, done, infos = env.step(np.ones(2, dtype=np.int64))  # the strong call fails: no outcome
        assert done.all() and all(i.get("TimeLimit.truncated") for i in infos)
        assert all("correct" not in i for i in infos) and (reward == 0).all()
    strong.fail_next("500", 1000)
    with LiveModels.from_run_config(run, tmp_path / "fresh") as models:  # nothing finished yet: the error
        src = models.episodes(problems)
        src.reset(N, seed=5)
        with pytest.raises(GenerationError):
            src.step(np.ones(N, dtype=np.int64))


def test_split_problems_is_seeded_and_checked(tmp_path):
    problems = load_dataset(str(_data(tmp_path)))
    train, held = split_problems(problems, 0.34, seed=1)
    assert len(held) == 3 and len(train) == 6 and not {p.id for p in train} & {p.id for p in held}
    assert [p.id for p in split_problems(problems, 3, seed=1)[1]] == [p.id for p in held]
    assert [p.id for p in split_problems(problems, 3, seed=2)[1]] != [p.id for p in held]
    for bad in (0, 9, 0.01):
        with pytest.raises(InvalidParameterError, match="cannot hold out"):
            split_problems(problems, bad, seed=1)


def _train(tmp_path: Path, weak: FakeOpenAIServer, strong: FakeOpenAIServer, lam: str, out: str, *extra: str):
    args = ["train-agg", "--source", "live", "--lambda", lam, "--dataset", str(_data(tmp_path))]
    args += ["--weak", weak.url, "--weak-model", "weak", "--prm", weak.url, "--strong", "big"]
    args += ["--strong-url", strong.url, "--max-steps", "6", "--timesteps", "128", "--eval-every", "64"]
    args += [
        "--min-timesteps",
        "0",
        "--n-envs",
        "2",
        "--holdout",
        "3",
        "--cache",
        str(tmp_path / "cache.sqlite"),
    ]
    return CliRunner().invoke(main, [*args, *extra, "--out", str(tmp_path / out)], catch_exceptions=False)


def test_train_agg_live_shares_the_cache_between_lambdas_and_routers_and_resumes(tmp_path, servers):
    weak, strong = servers
    res = _train(tmp_path, weak, strong, "1e-3", "a")
    assert res.exit_code == 0, res.output
    first = json.loads((tmp_path / "a" / "training.json").read_text())
    assert first["timesteps_trained"] == 128 and first["source"]["type"] == "LiveEpisodes"
    assert first["source"]["train_problems"] == 6 and len(first["heldout_ids"]) == 3
    assert first["cache"]["misses"] > 0 and first["steps_per_second"] > 0
    assert first["training_episodes"]["finished"] > 0 and first["heldout_best"]["accuracy"] > 0
    said = " ".join(res.output.split())  # the console wraps long lines
    assert "cache:" in said and "% hits)" in said and "PPO steps" in said
    for name in ("agg.json", "agg_policy.npz", "learning_curve.csv", "checkpoint.npz"):
        assert (tmp_path / "a" / name).is_file()
    calls = len(weak.requests) + len(strong.requests)
    res = _train(tmp_path, weak, strong, "2e-3", "b")  # a second λ: what it asks was mostly asked before
    assert res.exit_code == 0, res.output
    second = json.loads((tmp_path / "b" / "training.json").read_text())
    assert second["cache"]["hit_rate"] > first["cache"]["hit_rate"]
    assert second["heldout_ids"] == first["heldout_ids"]  # the same held-out problems for every λ
    res = _train(tmp_path, weak, strong, "1e-3", "seq", "--router", "seq")  # TRIM-Seq after TRIM-Agg
    assert res.exit_code == 0, res.output
    seq = json.loads((tmp_path / "seq" / "training.json").read_text())
    assert seq["router"] == "seq" and (tmp_path / "seq" / "seq_policy.npz").is_file()
    assert seq["cache"]["hits"] > 0
    assert len(weak.requests) + len(strong.requests) - calls < first["cache"]["misses"]
    calls = len(weak.requests) + len(strong.requests)
    res = _train(tmp_path, weak, strong, "1e-3", "a")  # finished already: nothing is asked again
    assert res.exit_code == 0, res.output
    assert json.loads((tmp_path / "a" / "training.json").read_text())["cache"]["misses"] == 0
    assert len(weak.requests) + len(strong.requests) == calls
    res = _train(tmp_path, weak, strong, "1e-3", "a", "--timesteps", "256")  # resumes at 128 (one rollout)
    assert res.exit_code == 0, res.output
    again = json.loads((tmp_path / "a" / "training.json").read_text())
    assert again["resumed_from_timesteps"] == 128 and again["timesteps_trained"] == 256
    assert "resumed from the checkpoint" in " ".join(res.output.split())


def test_train_agg_live_errors_are_one_line(tmp_path, servers):
    weak, strong = servers
    res = _train(tmp_path, weak, strong, "1e-3", "x", "--holdout", "9")
    assert res.exit_code == 1 and "cannot hold out 9 of 9 problems" in " ".join(res.output.split())
    assert "Traceback" not in res.output
    r = CliRunner().invoke(
        main, ["train-agg", "--lambda", "1e-3", "--out", str(tmp_path / "y"), "--source", "live"]
    )
    assert r.exit_code == 1 and "--source live needs --dataset" in r.output
    r = CliRunner().invoke(
        main, ["train-agg", "--lambda", "1e-3", "--out", str(tmp_path / "y"), "--dataset", "x"]
    )
    assert r.exit_code == 1 and "--dataset: only read with --source live" in r.output

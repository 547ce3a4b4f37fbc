"""The generation loop: routing, records, cache replay, kill-and-resume, sharding and merge, the CLI."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from tests._support.servers.fake import (
    FakeAnthropicServer,
    FakeOpenAIServer,
    FakePRMBackend,
    ScriptedGenerator,
    ScriptedMathModel,
)
from trim_pomdp._internal.jsonl import read_jsonl
from trim_pomdp.cli import main
from trim_pomdp.generation import BatchedPRM, Cache, CachedGenerator, LoopConfig, Problem, run
from trim_pomdp.generation.runs import RECORD_KEYS

REPO = Path(__file__).resolve().parents[2]


class Thr:
    """Minimal Router: regenerate iff r_t < k (kept here so the loop test does not depend on other areas)."""

    def __init__(self, k):
        self.k, self.n_reset, self._last = k, 0, {}

    def reset(self):
        self.n_reset += 1

    def decide(self, obs):
        self._last = {"r": obs.score, "m": obs.prefix_min, "t": obs.t}
        return "regenerate" if obs.score < self.k else "continue"

    @property
    def last_decision(self):
        return self._last


def problems(n):
    return [Problem(id=f"q{i}", problem=f"What is {i} + {i + 1}?", answer=str(2 * i + 1)) for i in range(n)]


def parts(latency=0.0):
    weak = ScriptedGenerator(ScriptedMathModel(weak=True), "weak", latency)
    strong = ScriptedGenerator(ScriptedMathModel(weak=False, words_per_step=12), "strong", latency)
    backend = FakePRMBackend()
    return weak, strong, backend, BatchedPRM(backend, "fake-prm", max_batch=32)


def test_loop_routes_and_records(tmp_path):
    weak, strong, backend, prm = parts(latency=0.002)
    probs = problems(30)  # (2i+1) % 3 == 0 for i = 1, 4, 7, ...: 10 problems where the weak model errs
    s_weak = run(probs, weak, None, None, None, LoopConfig(mode="weak", policy="weak"), tmp_path / "weak")
    s_thr = run(
        probs, weak, strong, prm, lambda: Thr(0.5), LoopConfig(policy="thr", knob=0.5), tmp_path / "thr"
    )
    s_strong = run(
        probs, None, strong, None, None, LoopConfig(mode="strong", policy="strong"), tmp_path / "strong"
    )
    assert s_weak.correct == 20 and s_thr.correct == 30 and s_strong.correct == 30
    assert s_weak.strong_tokens == 0 and 0 < s_thr.strong_tokens < s_strong.strong_tokens
    recs = read_jsonl(tmp_path / "thr" / "records.jsonl")
    assert len(recs) == 30 and all(tuple(r) == RECORD_KEYS for r in recs)
    traces = {t["query_id"]: t for t in read_jsonl(tmp_path / "thr" / "traces.jsonl")}
    bad = traces["q1"]
    assert [s["action"] for s in bad["steps"]] == ["continue", "regenerate", "continue"]
    assert (
        bad["steps"][1]["r"] == 0.1
        and bad["steps"][1]["r_strong"] == 0.9
        and bad["scores"] == [0.9, 0.9, 0.9]
    )
    assert (
        bad["steps"][1]["decision"]["m"] == 0.9
        and bad["strong_tokens"] == bad["steps"][1]["strong"]["tokens"]
    )
    assert traces["q0"]["strong_tokens"] == 0 and traces["q0"]["n_regenerated"] == 0
    assert max(backend.batches) > 1  # PRM calls of concurrent problems were batched


def test_step_and_token_caps(tmp_path):
    weak, strong, _, prm = parts()
    weak.script.n_steps = 50
    s = run(problems(2), weak, strong, prm, lambda: Thr(0.0), LoopConfig(max_steps=4, policy="thr", knob=0.0))
    assert s.steps == 8
    tr = run(
        problems(1),
        weak,
        strong,
        prm,
        lambda: Thr(0.0),
        LoopConfig(max_solution_tokens=20, policy="thr", knob=0.0),
        tmp_path / "cap",
    )
    t = read_jsonl(tmp_path / "cap" / "traces.jsonl")[0]
    assert tr.completed == 1 and t["stop"] == "token_cap" and t["correct"] is False


def test_resume_skips_finished_and_refuses_other_settings(tmp_path):
    weak, strong, _, prm = parts()
    out = tmp_path / "run"
    run(problems(5), weak, strong, prm, lambda: Thr(0.5), LoopConfig(policy="thr", knob=0.5), out)
    calls = weak.calls
    # a torn last line (a kill mid-write) is dropped on resume
    with open(out / "traces.jsonl", "a") as fh:
        fh.write('{"query_id": "q9", "trunc')
    s = run(problems(8), weak, strong, prm, lambda: Thr(0.5), LoopConfig(policy="thr", knob=0.5), out)
    assert s.done_before == 5 and s.completed == 3 and weak.calls - calls == 3 * 3
    ids = [r["query_id"] for r in read_jsonl(out / "records.jsonl")]
    assert sorted(ids) == [f"q{i}" for i in range(8)]
    with pytest.raises(ValueError, match="different settings"):
        run(problems(8), weak, strong, prm, lambda: Thr(0.9), LoopConfig(policy="thr", knob=0.9), out)


def test_cached_rerun_makes_no_calls(tmp_path):
    weak, strong, backend, _ = parts()
    cache = Cache(tmp_path / "cache.sqlite")
    w, s = CachedGenerator(weak, cache), CachedGenerator(strong, cache)
    prm = BatchedPRM(backend, "fake-prm", cache=cache)
    a = run(problems(12), w, s, prm, lambda: Thr(0.5), LoopConfig(policy="thr", knob=0.5), tmp_path / "a")
    n = (weak.calls, strong.calls, sum(backend.batches))
    b = run(problems(12), w, s, prm, lambda: Thr(0.5), LoopConfig(policy="thr", knob=0.5), tmp_path / "b")
    assert (weak.calls, strong.calls, sum(backend.batches)) == n
    assert (a.correct, a.strong_tokens) == (b.correct, b.strong_tokens)
    key = lambda r: r["query_id"]  # noqa: E731 - completion order differs between runs
    assert sorted(read_jsonl(tmp_path / "a" / "records.jsonl"), key=key) == sorted(
        read_jsonl(tmp_path / "b" / "records.jsonl"), key=key
    )


def _write_problems(path, n):
    with open(path, "w") as fh:
        for p in problems(n):
            fh.write(json.dumps({"id": p.id, "problem": p.problem, "answer": p.answer}) + "\n")


def test_cli_kill_and_resume(tmp_path):
    # the strong model is an OpenAI-compatible endpoint here: the subprocesses then skip the anthropic SDK's
    # multi-second import (the Anthropic path of the CLI is covered in-process below)
    data = tmp_path / "p.jsonl"
    _write_problems(data, 16)
    strong_model = ScriptedMathModel(weak=False, words_per_step=12)
    with FakeOpenAIServer(delay_s=0.03) as oai, FakeOpenAIServer(strong_model, delay_s=0.03) as strong:
        args = [
            sys.executable,
            "-m",
            "trim_pomdp",
            "run",
            "--dataset",
            str(data),
            "--weak",
            oai.url,
            "--weak-model",
            "weak",
            "--prm",
            oai.url,
            "--router",
            "thr:0.5",
            "--strong",
            "big",
            "--strong-url",
            strong.url,
            "--concurrency",
            "2",
            "--timeout",
            "10",
        ]
        env = dict(os.environ, PYTHONPATH=str(REPO))
        out = tmp_path / "run"
        proc = subprocess.Popen(
            [*args, "--out", str(out)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        deadline = time.time() + 40
        while time.time() < deadline:
            recs = out / "records.jsonl"
            if recs.exists() and len(recs.read_text().splitlines()) >= 4:
                break
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        n_killed = len(read_jsonl(out / "records.jsonl"))
        assert 4 <= n_killed < 16, proc.stderr.read().decode()[-2000:]
        requests_before = len(oai.requests) + len(strong.requests)
        oai.delay_s = strong.delay_s = 0.005
        args[args.index("--concurrency") + 1] = "8"
        res = subprocess.run([*args, "--out", str(out)], env=env, capture_output=True, text=True, timeout=120)
        assert res.returncode == 0, res.stderr[-2000:]
        recs = read_jsonl(out / "records.jsonl")
        ids = [r["query_id"] for r in recs]
        assert sorted(ids) == sorted(f"q{i}" for i in range(16)) and len(ids) == len(set(ids))
        assert len(read_jsonl(out / "traces.jsonl")) == 16
        # finished problems cost no request on resume: at most the unfinished problems' steps were requested
        new_requests = len(oai.requests) + len(strong.requests) - requests_before
        assert new_requests <= (16 - n_killed) * 3 * 3
        assert sum(r["correct"] for r in recs) == 16 and all(
            r["policy"] == "thr" and r["knob"] == 0.5 for r in recs
        )


def test_cli_shards_merge_and_errors(tmp_path):
    data = tmp_path / "p.jsonl"
    _write_problems(data, 9)
    runner = CliRunner()
    with FakeOpenAIServer() as oai, FakeAnthropicServer() as ant:
        env = {"ANTHROPIC_API_KEY": ant.api_key, "ANTHROPIC_BASE_URL": ant.url}
        outs = []
        for k in (1, 2, 3):
            out = tmp_path / f"s{k}"
            r = runner.invoke(
                main,
                [
                    "run",
                    "--dataset",
                    str(data),
                    "--weak",
                    oai.url + "/v1",
                    "--weak-model",
                    "weak",
                    "--prm",
                    oai.url,
                    "--router",
                    "thr:0.5",
                    "--out",
                    str(out),
                    "--shard",
                    f"{k}/3",
                ],
                env=env,
            )
            assert r.exit_code == 0, r.output
            outs.append(str(out))
        r = runner.invoke(main, ["merge", *outs, "--out", str(tmp_path / "all")])
        assert r.exit_code == 0, r.output
        recs = read_jsonl(tmp_path / "all" / "records.jsonl")
        assert sorted(x["query_id"] for x in recs) == sorted(f"q{i}" for i in range(9))
        r = runner.invoke(
            main,
            [
                "run",
                "--dataset",
                str(data),
                "--weak",
                oai.url,
                "--weak-model",
                "weak",
                "--prm",
                oai.url,
                "--router",
                "thr:0.5",
                "--out",
                str(tmp_path / "x"),
            ],
            env={"ANTHROPIC_API_KEY": ""},
        )
        assert r.exit_code != 0 and "ANTHROPIC_API_KEY" in r.output and "Traceback" not in r.output
        r = runner.invoke(
            main, ["run", "--dataset", str(data), "--router", "bogus", "--out", str(tmp_path / "y")]
        )
        assert r.exit_code != 0 and "trim-pomdp solve" in r.output


def test_records_feed_trim_pomdp_metrics(tmp_path):
    pytest.importorskip("trim_pomdp.evaluation.metrics")
    data = tmp_path / "p.jsonl"
    _write_problems(data, 12)
    runner = CliRunner()
    with FakeOpenAIServer() as oai, FakeAnthropicServer() as ant:
        env = {"ANTHROPIC_API_KEY": ant.api_key, "ANTHROPIC_BASE_URL": ant.url}
        outs = []
        for spec in ("weak", "strong", "thr:0.5", "thr:0.05"):
            out = tmp_path / spec.replace(":", "_")
            r = runner.invoke(
                main,
                [
                    "run",
                    "--dataset",
                    str(data),
                    "--weak",
                    oai.url,
                    "--weak-model",
                    "weak",
                    "--prm",
                    oai.url,
                    "--router",
                    spec,
                    "--out",
                    str(out),
                ],
                env=env,
            )
            assert r.exit_code == 0, r.output
            outs.append(str(out))
    assert runner.invoke(main, ["merge", *outs, "--out", str(tmp_path / "all")]).exit_code == 0
    r = runner.invoke(
        main, ["metrics", str(tmp_path / "all" / "records.jsonl"), "--out", str(tmp_path / "s.json")]
    )
    assert r.exit_code == 0, r.output
    summary = json.loads((tmp_path / "s.json").read_text())
    assert summary["weak"]["accuracy"] == pytest.approx(8 / 12) and summary["strong"]["accuracy"] == 1.0
    assert "thr" in summary["policies"]


class Flaky(ScriptedGenerator):
    """Fails for good on the problems in ``bad``."""

    def __init__(self, bad, *a, **kw):
        super().__init__(*a, **kw)
        self.bad = bad

    async def generate_step(self, problem, steps, *, max_tokens=None):
        if any(f"What is {i} +" in problem for i in self.bad):
            from trim_pomdp.generation import GenerationError

            raise GenerationError("weak step failed after 7 attempt(s): RateLimitError (HTTP 429)")
        return await super().generate_step(problem, steps, max_tokens=max_tokens)


def test_failed_problems_are_logged_and_retried_on_resume(tmp_path):
    _, strong, _, prm = parts()
    out = tmp_path / "run"
    weak = Flaky({3, 5}, ScriptedMathModel(weak=True), "weak")
    s = run(
        problems(8),
        weak,
        strong,
        prm,
        lambda: Thr(0.5),
        LoopConfig(policy="thr", knob=0.5, concurrency=1),
        out,
    )
    assert (s.completed, s.failed) == (6, 2)
    assert sorted(e["query_id"] for e in read_jsonl(out / "errors.jsonl")) == ["q3", "q5"]
    weak.bad = set()
    s = run(problems(8), weak, strong, prm, lambda: Thr(0.5), LoopConfig(policy="thr", knob=0.5), out)
    assert (s.done_before, s.completed, s.failed) == (6, 2, 0) and len(read_jsonl(out / "records.jsonl")) == 8


def test_systematic_failure_is_raised():
    from trim_pomdp.generation import GenerationError

    _, strong, _, prm = parts()
    weak = Flaky(set(range(10)), ScriptedMathModel(weak=True), "weak")
    with pytest.raises(GenerationError, match="HTTP 429"):
        run(
            problems(10),
            weak,
            strong,
            prm,
            lambda: Thr(0.5),
            LoopConfig(policy="thr", knob=0.5, concurrency=2),
        )


def test_cli_weak_template_file(tmp_path):
    data = tmp_path / "p.jsonl"
    _write_problems(data, 1)
    tpl = tmp_path / "tpl.txt"
    tpl.write_text("SYSTEM {system}\nQUESTION {problem}\n<|im_start|>assistant\n")
    runner = CliRunner()
    with FakeOpenAIServer() as oai:
        base = ["run", "--dataset", str(data), "--weak", oai.url, "--weak-model", "weak", "--router", "weak"]
        r = runner.invoke(main, [*base, "--weak-template", str(tpl), "--out", str(tmp_path / "a")])
        assert r.exit_code == 0, r.output
        prompts = [q["body"]["prompt"] for q in oai.requests]
        assert prompts[0].startswith("SYSTEM Please reason") and "QUESTION What is 0 + 1?" in prompts[0]
        assert prompts[1].startswith(prompts[0])
        r = runner.invoke(main, [*base, "--weak-template", "nope", "--out", str(tmp_path / "b")])
        assert r.exit_code != 0 and "--weak-template" in r.output

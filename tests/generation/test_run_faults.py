"""``trim-pomdp run`` against faults that used to make it silently wrong, print a traceback, or lose records.

Local servers on 127.0.0.1 inject each fault (a cut Anthropic stream, a 200 that is not JSON, NaN PRM scores, a
PRM that hangs, a server quoting the key it was sent, a second process on the same ``--out``, a damaged cache).
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from tests._support.servers.fake import FakeAnthropicServer, FakeOpenAIServer
from trim_pomdp._internal.jsonl import read_jsonl
from trim_pomdp.cli import main
from trim_pomdp.exceptions import BackendUnavailableError, DataFormatError, InvalidParameterError
from trim_pomdp.generation import Cache, RunConfig, run_experiment
from trim_pomdp.generation.backends import GenerationError, RetryPolicy, build_prm
from trim_pomdp.generation.scoring import BatchedPRM

REPO = Path(__file__).resolve().parents[2]
P = "What is 4 + 5?"


def _data(tmp_path: Path, n: int = 1) -> Path:
    path = tmp_path / "p.jsonl"
    rows = [{"id": f"q{i}", "problem": f"What is {i} + {i + 1}?", "answer": str(2 * i + 1)} for i in range(n)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _run(*args: str, env: dict | None = None):
    return CliRunner().invoke(main, ["run", *args], env=env, catch_exceptions=False)


# ------------------------------------------------------------------------------------------------ Claude


@pytest.mark.parametrize("fault", ["cut_stream", "invalid_json_stream", "invalid_json"])
def test_a_cut_or_unreadable_claude_stream_is_retried_and_never_cached(tmp_path, fault):
    data = _data(tmp_path)
    with FakeAnthropicServer() as ant:
        env = {"ANTHROPIC_API_KEY": ant.api_key, "ANTHROPIC_BASE_URL": ant.url}
        base = ["--dataset", str(data), "--router", "strong", "--max-retries", "1", "--timeout", "5"]
        ant.fail_next(fault, 2)  # more than the retries: the problem fails, nothing is cached
        r = _run(*base, "--out", str(tmp_path / "a"), env=env)
        assert r.exit_code == 1 and "1 problems failed" in r.output
        errors = read_jsonl(tmp_path / "a" / "errors.jsonl")
        assert len(errors) == 1 and "failed after 2 attempt(s)" in errors[0]["error"]
        assert len(Cache(tmp_path / "a" / "cache.sqlite")) == 0
        ant.fail_next(fault, 1)  # one fault: retried, and the run is right
        r = _run(*base, "--out", str(tmp_path / "a"), env=env)
        assert r.exit_code == 0, r.output
        trace = read_jsonl(tmp_path / "a" / "traces.jsonl")[0]
        assert trace["correct"] and trace["steps"][0]["strong"]["attempts"] == 2
        assert trace["steps"][0]["strong"]["text"] == "Step 1: carefully we add 0 and 1 so so so so so so"


# ------------------------------------------------------------------------------------------------ PRM


@pytest.mark.parametrize("fault", ["nan_scores", "big_scores"])
def test_prm_scores_that_are_not_probabilities_are_refused(fault):
    with FakeOpenAIServer() as oai:
        backend, name = build_prm(oai.url, model_name="prm")
        cache = Cache()
        prm = BatchedPRM(backend, name, cache=cache, retry=RetryPolicy(max_retries=0, timeout=5))
        oai.fail_next(fault, 1)

        async def twice():
            with pytest.raises(DataFormatError, match=r"scores must be probabilities in \[0, 1\]"):
                await prm.score(P, ["Step 1: we add 4 and 5"])
            assert len(cache) == 0
            return await prm.score(P, ["Step 1: we add 4 and 5"])

        assert asyncio.run(twice()) == [0.9]


def test_the_prm_cache_is_keyed_by_endpoint():
    with FakeOpenAIServer() as a, FakeOpenAIServer() as b:
        cache = Cache()

        async def score(url):
            backend, name = build_prm(url)  # the same default served name on both
            await BatchedPRM(backend, name, cache=cache).score(P, ["Step 1"])
            await backend.aclose()

        for srv in (a, b):
            asyncio.run(score(srv.url))
        assert len(a.requests) == 1 and len(b.requests) == 1  # b's scores were asked for, not replayed


def test_the_prm_honours_timeout_retries_and_key(monkeypatch):
    with FakeOpenAIServer() as oai:
        monkeypatch.setenv("TRIM_POMDP_PRM_API_KEY", "prm-key-abc")
        backend, name = build_prm(oai.url, timeout=0.5)
        prm = BatchedPRM(backend, name, retry=RetryPolicy(max_retries=1, base_delay=0.0, timeout=0.5))
        oai.fail_next("hang", 2)

        async def go():
            t0 = time.perf_counter()
            with pytest.raises(
                GenerationError, match=r"PRM .* failed after 2 attempt\(s\): timeout after 0\.5 s"
            ):
                await prm.score(P, ["Step 1"])
            assert time.perf_counter() - t0 < 5  # not the fixed 120 s x 5 retries of before
            oai.fail_next("invalid_json", 1)  # a 200 that is not JSON is retried
            return await prm.score(P, ["Step 1"])

        assert asyncio.run(go()) == [0.9]
        headers = {k.lower(): v for k, v in oai.requests[-1]["headers"].items()}
        assert headers["authorization"] == "Bearer prm-key-abc"


# ------------------------------------------------------------------------------------------------ keys


def test_a_key_quoted_back_by_a_server_is_redacted(tmp_path):
    key = "local-key-0123456789"  # no "sk-" prefix: a pattern would not find it
    data = _data(tmp_path)
    with FakeOpenAIServer() as oai:
        oai.fail_next("echo_key", 1)
        args = ["run", "--dataset", str(data), "--router", "weak", "--weak", oai.url, "--weak-model", "weak"]
        args += ["--out", str(tmp_path / "a"), "--max-retries", "0"]
        r = CliRunner().invoke(main, args, env={"OPENAI_API_KEY": key})
        assert r.exit_code == 1 and "Incorrect API key provided: [redacted]" in r.stderr
        errors = (tmp_path / "a" / "errors.jsonl").read_text()
        assert "[redacted]" in errors and key not in errors + r.output + r.stderr


# ------------------------------------------------------------------------------------------------ the run folder


def test_a_second_process_on_the_same_out_is_refused(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time\nfrom trim_pomdp.generation.runs import lock_run_dir\n"
         f"with lock_run_dir({str(out)!r}):\n    print('held', flush=True)\n    time.sleep(60)\n"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with FakeOpenAIServer() as oai:
            args = ["--dataset", str(_data(tmp_path)), "--router", "weak", "--weak", oai.url]
            r = _run(*args, "--weak-model", "weak", "--out", str(out))
            assert r.exit_code == 1 and f"is in use by another run (pid {holder.pid}" in r.output
            assert not (out / "traces.jsonl").exists()
            holder.kill()
            holder.wait()
            r = _run(*args, "--weak-model", "weak", "--out", str(out))  # the lock went with the process
            assert r.exit_code == 0, r.output
    finally:
        holder.kill()


def test_a_damaged_cache_is_a_one_line_error(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "cache.sqlite").write_bytes(b"SQLite format 3\x00" + b"\xff" * 300)
    with FakeOpenAIServer() as oai:
        r = _run("--dataset", str(_data(tmp_path)), "--router", "weak", "--weak", oai.url, "--out", str(out))
    assert (
        r.exit_code == 1 and "is not a readable cache of model calls" in r.output and "delete it" in r.output
    )
    assert "Traceback" not in r.output


def test_nothing_listening_says_so_and_leaves_no_folder(tmp_path):
    out = tmp_path / "run"
    r = _run(
        "--dataset",
        str(_data(tmp_path)),
        "--router",
        "weak",
        "--weak",
        "http://127.0.0.1:9",
        "--out",
        str(out),
    )
    assert r.exit_code == 1 and "nothing answers at http://127.0.0.1:9/v1" in r.output
    assert not out.exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--limit", "-1"], "Invalid value for '--limit'"),
        (["--timeout", "0"], "Invalid value for '--timeout'"),
        (["--timeout", "-1"], "Invalid value for '--timeout'"),
        (["--timeout", "nan"], "Invalid value for '--timeout'"),
        (["--max-retries", "-1"], "Invalid value for '--max-retries'"),
        (["--max-tokens-per-step", "0"], "Invalid value for '--max-tokens-per-step'"),
        (["--prm-batch-size", "0"], "Invalid value for '--prm-batch-size'"),
        (["--router", "thr:5"], "K must be in [0, 1]"),
        (["--router", "thr:-1"], "K must be in [0, 1]"),
        (["--answer-format", "boxed,last"], "use a comma list of boxed, hash, answer-is"),
    ],
)
def test_bad_options_are_one_line_errors_and_write_nothing(tmp_path, args, message):
    base = {"--router": "weak", "--weak": "http://127.0.0.1:9", "--dataset": str(_data(tmp_path))}
    for k, v in zip(args[::2], args[1::2], strict=True):
        base[k] = v
    if base["--router"].startswith("thr"):
        base["--prm"] = "http://127.0.0.1:9"
    r = _run(*[x for kv in base.items() for x in kv], "--out", str(tmp_path / "out"))
    assert r.exit_code in (1, 2) and message in r.output and "Traceback" not in r.output
    assert not (tmp_path / "out").exists()


def test_library_settings_are_checked_too(tmp_path):
    with pytest.raises(InvalidParameterError, match="timeout must be a finite number"):
        run_experiment(RunConfig(str(_data(tmp_path)), "strong", tmp_path / "o", strong_url="x", timeout=0))
    with pytest.raises(InvalidParameterError, match="limit must be an integer >= 1"):
        run_experiment(RunConfig(str(_data(tmp_path)), "strong", tmp_path / "o", strong_url="x", limit=-1))
    assert not (tmp_path / "o").exists()


def test_extras_are_checked_before_the_dataset_is_loaded(tmp_path, monkeypatch):
    import trim_pomdp.generation.experiment as experiment

    def require(module, extra, feature=None):
        if module == "anthropic":
            raise BackendUnavailableError(
                f"{feature} requires 'anthropic': pip install 'trim-pomdp[{extra}]'"
            )

    monkeypatch.setattr(experiment, "require", require)
    monkeypatch.setenv("ANTHROPIC_API_KEY", "k")
    monkeypatch.setattr(experiment, "load_dataset", lambda *a: pytest.fail("the dataset was loaded first"))
    with pytest.raises(BackendUnavailableError, match="Claude as the strong model requires"):
        run_experiment(RunConfig("gsm8k", "strong", tmp_path / "o"))


def test_a_weak_template_with_latex_braces(tmp_path):
    tpl = tmp_path / "few-shot.txt"
    tpl.write_text("Example: 4 + 6 = \\boxed{10}.\nQ: {problem}\n<|im_start|>assistant\n")
    with FakeOpenAIServer() as oai:
        base = ["--dataset", str(_data(tmp_path)), "--router", "weak", "--weak", oai.url, "--weak-model", "w"]
        r = _run(*base, "--weak-template", str(tpl), "--out", str(tmp_path / "a"))
        assert r.exit_code == 0, r.output
        assert oai.requests[0]["body"]["prompt"].startswith(
            "Example: 4 + 6 = \\boxed{10}.\nQ: What is 0 + 1?"
        )
        tpl.write_text("no field here \\boxed{10}")
        r = _run(*base, "--weak-template", str(tpl), "--out", str(tmp_path / "b"))
        assert r.exit_code == 1 and "has no {problem} field" in r.output and not (tmp_path / "b").exists()


def test_progress_lines_keep_coming_off_a_terminal_while_no_problem_finishes(tmp_path, monkeypatch, capsys):
    import trim_pomdp.generation.experiment as experiment

    monkeypatch.setattr(experiment, "PROGRESS_INTERVAL_S", 0.1)
    with FakeOpenAIServer(delay_s=0.3) as oai:  # one problem of three steps: about a second
        config = RunConfig(str(_data(tmp_path)), "weak", tmp_path / "o", weak=oai.url, weak_model="w")
        assert run_experiment(config).completed == 1
    lines = capsys.readouterr().err.splitlines()
    waiting = [x for x in lines if x.startswith("weak: 0/1 (0%)") and "elapsed" in x]
    assert len(waiting) >= 3, lines
    assert lines[-1].startswith("weak: 1/1 (100%)")


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("p.jsonl", b'{"id": "a", "problem": "caf\xe9: 1 + 1?", "answer": "2"}\n'),
        ("p.csv", b"problem,answer\ncaf\xe9: 1 + 1?,2\n"),
        ("p.json", b'[{"problem": "caf\xe9: 1 + 1?", "answer": "2"}]'),
    ],
)
def test_a_dataset_that_is_not_utf8_is_a_one_line_error(tmp_path, name, content):
    (tmp_path / name).write_bytes(content)
    r = _run(
        "--dataset",
        str(tmp_path / name),
        "--router",
        "weak",
        "--weak",
        "http://127.0.0.1:9",
        "--out",
        str(tmp_path / "o"),
    )
    assert r.exit_code == 1 and "not UTF-8" in r.output and "save it as UTF-8" in r.output, r.output
    assert "Traceback" not in r.output and not (tmp_path / "o").exists()

"""``trim-pomdp run`` end to end against a real LLM server: SmolLM2-135M-Instruct under ``transformers serve``.

Weak and strong model from the server, the PRM a tiny random model with SmolLM2's real tokenizer, a few fixed
GSM8K problems (the first of the test split) at temperature 0. What a real model exposed and the fakes never
did: every problem ends before the step cap, at the end of its solution (EOS or a final answer) or where the
repetition guard refused a degenerate step; no accepted step repeats its predecessor; every step's token count
is the ``usage`` the server reported for its call (a forwarding proxy records it).
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from tests._support.data import shared_data_dir
from tests.real_model.smollm2 import LlamaCppServe, UsageRecorder
from trim_pomdp._internal.jsonl import read_jsonl
from trim_pomdp.cli import main
from trim_pomdp.generation.guards import step_key

#: a 135M model on a shared 2-core CPU: a run of three problems takes minutes, not the default 300 s cap
pytestmark = [pytest.mark.real_model, pytest.mark.timeout(900)]

N_PROBLEMS = 3
MAX_STEPS = 12
#: the per-step cap: SmolLM2 writes most of a GSM8K solution line by line, and its longest paragraph on these
#: problems is 136 tokens (problem 0's whole solution); a cap that cuts paragraphs makes the loop insert the
#: step separator mid-sentence, after which the 135M model degenerates ("1." as every step)
STEP_TOKENS = 160

#: the first problems of GSM8K's test split (MIT licence), so that the stage needs no network; checked against
#: the local copy of the evaluation sets where there is one
GSM8K_FIRST = [
    (
        "0",
        "Janet\u2019s ducks lay 16 eggs per day. She eats three for breakfast every morning and bakes muffins for "
        "her friends every day with four. She sells the remainder at the farmers' market daily for $2 per fresh "
        "duck egg. How much in dollars does she make every day at the farmers' market?",
        "18",
    ),
    (
        "1",
        "A robe takes 2 bolts of blue fiber and half that much white fiber.  How many bolts in total does it take?",
        "3",
    ),
    (
        "2",
        "Josh decides to try flipping a house.  He buys a house for $80,000 and then puts in $50,000 in repairs.  "
        "This increased the value of the house by 150%.  How much profit did he make?",
        "70000",
    ),
]


@pytest.fixture(scope="module")
def gsm8k(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The first problems of GSM8K's test split as a problems file."""
    problems = [{"id": i, "problem": q, "answer": a} for i, q, a in GSM8K_FIRST[:N_PROBLEMS]]
    shared = shared_data_dir()
    if shared is not None and (shared / "eval-sets" / "gsm8k_test.jsonl").is_file():
        from trim_pomdp.datasets.problems import load_dataset

        local = load_dataset("gsm8k", shared / "eval-sets")[:N_PROBLEMS]
        assert [p.__dict__ for p in local] == problems
    path = tmp_path_factory.mktemp("data") / "gsm8k.jsonl"
    path.write_text("".join(json.dumps(p) + "\n" for p in problems), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One cache for the three routers' runs, as a λ sweep shares one: later runs replay the calls they share."""
    return tmp_path_factory.mktemp("cache") / "cache.sqlite"


def _calls(step: dict) -> list[dict]:
    """The model calls of one trace entry, in the order the loop made them."""
    return [step[k] for k in ("weak", "strong") if k in step]


def _check_traces(out: Path, n: int, exact_tokens: bool = True) -> list[dict]:
    traces = read_jsonl(out / "traces.jsonl")
    assert len(traces) == n
    for tr in traces:
        # the end of the solution (EOS, a final answer), or the repetition guard on a degenerate step (the 135M
        # model repeats itself: problems 1 and 2 under the weak router); never the step or token cap
        assert tr["stop"] in ("final", "repetition") and tr["n_steps"] < MAX_STEPS, (
            tr["query_id"],
            tr["stop"],
        )
        if tr["stop"] == "repetition":
            assert tr["steps"][-1]["rejected"] in ("repeat", "loop")
        accepted = [s for s in tr["steps"] if "rejected" not in s]
        texts = [
            (s.get("strong") if s["action"] in ("regenerate", "strong_only") else s["weak"])["text"]
            for s in accepted
        ]
        assert all(step_key(a) != step_key(b) for a, b in itertools.pairwise(texts)), tr["query_id"]
        if exact_tokens:
            assert all(c.get("extra", {}).get("tokens_exact", True) for s in tr["steps"] for c in _calls(s))
    return traces


def _server_usage(recorder: UsageRecorder) -> list[int]:
    """``usage.completion_tokens`` of the step calls the server answered (the one-time probe left out)."""
    probe = [
        c for c in recorder.calls if c["request"].get("max_tokens") == 8 and "What is 2 + 3?" in json.dumps(c)
    ]
    return [c["usage"]["completion_tokens"] for c in recorder.calls if c not in probe]


def _run(args: list[str]) -> None:
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output


#: thr:1.0 regenerates every step (the tiny random PRM scores every step about 0.50, below 1): the routed path
#: with weak proposals, PRM scores and strong regenerations, after the weak and strong runs filled the cache
@pytest.mark.parametrize("router", ["weak", "strong", "thr:1.0"])
def test_run_on_gsm8k_with_a_real_server(router, served, prm_dir, gsm8k, cache, tmp_path):
    out = tmp_path / "run"
    with UsageRecorder(served.url) as recorder:
        args = ["run", "--dataset", str(gsm8k), "--router", router, "--out", str(out), "--cache", str(cache)]
        args += ["--weak", recorder.url, "--weak-model", served.model, "--weak-template", "auto"]
        args += ["--strong", served.model, "--strong-url", recorder.url, "--prm", str(prm_dir)]
        args += ["--device", "cpu", "--max-steps", str(MAX_STEPS), "--max-tokens-per-step", str(STEP_TOKENS)]
        args += ["--max-solution-tokens", "1024", "--concurrency", "1", "--timeout", "600"]
        try:
            _run([*args, "--max-retries", "1"])
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{served.tail()}") from None
    traces = _check_traces(out, N_PROBLEMS)
    # concurrency 1: the problems ran one after the other, the server's answers in the order of the traces
    # (calls an earlier router's run had made come from the shared cache and never reach the server)
    calls = [c for tr in traces for s in tr["steps"] for c in _calls(s)]
    assert [c["tokens"] for c in calls if not c["cached"]] == _server_usage(recorder)
    assert all(c["tokens"] > 0 for c in calls)
    if router.startswith("thr"):
        assert all(s["action"] == "regenerate" for tr in traces for s in tr["steps"] if "rejected" not in s)
        assert all(0.0 <= s["r"] <= 1.0 for tr in traces for s in tr["steps"])
    weak = [s["weak"] for tr in traces for s in tr["steps"] if "weak" in s]
    # found from the server's answers (transformers serve keeps the matched stop string in the text), not
    # assumed; a step cut at the cap before any answer showed a stop still says "auto"
    detections = {c["extra"]["step_detection"] for c in weak}
    if weak:
        assert "stop_in_text" in detections and detections <= {"stop_in_text", "auto"}, detections


@pytest.mark.llama_cpp
def test_run_on_gsm8k_with_llama_cpp(gguf, gsm8k, tmp_path):
    """llama-cpp-python's server reports no stop: the loop streams and cuts steps itself, and EOS still ends."""
    pytest.importorskip("llama_cpp", reason="pip install 'llama-cpp-python[server]' (builds from source)")
    out = tmp_path / "run"
    with LlamaCppServe(gguf, tmp_path / "llama.log") as server:
        args = ["run", "--dataset", str(gsm8k), "--router", "weak", "--out", str(out), "--weak", server.url]
        args += [
            "--max-steps",
            str(MAX_STEPS),
            "--max-tokens-per-step",
            str(STEP_TOKENS),
            "--concurrency",
            "1",
        ]
        result = CliRunner().invoke(main, args)
        assert result.exit_code == 0, result.output + server.tail()
    # a streamed step cut on the client counts its streamed chunks (tokens_exact false), not the server's usage
    traces = _check_traces(out, N_PROBLEMS, exact_tokens=False)
    detections = {s["weak"]["extra"]["step_detection"] for tr in traces for s in tr["steps"]}
    assert "stream" in detections and detections <= {"stream", "auto"}, detections

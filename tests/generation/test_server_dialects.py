"""Step and end detection on every server family, through the real openai SDK against their wire dialects.

Each fake speaks one server's documented dialect (:mod:`tests._support.servers.flavors`): vLLM's ``stop_reason``,
SGLang's ``matched_stop``, TGI's ``finish_reason`` values, transformers serve's stop string kept in the text,
and llama.cpp's silence (``finish_reason: "stop"`` for both). Before step detection was server-independent,
every EOS on llama.cpp and transformers serve was an ordinary step and the loop kept asking for more.
"""

from __future__ import annotations

import asyncio

import pytest

pytest.importorskip("openai")

from tests._support.servers.fake import FakeOpenAIServer, ScriptedMathModel, count_tokens
from trim_pomdp.generation.backends import GenerationError, OpenAICompatibleGenerator, RetryPolicy
from trim_pomdp.generation.backends._common import ContextFullError
from trim_pomdp.generation.backends.stop_detection import (
    classify_stop,
    context_limit,
    probe_stop_string,
    report_from_probe,
)

P = "What is 4 + 5?"
FAST = RetryPolicy(max_retries=2, base_delay=0.01, max_delay=0.05, timeout=5.0, seed=0)
REPORTS = {
    "vllm": "stop_reason",
    "sglang": "matched_stop",
    "tgi": "finish_reason",
    "transformers": "stop_in_text",
    "llamacpp": "stream",
}


def run(coro):
    return asyncio.run(coro)


async def _solve(gen, problem=P, n=8):
    steps, results = [], []
    for _ in range(n):
        r = await gen.generate_step(problem, steps)
        results.append(r)
        steps.append(r.text)
        if r.final:
            break
    await gen.aclose()
    return steps, results


def _gen(srv, **kw):
    return OpenAICompatibleGenerator("weak", base_url=srv.url + "/v1", retry=FAST, **kw)


@pytest.mark.parametrize("flavor", sorted(REPORTS))
def test_every_server_ends_the_solution_at_eos(flavor):
    with FakeOpenAIServer(ScriptedMathModel(weak=False), flavor=flavor) as srv:
        gen = _gen(srv)
        steps, res = run(_solve(gen))
        assert gen.stop_report == REPORTS[flavor]
        assert [r.finish for r in res] == ["step", "step", "eos"] and res[-1].final
        assert steps[0].startswith("Step 1") and steps[-1] == r"Therefore the answer is \boxed{9}."
        assert all(r.extra["step_detection"] == REPORTS[flavor] for r in res)
        if flavor == "llamacpp":  # streamed: the cut steps count their chunks, the last reads the usage
            assert [r.extra.get("tokens_exact", True) for r in res] == [False, False, True]
            assert all("stop" not in q["body"] for q in srv.requests[-3:])
        else:  # every step's token count is the server's usage of its call
            assert [r.tokens for r in res] == srv.usages[-3:]
        assert [r.tokens - (1 if flavor == "transformers" and r.finish == "eos" else 0) for r in res] == [
            count_tokens(s) for s in steps
        ]


def test_the_probe_runs_once_and_only_where_the_answer_says_nothing():
    with FakeOpenAIServer(ScriptedMathModel(weak=False, n_steps=1), flavor="transformers") as srv:
        gen = _gen(srv)
        r = run(gen.generate_step(P, []))  # a one-step solution: the first answer shows no stop string
        assert r.finish == "eos" and r.final and gen.stop_report == "stop_in_text"
        probe = [q["body"] for q in srv.requests[1:]]
        greedy_start = r"Therefore the answer is \boxed{5}."  # the scripted model's one step
        assert (
            len(probe) == 2
            and "stop" not in probe[0]
            and probe[1]["stop"] == [probe_stop_string(greedy_start)]
        )
        assert all(b["temperature"] == 0.0 for b in probe)
    with FakeOpenAIServer(flavor="vllm") as srv:
        run(_solve(_gen(srv)))
        assert len(srv.requests) == 3  # vLLM's stop_reason shows in the first answer: no probe


def test_forced_stream_mode_and_cut_streams_close_the_connection():
    with FakeOpenAIServer(
        ScriptedMathModel(weak=False, words_per_step=40), stream_chunk_delay_s=0.002
    ) as srv:
        steps, res = run(_solve(_gen(srv, step_detection="stream")))
        assert [r.finish for r in res] == ["step", "step", "eos"]
        assert all(q["body"].get("stream") and "stop" not in q["body"] for q in srv.requests)
        assert steps[1].startswith("Step 2:") and "\n" not in steps[1]
    assert srv.aborted_streams >= 1  # the client stopped reading after the step


@pytest.mark.parametrize("flavor", ["vllm", "sglang"])
def test_chat_mode_on_servers_that_continue(flavor):
    with FakeOpenAIServer(ScriptedMathModel(weak=False), flavor=flavor) as srv:
        steps, res = run(_solve(_gen(srv, mode="chat")))
        assert [r.finish for r in res] == ["step", "step", "eos"] and steps[1].startswith("Step 2")


@pytest.mark.parametrize(
    ("flavor", "message"),
    [
        ("llamacpp", r"did not continue a partial assistant message .* answered '1, 2, 3, 4,'"),
        ("transformers", r"refused continue_final_message \(HTTP 422\)"),
    ],
)
def test_chat_mode_refuses_servers_that_open_a_new_turn(flavor, message):
    with FakeOpenAIServer(flavor=flavor) as srv:
        gen = _gen(srv, mode="chat")
        with pytest.raises(GenerationError, match=message) as err:
            run(gen.generate_step(P, ["Step 1: we add 4 and 5"]))
        assert "--weak-mode completions" in str(err.value)
        assert len(srv.requests) == 1  # only the check: no step was asked for


def test_blank_first_line_on_a_server_without_min_tokens():
    model = ScriptedMathModel(weak=False, blank_before_step=1)
    with FakeOpenAIServer(model, flavor="transformers") as srv:
        steps, res = run(_solve(_gen(srv)))
        assert len(steps) == 3 and steps[1].startswith("Step 2") and res[1].extra["blank_start_retry"]
        assert srv.requests[2]["body"]["prompt"].endswith("\n\n\n\n")  # the blank line went into the prompt
        assert all("min_tokens" not in q["body"] for q in srv.requests)


@pytest.mark.parametrize("flavor", ["vllm", "llamacpp"])
def test_max_tokens_is_lowered_to_the_context_left(flavor):
    with FakeOpenAIServer(ScriptedMathModel(weak=False), flavor=flavor, max_model_len=120) as srv:
        gen = _gen(
            srv, step_detection="stop_reason" if flavor == "vllm" else "stream", max_tokens_per_step=512
        )
        r = run(gen.generate_step(P, []))
        limited = r.extra["max_tokens_limited"]
        assert limited["asked"] == 512 and limited["sent"] == 120 - count_tokens(
            srv.requests[0]["body"]["prompt"]
        )
        assert r.text.startswith("Step 1") and srv.requests[-1]["body"]["max_tokens"] == limited["sent"]


def test_a_full_context_ends_with_a_clear_error():
    with FakeOpenAIServer(flavor="vllm", max_model_len=30) as srv:
        gen = _gen(srv, step_detection="stop_reason")
        with pytest.raises(ContextFullError, match=r"context \(30 tokens\) holds the prompt"):
            run(gen.generate_step(P, []))


def test_pure_parts_of_step_detection():
    assert classify_stop("stop_reason", "a", "stop", {"stop_reason": None}) == "eos"
    assert classify_stop("stop_reason", "a", "stop", {"stop_reason": "\n\n"}) == "step"
    assert classify_stop("matched_stop", "a", "stop", {"matched_stop": 151645}) == "eos"
    assert classify_stop("finish_reason", "a", "stop_sequence", {}) == "step"
    assert classify_stop("stop_in_text", "a\n\n", "stop", {}) == "step"
    assert classify_stop("stop_in_text", "a", "length", {}) == "length"
    assert report_from_probe("te", "Ste", "stop", {}) == "stop_in_text"
    assert report_from_probe("te", "S", "stop", {}) == "stream"
    # transformers serve checks stops on decoded tokens: SmolLM2 asked to stop at "o " answered "To solve"
    assert report_from_probe("o ", "To solve", "stop", {}) == "stop_in_text"
    assert context_limit(
        "This model's maximum context length is 512 tokens. However, you requested 600 tokens "
        "(88 in the messages, 512 in the completion)."
    ) == (512, 88)
    assert context_limit(
        "This model's maximum context length is 16384 tokens. However, you requested 8192 "
        "output tokens and your prompt contains at least 8193 input tokens"
    ) == (16384, 8193)
    assert context_limit("x", {"error": {"n_ctx": 512, "n_prompt_tokens": 500}}) == (512, 500)
    assert context_limit("Requested tokens (600) exceed context window of 512") == (512, None)
    assert context_limit("Rate limited") is None

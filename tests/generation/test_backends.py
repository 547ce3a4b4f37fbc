"""Backends against local servers speaking the real wire formats, through the real openai / anthropic SDKs."""

from __future__ import annotations

import asyncio
import logging

import pytest

pytest.importorskip("openai")
pytest.importorskip("anthropic")

from tests._support.servers.fake import FakeAnthropicServer, FakeOpenAIServer, ScriptedMathModel, count_tokens
from trim_pomdp.exceptions import InvalidParameterError
from trim_pomdp.generation.backends import (
    AnthropicStepGenerator,
    GenerationError,
    MissingAPIKeyError,
    OpenAICompatibleGenerator,
    OpenAIStrongGenerator,
    RetryPolicy,
    prefill_allowed,
)
from trim_pomdp.generation.backends._common import MicroBatcher
from trim_pomdp.generation.cache import Cache, CachedGenerator
from trim_pomdp.prm.vllm_backend import VLLMPoolingPRM

P = "What is 4 + 5?"  # (4 + 5) % 3 == 0: the weak script makes a mistake at step 2
FAST = RetryPolicy(max_retries=3, base_delay=0.01, max_delay=0.1, timeout=5.0, seed=0)


@pytest.fixture(scope="module")
def oai():
    with FakeOpenAIServer() as s:
        yield s


@pytest.fixture(scope="module")
def ant():
    with FakeAnthropicServer() as s:
        yield s


def run(coro):
    return asyncio.run(coro)


async def _solve(gen, problem=P, n=10):
    steps, results = [], []
    for _ in range(n):
        r = await gen.generate_step(problem, steps)
        results.append(r)
        steps.append(r.text)
        if r.final:
            break
    await gen.aclose()
    return steps, results


@pytest.mark.parametrize("mode", ["completions", "chat"])
def test_weak_openai_steps_prefix_and_eos(oai, mode):
    n0 = len(oai.requests)
    gen = OpenAICompatibleGenerator("weak", base_url=oai.url + "/v1", mode=mode, retry=FAST)
    steps, res = run(_solve(gen))
    assert [r.finish for r in res] == ["step", "step", "eos"] and res[-1].final
    assert steps[1].startswith("Step 2: a wrong") and steps[-1] == r"Therefore the answer is \boxed{10}."
    reqs = oai.requests[n0:]
    if mode == "chat":  # the first request checks that the server continues a partial assistant message
        assert reqs[0]["body"]["messages"][-1]["content"] == "1, 2, 3, 4, 5, 6, 7, 8,"
        reqs = reqs[1:]
    assert all(r["body"]["stop"] == ["\n\n"] for r in reqs)
    assert [r["body"]["max_tokens"] for r in reqs] == [512] * 3
    if mode == "completions":  # each prompt extends the previous one exactly: prefix caching applies
        prompts = [r["body"]["prompt"] for r in reqs]
        assert all(prompts[i + 1].startswith(prompts[i]) for i in range(2))
        assert prompts[2].endswith(steps[0] + "\n\n" + steps[1] + "\n\n")
    else:
        last = reqs[-1]["body"]
        assert last["continue_final_message"] is True and last["add_generation_prompt"] is False
        assert last["messages"][-1] == {"role": "assistant", "content": steps[0] + "\n\n" + steps[1] + "\n\n"}
    assert [r.tokens for r in res] == [count_tokens(s) for s in steps]


def test_openai_strong_user_turn_and_length_cap(oai):
    gen = OpenAIStrongGenerator("strong", base_url=oai.url + "/v1", retry=FAST)
    r = run(gen.generate_step(P, ["Step 1: we add 4 and 5"], max_tokens=3))
    assert r.finish == "length" and r.tokens == 3 and not r.final
    body = oai.requests[-1]["body"]
    assert body["messages"][-1]["role"] == "user" and "<partial_solution>" in body["messages"][-1]["content"]


def test_openai_sdk_streaming_against_fake(oai):
    import openai

    async def go():
        client = openai.AsyncOpenAI(base_url=oai.url + "/v1", api_key="EMPTY", max_retries=0)
        stream = await client.chat.completions.create(
            model="weak", messages=[{"role": "user", "content": P}], stop=["\n\n"], stream=True
        )
        text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
        await client.close()
        return text

    assert run(go()).startswith("Step 1: we add 4 and 5")


@pytest.mark.parametrize("kind", ["429", "500"])
def test_openai_retries_then_succeeds(oai, kind):
    oai.fail_next(kind, 2)
    r = run(OpenAICompatibleGenerator("weak", base_url=oai.url + "/v1", retry=FAST).generate_step(P, []))
    assert r.attempts == 3 and r.text.startswith("Step 1")


def test_openai_hang_times_out_and_gives_up(oai, caplog):
    oai.fail_next("hang", 2)
    gen = OpenAICompatibleGenerator(
        "weak",
        base_url=oai.url + "/v1",
        api_key="sk-secret-key-abcdef",
        retry=RetryPolicy(max_retries=1, base_delay=0.0, timeout=0.3),
    )
    with caplog.at_level(logging.DEBUG), pytest.raises(GenerationError, match=r"timeout after 0\.3 s"):
        run(gen.generate_step(P, []))
    assert "sk-secret-key-abcdef" not in caplog.text and "sk-secret-key-abcdef" not in repr(gen)


def test_openai_bad_request_not_retried(oai):
    gen = OpenAICompatibleGenerator("weak", base_url=oai.url + "/v1", retry=FAST)
    gen.client  # noqa: B018

    async def go():
        # a 404 (wrong route) is not retryable
        gen._client = gen._client.with_options(base_url=oai.url + "/nope")
        return await gen.generate_step(P, [])

    with pytest.raises(GenerationError, match="after 1 attempt"):
        run(go())


# ------------------------------------------------------------------------------------------------ Anthropic


def _claude(ant, **kw):
    kw.setdefault("retry", FAST)
    return AnthropicStepGenerator(
        kw.pop("model", "claude-sonnet-4-6"), api_key=ant.api_key, base_url=ant.url, **kw
    )


def test_claude_marker_mode_user_turn(ant):
    n0 = len(ant.requests)
    steps, res = run(_solve(_claude(ant)))
    assert steps[-1] == r"Therefore the answer is \boxed{9}." and res[-1].final and len(steps) == 3
    for r, s in zip(res, steps, strict=True):
        assert r.extra["tokens_exact"] and r.extra["stop_reason"] == "stop_sequence"
        assert r.tokens == count_tokens(
            s
        )  # cumulative streaming usage kept, not summed with message_start's 1
        assert "<end_of_step>" not in s
    for req in ant.requests[n0:]:
        body = req["body"]
        assert body["stop_sequences"] == ["<end_of_step>"] and body["stream"] is True
        assert body["messages"][-1]["role"] == "user" and "temperature" not in body


def test_claude_cut_mode_closes_stream_and_estimates(ant):
    gen = _claude(ant, step_mode="cut")
    r = run(gen.generate_step(P, ["Step 1: carefully we add 4 and 5 so so so so so so"]))
    assert r.text.startswith("Step 2: carefully") and "\n" not in r.text
    assert r.extra["stop_reason"] == "client_cut" and r.extra["tokens_exact"] is False
    assert r.tokens >= len(r.text) // 4
    assert "stop_sequences" not in ant.requests[-1]["body"]


def test_claude_prefill_only_where_allowed(ant):
    assert not prefill_allowed("claude-sonnet-4-6") and not prefill_allowed("claude-opus-4-7")
    assert prefill_allowed("claude-3-7-sonnet-20250219") and prefill_allowed("claude-sonnet-4-5")
    with pytest.raises(InvalidParameterError, match="rejects assistant prefill"):
        _claude(ant, continuation="prefill")
    gen = _claude(ant, model="claude-3-7-sonnet-20250219", continuation="prefill", step_mode="cut")
    r = run(gen.generate_step(P, ["Step 1: carefully we add 4 and 5"]))
    last = ant.requests[-1]["body"]["messages"][-1]
    assert (
        last["role"] == "assistant" and last["content"] == last["content"].rstrip()
    )  # no trailing whitespace
    assert r.text.startswith("Step 2")


def test_fake_server_rejects_what_the_api_rejects(ant):
    import anthropic

    async def go(**kw):
        c = anthropic.AsyncAnthropic(api_key=ant.api_key, base_url=ant.url, max_retries=0)
        try:
            return await c.messages.create(model="claude-sonnet-4-6", max_tokens=10, **kw)
        finally:
            await c.close()

    with pytest.raises(anthropic.BadRequestError, match="non-whitespace"):
        run(go(messages=[{"role": "user", "content": P}], stop_sequences=["\n\n"]))
    with pytest.raises(anthropic.BadRequestError, match="prefill"):
        run(go(messages=[{"role": "user", "content": P}, {"role": "assistant", "content": "Step 1"}]))


@pytest.mark.parametrize("kind", ["429", "529", "500", "overloaded_stream"])
def test_claude_retries(ant, kind):
    ant.fail_next(kind, 2)
    r = run(_claude(ant).generate_step(P, []))
    assert r.attempts == 3 and r.text.startswith("Step 1")


def test_claude_non_stream_and_hang(ant):
    r = run(_claude(ant, stream=False).generate_step(P, []))
    assert r.tokens == count_tokens(r.text) and r.extra["stop_reason"] == "stop_sequence"
    ant.fail_next("hang", 3)
    with pytest.raises(GenerationError, match="timeout"):
        run(_claude(ant, retry=RetryPolicy(max_retries=1, base_delay=0, timeout=0.3)).generate_step(P, []))
    ant.failures.clear()


def test_claude_missing_or_wrong_key(ant, monkeypatch, caplog):
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    gen = AnthropicStepGenerator(base_url=ant.url, retry=FAST)
    with pytest.raises(MissingAPIKeyError, match="ANTHROPIC_API_KEY"):
        run(gen.generate_step(P, []))
    bad = AnthropicStepGenerator(base_url=ant.url, api_key="sk-ant-wrong-key-987654", retry=FAST)
    with caplog.at_level(logging.DEBUG), pytest.raises(GenerationError, match="HTTP 401") as info:
        run(bad.generate_step(P, []))
    assert "sk-ant-wrong-key-987654" not in str(info.value) + caplog.text + repr(bad)


# ---------------------------------------------------------------------------------- PRM, cache, batching


def test_vllm_pooling_prm(oai):
    prm = VLLMPoolingPRM(oai.url + "/v1", "prm")
    out = run(prm.ascore_batch([(P, ["Step 1: ok", "a wrong step"]), (P, ["fine"])]))
    assert out == [[0.9, 0.1], [0.9]]
    text = oai.requests[-1]["body"]["input"][0]
    assert text.count("<extra_0>") == 2 and text.startswith("<|im_start|>system\n")


def test_cache_hits_and_token_accounting(oai, tmp_path):
    cache = Cache(tmp_path / "c.sqlite")
    gen = CachedGenerator(OpenAICompatibleGenerator("weak", base_url=oai.url + "/v1", retry=FAST), cache)
    n0 = len(oai.requests)
    steps1, res1 = run(_solve(gen))
    n1 = len(oai.requests)
    cache.close()
    cache = Cache(tmp_path / "c.sqlite")  # a new process would see the same
    gen = CachedGenerator(OpenAICompatibleGenerator("weak", base_url=oai.url + "/v1", retry=FAST), cache)
    steps2, res2 = run(_solve(gen))
    assert n1 - n0 == 3 and len(oai.requests) == n1  # no request on the second pass
    assert steps1 == steps2 and [r.tokens for r in res1] == [r.tokens for r in res2]
    assert all(r.cached for r in res2) and cache.hits == 3
    # a remaining budget above the per-step cap (512) does not change the call: same entry; below it: a new
    # entry
    run(gen.generate_step(P, [], max_tokens=2000))
    assert len(oai.requests) == n1
    run(gen.generate_step(P, [], max_tokens=100))
    assert len(oai.requests) == n1 + 1
    n1 += 1
    other = CachedGenerator(
        OpenAICompatibleGenerator("weak", base_url=oai.url + "/v1", temperature=0.7), cache
    )
    run(other.generate_step(P, []))
    assert len(oai.requests) == n1 + 1  # different sampling parameters: a different key


def test_micro_batcher_groups_concurrent_requests():
    seen = []

    def fn(items):
        seen.append(len(items))
        return [x * 2 for x in items]

    async def go():
        b = MicroBatcher(fn, max_batch=8, max_wait_s=0.01)
        return await asyncio.gather(*(b.submit(i) for i in range(20)))

    assert run(go()) == [2 * i for i in range(20)]
    assert sum(seen) == 20 and max(seen) == 8 and len(seen) <= 4


def test_in_process_vllm_generator_batches_and_detects_eos(monkeypatch):
    """VLLMStepGenerator against a stand-in with vllm.LLM's generate() interface (vLLM itself needs a GPU)."""
    from types import SimpleNamespace

    from trim_pomdp.generation.backends import VLLMStepGenerator

    script = ScriptedMathModel(weak=True)

    class FakeLLM:
        def __init__(self):
            self.calls = []

        def generate(self, prompts, params, use_tqdm=False):
            self.calls.append(len(prompts))
            outs = []
            for prompt, _sp in zip(prompts, params, strict=True):
                prefix = prompt.split("<|im_start|>assistant\n", 1)[1]
                rest = "\n\n".join(script.steps(prompt, prefix.split("\n\n")[:-1]))
                cut = rest.find("\n\n")
                text, stop = (rest[:cut], "\n\n") if cut >= 0 else (rest, None)
                o = SimpleNamespace(text=text, finish_reason="stop", stop_reason=stop, token_ids=text.split())
                outs.append(SimpleNamespace(outputs=[o]))
            return outs

    llm = FakeLLM()
    gen = VLLMStepGenerator(
        "weak", llm=llm, prompt_template="<|im_start|>user\n{problem}<|im_end|>\n<|im_start|>assistant\n"
    )
    monkeypatch.setattr(gen, "_sampling_params", lambda cap: {"max_tokens": cap, "stop": ["\n\n"]})

    async def go():
        first = await asyncio.gather(*(gen.generate_step(f"What is {i} + 1?", []) for i in range(10)))
        steps, res = [], []
        for _ in range(5):
            r = await gen.generate_step(P, steps)
            res.append(r)
            steps.append(r.text)
            if r.final:
                break
        return first, res

    first, res = run(go())
    assert llm.calls[0] == 10  # the concurrent requests went to vLLM as one batch
    assert all(r.text.startswith("Step 1") for r in first)
    assert [r.finish for r in res] == ["step", "step", "eos"] and res[-1].final and res[-1].tokens == 5


def test_weak_blank_first_line_is_retried_with_min_tokens():
    with FakeOpenAIServer(ScriptedMathModel(weak=False, blank_before_step=1)) as srv:
        gen = OpenAICompatibleGenerator("weak", base_url=srv.url + "/v1", retry=FAST)
        steps, res = run(_solve(gen))
        assert len(steps) == 3 and steps[1].startswith("Step 2") and res[-1].final
        assert res[1].extra.get("blank_start_retry") and res[1].attempts == 2
        assert [r["body"].get("min_tokens") for r in srv.requests] == [None, None, 2, None]
        off = OpenAICompatibleGenerator("weak", base_url=srv.url + "/v1", retry=FAST, retry_blank_start=False)
        r = run(off.generate_step(P, [steps[0]]))
        assert r.finish == "empty" and r.final  # without the retry the solution would end here


def test_weak_prompt_from_a_tokenizer_chat_template(oai):
    class Tok:
        chat_template = "custom"

        def apply_chat_template(self, msgs, tokenize, add_generation_prompt):
            return "".join(f"[{m['role']}]{m['content']}" for m in msgs) + "[assistant]"

    gen = OpenAICompatibleGenerator("weak", base_url=oai.url + "/v1", tokenizer=Tok(), system_prompt=None)
    assert gen.build_prompt(P, ["a", "b"]) == f"[user]{P}[assistant]a\n\nb\n\n"
    assert gen.cache_params()["template"] == "custom"


class _EchoingChat:
    """A chat client whose model copies the user-turn prompt's scaffolding into its reply (SmolLM2 did)."""

    def __init__(self, reply: str) -> None:
        from types import SimpleNamespace

        message = SimpleNamespace(content=reply)
        choice = SimpleNamespace(message=message, finish_reason="stop", model_extra={})
        self.answer = SimpleNamespace(choices=[choice], usage=SimpleNamespace(completion_tokens=17))
        self.chat = SimpleNamespace(completions=SimpleNamespace(create=self._create))

    async def _create(self, **kw):
        return self.answer

    async def close(self) -> None:
        return None


@pytest.mark.parametrize(
    "reply",
    [
        "<partial_solution>\nStep 1: 4 + 5 = 9.\n</partial_solution>\nStep 2: so \\boxed{9}.",
        "Partial solution so far:\nStep 1: 4 + 5 = 9.\n\nStep 2: so \\boxed{9}.",
        "Step 1: 4 + 5 = 9. Step 2: so \\boxed{9}.</partial_solution>",
    ],
)
def test_the_strong_prompts_scaffolding_never_reaches_a_step(reply):
    steps = ["Step 1: 4 + 5 = 9."]
    gen = OpenAIStrongGenerator("strong", base_url="http://unused/v1", retry=FAST, client=_EchoingChat(reply))
    r = run(gen.generate_step(P, steps))
    assert "partial_solution" not in r.text and "Partial solution" not in r.text
    assert r.text == "Step 2: so \\boxed{9}."
    assert r.tokens == 17 and r.final

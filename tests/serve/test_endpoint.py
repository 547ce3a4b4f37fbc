"""The endpoint through the real openai SDK, with the upstreams played by the project's wire-format fakes."""

from __future__ import annotations

import asyncio
import threading
import time

import openai
import pytest

from tests.serve._server import Upstreams, httpx, serving
from trim_pomdp.datasets.problems import Problem
from trim_pomdp.generation.backends.factory import build_prm, build_strong, build_weak
from trim_pomdp.generation.loop import LoopConfig, solve_problem
from trim_pomdp.generation.scoring import BatchedPRM
from trim_pomdp.routers.threshold import ThresholdRouter

QUESTION = [{"role": "user", "content": "What is 1 + 2?"}]  # (1 + 2) % 3 == 0: the weak model errs at step 2
THR = "trim-thr/k=0.5"


@pytest.fixture(scope="module")
def upstreams():
    with Upstreams() as ups:
        yield ups


@pytest.fixture(scope="module")
def server(upstreams):
    with serving(upstreams.config(("thr:0.5", "weak", "strong"))) as srv:
        yield srv


def client(srv, **kw) -> openai.OpenAI:
    kw.setdefault("api_key", "unused")
    kw.setdefault("timeout", 30)
    return openai.OpenAI(base_url=srv.url + "/v1", max_retries=0, **kw)


def metric(srv, line_start: str) -> float:
    text = httpx.get(srv.url + "/metrics").text
    values = [float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(line_start)]
    return sum(values)


def test_models_list_every_router_and_unknown_model_is_404(server):
    c = client(server)
    assert [m.id for m in c.models.list().data] == [THR, "weak", "strong"]
    assert c.models.retrieve(THR).model_extra["trim"]["policy"] == "thr"
    with pytest.raises(openai.NotFoundError) as err:
        c.chat.completions.create(model="trim-pomdp/lambda=1", messages=QUESTION)
    assert err.value.code == "model_not_found"
    assert THR in err.value.message and "weak" in err.value.message and "strong" in err.value.message
    assert httpx.get(server.url + "/health").json()["models"] == [THR, "weak", "strong"]


def _in_process(upstreams) -> dict:
    """The same problem through solve_problem itself, on the same upstreams (the one loop)."""

    async def go():
        weak = build_weak(upstreams.weak.url, model_name="weak", max_retries=0)
        strong = build_strong("big", url=upstreams.strong.url, max_retries=0)
        backend, name = build_prm(upstreams.weak.url)
        prm = BatchedPRM(backend, name)
        config = LoopConfig(policy="thr", knob=0.5)
        try:
            return await solve_problem(
                Problem("q", "What is 1 + 2?", "3"), weak, strong, prm, ThresholdRouter(0.5), config
            )
        finally:
            await weak.aclose()
            await strong.aclose()
            await backend.aclose()

    return asyncio.run(go())


def test_non_streamed_answer_is_the_loops_solution(server, upstreams):
    r = client(server).chat.completions.create(model=THR, messages=QUESTION)
    trim = r.model_extra["trim"]
    assert r.choices[0].finish_reason == "stop" and trim["stop"] == "final" and trim["answer"] == "3"
    steps = r.choices[0].message.content.split("\n\n")
    assert len(steps) == 3 and "carefully" in steps[1] and "wrong" not in r.choices[0].message.content
    assert [s["action"] for s in trim["steps"]] == ["continue", "regenerate", "continue"]
    assert trim["steps"][1]["score"] == pytest.approx(0.1) and trim["steps"][1][
        "score_strong"
    ] == pytest.approx(0.9)
    u = r.usage.model_extra
    assert u["strong_tokens"] == trim["strong_tokens"] == trim["steps"][1]["strong_tokens"] > 0
    assert u["weak_tokens"] == trim["weak_tokens"] and u["prm_calls"] == 4
    assert r.usage.completion_tokens == u["strong_tokens"] + u["weak_tokens"]
    direct = _in_process(upstreams)
    assert [s["action"] for s in direct["steps"]] == [s["action"] for s in trim["steps"]]
    assert (direct["strong_tokens"], direct["weak_tokens"]) == (trim["strong_tokens"], trim["weak_tokens"])


def test_streamed_answer_matches_and_carries_each_step(server):
    c = client(server)
    plain = c.chat.completions.create(model=THR, messages=QUESTION)
    chunks = list(
        c.chat.completions.create(
            model=THR, messages=QUESTION, stream=True, stream_options={"include_usage": True}
        )
    )
    text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
    assert text == plain.choices[0].message.content
    assert chunks[0].choices[0].delta.role == "assistant"
    steps = [ch.model_extra["trim_step"] for ch in chunks if "trim_step" in (ch.model_extra or {})]
    assert [s["action"] for s in steps] == ["continue", "regenerate", "continue"]
    finals = [ch for ch in chunks if ch.choices and ch.choices[0].finish_reason]
    assert len(finals) == 1 and finals[0].choices[0].finish_reason == "stop"
    assert finals[0].model_extra["trim"]["strong_tokens"] == plain.usage.model_extra["strong_tokens"]
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == plain.usage.completion_tokens
    assert len({ch.id for ch in chunks}) == 1


def test_steps_opt_out_and_single_model_baselines(server):
    c = client(server)
    r = c.chat.completions.create(model=THR, messages=QUESTION, extra_body={"trim_steps": False})
    assert "steps" not in r.model_extra["trim"]
    chunks = list(
        c.chat.completions.create(model=THR, messages=QUESTION, stream=True, extra_body={"trim_steps": False})
    )
    assert not any("trim_step" in (ch.model_extra or {}) for ch in chunks)
    weak = c.chat.completions.create(model="weak", messages=QUESTION)
    assert "wrong" in weak.choices[0].message.content and weak.usage.model_extra["strong_tokens"] == 0
    strong = c.chat.completions.create(model="strong", messages=QUESTION)
    assert strong.usage.model_extra["weak_tokens"] == 0 and strong.model_extra["trim"]["answer"] == "3"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (b"{not json", None),
        (b"[1, 2]", None),
        (b'{"model": "trim-thr/k=0.5"}', "messages"),
        (b'{"model": "trim-thr/k=0.5", "messages": []}', "messages"),
        (b'{"model": "trim-thr/k=0.5", "messages": [{"role": "user", "content": 5}]}', "messages[0].content"),
        (
            b'{"model": "trim-thr/k=0.5", "messages": [{"role": "robot", "content": "hi"}]}',
            "messages[0].role",
        ),
        (b'{"model": "trim-thr/k=0.5", "messages": [{"role": "system", "content": "hi"}]}', "messages"),
        (b'{"messages": [{"role": "user", "content": "hi"}]}', "model"),
        (b'{"model": "trim-thr/k=0.5", "messages": [{"role": "user", "content": "x"}], "n": 2}', "n"),
        (
            b'{"model": "trim-thr/k=0.5", "messages": [{"role": "user", "content": "x"}], "stream": "often"}',
            "stream",
        ),
        (
            b'{"model": "trim-thr/k=0.5", "messages": [{"role": "user", "content": "x"}], "max_strong_tokens": 0}',
            "max_strong_tokens",
        ),
    ],
)
def test_malformed_body_is_a_400_naming_the_field(server, body, field):
    r = httpx.post(
        server.url + "/v1/chat/completions", content=body, headers={"content-type": "application/json"}
    )
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["type"] == "invalid_request_error" and err["param"] == field
    if field is not None:
        assert err["message"].startswith(field)
    else:
        assert "JSON" in err["message"]


def test_malformed_body_through_the_sdk(server):
    with pytest.raises(openai.BadRequestError) as err:
        client(server).chat.completions.create(
            model=THR, messages=[{"role": "user", "content": [{"type": "image_url"}]}]
        )
    assert err.value.param and err.value.param.startswith("messages[0].content")


def test_unknown_route_and_method_have_openai_error_bodies(server):
    r = httpx.get(server.url + "/v1/nothing")
    assert r.status_code == 404 and r.json()["error"]["type"] == "not_found_error"
    r = httpx.get(server.url + "/v1/chat/completions")
    assert r.status_code == 405 and "message" in r.json()["error"]


def test_max_strong_tokens_is_refused_by_a_router_that_cannot_plan_with_it(server):
    with pytest.raises(openai.BadRequestError) as err:
        client(server).chat.completions.create(
            model=THR, messages=QUESTION, extra_body={"max_strong_tokens": 100}
        )
    assert err.value.param == "max_strong_tokens" and err.value.code == "unsupported_parameter"
    ok = client(server).chat.completions.create(
        model="weak", messages=QUESTION, extra_body={"max_strong_tokens": 1}
    )
    assert ok.usage.model_extra["strong_tokens"] == 0


def test_metrics_count_requests_steps_tokens_and_latency(server):
    before = metric(server, f'trim_regenerations_total{{model="{THR}"}}')
    c = client(server)
    r = c.chat.completions.create(model=THR, messages=QUESTION)
    text = httpx.get(server.url + "/metrics").text
    assert f'trim_requests_total{{model="{THR}",status="200"}}' in text
    assert metric(server, f'trim_regenerations_total{{model="{THR}"}}') == before + 1
    assert f'trim_steps_total{{action="regenerate",model="{THR}"}}' in text
    assert (
        metric(server, f'trim_tokens_total{{model="{THR}",upstream="strong"}}')
        >= r.usage.model_extra["strong_tokens"]
    )
    assert 'trim_upstream_seconds_bucket{le="0.005",upstream="prm"}' in text
    assert f'trim_request_duration_seconds_count{{model="{THR}"}}' in text
    assert "trim_requests_in_flight 0.0" in text
    httpx.post(server.url + "/v1/chat/completions", content=b"{")
    assert metric(server, 'trim_requests_total{model="-",status="400"}') >= 1


def test_many_requests_in_flight_share_the_prm_batches(upstreams):
    upstreams.weak.delay_s = upstreams.strong.delay_s = 0.05
    try:
        with serving(upstreams.config(max_in_flight=32)) as srv:
            engine = srv.app.state.engine

            async def go():
                c = openai.AsyncOpenAI(base_url=srv.url + "/v1", api_key="x", max_retries=0, timeout=60)
                qs = [[{"role": "user", "content": f"What is {i} + {i + 1}?"}] for i in range(24)]
                out = await asyncio.gather(*(c.chat.completions.create(model=THR, messages=q) for q in qs))
                await c.close()
                return out

            answers = asyncio.run(go())
            assert all(a.model_extra["trim"]["stop"] == "final" for a in answers)
            assert [a.model_extra["trim"]["answer"] for a in answers] == [str(2 * i + 1) for i in range(24)]
            assert engine.upstreams.prm.batcher.items > engine.upstreams.prm.batcher.batches  # batched
    finally:
        upstreams.weak.delay_s = upstreams.strong.delay_s = 0.0


def test_overload_is_a_429_with_retry_after():
    with (
        Upstreams(n_steps=8, delay_s=0.15) as ups,
        serving(ups.config(max_in_flight=2, retry_after=2)) as srv,
    ):
        c = client(srv)
        done: list = []

        def long_request():
            done.append(c.chat.completions.create(model=THR, messages=QUESTION))

        threads = [threading.Thread(target=long_request) for _ in range(2)]
        for t in threads:
            t.start()
        deadline = time.time() + 10
        while httpx.get(srv.url + "/health").json()["in_flight"] < 2 and time.time() < deadline:
            time.sleep(0.01)
        with pytest.raises(openai.RateLimitError) as err:
            c.chat.completions.create(model=THR, messages=QUESTION)
        assert err.value.response.headers["retry-after"] == "2"
        assert "--max-in-flight 2" in err.value.message
        with pytest.raises(openai.RateLimitError):
            list(c.chat.completions.create(model=THR, messages=QUESTION, stream=True))
        for t in threads:
            t.join(30)
        assert len(done) == 2  # the admitted requests were not disturbed
        assert httpx.get(srv.url + "/health").json()["in_flight"] == 0
        # once a slot is free the same call goes through
        assert (
            client(srv).chat.completions.create(model=THR, messages=QUESTION).choices[0].finish_reason
            == "stop"
        )
        assert metric(srv, f'trim_requests_total{{model="{THR}",status="429"}}') == 2


def test_upstream_500_is_a_502_in_both_forms(upstreams, server):
    c = client(server)
    upstreams.weak.fail_next("500", 1)
    with pytest.raises(openai.InternalServerError) as err:
        c.chat.completions.create(model=THR, messages=QUESTION)
    assert err.value.status_code == 502 and err.value.code == "upstream_error"
    assert "HTTP 500" in err.value.message
    upstreams.strong.fail_next("500", 1)  # step 2 is regenerated: the strong model fails mid-stream
    stream = c.chat.completions.create(model=THR, messages=QUESTION, stream=True)
    got = []
    with pytest.raises(openai.APIError) as err:
        for ch in stream:
            got.append(ch)
    assert "upstream" in str(err.value) and any(ch.choices and ch.choices[0].delta.content for ch in got)
    assert c.chat.completions.create(model=THR, messages=QUESTION).choices[0].finish_reason == "stop"


def test_upstream_timeout_is_a_504(upstreams):
    with serving(upstreams.config(timeout=0.3)) as srv:
        upstreams.weak.fail_next("hang", 1)
        t0 = time.time()
        with pytest.raises(openai.InternalServerError) as err:
            client(srv).chat.completions.create(model=THR, messages=QUESTION)
        assert err.value.status_code == 504 and err.value.code == "upstream_timeout"
        assert time.time() - t0 < 5
        assert metric(srv, 'trim_upstream_errors_total{kind="upstream_timeout"}') == 1


def test_request_deadline_stops_the_upstream_calls():
    with Upstreams(n_steps=40, delay_s=0.05) as ups, serving(ups.config(request_timeout=0.6)) as srv:
        with pytest.raises(openai.InternalServerError) as err:
            client(srv).chat.completions.create(model=THR, messages=QUESTION)
        assert err.value.status_code == 504 and err.value.code == "deadline_exceeded"
        time.sleep(0.2)
        n = ups.calls()
        time.sleep(0.6)
        assert ups.calls() == n and n < 40 * 2
        with pytest.raises(openai.APIError) as err:
            list(client(srv).chat.completions.create(model=THR, messages=QUESTION, stream=True))
        assert "deadline" in str(err.value) or "--request-timeout" in str(err.value)
        time.sleep(0.2)
        n = ups.calls()
        time.sleep(0.6)
        assert ups.calls() == n
        assert metric(srv, 'trim_cancelled_total{reason="deadline"}') == 2
        assert httpx.get(srv.url + "/health").json()["in_flight"] == 0


def test_client_that_disconnects_mid_stream_stops_the_upstream_calls():
    with Upstreams(n_steps=40, delay_s=0.05) as ups, serving(ups.config(keepalive_s=0.02)) as srv:
        stream = client(srv).chat.completions.create(model=THR, messages=QUESTION, stream=True)
        it = iter(stream)
        first = [next(it), next(it)]  # the role chunk and the first step
        assert first[1].choices[0].delta.content.startswith("Step 1")
        stream.close()
        deadline = time.time() + 5
        while metric(srv, 'trim_cancelled_total{reason="disconnect"}') < 1 and time.time() < deadline:
            time.sleep(0.01)
        n = ups.calls()
        time.sleep(0.8)  # ~16 more calls if the request had gone on
        assert ups.calls() == n and n < 20
        assert metric(srv, 'trim_cancelled_total{reason="disconnect"}') == 1
        assert httpx.get(srv.url + "/health").json()["in_flight"] == 0
        assert metric(srv, f'trim_requests_total{{model="{THR}",status="499"}}') == 1


def test_client_that_gives_up_on_a_plain_request_stops_the_upstream_calls():
    with Upstreams(n_steps=40, delay_s=0.05) as ups, serving(ups.config()) as srv:
        with pytest.raises(openai.APITimeoutError):
            client(srv, timeout=0.5).chat.completions.create(model=THR, messages=QUESTION)
        deadline = time.time() + 5
        while metric(srv, 'trim_cancelled_total{reason="disconnect"}') < 1 and time.time() < deadline:
            time.sleep(0.01)
        n = ups.calls()
        time.sleep(0.8)
        assert ups.calls() == n and n < 30
        assert httpx.get(srv.url + "/health").json()["in_flight"] == 0


def test_sse_keepalive_comments_while_a_step_is_slow():
    with Upstreams(n_steps=2, delay_s=0.2) as ups, serving(ups.config(keepalive_s=0.05)) as srv:
        body = {"model": THR, "messages": QUESTION, "stream": True}
        with httpx.stream("POST", srv.url + "/v1/chat/completions", json=body, timeout=30) as r:
            assert r.headers["content-type"].startswith("text/event-stream")
            lines = [line for line in r.iter_lines() if line]
        assert ": keep-alive" in lines and lines[-1] == "data: [DONE]"
        assert all(line.startswith(("data: ", ": ")) for line in lines)


def test_weak_only_mode_needs_no_strong_model_or_prm():
    with Upstreams() as ups:
        config = ups.config(("weak",), prm=None, strong="claude-not-needed", strong_url=None)
        with serving(config) as srv:
            r = client(srv).chat.completions.create(model="weak", messages=QUESTION)
            assert r.model_extra["trim"]["answer"] == "4"  # the weak model's mistake, unrouted

"""One request through the one generation loop: admission, the request's task, its deadline, cancellation, errors.

Each request is one problem solved by :func:`trim_pomdp.generation.loop.solve_problem` in an asyncio task of its
own, with a router from the served router's pool. The task is the only thing that calls upstream models for the
request, so cancelling it — when the client disconnects or the deadline passes — is what guarantees that no
further upstream call is made (a call in flight is abandoned; a PRM prefix still waiting for its batch is
dropped). The slot of a request is freed when its task has ended, so the bound on requests in flight is a
bound on upstream work, not on open connections.

Upstream failures become OpenAI-style errors: a model or PRM that keeps failing after its retries is a 502
(``upstream_error``), one that timed out a 504 (``upstream_timeout``); a request past its deadline is a 504
(``deadline_exceeded``). Messages are redacted of every configured secret before they are logged or answered.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from typing import Any

from trim_pomdp.datasets.problems import Problem
from trim_pomdp.exceptions import DataFormatError, InvalidParameterError
from trim_pomdp.generation.backends._common import GenerationError
from trim_pomdp.generation.base import StepResult
from trim_pomdp.generation.loop import LoopConfig, solve_problem
from trim_pomdp.serve.config import ServeConfig, ServedRouter, redact
from trim_pomdp.serve.metrics import ServeMetrics
from trim_pomdp.serve.protocol import ApiError, ChatRequest, answer_body, chunk, final_chunk, sse, step_entry
from trim_pomdp.serve.upstreams import Upstreams

__all__ = ["ClientGone", "Engine"]

log = logging.getLogger("trim_pomdp.serve")

Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]


class ClientGone(Exception):
    """The client disconnected before its answer was ready (nothing is sent; recorded as status 499)."""


def _timed_out(exc: BaseException) -> bool:
    """Whether ``exc`` or an error it was raised from is a timeout."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, TimeoutError) or "Timeout" in type(seen).__name__:
            return True
        seen = seen.__cause__ or seen.__context__
    return False


async def _disconnected(receive: Receive) -> None:
    """Return when the ASGI server reports that the client went away."""
    while True:
        message = await receive()
        if message.get("type") == "http.disconnect":
            return


class _Request:
    """One admitted request: its id, router, loop settings, the steps accepted so far and its task."""

    def __init__(self, engine: Engine, served: ServedRouter, req: ChatRequest) -> None:
        self.id = f"chatcmpl-{uuid.uuid4().hex}"
        self.created = int(time.time())
        self.started = time.perf_counter()
        self.served = served
        self.req = req
        self.texts: list[str] = []
        self.queue: asyncio.Queue[tuple[StepResult, dict[str, Any]] | None] = asyncio.Queue()
        self.task: asyncio.Task[dict[str, Any]] | None = None
        self.stopped = False
        self.engine = engine

    def on_step(self, step: StepResult, rec: dict[str, Any]) -> None:
        self.texts.append(step.text)
        self.engine.metrics.step(self.served.model, rec)
        self.queue.put_nowait((step, rec))

    @property
    def text(self) -> str:
        return "\n\n".join(self.texts)


class Engine:
    """The request side of the endpoint, independent of the web framework.

    Parameters
    ----------
    config : ServeConfig
    routers : dict
        Model id → :class:`~trim_pomdp.serve.config.ServedRouter`.
    upstreams : Upstreams
    metrics : ServeMetrics
    secrets : list of str
        Values redacted from every message.
    """

    def __init__(
        self,
        config: ServeConfig,
        routers: dict[str, ServedRouter],
        upstreams: Upstreams,
        metrics: ServeMetrics,
        secrets: list[str],
    ) -> None:
        self.config = config
        self.routers = routers
        self.upstreams = upstreams
        self.metrics = metrics
        self.secrets = secrets
        self.in_flight = 0
        self.tasks: set[asyncio.Task[dict[str, Any]]] = set()
        self.loop_config = LoopConfig(
            max_steps=config.max_steps, max_solution_tokens=config.max_solution_tokens
        )
        self.loop_config.validate()  # once; requests change only their mode, labels and token cap

    # -- admission -----------------------------------------------------------------------------------------
    def router(self, name: str) -> ServedRouter:
        """The served router called ``name``, or a 404 that lists the loaded ones."""
        served = self.routers.get(name)
        if served is None:
            raise ApiError(
                404,
                f"model {name!r} is not served here; the loaded models are: {', '.join(self.routers)}",
                code="model_not_found",
                param="model",
            )
        return served

    def _admit(self) -> None:
        if self.in_flight >= self.config.max_in_flight:
            wait = self.config.retry_after
            raise ApiError(
                429,
                f"{self.in_flight} requests are being solved, the most this server takes at once "
                f"(--max-in-flight {self.config.max_in_flight}); retry after {wait:g} s",
                "rate_limit_error",
                code="too_many_requests",
                headers={"Retry-After": str(max(1, round(wait)) if wait >= 1 else f"{wait:g}")},
            )
        self.in_flight += 1
        self.metrics.in_flight.set(self.in_flight)

    def _release(self, _: object = None) -> None:
        self.in_flight -= 1
        self.metrics.in_flight.set(self.in_flight)

    async def _router_for(self, served: ServedRouter, req: ChatRequest) -> tuple[Any, bool]:
        """``(router, pooled)`` for one request: capped when the request sets ``max_strong_tokens``."""
        if req.max_strong_tokens is None or served.mode == "weak":
            return served.acquire(), True
        if not served.supports_cap:
            capped = [m for m, r in self.routers.items() if r.supports_cap and r.mode != "weak"]
            raise ApiError(
                400,
                f"max_strong_tokens: {served.model} does not plan with a cap on strong tokens; models that do: "
                f"{', '.join(capped) or 'none loaded'}",
                param="max_strong_tokens",
                code="unsupported_parameter",
            )
        try:
            # a capped router may solve a budget-aware model first: not on the event loop
            return await asyncio.to_thread(served.capped, req.max_strong_tokens), False
        except InvalidParameterError as exc:
            raise ApiError(400, f"max_strong_tokens: {self._safe(exc)}", param="max_strong_tokens") from None

    async def start(self, served: ServedRouter, req: ChatRequest) -> _Request:
        """Admit a request (or raise a 429) and start its task."""
        problem_text = req.problem()
        self._admit()
        try:
            router, pooled = await self._router_for(served, req)
        except BaseException:
            self._release()
            raise
        r = _Request(self, served, req)
        cap = req.output_cap
        loop_config = dataclasses.replace(
            self.loop_config,
            max_solution_tokens=min(
                self.loop_config.max_solution_tokens, cap or self.loop_config.max_solution_tokens
            ),
            mode=served.mode,
            policy=served.spec.policy,
            knob=served.spec.knob,
        )
        ups = self.upstreams
        coro = solve_problem(
            Problem(r.id, problem_text, ""),
            ups.weak,
            ups.strong,
            ups.prm,
            router,
            loop_config,
            on_step=r.on_step,
        )
        task = asyncio.get_running_loop().create_task(coro)
        r.task = task
        self.tasks.add(task)

        def done(t: asyncio.Task[dict[str, Any]]) -> None:
            self.tasks.discard(t)
            self._release()
            if pooled:
                served.release(router)
            r.queue.put_nowait(None)

        task.add_done_callback(done)
        return r

    # -- outcomes ------------------------------------------------------------------------------------------
    def _safe(self, exc: BaseException) -> str:
        return redact(f"{exc}", self.secrets)[:1000]

    def error_of(self, exc: BaseException) -> ApiError:
        """The API error a failed request answers (counted, logged without secrets)."""
        if isinstance(exc, ApiError):
            return exc
        # a model call that failed for good, a PRM answer that is not scores, a connection, an SDK error
        upstream = isinstance(exc, (GenerationError, DataFormatError, OSError, TimeoutError)) or (
            type(exc).__module__.split(".")[0] in ("openai", "anthropic", "httpx", "httpx2")
        )
        if not upstream and not _timed_out(exc):
            log.error("request failed: %s: %s", type(exc).__name__, self._safe(exc))
            return ApiError(500, f"internal error: {type(exc).__name__}: {self._safe(exc)}", "server_error")
        kind = "upstream_timeout" if _timed_out(exc) else "upstream_error"
        self.metrics.upstream_errors.labels(kind).inc()
        message = f"an upstream model or the PRM failed: {type(exc).__name__}: {self._safe(exc)}"
        log.warning("%s", message)
        return ApiError(504 if kind == "upstream_timeout" else 502, message, kind, code=kind)

    def deadline_error(self) -> ApiError:
        """The error of a request past its deadline (its task is stopped, and counted, by ``_stop``)."""
        t = self.config.request_timeout
        return ApiError(
            504,
            f"the request did not finish within {t:g} s (the server's --request-timeout); its upstream calls "
            "were stopped",
            "timeout",
            code="deadline_exceeded",
        )

    def finished(self, r: _Request, status: int) -> None:
        """Count and log a request that ended with HTTP ``status``."""
        seconds = time.perf_counter() - r.started
        self.metrics.requests.labels(r.served.model, str(status)).inc()
        self.metrics.duration.labels(r.served.model).observe(seconds)
        log.info("%s %s %d %d steps %.3f s", r.id, r.served.model, status, len(r.texts), seconds)

    def _stop(self, r: _Request, reason: str) -> None:
        """Cancel the request's task (once) if it is still running, counting why."""
        assert r.task is not None
        if r.stopped or r.task.done():
            return
        r.stopped = True
        r.task.cancel()
        self.metrics.cancelled.labels(reason).inc()

    # -- the two ways to answer ---------------------------------------------------------------------------
    async def complete(self, r: _Request, receive: Receive) -> dict[str, Any]:
        """Wait for the request's answer (non-streamed); stop its task if the client leaves or time runs out."""
        assert r.task is not None
        watcher = asyncio.ensure_future(_disconnected(receive))
        try:
            done, _ = await asyncio.wait(
                {r.task, watcher}, timeout=self.config.request_timeout, return_when=asyncio.FIRST_COMPLETED
            )
        except asyncio.CancelledError:
            self._stop(r, "disconnect")
            raise
        finally:
            watcher.cancel()
        if r.task in done:
            exc = r.task.exception()
            if exc is not None:
                raise self.error_of(exc)
            trace = r.task.result()
            return answer_body(
                r.id, r.served.model, r.text, trace, with_steps=r.req.trim_steps, created=r.created
            )
        if watcher in done:
            self._stop(r, "disconnect")
            raise ClientGone()
        self._stop(r, "deadline")
        raise self.deadline_error()

    async def stream(self, r: _Request) -> AsyncIterator[bytes]:
        """The SSE events of a streamed request: a role chunk, one chunk per accepted step, the end, ``[DONE]``.

        When the client disconnects, Starlette cancels this iterator, and the request's task with it. Past the
        deadline, or when the task fails, the stream ends with an error event (which the OpenAI SDKs raise).
        """
        assert r.task is not None
        model, status = r.served.model, 499
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.config.request_timeout
        try:
            yield sse(chunk(r.id, model, r.created, delta={"role": "assistant", "content": ""}))
            n_sent = 0
            while True:
                left = deadline - loop.time()
                if left <= 0:
                    self._stop(r, "deadline")
                    err = self.deadline_error()
                    status = err.status
                    yield sse(err.body())
                    break
                try:
                    item = await asyncio.wait_for(r.queue.get(), min(left, self.config.keepalive_s))
                except asyncio.TimeoutError:
                    yield b": keep-alive\n\n"
                    continue
                if item is None:  # the task has ended
                    status, events = self._stream_end(r)
                    for event in events:
                        yield event
                    break
                step, rec = item
                text = step.text if n_sent == 0 else "\n\n" + step.text
                n_sent += 1
                extra = {"trim_step": step_entry(rec)} if r.req.trim_steps else None
                yield sse(chunk(r.id, model, r.created, delta={"content": text}, extra=extra))
            yield sse("[DONE]")
        finally:
            self._stop(r, "disconnect")  # no-op unless the client left mid-stream
            self.finished(r, status)

    def _stream_end(self, r: _Request) -> tuple[int, list[bytes]]:
        """The status and closing events of a streamed request whose task has ended."""
        assert r.task is not None and r.task.done()
        if r.task.cancelled():
            return 499, []
        exc = r.task.exception()
        if exc is not None:
            err = self.error_of(exc)
            return err.status, [sse(err.body())]
        trace = r.task.result()
        model = r.served.model
        events = [sse(final_chunk(r.id, model, r.created, trace))]
        if r.req.include_usage:
            events.append(sse(chunk(r.id, model, r.created, usage_of=trace)))
        return 200, events

    async def aclose(self) -> None:
        """Cancel the requests still running and close the upstreams."""
        for t in list(self.tasks):
            t.cancel()
        if self.tasks:
            await asyncio.gather(*self.tasks, return_exceptions=True)
        await self.upstreams.aclose()

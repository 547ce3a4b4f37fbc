"""The FastAPI application of ``trim-pomdp serve`` and the uvicorn server that runs it.

Routes: ``POST /v1/chat/completions`` (plain and SSE), ``GET /v1/models``, ``GET /v1/models/{id}``,
``GET /health`` and ``GET /metrics``. With a bearer token configured every route but ``/health`` needs
``Authorization: Bearer <token>`` (the OpenAI SDKs send their ``api_key`` so). Every error, including unknown
routes and wrong methods, has the OpenAI error body.
"""

# No ``from __future__ import annotations`` here: FastAPI reads the routes' annotations (``Request``) when they
# are defined, inside create_app, where the lazily imported ``Request`` is a local name.

import contextlib
import hmac
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

from trim_pomdp._internal.optional import require
from trim_pomdp.serve.config import ServeConfig, ServedRouter, load_routers, redact, secret_values
from trim_pomdp.serve.engine import ClientGone, Engine
from trim_pomdp.serve.metrics import ServeMetrics
from trim_pomdp.serve.protocol import ApiError, error_body, parse_request
from trim_pomdp.serve.upstreams import Upstreams, build_upstreams

__all__ = ["RedactingFilter", "create_app", "prepare", "run_server"]

log = logging.getLogger("trim_pomdp.serve")

#: Seconds an idle client connection stays open (longer than the clients' pools keep idle connections).
KEEP_ALIVE_S = 75


class RedactingFilter(logging.Filter):
    """Replaces every configured secret in a log record's message by ``[redacted]``."""

    def __init__(self, secrets: list[str]) -> None:
        super().__init__()
        self.secrets = secrets

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = redact(message, self.secrets)
        if clean != message:
            record.msg, record.args = clean, ()
        return True


def prepare(config: ServeConfig) -> tuple[dict[str, ServedRouter], Upstreams, str | None]:
    """Check the settings and load what the app serves: routers, upstream models, the bearer token.

    Everything that can be wrong with a configuration (a bad router, a missing API key or model, listening
    beyond loopback without a token) fails here, before the port is bound, with a one-line error.
    """
    config.validate()
    token = config.check_auth()
    routers = load_routers(config.routers)
    upstreams = build_upstreams(config, {r.mode for r in routers.values()})
    return routers, upstreams, token


def create_app(
    config: ServeConfig,
    routers: dict[str, ServedRouter],
    upstreams: Upstreams,
    token: str | None = None,
) -> Any:
    """The FastAPI app over loaded routers and upstreams (see :func:`prepare`).

    Parameters
    ----------
    config : ServeConfig
    routers : dict
        Model id → :class:`~trim_pomdp.serve.config.ServedRouter`.
    upstreams : Upstreams
        The weak and strong generators and the PRM; closed when the app shuts down.
    token : str, optional
        The bearer token every request but ``/health`` must carry.
    """
    # long: FastAPI's idiom — each route is a few lines, a closure over this app's engine, metrics and token;
    # split apart they would need the same state passed through app.state on every request
    fastapi = require("fastapi", "serve", "trim-pomdp serve")
    from fastapi.responses import JSONResponse, Response, StreamingResponse
    from starlette.exceptions import HTTPException
    from starlette.requests import Request

    secrets = secret_values([token] if token else [])
    metrics = ServeMetrics()
    engine = Engine(config, routers, upstreams, metrics, secrets)
    started = int(time.time())

    @contextlib.asynccontextmanager
    async def lifespan(_: Any) -> AsyncIterator[None]:
        yield
        await engine.aclose()

    app = fastapi.FastAPI(
        title="trim-pomdp", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None
    )
    app.state.engine = engine

    def error_response(err: ApiError) -> Any:
        return JSONResponse(err.body(), status_code=err.status, headers=err.headers)

    @app.exception_handler(ApiError)
    async def on_api_error(_: Any, err: ApiError) -> Any:
        return error_response(err)

    @app.exception_handler(HTTPException)
    async def on_http_error(_: Any, exc: Any) -> Any:
        kind = "not_found_error" if exc.status_code == 404 else "invalid_request_error"
        return JSONResponse(error_body(str(exc.detail), kind), status_code=exc.status_code)

    def authorize(request: Any) -> None:
        if token is None:
            return
        header = request.headers.get("authorization") or ""
        scheme, _, given = header.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), token.encode()):
            raise ApiError(
                401,
                "missing or wrong API key: send the server's token as 'Authorization: Bearer <token>' "
                "(the OpenAI SDKs' api_key)",
                code="invalid_api_key",
            )

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {
            "status": "ok",
            "in_flight": engine.in_flight,
            "max_in_flight": config.max_in_flight,
            "models": list(routers),
        }

    @app.get("/metrics")
    async def metrics_route(request: Request) -> Any:
        authorize(request)
        body, content_type = metrics.exposition()
        return Response(body, media_type=content_type)

    def model_entry(served: ServedRouter) -> dict[str, Any]:
        return {
            "id": served.model,
            "object": "model",
            "created": started,
            "owned_by": "trim-pomdp",
            "trim": served.describe(),
        }

    @app.get("/v1/models")
    async def models(request: Request) -> dict[str, Any]:
        authorize(request)
        return {"object": "list", "data": [model_entry(r) for r in routers.values()]}

    @app.get("/v1/models/{model:path}")
    async def model(model: str, request: Request) -> dict[str, Any]:
        authorize(request)
        return model_entry(engine.router(model))

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> Any:
        name = "-"
        try:
            authorize(request)
            req = parse_request(await request.body())
            served = engine.router(req.model)
            name = served.model
            r = await engine.start(served, req)
        except ApiError as err:
            metrics.requests.labels(name, str(err.status)).inc()
            return error_response(err)
        if req.stream:
            return StreamingResponse(
                engine.stream(r),
                media_type="text/event-stream",
                headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
            )
        try:
            body = await engine.complete(r, request.receive)
        except ClientGone:
            engine.finished(r, 499)
            return Response(status_code=499)
        except ApiError as err:
            engine.finished(r, err.status)
            return error_response(err)
        engine.finished(r, 200)
        return JSONResponse(body)

    return app


def _install_filters(secrets: list[str], level: str) -> None:
    """Log the package's records at ``level`` (like uvicorn's), with every secret redacted (ours and uvicorn's)."""
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    ours = logging.getLogger("trim_pomdp")
    if not ours.handlers:
        ours.addHandler(handler)
    ours.setLevel(level.upper())
    flt = RedactingFilter(secrets)
    for name in ("", "trim_pomdp", "uvicorn", "uvicorn.error", "uvicorn.access"):
        for h in logging.getLogger(name).handlers:
            h.addFilter(flt)


def run_server(config: ServeConfig, *, log_level: str = "info") -> None:
    """Load everything (:func:`prepare`), then serve until interrupted (uvicorn)."""
    for module in ("fastapi", "prometheus_client"):  # before any model is loaded
        require(module, "serve", "trim-pomdp serve")
    uvicorn = require("uvicorn", "serve", "trim-pomdp serve")
    routers, upstreams, token = prepare(config)
    app = create_app(config, routers, upstreams, token)
    server_config = uvicorn.Config(
        app,
        host=config.host,
        port=int(config.port),
        log_level=log_level,
        timeout_graceful_shutdown=5,
        # idle connections stay open longer than the SDKs' pools keep them (httpx: 5 s, uvicorn's own default):
        # with equal timeouts a client can send on a connection the server is closing, a reset it does not retry
        timeout_keep_alive=KEEP_ALIVE_S,
    )
    _install_filters(secret_values([token] if token else []), log_level)
    log.warning(  # at every log level: where the server is and whether it checks tokens
        "serving %s on http://%s:%d/v1 (%s)",
        ", ".join(routers),
        config.host,
        config.port,
        "bearer token required" if token else "no authentication",
    )
    uvicorn.Server(server_config).run()

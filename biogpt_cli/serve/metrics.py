"""Prometheus metrics of one app, in its own CollectorRegistry (two apps in one process, as
tests build them, do not share or clash).

Counters and histograms are updated as requests go (middleware.py, the endpoints); the engine
gauges (queue depth, rows busy) are read from `Engine.stats()` when /metrics is scraped, so
they are never stale.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

# seconds: a CPU first token takes tens of milliseconds, a long CPU answer tens of seconds
TTFT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)


class Metrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter("biogpt_requests", "HTTP requests by endpoint and status code", ["endpoint", "status"], registry=r)
        self.prompt_tokens = Counter("biogpt_prompt_tokens", "Prompt tokens of completion requests", ["model"], registry=r)
        self.generation_tokens = Counter("biogpt_generation_tokens", "Tokens generated", ["model"], registry=r)
        self.queue_depth = Gauge("biogpt_queue_depth", "Requests waiting for a row (engine queue)", ["model"], registry=r)
        self.rows_busy = Gauge("biogpt_rows_busy", "Engine rows decoding now", ["model"], registry=r)
        self.max_rows = Gauge("biogpt_max_rows", "Engine rows", ["model"], registry=r)
        self.ttft = Histogram("biogpt_time_to_first_token_seconds", "Time from submission to the first token",
                              ["model"], buckets=TTFT_BUCKETS, registry=r)
        self.latency = Histogram("biogpt_request_latency_seconds", "Time to answer a request, by endpoint",
                                 ["endpoint"], buckets=LATENCY_BUCKETS, registry=r)

    def observe_request(self, endpoint: str, status: int, seconds: float) -> None:
        self.requests.labels(endpoint, str(status)).inc()
        self.latency.labels(endpoint).observe(seconds)

    def observe_generation(self, model: str, *, prompt_tokens: int, completion_tokens: int, first_token_seconds: float | None) -> None:
        self.prompt_tokens.labels(model).inc(prompt_tokens)
        self.generation_tokens.labels(model).inc(completion_tokens)
        if first_token_seconds is not None:
            self.ttft.labels(model).observe(first_token_seconds)

    def render(self, engines: Iterable[tuple[str, Any]]) -> bytes:
        """The exposition text, with the engine gauges read now."""
        for name, engine in engines:
            stats = engine.stats()
            self.queue_depth.labels(name).set(stats.get("queue_depth", 0))
            self.rows_busy.labels(name).set(stats.get("rows_busy", 0))
            self.max_rows.labels(name).set(stats.get("max_rows", 0))
        return generate_latest(self.registry)

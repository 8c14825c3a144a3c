"""Prometheus metrics: one registry per app, so several apps in one process never collide."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.http_requests = Counter(
            "tradepilot_http_requests_total",
            "HTTP requests by method, route template and status.",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.http_latency = Histogram(
            "tradepilot_http_request_duration_seconds",
            "HTTP request latency by method and route template.",
            ["method", "route"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.outbox_published = Counter(
            "tradepilot_outbox_published_total", "Outbox events relayed to the bus.", registry=self.registry
        )
        self.outbox_backlog = Gauge(
            "tradepilot_outbox_backlog", "Outbox events waiting to be relayed.", registry=self.registry
        )
        self.jobs = Counter(
            "tradepilot_jobs_total", "Background jobs finished, by kind and status.", ["kind", "status"],
            registry=self.registry,
        )

"""Prometheus metrics: one registry per app, so several apps in one process never collide.

With several worker processes behind one port, set ``PROMETHEUS_MULTIPROC_DIR`` (an empty
directory, before the processes start): prometheus_client then keeps every value in a file
per process, and :func:`exposed_registry` reads them all, so a scrape sees the whole server.
"""

from __future__ import annotations

import os

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector
from prometheus_client.multiprocess import MultiProcessCollector

MULTIPROCESS_ENV = "PROMETHEUS_MULTIPROC_DIR"

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
        # Operations (ops/monitoring): trading activity, errors and the process's own health.
        self.orders = Counter(
            "tradepilot_orders_total", "Orders accepted through the API, by type and side.", ["type", "side"],
            registry=self.registry,
        )
        self.outbox_events = Counter(
            "tradepilot_outbox_events_total", "Domain events relayed to the bus, by type (fills: fill.created).",
            ["type"], registry=self.registry,
        )
        self.unhandled_errors = Counter(
            "tradepilot_unhandled_errors_total", "Errors logged with a traceback (unhandled).", registry=self.registry
        )
        self.event_loop_lag = Gauge(
            "tradepilot_event_loop_lag_seconds", "How late the event loop woke a timer, last measurement.",
            registry=self.registry, multiprocess_mode="max",
        )
        self.db_pool_in_use = Gauge(
            "tradepilot_db_pool_connections_in_use", "Database connections checked out of the pool.",
            registry=self.registry, multiprocess_mode="livesum",
        )
        self.job_queue_depth = Gauge(
            "tradepilot_job_queue_depth", "Background jobs waiting to run.", registry=self.registry,
            multiprocess_mode="mostrecent",
        )
        ProcessCollector(registry=self.registry)  # CPU seconds, resident memory, open files


def multiprocess() -> bool:
    return bool(os.environ.get(MULTIPROCESS_ENV))


def exposed_registry(metrics: Metrics) -> CollectorRegistry:
    """What a scrape shows: this process's registry, or every worker process's values in
    multiprocess mode (the process collector's CPU and memory are then not included)."""
    if not multiprocess():
        return metrics.registry
    registry = CollectorRegistry()
    MultiProcessCollector(registry)
    return registry

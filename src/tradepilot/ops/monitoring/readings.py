"""Readings of the Prometheus registry: one snapshot of the counters, and what two snapshots say.

The registry's counters and histograms are cumulative since the process started; rates,
error rates and latency percentiles over a window come from the difference between the
snapshot taken now and the one taken at the window's start (``MonitoringSystem`` keeps them,
on the runtime clock). Percentiles are interpolated within histogram buckets, as
Prometheus's ``histogram_quantile`` does.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from prometheus_client import CollectorRegistry

Route = tuple[str, str]  # (method, route template)


@dataclass
class RouteLatency:
    count: float = 0.0
    total: float = 0.0
    buckets: dict[float, float] = field(default_factory=dict)  # upper bound → cumulative count

    def minus(self, earlier: RouteLatency | None) -> RouteLatency:
        if earlier is None:
            return self
        return RouteLatency(self.count - earlier.count, self.total - earlier.total,
                            {le: n - earlier.buckets.get(le, 0.0) for le, n in self.buckets.items()})

    def plus(self, other: RouteLatency) -> RouteLatency:
        keys = set(self.buckets) | set(other.buckets)
        return RouteLatency(self.count + other.count, self.total + other.total,
                            {le: self.buckets.get(le, 0.0) + other.buckets.get(le, 0.0) for le in keys})

    def quantile(self, q: float) -> float | None:
        """Seconds, or None without observations; the largest finite bound when in the +Inf bucket."""
        if self.count <= 0:
            return None
        rank = q * self.count
        lower_bound, lower_count = 0.0, 0.0
        finite = [le for le in sorted(self.buckets) if math.isfinite(le)]
        for le in sorted(self.buckets):
            cumulative = self.buckets[le]
            if cumulative >= rank:
                if not math.isfinite(le):
                    return finite[-1] if finite else None
                span = cumulative - lower_count
                return lower_bound + (le - lower_bound) * ((rank - lower_count) / span if span else 1.0)
            lower_bound, lower_count = le, cumulative
        return finite[-1] if finite else None


@dataclass
class Snapshot:
    at: datetime
    requests: dict[tuple[str, str, str], float] = field(default_factory=dict)  # (method, route, status) → count
    latency: dict[Route, RouteLatency] = field(default_factory=dict)
    samples: dict[str, float] = field(default_factory=dict)  # other series: name{labels} → value

    def total_requests(self) -> float:
        return sum(self.requests.values())

    def server_errors(self) -> float:
        return sum(n for (_, _, status), n in self.requests.items() if status.startswith("5"))

    def value(self, name: str) -> float:
        """The sum of every series of ``name`` (all label values)."""
        return sum(v for key, v in self.samples.items() if key == name or key.startswith(name + "{"))


def take_snapshot(registry: CollectorRegistry, at: datetime) -> Snapshot:
    snap = Snapshot(at=at)
    latency: dict[Route, RouteLatency] = defaultdict(RouteLatency)
    for family in registry.collect():
        for sample in family.samples:
            labels = sample.labels
            if sample.name == "tradepilot_http_requests_total":
                snap.requests[(labels["method"], labels["route"], labels["status"])] = sample.value
            elif sample.name == "tradepilot_http_request_duration_seconds_bucket":
                route = (labels["method"], labels["route"])
                latency[route].buckets[float(labels["le"])] = sample.value
            elif sample.name == "tradepilot_http_request_duration_seconds_count":
                latency[(labels["method"], labels["route"])].count = sample.value
            elif sample.name == "tradepilot_http_request_duration_seconds_sum":
                latency[(labels["method"], labels["route"])].total = sample.value
            elif not sample.name.endswith("_created"):
                key = sample.name + ("{" + ",".join(f"{k}={v}" for k, v in sorted(labels.items())) + "}"
                                     if labels else "")
                snap.samples[key] = sample.value
    snap.latency = dict(latency)
    return snap


def by_label(snapshot: Snapshot, name: str) -> dict[str, float]:
    """``name``'s series keyed by their label text (``type=limit,side=buy``), for the JSON summary."""
    prefix = name + "{"
    return {key[len(prefix):-1]: value for key, value in snapshot.samples.items() if key.startswith(prefix)}


@dataclass(frozen=True)
class Window:
    """What happened between two snapshots."""

    seconds: float
    requests: float
    server_errors: float
    latency: dict[Route, RouteLatency]

    @property
    def error_rate(self) -> float | None:
        return self.server_errors / self.requests if self.requests > 0 else None

    @property
    def request_rate(self) -> float | None:
        return self.requests / self.seconds if self.seconds > 0 else None

    def overall_latency(self) -> RouteLatency:
        total = RouteLatency()
        for route in self.latency.values():
            total = total.plus(route)
        return total


def window_between(earlier: Snapshot | None, later: Snapshot) -> Window:
    if earlier is None:
        return Window(0.0, later.total_requests(), later.server_errors(), later.latency)
    return Window(
        seconds=(later.at - earlier.at).total_seconds(),
        requests=later.total_requests() - earlier.total_requests(),
        server_errors=later.server_errors() - earlier.server_errors(),
        latency={route: lat.minus(earlier.latency.get(route)) for route, lat in later.latency.items()},
    )


def latency_summary(lat: RouteLatency) -> dict[str, Any]:
    def ms(value: float | None) -> float | None:
        return None if value is None else round(value * 1000, 2)

    return {"count": int(lat.count), "mean_ms": ms(lat.total / lat.count) if lat.count else None,
            "p50_ms": ms(lat.quantile(0.5)), "p95_ms": ms(lat.quantile(0.95)), "p99_ms": ms(lat.quantile(0.99))}

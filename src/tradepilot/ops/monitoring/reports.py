"""The JSON bodies of ``/api/system/metrics`` and ``/api/monitoring/performance``, read from this
process's Prometheus registry (with several replicas, each answers for itself; Prometheus
scraping every replica's ``/metrics`` gives the fleet)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tradepilot.ops.monitoring.readings import Snapshot, by_label, latency_summary, window_between

if TYPE_CHECKING:
    from tradepilot.ops.monitoring.system import MonitoringSystem

FILL_EVENT = "fill.created"


def _rate(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def metrics_summary(system: MonitoringSystem, window_seconds: int) -> dict[str, Any]:
    window = system.window(window_seconds)
    now: Snapshot = system.snapshots[-1]
    overall = window.overall_latency()
    fills = by_label(now, "tradepilot_outbox_events_total").get(f"type={FILL_EVENT}", 0.0)
    orders = by_label(now, "tradepilot_orders_total")
    return {
        "window_seconds": window.seconds,
        "requests": {"total": int(now.total_requests()), "in_window": int(window.requests),
                     "per_second": _rate(window.request_rate), "server_errors_total": int(now.server_errors()),
                     "error_rate": _rate(window.error_rate)},
        "latency": latency_summary(overall),
        "orders": {"total": int(sum(orders.values())), "by_type_side": {k: int(v) for k, v in orders.items()}},
        "fills": {"total": int(fills)},
        "unhandled_errors_total": int(now.value("tradepilot_unhandled_errors_total")),
        "websocket_clients": int(now.value("tradepilot_ws_clients")),
        "event_loop_lag_ms": round(now.value("tradepilot_event_loop_lag_seconds") * 1000, 2),
        "process": {"cpu_seconds": round(now.value("process_cpu_seconds_total"), 2),
                    "resident_memory_bytes": int(now.value("process_resident_memory_bytes")),
                    "open_fds": int(now.value("process_open_fds"))},
        "database_pool": {"in_use": int(now.value("tradepilot_db_pool_connections_in_use")),
                          "dialect": system.runtime.db.dialect},
        "job_queue": {"depth": int(now.value("tradepilot_job_queue_depth")),
                      "finished": {k: int(v) for k, v in by_label(now, "tradepilot_jobs_total").items()}},
        "outbox": {"published_total": int(now.value("tradepilot_outbox_published_total")),
                   "backlog": int(now.value("tradepilot_outbox_backlog"))},
    }


def performance(system: MonitoringSystem, window_seconds: int | None, slowest: int) -> dict[str, Any]:
    """Latency percentiles per route (since start, or over the window) and the slowest routes by p95."""
    window = system.window(window_seconds) if window_seconds is not None else window_between(None, system.sample())
    routes = []
    for (method, route), lat in window.latency.items():
        if lat.count <= 0:
            continue
        routes.append({"method": method, "route": route, **latency_summary(lat)})
    routes.sort(key=lambda item: (item["method"], item["route"]))
    ranked = sorted(routes, key=lambda item: item["p95_ms"] or 0.0, reverse=True)
    return {"window_seconds": window.seconds if window_seconds is not None else None,
            "overall": latency_summary(window.overall_latency()), "routes": routes, "slowest": ranked[:slowest]}

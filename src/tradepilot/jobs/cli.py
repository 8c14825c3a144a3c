"""``tradepilot worker``: a process that runs jobs, the reaper and the scheduler."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
from dataclasses import replace

from tradepilot.cli import command
from tradepilot.config import load_settings

logger = logging.getLogger("tradepilot.jobs")


def _worker_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--concurrency", type=int, default=None, help="jobs at once (TRADEPILOT_JOBS_CONCURRENCY)")
    parser.add_argument("--import", dest="imports", action="append", default=[], metavar="MODULE",
                        help="also import MODULE for its job handlers (repeatable)")


@command("worker", "run background jobs (and the scheduler) until SIGTERM", _worker_args)
def _worker(args: argparse.Namespace) -> int:
    from tradepilot.core.logging import configure_logging

    settings = load_settings()
    configure_logging(settings.log_level, settings.log_json, settings.log_file)
    asyncio.run(run_worker(concurrency=args.concurrency, handler_modules=args.imports))
    return 0


async def run_worker(*, concurrency: int | None = None, handler_modules: list[str] | None = None) -> None:
    """Run until SIGTERM/SIGINT; running jobs get the grace period, then go back to the queue.

    A worker starts what job handlers need (the bus, identity, the outbox relay) and the job
    system in executing mode, whether or not Redis is configured; not the HTTP-only parts
    (streaming) nor the market feed.
    """
    import tradepilot.models_registry  # noqa: F401  (the whole schema: handlers touch any table)
    from tradepilot.core.lease import close_lease_managers
    from tradepilot.core.outbox_setup import start_outbox, stop_outbox
    from tradepilot.identity.setup import start_identity
    from tradepilot.jobs.config import JobsConfig
    from tradepilot.jobs.setup import start_jobs, stop_jobs
    from tradepilot.runtime import build_runtime

    settings = load_settings()
    config = JobsConfig.from_settings(settings, inprocess=True)
    if concurrency:
        config = replace(config, concurrency=concurrency)
    runtime = build_runtime(settings)
    stop = asyncio.Event()
    endpoint = None
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await runtime.bus.start()
        await start_identity(runtime)
        await start_outbox(runtime)
        jobs = await start_jobs(runtime, execute=True, config=config, handler_modules=handler_modules or ())
        if settings.worker_metrics_port is not None:  # /metrics and /health for Prometheus and the container
            from tradepilot.core.metrics import exposed_registry
            from tradepilot.jobs.metrics_http import WorkerEndpoint

            token = settings.metrics_token.get_secret_value() if settings.metrics_token else None
            endpoint = WorkerEndpoint(host=settings.host, port=settings.worker_metrics_port,
                                      registry=exposed_registry(runtime.metrics), token=token)
            endpoint.start()
        logger.info("worker ready", extra={"worker": jobs.worker_id})
        print(f"worker ready {jobs.worker_id}", flush=True)
        await stop.wait()
        logger.info("worker stopping")
    finally:
        if endpoint is not None:
            await endpoint.stop()
        await stop_jobs(runtime)
        await stop_outbox(runtime)
        await runtime.bus.stop()
        await close_lease_managers(runtime)
        if runtime.redis is not None:
            await runtime.redis.aclose()
        await runtime.db.dispose()

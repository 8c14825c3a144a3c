"""Wires the portfolio into a process: the equity recorder, listening for fills where jobs run."""

from __future__ import annotations

from tradepilot.portfolio.equity import recorder_of
from tradepilot.runtime import Runtime


async def start_portfolio(runtime: Runtime) -> None:
    recorder = recorder_of(runtime)
    jobs = runtime.services.get("jobs")
    if jobs is not None and jobs.executes:  # the same processes that run the recording job
        await recorder.start()


async def stop_portfolio(runtime: Runtime) -> None:
    recorder = runtime.services.get("equity")
    if recorder is not None:
        await recorder.stop()

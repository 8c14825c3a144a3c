"""Wires the AI engine into a process: a fresh install enqueues its first direction-model training."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tradepilot.runtime import Runtime


async def start_ai(runtime: Runtime) -> None:
    """After the jobs and the market: the training job reads the candle store through them."""
    from tradepilot.ai.direction_job import enqueue_first_training

    await enqueue_first_training(runtime)

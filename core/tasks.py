"""Small helpers for a process's long-lived asyncio tasks."""

from __future__ import annotations

import asyncio
from typing import Any


async def cancel_and_wait(*tasks: asyncio.Task[Any] | None) -> None:
    """Cancel the tasks (None stands for one never started) and wait until each has ended; what
    they raised on the way out is of no interest to whoever stops them."""
    for task in tasks:
        if task is not None:
            task.cancel()
            try:
                await task
            except (asyncio.CancelledError, Exception):
                pass

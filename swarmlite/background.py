"""Components whose work is one long-running coroutine.

``start()`` launches ``_run()``; ``stop()`` cancels it and waits for it to unwind.
Subclasses keep their own setup and shutdown around these two.
"""

from __future__ import annotations

import asyncio
import contextlib


class BackgroundLoop:
    name = "background-loop"

    def __init__(self) -> None:
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=self.name)

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        raise NotImplementedError

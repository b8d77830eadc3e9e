"""line_stream: a blocking byte stream read in a thread, handed to the event loop."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator

from swarmlite.agent.docker_streams import line_stream


class TwoLines:
    """A log stream of two lines, then its end."""

    def __iter__(self) -> Iterator[bytes]:
        yield b"a\n"
        yield b"b\n"

    def close(self) -> None:
        pass


def test_a_cancelled_put_ends_the_reader_thread_quietly() -> None:
    # The thread has read both lines, the queue (size 1) is full, and it waits to put
    # the end marker; the loop cancels that put (as it does when shutting down). The
    # thread must end without an exception: it used to die on CancelledError.
    errors: list[BaseException | None] = []
    hook = threading.excepthook
    threading.excepthook = lambda args: errors.append(args.exc_value)
    try:

        async def read_one_then_cancel_the_put() -> None:
            lines = line_stream(TwoLines, "test", maxsize=1)
            assert await anext(lines) == b"a\n"
            await asyncio.sleep(0.3)  # "b" fills the queue; the end marker waits
            for task in asyncio.all_tasks():
                if task is not asyncio.current_task():
                    task.cancel()
            await asyncio.sleep(0.2)

        asyncio.run(read_one_then_cancel_the_put())
        for thread in threading.enumerate():
            if thread.name == "docker-logs":
                thread.join(5)
                assert not thread.is_alive()
    finally:
        threading.excepthook = hook
    assert errors == []

"""EventSubscription: Docker's event stream read in a thread, reopened when it breaks."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from typing import Any

from swarmlite.agent.containers import LABEL_TASK
from swarmlite.agent.docker_streams import RESYNC, EventSubscription, RuntimeEvent


def raw(nano: int, container: str, action: str = "health_status: unhealthy") -> dict[str, Any]:
    return {
        "Type": "container",
        "Action": action,
        "id": container,
        "timeNano": nano,
        "Actor": {"ID": container, "Attributes": {LABEL_TASK: f"task-{container}"}},
    }


class Stream:
    """Yields ``events``; then breaks (``fail``) or waits until closed, as a live one."""

    def __init__(self, events: list[dict[str, Any]], fail: bool) -> None:
        self.events, self.fail = events, fail
        self.closed = threading.Event()

    def __iter__(self) -> Iterator[dict[str, Any]]:
        yield from self.events
        if self.fail:
            raise ConnectionError("stream broke")
        self.closed.wait(10)

    def close(self) -> None:
        self.closed.set()


async def test_events_out_of_stamp_order_all_arrive_and_a_replay_is_not_repeated() -> None:
    now = int(time.time() * 1e9)
    late, early = raw(now + 2_000_000, "c1"), raw(now + 1_000_000, "c2")
    before = raw(now - 5_000_000_000, "c0")  # before the subscription: a replay's
    fresh = raw(now + 3_000_000, "c3", "die")
    streams = [
        # The engine stamps before it publishes: c2's earlier stamp arrives second.
        Stream([before, late, early], fail=True),
        # Reopened from the newest event's whole second: the same two again, then news.
        Stream([late, early, fresh], fail=False),
    ]
    opened: list[float] = []

    def open_stream(since: float) -> Stream:
        opened.append(since)
        return streams[min(len(opened) - 1, 1)]

    sub = EventSubscription(open_stream)
    got: list[RuntimeEvent] = []
    try:
        async with asyncio.timeout(10):
            async for ev in sub:
                got.append(ev)
                if ev.action == "die":
                    break
    finally:
        sub.close()
    assert [(e.action, e.container_id) for e in got] == [
        ("health_status", "c1"),
        ("health_status", "c2"),  # not dropped for its earlier stamp
        (RESYNC, ""),
        ("die", "c3"),  # c1 and c2 replayed: not passed on twice
    ]
    assert got[1].health == "unhealthy"
    assert opened[1] == (now + 2_000_000) / 1e9  # reopened from the newest event seen

"""Whether this node's Docker engine still answers, judged by the agent's own calls.

An engine can hang some calls for good while answering others: Debian 12's docker.io
(20.10.24) can deadlock in libnetwork when many containers of one network stop at once
(moby/moby#46661); ``docker ps`` still answers, ``docker inspect`` of those containers
never does. A ping would say all is well, so the watch looks at the calls themselves:
one still waiting ``stuck_after`` seconds past what it may take (a stop may take its
grace period), or one that timed out in the last ``4 * stuck_after`` seconds, makes
the engine unresponsive. The agent reports that one line to the managers, and the
scheduler places no new task on the node until it clears.
"""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import Callable
from typing import NamedTuple

DEFAULT_STUCK_AFTER = 30.0  # seconds; $SWARMLITE_ENGINE_STUCK_AFTER overrides it


class _Call(NamedTuple):
    what: str
    started: float
    stuck_at: float


class EngineWatch:
    """Engine calls in flight and the last one that timed out. Pure bookkeeping: the
    caller says when a call begins and ends; ``problem()`` reads the clock."""

    def __init__(
        self, stuck_after: float | None = None, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if stuck_after is None:
            stuck_after = float(
                os.environ.get("SWARMLITE_ENGINE_STUCK_AFTER") or DEFAULT_STUCK_AFTER
            )
        self.stuck_after = stuck_after
        self._clock = clock
        self._calls: dict[int, _Call] = {}
        self._ids = itertools.count()
        self._timed_out: tuple[str, float] | None = None  # what, when

    def begin(self, what: str, allowance: float = 0.0) -> int:
        """A call starts that may legitimately take ``allowance`` seconds."""
        now = self._clock()
        call = next(self._ids)
        self._calls[call] = _Call(what, now, now + allowance + self.stuck_after)
        return call

    def end(self, call: int, *, timed_out: bool = False) -> None:
        ended = self._calls.pop(call)
        if timed_out:
            self._timed_out = (ended.what, self._clock())

    def problem(self) -> str:
        """'' while the engine answers; otherwise why it does not, in one line."""
        now = self._clock()
        stuck = [c for c in self._calls.values() if c.stuck_at <= now]
        if stuck:
            oldest = min(stuck, key=lambda c: c.started)
            more = f" (and {len(stuck) - 1} more)" if len(stuck) > 1 else ""
            # No running durations in the text: it is reported again whenever it changes.
            return (
                f"docker engine unresponsive: {oldest.what} still waiting after "
                f"{oldest.stuck_at - oldest.started:.0f}s"
                f"{more}"
            )
        if self._timed_out is not None:
            what, when = self._timed_out
            if now - when < 4 * self.stuck_after:
                return f"docker engine unresponsive: {what} timed out"
            self._timed_out = None
        return ""

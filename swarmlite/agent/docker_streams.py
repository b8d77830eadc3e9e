"""Docker's blocking streams (events, logs) read in daemon threads, delivered to asyncio.

The SDK's streams block, so each is read in its own thread and every item is handed
to the event loop with ``call_soon_threadsafe`` (events) or ``run_coroutine_threadsafe``
into a bounded queue (logs, so a fast producer waits for a slow reader).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from typing import Any, Protocol

import msgspec

from swarmlite.agent.containers import LABEL_TASK
from swarmlite.errors import RuntimeFailure

log = logging.getLogger("swarmlite.agent.runtime")

# Container actions passed on; everything else (exec_*, attach, resize...) is dropped.
EVENT_ACTIONS = frozenset(
    {
        "create",
        "start",
        "die",
        "health_status",
        "destroy",
        "oom",
        "kill",
        "stop",
        "pause",
        "unpause",
        "restart",
    }
)
RESYNC = "resync"
# A reopened stream replays from the whole second of the newest event seen: keys of the
# last 2 s of events are kept to skip those repeats, pruned past this many.
REPLAY_WINDOW = 2_000_000_000
REPLAY_KEYS = 4096


class RuntimeEvent(msgspec.Struct, frozen=True, kw_only=True):
    """One container event of our node; action ``resync`` means events may have been
    missed (the stream broke and was reopened): list the containers again."""

    container_id: str
    task_id: str
    action: str
    exit_code: int | None = None
    health: str | None = None
    time: float = 0.0


def parse_event(raw: Mapping[str, Any]) -> RuntimeEvent | None:
    """A decoded Docker event as a RuntimeEvent, or None when it is not one we pass on."""
    if raw.get("Type", "container") != "container":
        return None
    action_text = str(raw.get("Action") or raw.get("status") or "")
    action, _, detail = action_text.partition(":")
    action = action.strip()
    if action not in EVENT_ACTIONS:
        return None
    actor = raw.get("Actor") or {}
    attrs = actor.get("Attributes") or {}
    exit_code: int | None = None
    if action == "die" and "exitCode" in attrs:
        try:
            exit_code = int(attrs["exitCode"])
        except ValueError:
            exit_code = None
    nano = raw.get("timeNano")
    when = nano / 1e9 if isinstance(nano, int) else float(raw.get("time") or 0)
    return RuntimeEvent(
        container_id=str(actor.get("ID") or raw.get("id") or ""),
        task_id=str(attrs.get(LABEL_TASK, "")),
        action=action,
        exit_code=exit_code,
        health=detail.strip() or None if action == "health_status" else None,
        time=when,
    )


class ClosableStream(Protocol):
    def __iter__(self) -> Iterator[Any]: ...

    def close(self) -> None: ...


class EventSubscription:
    """Async iterator over our node's container events, fed by one daemon thread.

    ``open_stream(since)`` opens Docker's event stream from ``since`` (epoch seconds).
    The first stream starts at subscription time, so nothing between ``events()`` and
    the connection is lost. A broken stream is reopened from the last event seen with
    back-off (0.5 s doubling to 10 s), preceded by a ``resync`` event.
    """

    def __init__(self, open_stream: Callable[[float], ClosableStream]) -> None:
        self._open = open_stream
        self._loop = asyncio.get_running_loop()
        self._queue: asyncio.Queue[RuntimeEvent | None] = asyncio.Queue()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._stream: ClosableStream | None = None
        self._since = time.time()
        self._thread = threading.Thread(target=self._pump, name="docker-events", daemon=True)
        self._thread.start()

    def __aiter__(self) -> EventSubscription:
        return self

    async def __anext__(self) -> RuntimeEvent:
        if self._stop.is_set() and self._queue.empty():
            raise StopAsyncIteration
        ev = await self._queue.get()
        if ev is None:
            self._queue.put_nowait(None)  # later calls end too
            raise StopAsyncIteration
        return ev

    @property
    def closed(self) -> bool:
        return self._stop.is_set()

    def close(self) -> None:
        """Stop the thread; iteration ends once queued events are consumed."""
        self._stop.set()
        with self._lock:
            stream = self._stream
        if stream is not None:
            try:
                stream.close()
            except Exception:  # the socket may already be gone
                log.debug("closing the event stream failed", exc_info=True)

    async def aclose(self) -> None:
        self.close()

    def break_stream(self) -> None:
        """Close the current stream without stopping, as a network failure would."""
        with self._lock:
            stream = self._stream
        if stream is not None:
            stream.close()

    def _emit(self, ev: RuntimeEvent | None) -> bool:
        try:
            self._loop.call_soon_threadsafe(self._queue.put_nowait, ev)
        except RuntimeError:  # the loop is closed: nobody is listening
            self._stop.set()
            return False
        return True

    def _pump(self) -> None:
        since = self._since
        # Events before the subscription, which the whole-second ``since`` replays.
        floor = int(since * 1e9)
        newest = floor
        # (timeNano, id, Action) of the last seconds' events: what a reopened stream
        # replays. Only exact repeats are skipped: the engine stamps an event before it
        # takes its publish lock, so two containers' events (say, both turning
        # unhealthy on the same tick) can arrive in the opposite order of their stamps.
        recent: set[tuple[int, str, str]] = set()
        delay = 0.5
        opened_before = False
        while not self._stop.is_set():
            try:
                stream = self._open(since)
                with self._lock:
                    self._stream = stream
                if self._stop.is_set():
                    stream.close()
                    break
                if opened_before:
                    log.info("docker event stream reopened; asking for a resync")
                    self._emit(
                        RuntimeEvent(container_id="", task_id="", action=RESYNC, time=time.time())
                    )
                opened_before = True
                delay = 0.5
                for raw in stream:
                    nano = raw.get("timeNano") if isinstance(raw, dict) else None
                    if isinstance(nano, int):
                        key = (nano, str(raw.get("id", "")), str(raw.get("Action", "")))
                        if nano < floor or key in recent:
                            continue  # from before the subscription, or replayed
                        recent.add(key)
                        if nano > newest:
                            newest = nano
                            since = nano / 1e9
                        if len(recent) > REPLAY_KEYS:
                            recent = {k for k in recent if k[0] >= newest - REPLAY_WINDOW}
                    ev = parse_event(raw) if isinstance(raw, dict) else None
                    if ev is not None and not self._emit(ev):
                        break
            except Exception as exc:
                if self._stop.is_set():
                    break
                log.warning("docker event stream failed: %s; retrying in %.1fs", exc, delay)
            if self._stop.wait(delay):
                break
            delay = min(delay * 2, 10.0)
        self._emit(None)


async def line_stream(
    open_stream: Callable[[], ClosableStream], what: str, *, maxsize: int = 256
) -> AsyncIterator[bytes]:
    """Lines (with their newline) of a blocking byte stream, read in a daemon thread.

    The queue is bounded: the thread waits while the reader is behind. Leaving the
    iteration early closes the stream and ends the thread.
    """
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[bytes | BaseException | None] = asyncio.Queue(maxsize=maxsize)
    stop = threading.Event()
    holder: list[ClosableStream] = []

    def put(item: bytes | BaseException | None) -> bool:
        if loop.is_closed():
            return False
        put_item = queue.put(item)
        try:
            fut = asyncio.run_coroutine_threadsafe(put_item, loop)
        except RuntimeError:  # the loop closed meanwhile
            put_item.close()
            return False
        while True:
            try:
                fut.result(timeout=0.5)
                return True
            except TimeoutError:
                if stop.is_set():
                    fut.cancel()
                    return False
            except concurrent.futures.CancelledError:
                return False  # the loop cancelled the put: it is shutting down

    def pump() -> None:
        try:
            stream = open_stream()
            holder.append(stream)
            if stop.is_set():
                stream.close()
                return
            buf = b""
            for chunk in stream:
                buf += chunk
                if b"\n" not in buf:
                    continue
                *lines, buf = buf.split(b"\n")
                for line in lines:
                    if not put(line + b"\n"):
                        return
            if buf:
                put(buf)
        except Exception as exc:
            if not stop.is_set():
                put(exc)
        finally:
            put(None)

    thread = threading.Thread(target=pump, name="docker-logs", daemon=True)
    thread.start()
    try:
        while True:
            item = await queue.get()
            if item is None:
                return
            if isinstance(item, BaseException):
                if isinstance(item, RuntimeFailure):
                    raise item
                explanation = getattr(item, "explanation", None) or item
                raise RuntimeFailure(f"{what}: {explanation}") from item
            yield item
    finally:
        stop.set()
        for s in holder:
            try:
                s.close()
            except Exception:
                log.debug("closing a log stream failed", exc_info=True)

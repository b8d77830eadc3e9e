"""A mesh worker process: one more event loop serving the node's published ports.

The daemon starts ``python -m swarmlite.proxy.worker NODE_ID BIND_HOST INDEX`` for
every mesh worker past its own (see ``workers.MeshWorkers``). The worker binds the same
listeners with ``SO_REUSEPORT``, so the kernel spreads new connections over all the
node's event loops, as over nginx's worker processes.

The daemon drives it over stdin/stdout, one JSON message per line: ``Apply`` (a routes
snapshot), ``Drained`` and ``Stop``; each is answered by a ``Reply`` with the same
``id``. ``Reply(id=0)`` says the worker is ready. End of stdin means the daemon is gone:
the worker stops too (finishing what is in flight for a short grace), so a daemon
killed with SIGKILL leaves no worker serving stale routes.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys

import msgspec

from swarmlite.proxy.mesh import MeshProxy
from swarmlite.spec.routes import RoutesSnapshot

log = logging.getLogger("swarmlite.proxy.worker")

# Grace for in-flight requests when the daemon vanished without a Stop.
ORPHAN_GRACE = 2.0
# A routes snapshot of a large cluster is one line; StreamReader's default is 64 KiB.
MAX_LINE = 256 * 1024 * 1024


class Apply(msgspec.Struct, tag="apply", frozen=True):
    id: int
    snapshot: RoutesSnapshot


class Drained(msgspec.Struct, tag="drained", frozen=True):
    id: int
    task_id: str
    timeout: float


class Stop(msgspec.Struct, tag="stop", frozen=True):
    id: int
    grace: float


Command = Apply | Drained | Stop


class Reply(msgspec.Struct, frozen=True):
    id: int
    decision: str = ""
    drained: bool = True
    errors: int = 0  # listeners this loop could not open (Apply)


def _send(reply: Reply) -> None:
    # One write of a line shorter than PIPE_BUF: atomic, so concurrent replies never mix.
    os.write(sys.stdout.fileno(), msgspec.json.encode(reply) + b"\n")


async def serve(node_id: str, bind_host: str) -> None:
    loop = asyncio.get_running_loop()
    mesh = MeshProxy(node_id, bind_host)
    await mesh.start()
    reader = asyncio.StreamReader(limit=MAX_LINE)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    # SIGTERM (the daemon's process group being stopped) ends it as a closed stdin does.
    loop.add_signal_handler(signal.SIGTERM, reader.feed_eof)
    decoder = msgspec.json.Decoder(Command)
    waits: set[asyncio.Task[None]] = set()

    async def answer_drained(cmd: Drained) -> None:
        _send(Reply(id=cmd.id, drained=await mesh.drained(cmd.task_id, cmd.timeout)))

    _send(Reply(id=0, decision="ready"))
    while line := await reader.readline():
        cmd = decoder.decode(line)
        if isinstance(cmd, Apply):
            decision = await mesh.apply(cmd.snapshot)
            _send(Reply(id=cmd.id, decision=decision, errors=len(mesh.listener_errors())))
        elif isinstance(cmd, Drained):
            task = asyncio.create_task(answer_drained(cmd))
            waits.add(task)
            task.add_done_callback(waits.discard)
        else:
            await mesh.stop(cmd.grace)
            _send(Reply(id=cmd.id, decision="stopped"))
            return
    log.warning("mesh worker: the daemon is gone or sent SIGTERM, stopping")
    await mesh.stop(ORPHAN_GRACE)


def main(argv: list[str]) -> None:
    node_id, bind_host, index = argv
    # Ctrl-C reaches the whole foreground process group: the daemon decides when we stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    logging.basicConfig(
        level=os.environ.get("SWARMLITE_LOG_LEVEL", "INFO"),
        format=f"%(asctime)s %(levelname)s %(name)s[worker {index}]: %(message)s",
        stream=sys.stderr,
    )
    import uvloop

    uvloop.run(serve(node_id, bind_host))


if __name__ == "__main__":
    main(sys.argv[1:])

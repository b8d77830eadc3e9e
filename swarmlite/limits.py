"""How large one request may be, from the CLI through the API to etcd, and why.

A deploy sends the whole stack in one API request, its secrets and configs inside
base64-encoded (4/3 of their size), and the API writes it to etcd as one transaction
(all or nothing, a compare-and-swap on every object it touches):

    one secret or config      500 KiB raw  security/keeper.MAX_SIZE, as Swarm
    one API request body        4 MiB      MAX_REQUEST_BYTES: aiohttp's client_max_size;
                                           api/client.py checks before sending
    one etcd write (a txn)     10 MiB      ETCD_MAX_REQUEST_BYTES: etcd --max-request-bytes
                                           (etcd's gRPC server takes that + 512 KiB)
    gRPC client send           16 MiB      store/etcd_client.GRPC_OPTIONS

4 MiB carries about 3 MiB of secrets and configs, six files of the 500 KiB maximum.
A deploy's transaction stores what its body carried (a sealed secret is the base64
of its content with a 28-byte nonce and tag, a config its base64), and for each
updated service its previous spec, which an earlier request carried, plus a few
small objects and the keys: at most about twice the body, 8 MiB (measured: 8,388,743
bytes for a 4 MiB spec replacing another, tests/unit/test_api_limits.py). etcd's
default is 1.5 MiB; its guide says larger requests work but add latency to the
requests queued behind them, and etcd 3.4 warns at startup above 10 MiB ("exceeded
recommended request limit"). So 10 MiB, not more.
A larger body gets 413 with one line naming the limit; a write that still exceeds
etcd's limit (``secret update`` rebinding many large services) fails the same way
(``TooLargeError``), never as "store unavailable"; ``commit_chunked`` (the
orchestrator's task writes) then writes its chunk one object at a time.
"""

from __future__ import annotations

__all__ = [
    "ETCD_MAX_REQUEST_BYTES",
    "MAX_REQUEST_BYTES",
    "MiB",
    "request_too_large",
    "size_text",
    "write_too_large",
]

MiB = 1024 * 1024
MAX_REQUEST_BYTES = 4 * MiB
ETCD_MAX_REQUEST_BYTES = 10 * MiB


def size_text(n: int) -> str:
    """``4 MiB``, ``5.3 MiB``, ``800 KiB``, ``12 bytes``."""
    if n >= MiB:
        return f"{n / MiB:.1f}".removesuffix(".0") + " MiB"
    if n >= 1024:
        return f"{n / 1024:.0f} KiB"
    return f"{n} bytes"


def request_too_large(size: int | None, limit: int = MAX_REQUEST_BYTES) -> str:
    """The one-line answer to a request body over ``limit`` (``size`` None: unknown)."""
    what = f"is {size_text(size)}" if size is not None else f"is over {size_text(limit)}"
    return (
        f"the request {what}; the swarmlite API accepts at most {size_text(limit)} per "
        "request (secrets and configs travel base64, 4/3 of their size): deploy fewer or "
        "smaller secrets and configs at once, e.g. create large ones with "
        "'swarmlite secret create' and mark them external"
    )


def write_too_large(size: int | None, limit: int = ETCD_MAX_REQUEST_BYTES) -> str:
    """The one-line error for a store write over etcd's request limit."""
    what = f"is {size_text(size)}" if size is not None else "is too large"
    return (
        f"the write to the cluster store {what}; etcd accepts at most {size_text(limit)} "
        "per transaction (--max-request-bytes): change fewer or smaller objects at once"
    )

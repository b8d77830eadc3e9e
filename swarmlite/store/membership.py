"""Change who is in the etcd cluster: list, add as learner, promote, remove.

A new manager joins in three steps, as etcd recommends: ``add_learner`` (the cluster
learns its peer URL; it does not vote yet), start its etcd with ``initial_state=existing``
and the returned ``initial_cluster``, then ``promote`` once it has caught up with the
leader. A learner never counts towards quorum, so a slow or failed join cannot take the
cluster's majority away.

aetcd 1.0 cannot add learners, so these call the raw gRPC ``Cluster`` stubs of a connected
client. Errors become ``StoreUnavailableError`` (etcd unreachable, no quorum) or
``ConflictError`` (etcd refused the change as it stands, e.g. a learner not in sync).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from typing import Any

import aetcd
import aetcd.exceptions
import aetcd.rpc
import grpc

from swarmlite.errors import ConflictError, StoreUnavailableError

__all__ = [
    "Member",
    "add_learner",
    "list_members",
    "promote",
    "quorum_safe_to_remove",
    "remove_member",
]

log = logging.getLogger("swarmlite.etcd.membership")

# etcd 3.4: "etcdserver: can only promote a learner member which is in sync with leader".
_NOT_IN_SYNC = "in sync with leader"
# etcd 3.4 (strict reconfig check) refuses add and remove with "etcdserver: unhealthy
# cluster" until every voter has been connected for 5 s, e.g. just after a promotion.
_UNHEALTHY = "unhealthy cluster"
_REFUSED = (grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.INVALID_ARGUMENT)


@dataclass(frozen=True, slots=True)
class Member:
    """One etcd member as the cluster sees it; ``name`` is "" until it has started."""

    id: int
    name: str
    peer_urls: tuple[str, ...]
    client_urls: tuple[str, ...]
    is_learner: bool

    @property
    def started(self) -> bool:
        return bool(self.name)


def _member(raw: Any) -> Member:
    return Member(
        id=int(raw.ID),
        name=str(raw.name),
        peer_urls=tuple(str(u) for u in raw.peerURLs),
        client_urls=tuple(str(u) for u in raw.clientURLs),
        is_learner=bool(raw.isLearner),
    )


async def _cluster_call(client: aetcd.Client, method: str, request: Any, what: str) -> Any:
    """Call one ``Cluster`` RPC; map gRPC failures onto swarmlite's error tree."""
    try:
        await client.connect()
        stub = getattr(client.clusterstub, method)
        return await stub(request, timeout=client._timeout, metadata=client.metadata)
    except grpc.aio.AioRpcError as exc:
        details = exc.details() or exc.code().name
        if exc.code() in _REFUSED:
            raise ConflictError(f"etcd refused to {what}: {details}") from exc
        raise StoreUnavailableError(f"cannot {what}: etcd says {details}") from exc
    except aetcd.exceptions.ClientError as exc:
        raise StoreUnavailableError(f"cannot {what}: {exc or type(exc).__name__}") from exc


async def _retrying(
    client: aetcd.Client,
    method: str,
    request: Any,
    what: str,
    *,
    transient: str,
    timeout: float,
    interval: float,
) -> Any:
    """``_cluster_call`` again while etcd's refusal contains ``transient``, up to ``timeout``."""
    deadline = time.monotonic() + timeout
    attempts = 0
    while True:
        attempts += 1
        try:
            resp = await _cluster_call(client, method, request, what)
        except (ConflictError, StoreUnavailableError) as exc:
            if transient not in str(exc) or time.monotonic() + interval > deadline:
                raise
            await asyncio.sleep(interval)
            continue
        if attempts > 1:
            log.info("%s after %d attempts", what, attempts)
        return resp


async def list_members(client: aetcd.Client) -> list[Member]:
    """Every member, voters and learners, in the order etcd lists them (linearizable)."""
    resp = await _cluster_call(
        client, "MemberList", aetcd.rpc.MemberListRequest(linearizable=True), "list members"
    )
    return [_member(m) for m in resp.members]


async def add_learner(
    client: aetcd.Client, name: str, peer_url: str, *, timeout: float = 15.0
) -> tuple[int, dict[str, str]]:
    """Add ``name`` at ``peer_url`` as a non-voting learner.

    Returns its member id and the ``initial_cluster`` (name -> peer URL) that its etcd must
    start with. etcd reports members that have not started yet without a name; the new
    one gets ``name``. Another member that was added but never started would make that map
    wrong, so it is refused before anything changes: start or remove that member first.
    While etcd answers "unhealthy cluster" (a voter connected less than 5 s ago) it is
    retried for up to ``timeout`` seconds.
    """
    pending = [m for m in await list_members(client) if not m.started]
    if pending:
        urls = ", ".join(u for m in pending for u in m.peer_urls)
        raise ConflictError(
            f"cannot add etcd member {name}: member {pending[0].id:x} at {urls} was added "
            "but never started; start it or remove it first"
        )
    request = aetcd.rpc.MemberAddRequest(peerURLs=[peer_url], isLearner=True)
    resp = await _retrying(
        client,
        "MemberAdd",
        request,
        f"add etcd member {name}",
        transient=_UNHEALTHY,
        timeout=timeout,
        interval=0.25,
    )
    new_id = int(resp.member.ID)
    cluster: dict[str, str] = {}
    for raw in resp.members:
        m = _member(raw)
        member_name = name if m.id == new_id else m.name
        if m.peer_urls:
            cluster[member_name] = m.peer_urls[0]
    log.info("etcd learner added name=%s id=%x peer=%s", name, new_id, peer_url)
    return new_id, cluster


async def promote(
    client: aetcd.Client, member_id: int, *, timeout: float = 30.0, interval: float = 0.2
) -> None:
    """Make learner ``member_id`` a voter, retrying while it is still catching up.

    Raises ``ConflictError`` if it is not in sync within ``timeout`` seconds or etcd
    refuses for another reason (for example it is not a learner).
    """
    await _retrying(
        client,
        "MemberPromote",
        aetcd.rpc.MemberPromoteRequest(ID=member_id),
        f"promote etcd member {member_id:x}",
        transient=_NOT_IN_SYNC,
        timeout=timeout,
        interval=interval,
    )
    log.info("etcd member promoted id=%x", member_id)


async def remove_member(client: aetcd.Client, member_id: int, *, timeout: float = 15.0) -> None:
    """Remove ``member_id``.

    etcd refuses (``ConflictError``) if that would leave too few started voters; while it
    answers "unhealthy cluster" (a voter connected less than 5 s ago) it is retried for up
    to ``timeout`` seconds.
    """
    await _retrying(
        client,
        "MemberRemove",
        aetcd.rpc.MemberRemoveRequest(ID=member_id),
        f"remove etcd member {member_id:x}",
        transient=_UNHEALTHY,
        timeout=timeout,
        interval=0.25,
    )
    log.info("etcd member removed id=%x", member_id)


def quorum_safe_to_remove(
    members: Iterable[Member], healthy_ids: Collection[int], member_id: int
) -> bool:
    """Would the cluster keep a healthy majority of voters if ``member_id`` left?

    Both configurations must have one: the current voters (they commit the removal) and
    the voters that remain. Removing a learner changes no majority. Removing the last
    voter, or a member that is not in the cluster, is never safe.
    """
    members = list(members)
    target = next((m for m in members if m.id == member_id), None)
    if target is None:
        return False
    voters = [m.id for m in members if not m.is_learner]
    remaining = [v for v in voters if v != member_id]
    if not remaining:
        return False

    def majority_healthy(ids: list[int]) -> bool:
        return sum(1 for i in ids if i in healthy_ids) * 2 > len(ids)

    return majority_healthy(voters) and majority_healthy(remaining)

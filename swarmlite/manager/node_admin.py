"""Decisions of node management (update, remove, demote, promote): pure, no I/O.

Docker Swarm's rules, applied to values: the API handlers (api/node_handlers.py) read
the cluster, call these, and do the writes. A refusal raises ``ConflictError`` (the
cluster as it stands forbids it) or ``SpecError`` (the request itself is wrong), with a
message that says why and what to do.

Quorum: the managers are etcd's voters. A manager counts as reachable while its node
is ``ready`` (its agent holds a session and heartbeats). Taking a manager away must
leave a reachable majority both among the managers now (they commit the change) and
among those that remain, as ``store.membership.quorum_safe_to_remove`` checks on the
etcd members themselves.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence

import msgspec

from swarmlite.errors import ConflictError, NotFoundError, SpecError
from swarmlite.spec.objects import Availability, Node

__all__ = [
    "apply_update",
    "check_demote",
    "check_remove",
    "find_node",
    "reachable_ids",
]


def find_node(nodes: Iterable[Node], key: str) -> Node:
    """The node named by exact id, exact hostname, or a unique id prefix."""
    nodes = list(nodes)
    for node in nodes:
        if node.id == key:
            return node
    by_host = [n for n in nodes if n.hostname == key]
    if len(by_host) == 1:
        return by_host[0]
    matches = by_host or [n for n in nodes if key and n.id.startswith(key)]
    if len(matches) == 1:
        return matches[0]
    if matches:
        ids = ", ".join(sorted(n.id[:12] for n in matches))
        raise SpecError(f"node {key} is ambiguous ({len(matches)} matches: {ids}); use a node ID")
    raise NotFoundError(f"node {key} not found (see 'swarmlite node ls')")


def apply_update(
    node: Node,
    *,
    availability: Availability | None = None,
    label_add: Mapping[str, str] | None = None,
    label_rm: Iterable[str] = (),
) -> Node:
    """``node`` updated: labels added first, then removed (as Docker does)."""
    label_add = dict(label_add or {})
    label_rm = list(label_rm)
    for key in (*label_add, *label_rm):
        if not key:
            raise SpecError("a node label needs a non-empty key")
    labels = {**node.labels, **label_add}
    for key in label_rm:
        if key not in labels:
            raise SpecError(f"key {key} doesn't exist in node's labels")
        del labels[key]
    availability = availability or node.availability
    return msgspec.structs.replace(node, labels=labels, availability=availability)


def reachable_ids(nodes: Iterable[Node]) -> set[str]:
    """The nodes that count as reachable: ready (session open, heartbeat fresh)."""
    return {n.id for n in nodes if n.status.state == "ready"}


def _majority(ids: Sequence[str], reachable: Collection[str]) -> tuple[bool, int]:
    up = sum(1 for i in ids if i in reachable)
    return up * 2 > len(ids), up


def check_demote(
    managers: Sequence[Node],
    target_id: str,
    reachable: Collection[str],
    *,
    action: str = "demoting",
) -> None:
    """Refuse taking manager ``target_id`` out of the managers if quorum would suffer.

    ``managers`` are the nodes whose role is manager (the target among them);
    ``action`` names the change in the message ("demoting", "removing").
    """
    ids = [m.id for m in managers]
    if target_id not in ids:
        raise SpecError(f"node {target_id} is not a manager")
    remaining = [i for i in ids if i != target_id]
    if not remaining:
        raise ConflictError(
            f"node {target_id} is the last manager of the cluster: without it the cluster "
            "state is lost; promote another node first ('swarmlite node promote NODE')"
        )
    for config in (remaining, ids):
        ok, up = _majority(config, reachable)
        if not ok:
            raise ConflictError(
                f"{action} {target_id} would leave the cluster without a quorum of managers: "
                f"{up} of {len(config)} managers reachable; promote another node first or "
                "restore the unreachable managers"
            )


def check_remove(nodes: Sequence[Node], target: Node, *, local_id: str, force: bool) -> None:
    """Refuse removing ``target`` unless Docker's rules allow it (see module docstring).

    A ready node needs ``force``; a manager must also be safe to demote; the node whose
    API is asked can never remove itself, and the last manager never goes.
    """
    if target.id == local_id:
        raise ConflictError(
            f"node {target.id} is the node this request was sent to and cannot remove "
            "itself; run 'swarmlite node rm' against another manager, or 'swarmlite leave' "
            "on that node"
        )
    if target.status.state == "ready" and not force:
        raise ConflictError(
            f"node {target.id} is not down and can't be removed; use --force "
            "(its tasks will be rescheduled on other nodes)"
        )
    if target.role == "manager":
        managers = [n for n in nodes if n.role == "manager"]
        check_demote(managers, target.id, reachable_ids(nodes), action="removing")

"""Whether a verified certificate still speaks for a member of the cluster.

A certificate stays valid for its lifetime whatever happens to its holder, so the API
also asks the cluster state: a node certificate is good only while its node is a
member (``node rm`` ends it), a manager certificate gives manager access only while
its node is still a manager (``node demote`` ends it, though the node keeps the
certificate until it renews as a worker), and an admin credential only while the
manager that issued it (``admin-<first 12 characters of its node id>``) is still a
manager (``node rm`` and ``node demote`` end it).

``nodes`` is the state cache's view: no store read per request. A worker holds no
cluster state: it knows the managers by the node ids its agent session last brought
(``KnownManagers``), and serves its manager-only paths only to them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

from swarmlite.security.ca import ADMIN_PREFIX, Identity

if TYPE_CHECKING:
    from swarmlite.spec.objects import Node
    from swarmlite.store.store import Versioned


# Paths a worker may call too: through them a demoted manager, still holding its
# manager certificate, hears of its demotion (its agent session) and renews as a
# worker, so they stay open to that certificate or the demotion could not complete.
WORKER_PATHS = ("/v1/renew", "/v1/agent/")


def refusal(identity: Identity, nodes: Mapping[str, Versioned[Node]], path: str) -> str | None:
    """Why ``identity`` may not call ``path`` any more, or None when it may."""
    if identity.role in ("manager", "worker"):
        node = nodes.get(identity.node_id)
        if node is None:
            return "this node is not part of the cluster: join it again"
        if (
            identity.role == "manager"
            and node.value.role != "manager"
            and not path.startswith(WORKER_PATHS)
        ):
            return (
                f"node {identity.node_id} was demoted to worker: its manager certificate "
                "no longer gives manager access (it renews as a worker)"
            )
        return None
    if identity.role == "admin" and identity.node_id.startswith(ADMIN_PREFIX):
        issuer = identity.node_id.removeprefix(ADMIN_PREFIX)
        if not any(
            node_id.startswith(issuer) and v.value.role == "manager" for node_id, v in nodes.items()
        ):
            return (
                f"this admin credential was issued by node {issuer}, which is no longer "
                "a manager of the cluster: use the CLI on a current manager"
            )
    return None


class KnownManagers:
    """The cluster's manager node ids as a worker last heard them from its agent
    session (``Assignments.manager_ids``); ``ids`` is None until it has."""

    def __init__(self) -> None:
        self.ids: frozenset[str] | None = None

    def heard(self, ids: Iterable[str]) -> None:
        found = frozenset(ids)
        if found:  # a cluster always has a manager: none sent is an older manager's message
            self.ids = found


def worker_refusal(identity: Identity, managers: KnownManagers) -> str | None:
    """Why a worker refuses ``identity`` its manager-only paths, or None when it may:
    the caller must be a manager of the cluster as the worker last heard it."""
    if managers.ids is None:
        return (
            "this worker has not yet heard the cluster's managers from its agent session: "
            "try again once it is connected"
        )
    if identity.node_id not in managers.ids:
        return (
            f"node {identity.node_id} is not a manager of the cluster (removed or demoted): "
            "its manager certificate no longer gives manager access"
        )
    return None

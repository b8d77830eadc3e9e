"""Whether a verified certificate still speaks for a member of the cluster.

A certificate stays valid for its lifetime whatever happens to its holder, so the API
also asks the cluster state: a node certificate is good only while its node is a
member (``node rm`` ends it), and an admin credential only while the manager that
issued it (``admin-<first 12 characters of its node id>``) is still a manager (``node
rm`` and ``node demote`` end it).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from swarmlite.security.ca import ADMIN_PREFIX, Identity

if TYPE_CHECKING:
    from swarmlite.spec.objects import Node
    from swarmlite.store.store import Versioned


def refusal(identity: Identity, nodes: Mapping[str, Versioned[Node]]) -> str | None:
    """Why ``identity`` may not use the API any more, or None when it may."""
    if identity.role in ("manager", "worker"):
        if identity.node_id not in nodes:
            return "this node is not part of the cluster: join it again"
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

"""Which verified certificates the API still accepts, given the cluster's nodes."""

from __future__ import annotations

from datetime import UTC, datetime

from swarmlite.api.membership import refusal
from swarmlite.security.ca import Identity, Role, admin_cn
from swarmlite.spec.objects import Node, NodeRole
from swarmlite.store.store import Versioned

MANAGER_ID = "m1abcdefghijklmnopqrstuvw"
WORKER_ID = "w1abcdefghijklmnopqrstuvw"
LATER = datetime(2030, 1, 1, tzinfo=UTC)


def nodes(roles: dict[str, NodeRole]) -> dict[str, Versioned[Node]]:
    return {
        node_id: Versioned(Node(id=node_id, hostname="h", addr="10.0.0.1", api_port=1, role=r), 1)
        for node_id, r in roles.items()
    }


def who(node_id: str, role: Role) -> Identity:
    return Identity(node_id=node_id, role=role, not_after=LATER)


def test_member_nodes_and_a_current_managers_admin_credential_pass() -> None:
    cluster = nodes({MANAGER_ID: "manager", WORKER_ID: "worker"})
    assert refusal(who(MANAGER_ID, "manager"), cluster) is None
    assert refusal(who(WORKER_ID, "worker"), cluster) is None
    assert refusal(who(admin_cn(MANAGER_ID), "admin"), cluster) is None


def test_a_removed_nodes_certificate_is_refused() -> None:
    cluster = nodes({MANAGER_ID: "manager"})
    why = refusal(who(WORKER_ID, "worker"), cluster)
    assert why == "this node is not part of the cluster: join it again"


def test_an_admin_credential_of_a_removed_or_demoted_manager_is_refused() -> None:
    admin = who(admin_cn(MANAGER_ID), "admin")
    for cluster in (nodes({WORKER_ID: "manager"}), nodes({MANAGER_ID: "worker"})):
        why = refusal(admin, cluster)
        assert why is not None and f"issued by node {MANAGER_ID[:12]}" in why

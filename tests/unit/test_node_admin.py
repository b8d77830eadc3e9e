"""Node management decisions: find, update labels/availability, quorum on demote and rm."""

from __future__ import annotations

from typing import Any

import pytest

from swarmlite.errors import ConflictError, NotFoundError, SpecError
from swarmlite.manager.node_admin import (
    apply_update,
    check_demote,
    check_remove,
    find_node,
    reachable_ids,
)
from swarmlite.spec.objects import Node, NodeStatus


def mk(node_id: str, role: Any = "manager", state: Any = "ready", **kw: Any) -> Node:
    return Node(
        id=node_id,
        hostname=kw.pop("hostname", f"host-{node_id}"),
        addr="10.0.0.1",
        api_port=4242,
        role=role,
        status=NodeStatus(state=state),
        **kw,
    )


# --- find_node ----------------------------------------------------------------------


def test_find_node_by_id_hostname_or_unique_prefix() -> None:
    nodes = [mk("abc123"), mk("abd456", hostname="db")]
    assert find_node(nodes, "abc123").id == "abc123"
    assert find_node(nodes, "db").id == "abd456"
    assert find_node(nodes, "abc").id == "abc123"


def test_find_node_refuses_an_ambiguous_prefix_and_names_the_matches() -> None:
    with pytest.raises(SpecError, match=r"node ab is ambiguous \(2 matches: abc123, abd456\)"):
        find_node([mk("abc123"), mk("abd456")], "ab")


def test_find_node_not_found_says_where_to_look() -> None:
    with pytest.raises(NotFoundError, match=r"node zz not found \(see 'swarmlite node ls'\)"):
        find_node([mk("abc123")], "zz")


# --- apply_update -------------------------------------------------------------------


def test_update_sets_availability_and_adds_then_removes_labels() -> None:
    n = mk("n1", labels={"zone": "a", "disk": "hdd"})
    out = apply_update(
        n, availability="drain", label_add={"disk": "ssd", "gpu": ""}, label_rm=["zone"]
    )
    assert out.availability == "drain"
    assert out.labels == {"disk": "ssd", "gpu": ""}
    assert n.labels == {"zone": "a", "disk": "hdd"}  # the original is untouched


def test_update_without_availability_keeps_it() -> None:
    n = mk("n1", availability="pause")
    assert apply_update(n, label_add={"a": "1"}).availability == "pause"


def test_removing_an_unknown_label_is_refused_like_docker() -> None:
    with pytest.raises(SpecError, match=r"^key zone doesn't exist in node's labels$"):
        apply_update(mk("n1"), label_rm=["zone"])


def test_empty_label_key_is_refused() -> None:
    with pytest.raises(SpecError, match="non-empty key"):
        apply_update(mk("n1"), label_add={"": "x"})


# --- check_demote -------------------------------------------------------------------


def test_demote_one_of_three_healthy_managers_is_allowed() -> None:
    managers = [mk("m1"), mk("m2"), mk("m3")]
    check_demote(managers, "m3", reachable_ids(managers))


def test_demote_refused_when_the_rest_would_have_no_quorum() -> None:
    managers = [mk("m1"), mk("m2"), mk("m3", state="down")]
    with pytest.raises(ConflictError) as err:
        check_demote(managers, "m2", reachable_ids(managers))
    assert str(err.value) == (
        "demoting m2 would leave the cluster without a quorum of managers: 1 of 2 managers "
        "reachable; promote another node first or restore the unreachable managers"
    )


def test_demote_of_an_unreachable_manager_keeps_quorum_of_three() -> None:
    managers = [mk("m1"), mk("m2"), mk("m3", state="down")]
    check_demote(managers, "m3", reachable_ids(managers))


def test_demote_refused_when_the_managers_now_have_no_quorum() -> None:
    # 2 of 4 now: no majority to commit the change, though 2 of 3 would remain.
    managers = [mk("m1"), mk("m2"), mk("m3", state="down"), mk("m4", state="down")]
    with pytest.raises(ConflictError, match="2 of 4 managers reachable"):
        check_demote(managers, "m4", reachable_ids(managers))


def test_demote_the_last_manager_is_refused() -> None:
    with pytest.raises(ConflictError, match=r"m1 is the last manager.*promote another node"):
        check_demote([mk("m1")], "m1", {"m1"})


def test_demote_a_worker_is_a_spec_error() -> None:
    with pytest.raises(SpecError, match="w1 is not a manager"):
        check_demote([mk("m1")], "w1", {"m1"})


# --- check_remove -------------------------------------------------------------------


def test_remove_a_ready_node_needs_force() -> None:
    nodes = [mk("m1"), mk("w1", role="worker")]
    with pytest.raises(
        ConflictError, match=r"^node w1 is not down and can't be removed; use --force"
    ):
        check_remove(nodes, nodes[1], local_id="m1", force=False)
    check_remove(nodes, nodes[1], local_id="m1", force=True)


def test_remove_a_down_worker_needs_no_force() -> None:
    nodes = [mk("m1"), mk("w1", role="worker", state="down")]
    check_remove(nodes, nodes[1], local_id="m1", force=False)


def test_remove_the_node_asked_is_refused_even_with_force() -> None:
    nodes = [mk("m1"), mk("m2"), mk("m3")]
    with pytest.raises(ConflictError, match=r"cannot remove itself.*another manager.*leave"):
        check_remove(nodes, nodes[0], local_id="m1", force=True)


def test_remove_a_manager_checks_quorum() -> None:
    nodes = [mk("m1"), mk("m2", state="down")]
    with pytest.raises(ConflictError, match=r"^removing m2 would leave .* 1 of 2 managers"):
        check_remove(nodes, nodes[1], local_id="m1", force=True)
    three = [mk("m1"), mk("m2"), mk("m3", state="down")]
    check_remove(three, three[2], local_id="m1", force=False)


def test_remove_the_last_manager_is_refused() -> None:
    nodes = [mk("m1", state="down"), mk("w1", role="worker")]
    with pytest.raises(ConflictError, match="last manager"):
        check_remove(nodes, nodes[0], local_id="w1", force=True)

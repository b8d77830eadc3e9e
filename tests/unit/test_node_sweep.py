"""The leader's node sweep: node states against heartbeat keys, level-triggered."""

from __future__ import annotations

from swarmlite.manager.liveness import sweep_decisions
from swarmlite.spec.objects import Node, NodeStatus


def node(node_id: str, state: str) -> Node:
    return Node(
        id=node_id,
        hostname=f"host-{node_id}",
        addr="10.0.0.1",
        api_port=4377,
        status=NodeStatus(state=state),  # type: ignore[arg-type]
    )


def test_first_sweep_marks_ready_nodes_without_a_heartbeat_down() -> None:
    nodes = [node("a", "ready"), node("b", "ready"), node("c", "down")]
    changes, missing = sweep_decisions(nodes, beating={"a"}, missing=None)
    assert changes == [("b", "down")] and missing == set()


def test_later_a_ready_node_must_miss_two_sweeps_in_a_row() -> None:
    nodes = [node("a", "ready"), node("b", "ready")]
    # "b" just registered: its session puts the first beat right after.
    changes, missing = sweep_decisions(nodes, beating={"a"}, missing=set())
    assert changes == [] and missing == {"b"}
    changes, missing = sweep_decisions(nodes, beating={"a", "b"}, missing=missing)
    assert changes == [] and missing == set()
    # A session that registered and died before its first beat: down on the next pass.
    changes, missing = sweep_decisions(nodes, beating={"a"}, missing=set())
    changes, missing = sweep_decisions(nodes, beating={"a"}, missing=missing)
    assert changes == [("b", "down")]


def test_a_down_node_with_a_heartbeat_is_ready_again() -> None:
    # Its heartbeat's put event was missed, or marking it ready failed.
    changes, _ = sweep_decisions([node("a", "down")], beating={"a"}, missing=set())
    assert changes == [("a", "ready")]

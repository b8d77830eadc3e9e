"""The CLI's pure output: tables, humanized times, ps ordering, deploy and init messages."""

from __future__ import annotations

import msgspec
import pytest

from swarmlite.api.models import DeployResult, ServiceSummary, StackSummary
from swarmlite.cli import tables
from swarmlite.cli.daemon_cmds import init_message, parse_listen_addr
from swarmlite.cli.pretty import pretty_node, pretty_service
from swarmlite.cli.stack_cmds import deploy_lines
from swarmlite.config import NodeConfig
from swarmlite.errors import SpecError
from swarmlite.spec.objects import Node, NodeStatus, Service, Task, TaskState, TaskStatus
from swarmlite.spec.service import PortSpec, ServiceSpec

NOW = 1_700_000_000.0
SPEC = ServiceSpec(name="web", stack="shop", image="nginx:1.27", replicas=2)


def _task(
    task_id: str,
    slot: int,
    state: TaskState,
    age: float,
    *,
    desired: TaskState = TaskState.RUNNING,
    err: str = "",
    pending_reason: str = "",
    node_id: str = "n1",
) -> Task:
    return Task(
        id=task_id,
        service_id="s1",
        service_name="shop_web",
        slot=slot,
        spec=SPEC,
        spec_version=1,
        spec_hash="h",
        node_id=node_id,
        desired_state=desired,
        status=TaskStatus(state=state, err=err, timestamp=NOW - age),
        created_at=NOW - age,
        pending_reason=pending_reason,
    )


# -- render_table ---------------------------------------------------------------


def test_table_aligns_columns_three_spaces_apart_without_trailing_spaces() -> None:
    out = tables.render_table(("ID", "NAME", "X"), [["abc", "w", ""], ["a", "longname", "y"]])
    assert out.splitlines() == [
        "ID    NAME       X",
        "abc   w",
        "a     longname   y",
    ]


def test_table_with_no_rows_is_the_header() -> None:
    assert tables.render_table(("NAME", "SERVICES"), []) == "NAME   SERVICES"


# -- human_duration / time_ago --------------------------------------------------


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0.4, "Less than a second"),
        (1, "1 second"),
        (5, "5 seconds"),
        (59.9, "59 seconds"),
        (60, "About a minute"),
        (119, "About a minute"),
        (120, "2 minutes"),
        (59 * 60, "59 minutes"),
        (60 * 60, "About an hour"),
        (89 * 60, "About an hour"),
        (2 * 3600, "2 hours"),
        (47 * 3600, "47 hours"),
        (3 * 86400, "3 days"),
        (20 * 86400, "2 weeks"),
        (90 * 86400, "3 months"),
        (3 * 365 * 86400, "3 years"),
    ],
)
def test_human_duration_words_like_docker(seconds: float, text: str) -> None:
    assert tables.human_duration(seconds) == text


def test_time_ago() -> None:
    assert tables.time_ago(NOW - 5, NOW) == "5 seconds ago"
    assert tables.time_ago(NOW + 3, NOW) == "Less than a second ago"  # clock skew
    assert tables.time_ago(0, NOW) == ""


# -- listings -------------------------------------------------------------------


def test_service_rows() -> None:
    summary = ServiceSummary(
        id="0123456789abcdef",
        name="shop_web",
        stack="shop",
        mode="replicated",
        desired=3,
        running=2,
        image="nginx:1.27",
        ports=("*:8080->80/tcp", "*:8443->443/tcp"),
    )
    updating = ServiceSummary(
        id="fff",
        name="shop_api",
        stack="shop",
        mode="global",
        desired=2,
        running=2,
        image="api:2",
        ports=(),
        update_state="updating",
    )
    assert tables.service_rows([summary, updating]) == [
        ["fff", "shop_api", "global", "2/2 (updating)", "api:2", ""],
        [
            "0123456789ab",
            "shop_web",
            "replicated",
            "2/3",
            "nginx:1.27",
            "*:8080->80/tcp,*:8443->443/tcp",
        ],
    ]


def test_stack_rows_sorted() -> None:
    rows = tables.stack_rows(
        [StackSummary(name="b", services=1), StackSummary(name="a", services=3)]
    )
    assert rows == [["a", "3"], ["b", "1"]]


def _node(node_id: str, hostname: str, role: str, state: str = "ready") -> Node:
    return Node(
        id=node_id,
        hostname=hostname,
        addr="10.0.0.1",
        api_port=4377,
        role=role,  # type: ignore[arg-type]
        status=NodeStatus(state=state),  # type: ignore[arg-type]
    )


def test_node_rows_mark_local_node_and_manager_status() -> None:
    nodes = [
        _node("w1", "worker-1", "worker"),
        _node("m2", "mgr-2", "manager", "down"),
        _node("m1", "mgr-1", "manager"),
    ]
    rows = tables.node_rows(nodes, local_id="m1", local_is_leader=True)
    assert rows == [
        ["m1 *", "mgr-1", "Ready", "Active", "Leader"],
        ["m2", "mgr-2", "Down", "Active", "Unreachable"],
        ["w1", "worker-1", "Ready", "Active", ""],
    ]


# -- tasks ----------------------------------------------------------------------


def test_task_rows_order_by_slot_newest_first_with_history_prefix() -> None:
    tasks = [
        _task(
            "old1aaaaaaaaaaaa",
            1,
            TaskState.FAILED,
            120,
            desired=TaskState.SHUTDOWN,
            err="task: non-zero exit (1)",
        ),
        _task("t2", 2, TaskState.PENDING, 5, pending_reason="no suitable node"),
        _task("new1", 1, TaskState.RUNNING, 60),
    ]
    rows = tables.task_rows(tasks, {"n1": "host-1"}, now=NOW)
    assert rows == [
        ["new1", "shop_web.1", "nginx:1.27", "host-1", "Running", "Running About a minute ago", ""],
        [
            "old1aaaaaaaa",
            " \\_ shop_web.1",
            "nginx:1.27",
            "host-1",
            "Shutdown",
            "Failed 2 minutes ago",
            '"task: non-zero exit (1)"',
        ],
        [
            "t2",
            "shop_web.2",
            "nginx:1.27",
            "host-1",
            "Running",
            "Pending 5 seconds ago",
            '"no suitable node"',
        ],
    ]


def test_a_waiting_replacement_heads_its_slot_above_the_task_it_replaces() -> None:
    # Drained: the replacement was created (pending) before the old task's shutdown
    # was stamped, so by status time the old one looks newer.
    old = _task("old", 1, TaskState.SHUTDOWN, 60, desired=TaskState.SHUTDOWN)
    old = msgspec.structs.replace(
        old, status=msgspec.structs.replace(old.status, timestamp=NOW - 2)
    )
    new = _task("new", 1, TaskState.PENDING, 3, pending_reason="no suitable node")
    assert [(t.id, current) for t, current in tables.order_tasks([old, new])] == [
        ("new", True),
        ("old", False),
    ]


def test_task_rows_truncate_long_errors_unless_no_trunc() -> None:
    long_err = "x" * 50
    task = _task("t" * 25, 1, TaskState.FAILED, 1, err=long_err, node_id="")
    (row,) = tables.task_rows([task], {}, now=NOW)
    assert row[0] == "t" * 12 and row[3] == ""
    assert row[6] == '"' + "x" * 29 + '…"'
    (full,) = tables.task_rows([task], {}, now=NOW, no_trunc=True)
    assert full[0] == "t" * 25 and full[6] == f'"{long_err}"'


def test_global_tasks_group_by_node() -> None:
    tasks = [
        _task("a", 0, TaskState.RUNNING, 10, node_id="nodeB"),
        _task("b", 0, TaskState.RUNNING, 10, node_id="nodeA"),
    ]
    assert [t.id for t, newest in tables.order_tasks(tasks) if newest] == ["b", "a"]


# -- messages -------------------------------------------------------------------


def test_deploy_lines() -> None:
    result = DeployResult(
        stack="shop", created=("shop_db",), updated=("shop_web",), removed=("shop_old",)
    )
    assert deploy_lines(result) == [
        "Creating service shop_db",
        "Updating service shop_web",
        "Removing service shop_old",
    ]
    assert deploy_lines(DeployResult(stack="shop", unchanged=("shop_web",))) == [
        "Stack shop is up to date"
    ]


CONFIG = NodeConfig(
    node_id="abc123", cluster_id="c1", role="manager", hostname="h", advertise_addr="10.0.0.5"
)


def test_init_message_with_tokens() -> None:
    text = init_message(CONFIG, {"worker": "SWL-W", "manager": "SWL-M"})
    assert text.startswith("Swarm initialized: current node (abc123) is now a manager.\n\n")
    assert "run the following command:\n\n    swarmlite join --token SWL-W 10.0.0.5:4377" in text
    assert "swarmlite join --token SWL-M 10.0.0.5:4377" in text


def test_init_message_without_tokens_points_at_join_token() -> None:
    text = init_message(CONFIG, {})
    assert "run 'swarmlite join-token worker' and follow the instructions" in text
    assert "run 'swarmlite join-token manager' and follow the instructions" in text


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0.0.0.0:4377", ("0.0.0.0", 4377)),
        (":5000", ("0.0.0.0", 5000)),
        ("10.0.0.1", ("10.0.0.1", 4377)),
        ("[::1]:6000", ("::1", 6000)),
    ],
)
def test_parse_listen_addr(text: str, expected: tuple[str, int]) -> None:
    assert parse_listen_addr(text) == expected


@pytest.mark.parametrize("text", ["1.2.3.4:http", "1.2.3.4:0", "1.2.3.4:70000"])
def test_parse_listen_addr_refuses_bad_ports(text: str) -> None:
    with pytest.raises(SpecError, match="--listen-addr"):
        parse_listen_addr(text)


def test_pretty_output_names_the_essentials() -> None:
    spec = ServiceSpec(
        name="web", stack="shop", image="nginx", ports=(PortSpec(target=80, published=8080),)
    )
    text = pretty_service(Service(id="s1", spec=spec))
    assert "Name:             shop_web" in text
    assert "PublishedPort = 8080" in text
    assert "Hostname:         h1" in pretty_node(_node("n1", "h1", "worker"))

"""depends_on: blocked() per condition, table-driven, and the stack rm order."""

from __future__ import annotations

from types import MappingProxyType

import pytest

from swarmlite.manager.dependencies import blocked, removal_order
from swarmlite.spec.objects import Node, NodeStatus, Service, Task, TaskState, TaskStatus
from swarmlite.spec.service import Dependency, DependsCondition, ServiceMode, ServiceSpec
from swarmlite.store.cache import ClusterState
from swarmlite.store.store import Versioned

S = TaskState


def svc_spec(
    name: str,
    *deps: Dependency,
    replicas: int = 1,
    mode: ServiceMode = "replicated",
    stack: str = "shop",
) -> ServiceSpec:
    return ServiceSpec(
        name=name, stack=stack, image="img", replicas=replicas, mode=mode, depends_on=deps
    )


def task(
    service: Service,
    slot: int,
    state: TaskState,
    *,
    desired: TaskState = S.RUNNING,
    exit_code: int | None = None,
    err: str = "",
    node: str = "",
    at: float = 0.0,
) -> Task:
    return Task(
        id=f"{service.id}.{slot}.{node}.{int(state)}.{at}",
        service_id=service.id,
        service_name=service.name,
        slot=slot,
        spec=service.spec,
        spec_version=service.version,
        spec_hash=service.spec.task_hash(),
        node_id=node,
        desired_state=desired,
        status=TaskStatus(state=state, exit_code=exit_code, err=err, timestamp=at),
    )


def state_of(
    services: list[Service],
    tasks: list[Task],
    *,
    down: tuple[str, ...] = (),
    removed: tuple[str, ...] = (),
) -> ClusterState:
    """Every node a task names is there and ready, but those ``down`` or ``removed``."""
    node_ids = {t.node_id for t in tasks if t.node_id} - set(removed)
    nodes = {
        i: Node(
            id=i,
            hostname=i,
            addr="10.0.0.1",
            api_port=1,
            status=NodeStatus(state="down" if i in down else "ready"),
        )
        for i in node_ids
    }
    return ClusterState(
        services=MappingProxyType({s.id: Versioned(s, 1) for s in services}),
        tasks=MappingProxyType({t.id: Versioned(t, 1) for t in tasks}),
        nodes=MappingProxyType({i: Versioned(n, 1) for i, n in nodes.items()}),
    )


def dep(condition: DependsCondition, *, required: bool = True, name: str = "db") -> Dependency:
    return Dependency(service=name, condition=condition, required=required)


def db(replicas: int = 1, mode: ServiceMode = "replicated") -> Service:
    return Service(id="db1", spec=svc_spec("db", replicas=replicas, mode=mode))


STARTED: DependsCondition = "service_started"
HEALTHY: DependsCondition = "service_healthy"
DONE: DependsCondition = "service_completed_successfully"
DbTasks = list[tuple[int, TaskState, int | None]]  # (slot, observed state, exit code)

# Each case: id, the condition, db's replicas, db's tasks, the reason (None: not blocked).
CASES: list[tuple[str, DependsCondition, int, DbTasks, str | None]] = [
    ("started: nothing yet", STARTED, 1, [], "service_started (0/1 running)"),
    ("started: starting", STARTED, 1, [(1, S.STARTING, None)], "service_started (0/1 running)"),
    ("started: one of two", STARTED, 2, [(1, S.RUNNING, None), (2, S.PENDING, None)], None),
    ("started: zero replicas", STARTED, 0, [], None),
    ("healthy: none", HEALTHY, 1, [(1, S.STARTING, None)], "service_healthy (0/1 healthy)"),
    ("healthy: one of two", HEALTHY, 2, [(1, S.RUNNING, None), (2, S.STARTING, None)],
     "service_healthy (1/2 healthy)"),
    ("healthy: all", HEALTHY, 2, [(1, S.RUNNING, None), (2, S.RUNNING, None)], None),
    ("healthy: zero replicas", HEALTHY, 0, [], None),
    ("completed: running", DONE, 1, [(1, S.RUNNING, None)],
     "service_completed_successfully (0/1 completed)"),
    ("completed: exit 0", DONE, 1, [(1, S.COMPLETE, 0)], None),
    ("completed: one of two", DONE, 2, [(1, S.COMPLETE, 0), (2, S.RUNNING, None)],
     "service_completed_successfully (1/2 completed)"),
    ("completed: zero replicas", DONE, 0, [], None),
]  # fmt: skip


@pytest.mark.parametrize(
    ("condition", "replicas", "tasks", "reason"),
    [c[1:] for c in CASES],
    ids=[c[0] for c in CASES],
)
def test_conditions(
    condition: DependsCondition,
    replicas: int,
    tasks: DbTasks,
    reason: str | None,
) -> None:
    d = db(replicas)
    web = svc_spec("web", dep(condition))
    state = state_of([d], [task(d, slot, st, exit_code=code) for slot, st, code in tasks])
    assert blocked(web, state) == (f"waiting for db: {reason}" if reason else None)


def test_completed_names_the_failed_task_when_nothing_is_left_running() -> None:
    d = db()
    failed = task(d, 1, S.FAILED, exit_code=3, err="task: non-zero exit (3)", at=5.0)
    web = svc_spec("web", dep("service_completed_successfully"))
    assert blocked(web, state_of([d], [failed])) == (
        "waiting for db: service_completed_successfully (0/1 completed), "
        "shop_db.1 failed: task: non-zero exit (3)"
    )


def test_tasks_being_shut_down_do_not_count_as_started() -> None:
    d = db()
    stopping = task(d, 1, S.RUNNING, desired=S.SHUTDOWN)
    web = svc_spec("web", dep("service_started"))
    assert blocked(web, state_of([d], [stopping])) == (
        "waiting for db: service_started (0/1 running)"
    )


def test_global_dependency_wants_every_live_task_running() -> None:
    d = db(mode="global")
    web = svc_spec("web", dep("service_healthy"))
    tasks = [task(d, 0, S.RUNNING, node="n1"), task(d, 0, S.ASSIGNED, node="n2")]
    assert blocked(web, state_of([d], tasks)) == "waiting for db: service_healthy (1/2 healthy)"
    tasks[1] = task(d, 0, S.RUNNING, node="n2")
    assert blocked(web, state_of([d], tasks)) is None


@pytest.mark.parametrize("lost", ["down", "removed"])
@pytest.mark.parametrize(
    ("condition", "none_left", "one_left"),
    [
        (STARTED, "service_started (0/2 running)", None),
        (HEALTHY, "service_healthy (0/2 healthy)", "service_healthy (1/2 healthy)"),
    ],
    ids=["started", "healthy"],
)
def test_tasks_on_a_lost_node_do_not_count(
    condition: DependsCondition, none_left: str, one_left: str | None, lost: str
) -> None:
    # Running is the last word of an agent that no longer reports: the node is down
    # (not yet replaced there) or removed, so that task may well not run at all.
    d = db(replicas=2)
    tasks = [task(d, 1, S.RUNNING, node="n1"), task(d, 2, S.RUNNING, node="n2")]
    web = svc_spec("web", dep(condition))
    assert blocked(web, state_of([d], tasks)) is None
    for gone, reason in ((("n2",), one_left), (("n1", "n2"), none_left)):
        state = state_of([d], tasks, **{lost: gone})
        assert blocked(web, state) == (f"waiting for db: {reason}" if reason else None)


def test_global_dependency_does_not_want_a_task_on_a_down_node() -> None:
    d = db(mode="global")
    web = svc_spec("web", dep("service_healthy"))
    tasks = [task(d, 0, S.RUNNING, node="n1"), task(d, 0, S.STARTING, node="n2")]
    assert blocked(web, state_of([d], tasks, down=("n2",))) is None


def test_missing_dependency_blocks_only_when_required() -> None:
    assert blocked(svc_spec("web", dep("service_started")), state_of([], [])) == (
        "waiting for db: service not deployed"
    )
    optional = svc_spec("web", dep("service_healthy", required=False))
    assert blocked(optional, state_of([], [])) is None


def test_dependencies_are_stack_local() -> None:
    other = Service(id="x", spec=svc_spec("db", stack="other"))
    web = svc_spec("web", dep("service_started"))
    assert blocked(web, state_of([other], [task(other, 1, S.RUNNING)])) == (
        "waiting for db: service not deployed"
    )


def test_every_unmet_dependency_is_named() -> None:
    d = db()
    cache = Service(id="c1", spec=svc_spec("cache"))
    web = svc_spec("web", dep("service_healthy"), dep("service_started", name="cache"))
    state = state_of([d, cache], [task(d, 1, S.STARTING)])
    assert blocked(web, state) == (
        "waiting for db: service_healthy (0/1 healthy); "
        "waiting for cache: service_started (0/1 running)"
    )


def test_no_dependencies_is_never_blocked() -> None:
    assert blocked(svc_spec("web"), state_of([], [])) is None


def names(layers: list[list[ServiceSpec]]) -> list[list[str]]:
    return [[s.name for s in layer] for layer in layers]


def test_removal_order_puts_dependents_first() -> None:
    specs = [
        svc_spec("db"),
        svc_spec("api", dep("service_healthy")),
        svc_spec("web", dep("service_started", name="api")),
        svc_spec("cron"),
    ]
    assert names(removal_order(specs)) == [["cron", "web"], ["api"], ["db"]]


def test_removal_order_ignores_dependencies_outside_the_list_and_survives_cycles() -> None:
    assert names(removal_order([svc_spec("web", dep("service_started"))])) == [["web"]]
    cycle = [
        svc_spec("a", dep("service_started", name="b")),
        svc_spec("b", dep("service_started", name="a")),
        svc_spec("c", dep("service_started", name="a")),
    ]
    assert names(removal_order(cycle)) == [["c"], ["a", "b"]]


def test_scheduler_gate_holds_blocked_tasks_with_their_reason() -> None:
    from swarmlite.manager.scheduling import _hold_blocked

    d = db()
    web = Service(id="w1", spec=svc_spec("web", dep("service_healthy")))
    waiting, free_task = task(web, 1, S.NEW), task(d, 1, S.PENDING)
    state = state_of([d, web], [waiting, free_task])
    revisions = {waiting.id: 7, free_task.id: 8}
    free, ops, decision = _hold_blocked(state, [waiting, free_task], revisions, 1.0)
    assert free == [free_task]
    assert decision == "held 1 tasks: waiting for db: service_healthy (0/1 healthy)"
    (put,) = ops
    assert put.expect == 7
    assert isinstance(put.obj, Task)
    assert put.obj.status.state == S.PENDING
    assert put.obj.pending_reason == "waiting for db: service_healthy (0/1 healthy)"
    # Already held with the same reason: nothing to write again.
    _, again, _ = _hold_blocked(state, [put.obj], {put.obj.id: 9}, 2.0)
    assert again == []

"""Reconciler: plans and decision strings for scale, lost nodes, global services, history.

Builders make real Service/Task/Node objects; ``Sim`` applies plans to an in-memory
task list and plays the agents by hand, so time is only a number we pass.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec
import pytest

from swarmlite.manager.reconcile import Plan, make_task, reconcile
from swarmlite.spec.objects import Node, NodeStatus, Service, Task, TaskState, TaskStatus
from swarmlite.spec.service import RestartPolicy, ServiceSpec, UpdateConfig

T0 = 1000.0
S = TaskState


def node(node_id: str, *, availability: Any = "active", state: Any = "ready") -> Node:
    return Node(
        id=node_id,
        hostname=f"host-{node_id}",
        addr="10.0.0.1",
        api_port=4242,
        availability=availability,
        status=NodeStatus(state=state),
    )


def nodes(*items: Node) -> dict[str, Node]:
    return {n.id: n for n in items}


NODES = nodes(node("n1"), node("n2"), node("n3"))


def spec(**kw: Any) -> ServiceSpec:
    base: dict[str, Any] = {"name": "web", "stack": "s", "image": "nginx:1", "replicas": 3}
    base.update(kw)
    return ServiceSpec(**base)


def service(sp: ServiceSpec | None = None, *, version: int = 1) -> Service:
    return Service(id="svc1", spec=sp or spec(), version=version)


def task(
    svc: Service,
    slot: int,
    state: TaskState = S.RUNNING,
    *,
    desired: TaskState = S.RUNNING,
    at: float = T0,
    created: float | None = None,
    node_id: str = "n1",
    attempt: int = 0,
    err: str = "",
) -> Task:
    """A task of ``svc``'s current spec, last reported ``state`` at ``at``."""
    t = make_task(svc, slot, created if created is not None else at - 10, node_id=node_id)
    return msgspec.structs.replace(
        t,
        desired_state=desired,
        attempt=attempt,
        status=TaskStatus(state=state, err=err, message=state.label, timestamp=at),
    )


def with_status(t: Task, state: TaskState, at: float, err: str = "") -> Task:
    status = TaskStatus(state=state, err=err, message=state.label, timestamp=at)
    return msgspec.structs.replace(t, status=status)


def check_plan(plan: Plan, tasks: list[Task]) -> None:
    """Invariants of every plan: no id twice, updates only of known tasks, no status
    rewritten (so never backwards; only a task never placed may end as shut down),
    desired state never lowered."""
    known = {t.id: t for t in tasks}
    created = [t.id for t in plan.create]
    deleted = [t.id for t in plan.delete]
    assert len(set(created)) == len(created)
    assert len(set(deleted)) == len(deleted)
    assert not set(created) & set(known)
    assert not set(plan.updates) & set(deleted)
    assert not set(plan.updates) & set(created)
    for task_id, new in plan.updates.items():
        assert new.id == task_id
        old = known[task_id]
        unplaced_end = old.status.state < S.ASSIGNED and new.status.state == S.SHUTDOWN
        assert new.status == old.status or unplaced_end
        assert new.desired_state >= old.desired_state
    for t in plan.create:
        assert t.desired_state == S.RUNNING and t.status.state == S.NEW
    for t in plan.delete:
        assert t.status.state.terminal and t.desired_state > S.RUNNING


class Sim:
    """An in-memory store and a hand-driven agent around ``reconcile``."""

    def __init__(self, svc: Service, node_map: dict[str, Node], tasks: Sequence[Task] = ()) -> None:
        self.service = svc
        self.nodes = dict(node_map)
        self.tasks: dict[str, Task] = {t.id: t for t in tasks}
        self.now = T0
        self.decisions: list[str] = []
        self.fail_next_starts = 0  # the agent rejects this many new tasks

    def pass_(self, **kw: Any) -> Plan:
        current = list(self.tasks.values())
        plan = reconcile(self.service, current, self.nodes, self.now, **kw)
        check_plan(plan, current)
        self.decisions.append(plan.decision(self.service.name))
        for t in plan.delete:
            del self.tasks[t.id]
        self.tasks.update(plan.updates)
        for t in plan.create:
            self.tasks[t.id] = t
        if plan.service is not None:  # the updater's new update state
            self.service = plan.service
        return plan

    def agent_step(self, dt: float = 1.0) -> None:
        """Every agent moves each of its tasks one step forward, ``dt`` seconds later."""
        self.now += dt
        workers = sorted(n.id for n in self.nodes.values() if n.availability == "active")
        for t in list(self.tasks.values()):
            state = t.status.state
            if t.desired_state > S.RUNNING:
                if not state.terminal:
                    self.tasks[t.id] = with_status(t, S.SHUTDOWN, self.now)
            elif state == S.NEW:
                node_id = t.node_id or workers[(t.slot - 1) % len(workers)]
                t = msgspec.structs.replace(t, node_id=node_id)
                self.tasks[t.id] = with_status(t, S.ASSIGNED, self.now)
            elif state == S.ASSIGNED:
                if self.fail_next_starts:
                    self.fail_next_starts -= 1
                    self.tasks[t.id] = with_status(
                        t, S.REJECTED, self.now, "No such image: nginx:nope"
                    )
                else:
                    self.tasks[t.id] = with_status(t, S.RUNNING, self.now)

    def settled(self) -> bool:
        """Nothing left for an agent to do."""
        return all(
            t.status.state.terminal
            or (t.status.state == S.RUNNING and t.desired_state == S.RUNNING)
            for t in self.tasks.values()
        )

    def run(self, limit: int = 60) -> None:
        """Reconcile and step the agents until a pass changes nothing and waits for nothing."""
        for _ in range(limit):
            plan = self.pass_()
            if plan.empty and plan.wake_at is None and self.settled():
                return
            if plan.wake_at is not None and plan.empty:
                self.now = max(self.now, plan.wake_at - 1.0)
            self.agent_step()
        raise AssertionError(f"not converged: {self.decisions[-3:]}")

    def live(self) -> list[Task]:
        return [t for t in self.tasks.values() if t.desired_state == S.RUNNING]

    def running(self) -> list[Task]:
        return [t for t in self.tasks.values() if t.status.state == S.RUNNING]


def running_tasks(svc: Service, count: int, **kw: Any) -> list[Task]:
    return [task(svc, slot, **kw) for slot in range(1, count + 1)]


NAME = "s_web"


# --- fresh, converged, scale --------------------------------------------------------


def test_fresh_service_creates_one_task_per_slot() -> None:
    svc = service()
    plan = reconcile(svc, [], NODES, T0)
    check_plan(plan, [])
    assert [t.slot for t in plan.create] == [1, 2, 3]
    for t in plan.create:
        assert (t.service_id, t.service_name, t.spec_version) == ("svc1", NAME, 1)
        assert t.spec_hash == svc.spec.task_hash()
        assert (t.node_id, t.attempt, t.created_at) == ("", 0, T0)
    assert not plan.updates and not plan.delete and plan.wake_at is None
    ids = [t.id[:12] for t in plan.create]
    assert plan.decision(NAME) == (
        f"service={NAME} slot 1: created {ids[0]}; slot 2: created {ids[1]}; "
        f"slot 3: created {ids[2]}"
    )


def test_converged_service_has_an_empty_plan() -> None:
    svc = service()
    plan = reconcile(svc, running_tasks(svc, 3), NODES, T0 + 100)
    assert plan.empty and not plan.notes and plan.wake_at is None
    assert plan.decision(NAME) == f"service={NAME} converged"


def test_tasks_still_starting_count_as_converged() -> None:
    svc = service()
    tasks = [task(svc, 1, S.NEW, node_id=""), task(svc, 2, S.ASSIGNED), task(svc, 3, S.STARTING)]
    plan = reconcile(svc, tasks, NODES, T0)
    assert plan.decision(NAME) == f"service={NAME} converged"


def test_scale_up_creates_only_the_new_slots() -> None:
    old = service()
    tasks = running_tasks(old, 3)
    svc = service(spec(replicas=5), version=2)
    plan = reconcile(svc, tasks, NODES, T0)
    check_plan(plan, tasks)
    assert [t.slot for t in plan.create] == [4, 5]
    # Replica count is not part of the task hash: the old tasks move to v2 in place.
    assert {t.spec_version for t in plan.updates.values()} == {2}
    assert all(t.desired_state == S.RUNNING for t in plan.updates.values())


@pytest.mark.parametrize(("replicas", "removed"), [(2, [3]), (1, [2, 3]), (0, [1, 2, 3])])
def test_scale_down_shuts_the_highest_slots_down(replicas: int, removed: list[int]) -> None:
    svc = service(spec(replicas=3))
    tasks = running_tasks(svc, 3)
    svc = msgspec.structs.replace(svc, spec=spec(replicas=replicas))  # same version: no rewrite
    plan = reconcile(svc, tasks, NODES, T0)
    check_plan(plan, tasks)
    assert not plan.create and not plan.delete
    assert sorted(t.slot for t in plan.updates.values()) == removed
    assert all(t.desired_state == S.SHUTDOWN for t in plan.updates.values())
    by_slot = {t.slot: t.id[:12] for t in tasks}
    assert plan.decision(NAME) == f"service={NAME} " + "; ".join(
        f"slot {s} removed: shutting down {by_slot[s]}" for s in removed
    )


def test_scale_down_converges_once_the_agents_stopped_the_tasks() -> None:
    svc = service()
    sim = Sim(svc, NODES, running_tasks(svc, 3))
    sim.service = msgspec.structs.replace(svc, spec=spec(replicas=1))
    sim.run()
    assert [t.slot for t in sim.live()] == [1]
    assert sim.decisions[-1] == f"service={NAME} converged"


# --- lost nodes -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("node_map", "why"),
    [
        (nodes(node("n1"), node("n2", state="down")), "node down"),
        (nodes(node("n1")), "node removed"),
    ],
)
def test_task_on_a_lost_node_is_replaced(node_map: dict[str, Node], why: str) -> None:
    svc = service(spec(replicas=1, restart_policy=RestartPolicy(delay=5)))
    lost = task(svc, 1, node_id="n2", at=T0)
    plan = reconcile(svc, [lost], node_map, T0 + 60)
    check_plan(plan, [lost])
    assert [t.slot for t in plan.create] == [1]
    new = plan.create[0]
    assert new.attempt == 1 and new.node_id == ""
    old = plan.updates[lost.id]
    # Desired state only: the observed status stays the agent's last word.
    assert old.desired_state == S.SHUTDOWN and old.status == lost.status
    assert plan.decision(NAME) == (
        f"service={NAME} task {lost.id[:12]} lost with its node ({why}); "
        f"slot 1: {lost.id[:12]} failed, restarted as {new.id[:12]} (attempt 1)"
    )


def test_lost_task_waits_for_the_restart_delay_from_its_last_report() -> None:
    svc = service(spec(replicas=1, restart_policy=RestartPolicy(delay=5)))
    lost = task(svc, 1, node_id="n2", at=T0)
    down = nodes(node("n1"), node("n2", state="down"))
    plan = reconcile(svc, [lost], down, T0 + 2)
    assert plan.empty and plan.wake_at == T0 + 5
    assert plan.decision(NAME) == (
        f"service={NAME} task {lost.id[:12]} lost with its node (node down); "
        f"slot 1: restart in 3.0s (failed: node down)"
    )
    later = reconcile(svc, [lost], down, T0 + 5)
    assert len(later.create) == 1 and later.updates[lost.id].desired_state == S.SHUTDOWN


def test_replaced_task_left_on_a_down_node_is_quiet_and_pruned_like_history() -> None:
    svc = service(spec(replicas=1))
    down = nodes(node("n1"), node("n2", state="down"))
    old = task(svc, 1, S.RUNNING, desired=S.SHUTDOWN, node_id="n2", created=T0 - 50)
    new = task(svc, 1, S.RUNNING, node_id="n1", created=T0 - 40)
    plan = reconcile(svc, [old, new], down, T0)
    assert plan.decision(NAME) == f"service={NAME} converged"
    plan = reconcile(svc, [old, new], down, T0, history_limit=0)
    assert plan.delete == [old] and old.id not in plan.updates


def test_stop_first_update_does_not_wait_forever_for_a_task_on_a_down_node() -> None:
    v1 = service()
    stopping = task(v1, 1, S.RUNNING, desired=S.SHUTDOWN, node_id="n2")
    others = [task(v1, 2), task(v1, 3)]
    v2 = service(spec(image="nginx:2"), version=2)
    down = nodes(node("n1"), node("n2", state="down"))
    plan = reconcile(v2, [stopping, *others], down, T0)
    assert [(t.slot, t.spec_version) for t in plan.create] == [(1, 2)]


# --- global services ---------------------------------------------------------------


def test_global_service_runs_one_task_per_usable_node() -> None:
    svc = service(spec(mode="global"))
    node_map = nodes(
        node("n1"), node("n2", availability="drain"), node("n3", state="down"), node("n4")
    )
    plan = reconcile(svc, [], node_map, T0)
    check_plan(plan, [])
    assert sorted((t.slot, t.node_id) for t in plan.create) == [(0, "n1"), (0, "n4")]
    assert plan.create[0].name == f"{NAME}.n1"
    assert plan.decision(NAME) == (
        f"service={NAME} slot node n1: created {plan.create[0].id[:12]}; "
        f"slot node n4: created {plan.create[1].id[:12]}"
    )


def test_global_service_leaves_drained_and_down_nodes() -> None:
    svc = service(spec(mode="global"))
    tasks = [task(svc, 0, node_id=n) for n in ("n1", "n2", "n3")]
    node_map = nodes(node("n1"), node("n2", availability="drain"), node("n3", state="down"))
    plan = reconcile(svc, tasks, node_map, T0)
    check_plan(plan, tasks)
    assert not plan.create
    assert sorted(t.node_id for t in plan.updates.values()) == ["n2", "n3"]
    assert all(t.desired_state == S.SHUTDOWN for t in plan.updates.values())
    assert all(u.status == tasks[0].status for u in plan.updates.values())
    n2, n3 = tasks[1].id[:12], tasks[2].id[:12]
    assert plan.decision(NAME) == (
        f"service={NAME} task {n3} lost with its node (node down); "
        f"slot node n2 removed: shutting down {n2}; "
        f"slot node n3 removed: shutting down {n3}"
    )


def test_a_global_task_the_scheduler_never_placed_ends_at_once_when_its_node_drains() -> None:
    # Pending (its node lacks memory): no agent was ever sent it, so none will
    # report it stopped; the plan ends it itself, as it does an unplaced replica.
    svc = service(spec(mode="global"))
    waiting = task(svc, 0, S.PENDING, node_id="n2")
    plan = reconcile(svc, [waiting], nodes(node("n1"), node("n2", availability="drain")), T0)
    check_plan(plan, [waiting])
    ended = plan.updates[waiting.id]
    assert (ended.desired_state, ended.status.state) == (S.SHUTDOWN, S.SHUTDOWN)
    assert ended.status.message == "shut down before it was placed"


def test_a_global_task_never_placed_on_a_node_that_goes_down_ends_as_shutdown() -> None:
    # Not "lost with its node": no agent ever had it. Seen as failed, it would wait
    # for a report that cannot come, pending with desired state shutdown for good.
    svc = service(spec(mode="global"))
    waiting = task(svc, 0, S.PENDING, node_id="n2")
    plan = reconcile(svc, [waiting], nodes(node("n1"), node("n2", state="down")), T0)
    check_plan(plan, [waiting])
    assert plan.updates[waiting.id].status.state == S.SHUTDOWN
    assert "lost with its node" not in plan.decision(NAME)


def test_an_update_starts_the_restart_count_afresh() -> None:
    # The slot's task was restarted once (attempt 1) under the old spec; with
    # max_attempts 1, carrying that count over would leave the new spec no restart.
    policy = RestartPolicy(delay=0, max_attempts=1)
    old = service(spec(replicas=1, restart_policy=policy), version=1)
    ended = msgspec.structs.replace(
        task(old, 1, S.SHUTDOWN, desired=S.SHUTDOWN, attempt=1), spec_version=1
    )
    new = service(spec(replicas=1, image="img:2", restart_policy=policy), version=2)
    plan = reconcile(new, [ended], NODES, T0)
    check_plan(plan, [ended])
    (created,) = plan.create
    assert (created.spec_version, created.attempt) == (2, 0)
    # A refill of the same spec (say after a drain) keeps the count.
    same = reconcile(old, [ended], NODES, T0)
    assert [t.attempt for t in same.create] == [1]


def test_global_service_follows_a_new_node_and_restarts_per_node() -> None:
    svc = service(spec(mode="global", restart_policy=RestartPolicy(delay=0)))
    crashed = task(svc, 0, S.FAILED, node_id="n1", err="exit 1")
    fine = task(svc, 0, node_id="n2")
    plan = reconcile(svc, [crashed, fine], NODES, T0)
    check_plan(plan, [crashed, fine])
    assert sorted((t.node_id, t.attempt) for t in plan.create) == [("n1", 1), ("n3", 0)]
    assert plan.updates[crashed.id].desired_state == S.SHUTDOWN


# --- in-place version bumps --------------------------------------------------------


@pytest.mark.parametrize(
    "changed",
    [
        {"replicas": 3},
        {"deploy_labels": {"team": "a"}},
        {"update_config": UpdateConfig(parallelism=2)},
    ],
)
def test_version_bump_with_equal_hash_rewrites_in_place(changed: dict[str, Any]) -> None:
    v1 = service()
    tasks = running_tasks(v1, 3)
    v2 = service(spec(**changed), version=2)
    assert v2.spec.task_hash() == v1.spec.task_hash()
    plan = reconcile(v2, tasks, NODES, T0)
    check_plan(plan, tasks)
    assert not plan.create and not plan.delete
    assert sorted(plan.updates) == sorted(t.id for t in tasks)
    for t in tasks:
        new = plan.updates[t.id]
        assert (new.spec_version, new.spec, new.desired_state) == (2, v2.spec, S.RUNNING)
        assert new.status == t.status and new.spec_hash == t.spec_hash
    assert plan.decision(NAME) == f"service={NAME} " + "; ".join(
        f"slot {t.slot}: {t.id[:12]} moved to spec version 2 in place" for t in tasks
    )
    tasks = [plan.updates[t.id] for t in tasks]
    assert reconcile(v2, tasks, NODES, T0 + 1).decision(NAME) == f"service={NAME} converged"

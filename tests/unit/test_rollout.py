"""Rolling updates, simulated pass by pass: reconcile, apply the plan, move the agents."""

from __future__ import annotations

import itertools
from typing import Any

import msgspec
import pytest

from swarmlite.manager.reconcile import reconcile
from swarmlite.spec.objects import Service, TaskState
from swarmlite.spec.service import RestartPolicy, UpdateConfig
from tests.unit.test_reconcile import NAME, NODES, T0, Sim, check_plan, service, spec, task

S = TaskState


def updating_sim(replicas: int = 3, *, mode: Any = "replicated", **update: Any) -> Sim:
    """A converged v1 service (image nginx:1) just bumped to v2 (nginx:2)."""
    v1 = service(spec(replicas=replicas, mode=mode))
    sim = Sim(v1, NODES)
    sim.run()
    assert len(sim.running()) == (replicas if mode == "replicated" else len(NODES))
    sim.service = bumped(v1, **update)
    return sim


def bumped(v1: Service, **update: Any) -> Service:
    new_spec = msgspec.structs.replace(
        v1.spec, image="nginx:2", update_config=UpdateConfig(**update)
    )
    return msgspec.structs.replace(v1, spec=new_spec, version=v1.version + 1)


def slots_down(sim: Sim) -> int:
    serving = {t.slot for t in sim.running() if t.desired_state == S.RUNNING}
    return sim.service.spec.replicas - len(serving)


def assert_updated(sim: Sim) -> None:
    live = sim.live()
    assert sorted(t.slot for t in live) == list(range(1, sim.service.spec.replicas + 1))
    assert all(t.spec_version == 2 and t.spec.image == "nginx:2" for t in live)
    assert all(t.status.state == S.RUNNING for t in live)
    assert sim.decisions[-1] == f"service={NAME} converged"


def test_stop_first_parallelism_1_pass_by_pass() -> None:
    sim = updating_sim(order="stop-first", parallelism=1)
    old = {t.slot: t.id[:12] for t in sim.live()}
    # Pass 1: slot 1's old task is told to stop; nothing new yet.
    plan = sim.pass_()
    assert not plan.create and len(plan.updates) == 1
    assert plan.decision(NAME) == (
        f"service={NAME} slot 1: updating {old[1]} (stop-first); "
        "update: 2 slots wait for the next batch"
    )
    # Pass 2, old still running: the slot waits for it to stop.
    plan = sim.pass_()
    assert plan.empty
    assert plan.decision(NAME) == (
        f"service={NAME} slot 1: waiting for {old[1]} to stop; "
        "update: 2 slots wait for the next batch"
    )
    sim.agent_step()  # old task reports SHUTDOWN
    plan = sim.pass_()
    [new] = plan.create
    assert (new.slot, new.spec_version) == (1, 2)
    assert plan.decision(NAME) == (
        f"service={NAME} slot 1: created {new.id[:12]}; update: 2 slots wait for the next batch"
    )
    sim.agent_step()  # new task ASSIGNED, not running yet: slot 2 must still wait
    plan = sim.pass_()
    assert plan.empty
    assert plan.decision(NAME) == f"service={NAME} update: 2 slots wait for the next batch"
    sim.agent_step()  # new task RUNNING: next batch
    plan = sim.pass_()
    assert plan.decision(NAME) == (
        f"service={NAME} slot 2: updating {old[2]} (stop-first); "
        "update: 1 slots wait for the next batch"
    )


@pytest.mark.parametrize("parallelism", [1, 2])
def test_stop_first_never_has_more_than_parallelism_slots_down(parallelism: int) -> None:
    sim = updating_sim(order="stop-first", parallelism=parallelism)
    worst = 0
    for _ in range(60):
        plan = sim.pass_()
        assert len(plan.create) <= parallelism
        worst = max(worst, slots_down(sim))
        if plan.empty and plan.wake_at is None and sim.settled():
            break
        sim.agent_step()
        worst = max(worst, slots_down(sim))
    assert worst == parallelism  # it did go down, but never by more
    assert_updated(sim)


@pytest.mark.parametrize("parallelism", [1, 2, 0])
def test_start_first_always_keeps_replicas_running(parallelism: int) -> None:
    sim = updating_sim(order="start-first", parallelism=parallelism)
    for _ in range(60):
        plan = sim.pass_()
        assert len(sim.running()) >= 3
        for stopped in plan.updates.values():
            slot_new = [
                t
                for t in plan.create + sim.live()
                if t.slot == stopped.slot and t.spec_version == 2
            ]
            assert any(t.status.state == S.RUNNING for t in slot_new), "old stopped too early"
        if plan.empty and plan.wake_at is None and sim.settled():
            break
        sim.agent_step()
        assert len(sim.running()) >= 3
    assert_updated(sim)


def test_start_first_first_pass_creates_before_stopping() -> None:
    sim = updating_sim(order="start-first", parallelism=1)
    old = {t.slot: t.id[:12] for t in sim.live()}
    plan = sim.pass_()
    [new] = plan.create
    assert not plan.updates and new.slot == 1
    assert plan.decision(NAME) == (
        f"service={NAME} slot 1: starting {new.id[:12]} before stopping {old[1]}; "
        "update: 2 slots wait for the next batch"
    )
    sim.agent_step()
    sim.agent_step()  # new task RUNNING
    plan = sim.pass_()
    assert plan.updates[next(k for k in plan.updates)].slot == 1
    assert plan.decision(NAME).startswith(
        f"service={NAME} slot 1: new task running, stopping old {old[1]}; slot 2: starting "
    )


@pytest.mark.parametrize("order", ["stop-first", "start-first"])
def test_parallelism_0_updates_every_slot_at_once(order: str) -> None:
    sim = updating_sim(order=order, parallelism=0)
    plan = sim.pass_()
    if order == "stop-first":
        assert sorted(t.slot for t in plan.updates.values()) == [1, 2, 3]
        assert not plan.create
    else:
        assert sorted(t.slot for t in plan.create) == [1, 2, 3]
        assert not plan.updates
    assert "wait for the next batch" not in plan.decision(NAME)
    sim.run()
    assert_updated(sim)


def test_parallelism_0_is_not_throttled_by_a_slot_waiting_to_restart() -> None:
    v1 = service(spec(restart_policy=RestartPolicy(delay=30)))
    tasks = [task(v1, 1), task(v1, 2), task(v1, 3, S.FAILED, at=T0, err="exit 1")]
    v2 = bumped(v1, parallelism=0)
    plan = reconcile(v2, tasks, NODES, T0 + 1)
    check_plan(plan, tasks)
    assert sorted(t.slot for t in plan.updates.values()) == [1, 2]
    assert plan.wake_at == T0 + 30


def test_delay_between_batches() -> None:
    v1 = service()
    v2 = bumped(v1, parallelism=1, delay=10)
    done = msgspec.structs.replace(task(v2, 1, at=T0), spec_version=2)
    tasks = [done, task(v1, 2), task(v1, 3)]
    plan = reconcile(v2, tasks, NODES, T0 + 3)
    assert plan.empty and plan.wake_at == T0 + 10
    assert plan.decision(NAME) == f"service={NAME} update: next batch in 7.0s"
    plan = reconcile(v2, tasks, NODES, T0 + 10)
    assert [t.slot for t in plan.updates.values()] == [2]
    assert plan.wake_at is None


def test_delay_between_batches_through_the_simulator() -> None:
    sim = updating_sim(order="stop-first", parallelism=1, delay=10)
    sim.run()
    assert_updated(sim)
    new = sorted((t for t in sim.live()), key=lambda t: t.slot)
    for before, after in itertools.pairwise(new):
        assert after.created_at >= before.status.timestamp + 10


def test_global_service_rolls_node_by_node() -> None:
    sim = updating_sim(mode="global", order="stop-first", parallelism=1)
    worst = 0
    for _ in range(60):
        plan = sim.pass_()
        down = len(NODES) - len({t.node_id for t in sim.running() if t.desired_state == S.RUNNING})
        worst = max(worst, down)
        if plan.empty and plan.wake_at is None and sim.settled():
            break
        sim.agent_step()
    assert worst == 1
    assert sorted(t.node_id for t in sim.live()) == ["n1", "n2", "n3"]
    assert all(t.spec_version == 2 and t.status.state == S.RUNNING for t in sim.live())


def test_update_with_a_failing_new_task_keeps_the_old_one_in_start_first() -> None:
    sim = updating_sim(order="start-first", parallelism=1)
    sim.service = msgspec.structs.replace(
        sim.service,
        spec=msgspec.structs.replace(
            sim.service.spec, restart_policy=RestartPolicy(delay=1, max_attempts=1)
        ),
    )
    sim.fail_next_starts = 100
    sim.run()
    assert len(sim.running()) == 3  # the old tasks still serve
    assert {t.spec_version for t in sim.running()} == {1}

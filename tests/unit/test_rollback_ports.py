"""The automatic rollback (failure_action rollback) refuses a previous spec whose
published port another service took meanwhile, as deploy and ``service rollback`` do:
the update pauses instead, naming the port and its holder."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec

from swarmlite.manager.orchestrator import Orchestrator
from swarmlite.manager.reconcile import Plan, reconcile
from swarmlite.manager.updater import begin_update, check_rollback_ports, rolling_back
from swarmlite.spec.objects import Service
from swarmlite.spec.service import PortSpec, UpdateConfig
from swarmlite.store.cache import ClusterState, StateCache
from swarmlite.store.store import Delete, Put, Store, Versioned
from tests.unit.test_reconcile import NAME, NODES, service, spec
from tests.unit.test_updater import UpdateSim

CRASHED = f"task {NAME}.1 failed: task: non-zero exit (1)"
HELD = (
    "service web: port 8080/tcp is already published by service s_blog; "
    "publish another port or remove s_blog"
)


def other(port: int) -> Service:
    return Service(id="svc2", spec=spec(name="blog", ports=(PortSpec(target=80, published=port),)))


def about_to_roll_back() -> tuple[UpdateSim, Plan]:
    """web published 8080, then an update to port 8081 with an image that crashes;
    returns the sim and the reconcile plan that starts the automatic rollback."""
    cfg = UpdateConfig(parallelism=1, failure_action="rollback")
    v1 = spec(ports=(PortSpec(target=80, published=8080),), update_config=cfg)
    sim = UpdateSim(service(v1), NODES)
    sim.run()
    v2 = msgspec.structs.replace(v1, image="crash:1", ports=(PortSpec(target=80, published=8081),))
    sim.service = begin_update(sim.service, v2, sim.now)
    for _ in range(60):
        plan = reconcile(sim.service, list(sim.tasks.values()), sim.nodes, sim.now)
        if plan.service is not None and rolling_back(plan.service):
            return sim, plan
        sim.pass_()
        sim.agent_step()
    raise AssertionError("the update never started its rollback")


def test_rollback_into_a_port_taken_since_pauses_the_update_instead() -> None:
    sim, plan = about_to_roll_back()
    check_rollback_ports(sim.service, plan, [sim.service, other(8080)])
    assert plan.service is not None
    status = plan.service.update_status
    assert status.state == "paused"
    assert status.message == f"update paused: rollback refused: {HELD} (update failed: {CRASHED})"
    assert plan.notes == [status.message]
    assert plan.service.spec == sim.service.spec and plan.service.version == sim.service.version


def test_rollback_to_free_ports_goes_ahead() -> None:
    sim, plan = about_to_roll_back()
    rollback = plan.service
    check_rollback_ports(sim.service, plan, [sim.service, other(9090)])
    assert plan.service is rollback
    assert plan.service is not None and plan.service.update_status.state == "rollback_started"


class Recorder(Store):
    """Takes every commit (no etcd)."""

    def __init__(self) -> None:
        self.ops: list[Put | Delete] = []

    async def commit(self, ops: Sequence[Put | Delete]) -> int:
        self.ops.extend(ops)
        return 1


async def test_orchestrator_pauses_instead_of_rolling_back_into_a_taken_port() -> None:
    sim, _ = about_to_roll_back()
    versioned: dict[str, Any] = {
        "services": {s.id: Versioned(s, 1) for s in (sim.service, other(8080))},
        "tasks": {t.id: Versioned(t, 1) for t in sim.tasks.values()},
        "nodes": {n.id: Versioned(n, 1) for n in NODES.values()},
    }
    store = Recorder()
    loop = Orchestrator(store, StateCache(store), clock=lambda: sim.now)
    await loop.pass_once(ClusterState(**versioned))
    written = [op.obj for op in store.ops if isinstance(op, Put) and isinstance(op.obj, Service)]
    assert [s.update_status.state for s in written] == ["paused"]
    assert "port 8080/tcp is already published by service s_blog" in (
        written[0].update_status.message
    )

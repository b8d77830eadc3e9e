"""A 10,000-task x 200-node pass completes and is sane (no timing asserted).

Run as a script for throughput: ``.venv/bin/python -m tests.unit.test_scheduler_scale``.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable

from swarmlite.manager.scheduler import SchedulePlan, schedule
from swarmlite.spec.objects import Node, Task
from tests.unit.test_scheduler_fakes import GIB, node, running, spec, tasks


def cluster(size: int = 200) -> list[Node]:
    return [node(f"n{i:03d}", labels={"zone": f"z{i % 3}"}, memory=64 * GIB) for i in range(size)]


def one_service() -> list[Task]:
    return tasks(spec("web", memory=GIB // 16, constraints=("node.role==worker",)), 10_000)


def many_services() -> list[Task]:
    return [t for s in range(100) for t in tasks(spec(f"s{s}", cpus=0.001), 100)]


def zone_spread() -> list[Task]:
    return tasks(spec("web", preferences=("spread=node.labels.zone",), max_per_node=60), 10_000)


def test_ten_thousand_tasks_on_two_hundred_nodes() -> None:
    plan = schedule(one_service(), cluster(), [])
    assert len(plan.placements) == 10_000
    assert set(Counter(p.node_id for p in plan.placements).values()) == {50}


def test_ten_thousand_tasks_of_a_hundred_services() -> None:
    plan = schedule(many_services(), cluster(), [])
    assert len(plan.placements) == 10_000
    per_service_node = Counter((p.task_id.split(".")[0], p.node_id) for p in plan.placements)
    assert max(per_service_node.values()) == 1


def test_ten_thousand_tasks_spread_over_zones_with_existing_load() -> None:
    assigned = [running(spec("old"), i, f"n{i % 200:03d}") for i in range(2_000)]
    plan = schedule(zone_spread(), cluster(), assigned)
    assert len(plan.placements) == 10_000
    zones = Counter(int(p.node_id[1:]) % 3 for p in plan.placements)
    assert max(zones.values()) - min(zones.values()) <= 1


def test_ten_thousand_tasks_that_do_not_fit() -> None:
    plan = schedule(tasks(spec("huge", memory=65 * GIB), 10_000), cluster(), [])
    assert plan.placements == ()
    assert {u.reason for u in plan.unplaced} == {
        "no suitable node: insufficient memory on 200 nodes"
    }


def _bench(name: str, make: Callable[[], list[Task]], assigned: list[Task]) -> None:
    pending, nodes = make(), cluster()
    best, plan = float("inf"), SchedulePlan((), (), "")
    for _ in range(5):
        start = time.perf_counter()
        plan = schedule(pending, nodes, assigned)
        best = min(best, time.perf_counter() - start)
    rate = len(pending) / best
    print(f"{name:<36} {best * 1000:7.1f} ms {rate:>10,.0f} tasks/s  {plan.decision}")


if __name__ == "__main__":
    _bench("1 service x 10,000", one_service, [])
    _bench("100 services x 100", many_services, [])
    load = [running(spec("old"), i, f"n{i % 200:03d}") for i in range(2_000)]
    _bench("zone spread, 2,000 assigned", zone_spread, load)

"""The heap-based planner against a brute-force reference on seeded random clusters.

The reference re-checks every filter on every node for every task and takes the node
with the smallest (tasks per label group at each preference level, tasks of the service
on the node, tasks on the node, node id): the ordering the planner promises.
"""

from __future__ import annotations

import random

import pytest

from swarmlite.manager.scheduler import NodeInfo, Pipeline, Placement, build_node_infos, schedule
from swarmlite.spec.objects import Node, Task, TaskState
from tests.unit.test_scheduler_fakes import GIB, node, running, spec, task


def values_of(info: NodeInfo, labels: list[str]) -> tuple[str | None, ...]:
    return tuple(info.node.labels.get(x) for x in labels)


def rank(
    info: NodeInfo, t: Task, eligible: list[NodeInfo], labels: list[str]
) -> tuple[list[int], int, int, str]:
    groups = [
        sum(
            i.service_tasks(t.service_id)
            for i in eligible
            if values_of(i, labels[: d + 1]) == values_of(info, labels[: d + 1])
        )
        for d in range(len(labels))
    ]
    return (groups, info.service_tasks(t.service_id), info.total_tasks, info.id)


def reference(pending: list[Task], nodes: list[Node], assigned: list[Task]) -> list[Placement]:
    infos = build_node_infos(nodes, assigned)
    out: list[Placement] = []
    for t in sorted(pending, key=lambda t: (t.service_id, t.spec_version, t.slot, t.id)):
        pipe = Pipeline.for_task(t, infos, {})
        labels = [p.split("node.labels.")[1] for p in t.spec.placement.preferences]
        eligible = [i for i in infos.values() if pipe.check_static(t, i)]
        fits = [i for i in eligible if pipe.check(t, i)]
        if fits:
            best = min(fits, key=lambda i: rank(i, t, eligible, labels))
            best.add(t)
            out.append(Placement(t.id, best.id))
    return out


@pytest.mark.parametrize("seed", range(40))
def test_planner_matches_brute_force(seed: int) -> None:
    rng = random.Random(seed)
    nodes = []
    for i in range(rng.randint(1, 12)):
        labels = {}
        if rng.random() < 0.8:
            labels["zone"] = rng.choice("abc")
        if rng.random() < 0.8:
            labels["rack"] = rng.choice("xy")
        nodes.append(
            node(
                f"n{i:02d}",
                labels=labels,
                memory=rng.choice([2, 4, 8]) * GIB,
                cpus=rng.choice([1, 2, 4]),
                state="ready" if rng.random() < 0.9 else "down",
            )
        )
    services = []
    for k in range(rng.randint(1, 4)):
        prefs = rng.choice([(), ("node.labels.zone",), ("node.labels.zone", "node.labels.rack")])
        services.append(
            spec(
                f"s{k}",
                preferences=prefs,
                memory=rng.choice([None, GIB // 2, GIB]),
                cpus=rng.choice([None, 0.5]),
                max_per_node=rng.choice([None, 2, 3]),
                host_ports=rng.choice([(), (8000 + k,)]),
            )
        )
    assigned = [
        running(rng.choice(services), 100 + j, rng.choice(nodes).id)
        for j in range(rng.randint(0, 10))
    ]
    pending = [
        task(s, slot, state=TaskState.NEW)
        for s in services
        for slot in range(1, rng.randint(1, 15))
    ]
    rng.shuffle(pending)
    plan = schedule(pending, nodes, assigned)
    assert list(plan.placements) == reference(pending, nodes, assigned)
    assert len(plan.placements) + len(plan.unplaced) == len(pending)

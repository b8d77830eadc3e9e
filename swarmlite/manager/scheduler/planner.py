"""``schedule``: assign pending tasks to nodes, as a plan, without touching the store.

Pinned tasks (``node_id`` already set, e.g. global services) are validated against
their node first. The rest are grouped by (service, spec version); for each group the
static filters run once over all nodes, then nodes are drawn from a heap ordered by
(tasks of this service, tasks overall, node id) and only the placement-dependent
filters are re-checked on the drawn node. A node failing those is dropped for the rest
of the group (they never turn from fail to pass while one service places), so a group
costs about O(nodes + tasks x log nodes). With placement preferences the heap is split
per label value and the value with fewest of the service's tasks is served first.

A node-local volume that lives nowhere yet is claimed by the first task placed with it
in a call; every later task mounting it, of any service, is held to that node (the
caller then records the volume there), so one new volume never lands on two nodes.
"""

from __future__ import annotations

import heapq
from collections.abc import Mapping, Sequence

from swarmlite.errors import SpecError
from swarmlite.manager.scheduler.nodeinfo import NodeInfo, build_node_infos
from swarmlite.manager.scheduler.pipeline import NO_SUITABLE_NODE, Pipeline, mounted_volumes
from swarmlite.manager.scheduler.plan import Placement, SchedulePlan, Unplaced, decision
from swarmlite.spec.constraints import parse_preferences
from swarmlite.spec.objects import Node, Task, Volume

GroupKey = tuple[str, int]  # (service id, spec version)
_Entry = tuple[int, int, str, NodeInfo]  # (service tasks, all tasks, node id, node)


class _Spread:
    """Candidate nodes of one service, fewest of its tasks first, then fewest overall."""

    def __init__(self, service_id: str, infos: Sequence[NodeInfo]) -> None:
        self.heap: list[_Entry] = [
            (i.by_service.get(service_id, 0), i.total_tasks, i.id, i) for i in infos
        ]
        heapq.heapify(self.heap)

    def peek(self) -> NodeInfo | None:
        return self.heap[0][3] if self.heap else None

    def placed(self) -> None:
        s, t, node_id, info = self.heap[0]
        heapq.heapreplace(self.heap, (s + 1, t + 1, node_id, info))

    def reject(self) -> None:
        heapq.heappop(self.heap)


class _Branch:
    """Nodes sharing the label values of the preferences above, as a heap of sub-branches.

    ``key`` is (tasks of the service in this branch, then the best sub-branch's key), so
    comparing keys compares, level by level, the task counts of the label groups and
    finally the best node's (service tasks, all tasks, node id). Only the branches on the
    path to a changed node are re-keyed, so a choice costs O(levels x log groups).
    """

    def __init__(self, service_id: str, infos: Sequence[NodeInfo], labels: Sequence[str]):
        self.count = sum(i.by_service.get(service_id, 0) for i in infos)
        self.leaf: _Spread | None = None
        self.children: list[tuple[tuple[object, ...], int, _Branch]] = []
        if not labels:
            self.leaf = _Spread(service_id, infos)
        else:
            groups: dict[str | None, list[NodeInfo]] = {}
            for info in infos:
                groups.setdefault(info.node.labels.get(labels[0]), []).append(info)
            for order, group in enumerate(groups.values()):
                child = _Branch(service_id, group, labels[1:])
                self.children.append((child.key, order, child))
            heapq.heapify(self.children)
        self.key: tuple[object, ...] = ()
        self.rekey()

    def empty(self) -> bool:
        return not (self.leaf.heap if self.leaf is not None else self.children)

    def rekey(self) -> None:
        if self.leaf is not None:
            best: tuple[object, ...] = self.leaf.heap[0][:3] if self.leaf.heap else ()
        else:
            best = self.children[0][0] if self.children else ()
        self.key = (self.count, *best)


class _PreferenceSpread:
    """Spread over label values first (nested, one level per preference), then as _Spread.

    Nodes missing a label share one group of that level.
    """

    def __init__(self, service_id: str, infos: Sequence[NodeInfo], labels: Sequence[str]):
        self.root = _Branch(service_id, infos, labels)
        self.path: list[_Branch] = []

    def peek(self) -> NodeInfo | None:
        branch, self.path = self.root, [self.root]
        while branch.leaf is None:
            if not branch.children:
                return None
            branch = branch.children[0][2]
            self.path.append(branch)
        return branch.leaf.peek()

    def _update(self, placed: bool) -> None:
        leaf = self.path[-1].leaf
        assert leaf is not None
        if placed:
            leaf.placed()
        else:
            leaf.reject()
        for depth in range(len(self.path) - 1, 0, -1):
            child, parent = self.path[depth], self.path[depth - 1]
            child.count += int(placed)
            child.rekey()
            _, order, _ = parent.children[0]
            if child.empty():
                heapq.heappop(parent.children)
            else:
                heapq.heapreplace(parent.children, (child.key, order, child))
        self.root.rekey()

    def placed(self) -> None:
        self._update(True)

    def reject(self) -> None:
        self._update(False)


class _Planner:
    def __init__(
        self, nodes: Sequence[Node], assigned: Sequence[Task], volumes: Sequence[Volume]
    ) -> None:
        self.infos = build_node_infos(nodes, assigned)
        self.ordered = list(self.infos.values())
        self.volumes: Mapping[str, Volume] = {v.name: v for v in volumes}
        self.claims: dict[str, str] = {}  # volume living nowhere yet -> node placed with
        self.pipelines: dict[GroupKey, Pipeline | str] = {}
        self.placements: list[Placement] = []
        self.unplaced: list[Unplaced] = []

    def pipeline(self, task: Task) -> Pipeline | str:
        """The task's pipeline, or the reason its spec cannot be scheduled at all."""
        key = (task.service_id, task.spec_version)
        found = self.pipelines.get(key)
        if found is None:
            try:
                found = Pipeline.for_task(task, self.infos, self.volumes, self.claims)
                parse_preferences(task.spec.placement.preferences)
            except SpecError as err:
                found = str(err)
            self.pipelines[key] = found
        return found

    def place(self, task: Task, info: NodeInfo) -> None:
        info.add(task)
        self.placements.append(Placement(task.id, info.id))
        if task.spec.mode == "global":
            return  # each node's task has its own copy of the volume: it claims none
        for _, volume in mounted_volumes(task, self.volumes):
            if not volume.node_id:
                self.claims.setdefault(volume.name, info.id)

    def pinned(self, task: Task) -> None:
        pipe = self.pipeline(task)
        info = self.infos.get(task.node_id)
        if isinstance(pipe, str):
            self.unplaced.append(Unplaced(task.id, pipe))
        elif info is None:
            reason = f"{NO_SUITABLE_NODE}: node {task.node_id} is not in the cluster"
            self.unplaced.append(Unplaced(task.id, reason))
        elif pipe.check(task, info):
            self.place(task, info)
        else:
            self.unplaced.append(Unplaced(task.id, pipe.explain(task, [info])))

    def group(self, tasks: Sequence[Task]) -> None:
        first = tasks[0]
        pipe = self.pipeline(first)
        if isinstance(pipe, str):
            self.unplaced.extend(Unplaced(t.id, pipe) for t in tasks)
            return
        candidates = [i for i in self.ordered if pipe.check_static(first, i)]
        labels = parse_preferences(first.spec.placement.preferences)
        spread: _Spread | _PreferenceSpread = (
            _PreferenceSpread(first.service_id, candidates, labels)
            if labels
            else _Spread(first.service_id, candidates)
        )
        dynamic = pipe.dynamic
        for index, task in enumerate(tasks):
            info = spread.peek()
            while info is not None and not all(f.check(task, info) for f in dynamic):
                spread.reject()
                info = spread.peek()
            if info is None:
                reason = pipe.explain(task, self.ordered)
                self.unplaced.extend(Unplaced(t.id, reason) for t in tasks[index:])
                return
            self.place(task, info)
            spread.placed()


def schedule(
    pending: Sequence[Task],
    nodes: Sequence[Node],
    assigned: Sequence[Task],
    volumes: Sequence[Volume] = (),
) -> SchedulePlan:
    """Decide a node for each pending task, or say why none fits.

    ``pending``: tasks without a node (or pinned to one) that should run. ``assigned``:
    every task holding a node and not terminal; they count for resources, spread,
    max_replicas_per_node and host ports, as do placements made earlier in this call.
    The same inputs always give the same plan.
    """
    planner = _Planner(nodes, assigned, volumes)
    groups: dict[GroupKey, list[Task]] = {}
    pinned: list[Task] = []
    for task in pending:
        if task.node_id:
            pinned.append(task)
        else:
            groups.setdefault((task.service_id, task.spec_version), []).append(task)
    for task in sorted(pinned, key=lambda t: (t.service_id, t.spec_version, t.node_id, t.id)):
        planner.pinned(task)
    for key in sorted(groups):
        planner.group(sorted(groups[key], key=lambda t: (t.slot, t.id)))
    placements, unplaced = tuple(planner.placements), tuple(planner.unplaced)
    return SchedulePlan(placements, unplaced, decision(placements, unplaced))

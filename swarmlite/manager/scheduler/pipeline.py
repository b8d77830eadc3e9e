"""A service's filters in order, and the one-line reason when no node passes them."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from swarmlite.manager.scheduler.filters import (
    AvailabilityFilter,
    ConstraintFilter,
    EngineFilter,
    Filter,
    HostPortFilter,
    MaxReplicasFilter,
    NewVolumeFilter,
    ReadyNodeFilter,
    ResourceFilter,
    VolumeAffinityFilter,
)
from swarmlite.manager.scheduler.nodeinfo import NodeInfo, task_host_ports
from swarmlite.spec.constraints import parse_constraints
from swarmlite.spec.objects import Task, Volume

NO_SUITABLE_NODE = "no suitable node"


def mounted_volumes(task: Task, volumes: Mapping[str, Volume]) -> list[tuple[str, Volume]]:
    """(mount source, volume) for every named volume ``task`` mounts that the cluster knows.

    ``volumes`` is keyed by full name; a mount names a stack volume ("data" in stack
    "shop" is "shop_data") or, for an external volume, the volume's own name (known to
    the cluster when it is another stack's volume).
    """
    found: list[tuple[str, Volume]] = []
    for mount in task.spec.mounts:
        volume = volumes.get(mount.volume_name(task.spec.stack) or "")
        if volume is not None:
            found.append((mount.source, volume))
    return found


def volume_homes(task: Task, volumes: Mapping[str, Volume]) -> list[tuple[str, str]]:
    """(mount source, node id) for every named volume of ``task`` already living on a node."""
    return [(source, v.node_id) for source, v in mounted_volumes(task, volumes) if v.node_id]


def build_filters(
    task: Task,
    infos: Mapping[str, NodeInfo],
    volumes: Mapping[str, Volume],
    claims: Mapping[str, str] | None = None,
) -> list[Filter]:
    """Every filter for ``task``'s spec, in pipeline order (raises SpecError).

    ``claims``: volume full name -> node id for the volumes not living anywhere yet
    that tasks placed earlier in this scheduling pass mount (the planner fills it).
    """
    placement = task.spec.placement
    filters: list[Filter] = [ReadyNodeFilter(), EngineFilter(), AvailabilityFilter()]
    filters.extend(ConstraintFilter(c) for c in parse_constraints(placement.constraints))
    filters.extend((ResourceFilter("cpu"), ResourceFilter("memory")))
    filters.append(MaxReplicasFilter(placement.max_replicas_per_node or 0))
    filters.extend(HostPortFilter(p) for p in dict.fromkeys(task_host_ports(task)))
    mounted = mounted_volumes(task, volumes)
    filters.extend(VolumeAffinityFilter(s, v.node_id, infos) for s, v in mounted if v.node_id)
    claimed = claims if claims is not None else {}
    filters.extend(NewVolumeFilter(s, v.name, claimed) for s, v in mounted if not v.node_id)
    return filters


class Pipeline:
    """The enabled filters for one service spec."""

    def __init__(self, task: Task, filters: Iterable[Filter]) -> None:
        self.filters = tuple(f for f in filters if f.enabled(task))
        self.static = tuple(f for f in self.filters if f.static)
        self.dynamic = tuple(f for f in self.filters if not f.static)

    @classmethod
    def for_task(
        cls,
        task: Task,
        infos: Mapping[str, NodeInfo],
        volumes: Mapping[str, Volume],
        claims: Mapping[str, str] | None = None,
    ) -> Pipeline:
        return cls(task, build_filters(task, infos, volumes, claims))

    def check(self, task: Task, info: NodeInfo) -> bool:
        return all(f.check(task, info) for f in self.filters)

    def check_static(self, task: Task, info: NodeInfo) -> bool:
        return all(f.check(task, info) for f in self.static)

    def check_dynamic(self, task: Task, info: NodeInfo) -> bool:
        return all(f.check(task, info) for f in self.dynamic)

    def failure_counts(self, task: Task, infos: Iterable[NodeInfo]) -> list[int]:
        """For each filter, how many nodes it was the first to eliminate."""
        counts = [0] * len(self.filters)
        for info in infos:
            for i, f in enumerate(self.filters):
                if not f.check(task, info):
                    counts[i] += 1
                    break
        return counts

    def explain(self, task: Task, infos: Sequence[NodeInfo]) -> str:
        """``no suitable node: constraint ... fails on 3 nodes, insufficient memory on 1 node``."""
        if not infos:
            return f"{NO_SUITABLE_NODE}: no nodes in the cluster"
        counts = self.failure_counts(task, infos)
        parts = [f.explain(n) for f, n in zip(self.filters, counts, strict=True) if n]
        if not parts:
            return NO_SUITABLE_NODE
        return f"{NO_SUITABLE_NODE}: " + ", ".join(parts)

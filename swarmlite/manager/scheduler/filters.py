"""The scheduler's filters: each says whether a node can take a task, and why not.

Every filter has ``name``, ``enabled(task)``, ``check(task, info)`` and
``explain(count_failed)``; the pipeline keeps the enabled ones in order, counts for
each how many nodes it eliminated, and joins their explanations into the reason a
task stays pending. Filters that take parameters (one constraint, one host port, one
volume) are built per service by ``pipeline.build_filters``.

``static`` filters depend only on the node and the spec, so the planner evaluates them
once per service; the others depend on what is already placed and are re-checked each
time a node is picked. Within one service they only ever go from pass to fail.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal, Protocol

from swarmlite.manager.scheduler.nodeinfo import HostPort, NodeInfo, task_memory, task_nano_cpus
from swarmlite.spec.constraints import Constraint
from swarmlite.spec.objects import Task


def nodes(count: int) -> str:
    return f"{count} node" if count == 1 else f"{count} nodes"


class Filter(Protocol):
    name: str
    static: bool

    def enabled(self, task: Task) -> bool: ...

    def check(self, task: Task, info: NodeInfo) -> bool: ...

    def explain(self, count_failed: int) -> str: ...


class ReadyNodeFilter:
    name = "ready"
    static = True

    def enabled(self, task: Task) -> bool:
        return True

    def check(self, task: Task, info: NodeInfo) -> bool:
        return info.ready

    def explain(self, count_failed: int) -> str:
        return f"{nodes(count_failed)} not ready"


class EngineFilter:
    """A node whose agent reports its Docker engine unresponsive takes no new task:
    it could not start it, and the engine may never answer for it."""

    name = "engine"
    static = True

    def enabled(self, task: Task) -> bool:
        return True

    def check(self, task: Task, info: NodeInfo) -> bool:
        return not info.node.status.engine

    def explain(self, count_failed: int) -> str:
        return f"{nodes(count_failed)} with an unresponsive docker engine"


class AvailabilityFilter:
    name = "availability"
    static = True

    def enabled(self, task: Task) -> bool:
        return True

    def check(self, task: Task, info: NodeInfo) -> bool:
        return info.node.availability == "active"

    def explain(self, count_failed: int) -> str:
        return f"{nodes(count_failed)} paused or drained"


class ConstraintFilter:
    """One placement constraint; a service gets one filter per constraint, in order."""

    name = "constraint"
    static = True

    def __init__(self, constraint: Constraint) -> None:
        self.constraint = constraint

    def enabled(self, task: Task) -> bool:
        return True

    def check(self, task: Task, info: NodeInfo) -> bool:
        return self.constraint.matches(info.node)

    def explain(self, count_failed: int) -> str:
        return f"constraint {self.constraint.text} fails on {nodes(count_failed)}"


class ResourceFilter:
    """Reserved CPU or memory against what the node has left."""

    name = "resources"
    static = False

    def __init__(self, kind: Literal["cpu", "memory"]) -> None:
        self.kind = kind

    def _wanted(self, task: Task) -> int:
        return task_nano_cpus(task) if self.kind == "cpu" else task_memory(task)

    def enabled(self, task: Task) -> bool:
        return self._wanted(task) > 0

    def check(self, task: Task, info: NodeInfo) -> bool:
        free = info.free_nano_cpus if self.kind == "cpu" else info.free_memory
        return self._wanted(task) <= free

    def explain(self, count_failed: int) -> str:
        return f"insufficient {self.kind} on {nodes(count_failed)}"


class MaxReplicasFilter:
    name = "max_replicas_per_node"
    static = False

    def __init__(self, limit: int) -> None:
        self.limit = limit

    def enabled(self, task: Task) -> bool:
        return self.limit > 0

    def check(self, task: Task, info: NodeInfo) -> bool:
        return info.by_service.get(task.service_id, 0) < self.limit

    def explain(self, count_failed: int) -> str:
        return f"max_replicas_per_node {self.limit} reached on {nodes(count_failed)}"


class HostPortFilter:
    """One port published in host mode; the node must not have it in use already."""

    name = "host_port"
    static = False

    def __init__(self, port: HostPort) -> None:
        self.port = port

    def enabled(self, task: Task) -> bool:
        return True

    def check(self, task: Task, info: NodeInfo) -> bool:
        return self.port not in info.host_ports

    def explain(self, count_failed: int) -> str:
        port, proto = self.port
        return f"host port {port}/{proto} in use on {nodes(count_failed)}"


class VolumeAffinityFilter:
    """A node-local volume that already exists pins the task to the volume's node.

    Not for a global service: each of its tasks uses its own node's copy of the volume,
    as with Swarm's local driver."""

    name = "volume"
    static = True

    def __init__(self, volume: str, node_id: str, infos: Mapping[str, NodeInfo]) -> None:
        self.volume = volume  # the name the service mounts it by
        self.node_id = node_id
        home = infos.get(node_id)
        self.home_ready = home is not None and home.ready

    def enabled(self, task: Task) -> bool:
        return task.spec.mode != "global"

    def check(self, task: Task, info: NodeInfo) -> bool:
        return info.id == self.node_id

    def explain(self, count_failed: int) -> str:
        if not self.home_ready:
            return f"volume {self.volume} lives on node {self.node_id}, which is down"
        return f"volume {self.volume} lives on another node"


class NewVolumeFilter:
    """A node-local volume not created yet goes where the first task mounting it in this
    scheduling pass went: later tasks mounting it are held to that node too.

    ``claims`` (volume full name -> node id) is the planner's, filled as it places, so
    the filter turns from pass to fail on every other node once the volume is claimed.
    Not for a global service (see ``VolumeAffinityFilter``).
    """

    name = "new_volume"
    static = False

    def __init__(self, volume: str, full_name: str, claims: Mapping[str, str]) -> None:
        self.volume = volume  # the name the service mounts it by
        self.full_name = full_name
        self.claims = claims

    def enabled(self, task: Task) -> bool:
        return task.spec.mode != "global"

    def check(self, task: Task, info: NodeInfo) -> bool:
        home = self.claims.get(self.full_name)
        return home is None or home == info.id

    def explain(self, count_failed: int) -> str:
        home = self.claims.get(self.full_name, "?")
        return f"volume {self.volume} will live on node {home}, where a task mounting it went"

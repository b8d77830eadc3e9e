"""What the scheduler knows about one node while it plans: the node plus what is on it.

A ``NodeInfo`` is mutable on purpose: every placement made during one ``schedule`` call
is added to it, so later tasks in the same call see the reservations, the per-service
counts and the host ports of earlier ones. It never leaves the scheduler.
"""

from __future__ import annotations

from collections.abc import Iterable

from swarmlite.spec.objects import Node, Task, TaskState

NANO = 1_000_000_000

HostPort = tuple[int, str]  # (published port, protocol)


def nano_cpus(cpus: float | None) -> int:
    """CPUs as integer nano-cores, so sums and comparisons are exact."""
    return round((cpus or 0.0) * NANO)


def task_nano_cpus(task: Task) -> int:
    return nano_cpus(task.spec.resources.reservations.cpus)


def task_memory(task: Task) -> int:
    return task.spec.resources.reservations.memory or 0


def task_host_ports(task: Task) -> tuple[HostPort, ...]:
    """The ports a task publishes directly on its node (``mode: host``)."""
    return tuple(
        (p.published, p.protocol)
        for p in task.spec.ports
        if p.mode == "host" and p.published is not None
    )


class NodeInfo:
    """A node and the tasks the scheduler accounts on it: running, about to run, or
    still stopping."""

    __slots__ = (
        "by_service",
        "free_memory",
        "free_nano_cpus",
        "host_ports",
        "id",
        "node",
        "ready",
        "total_tasks",
    )

    def __init__(self, node: Node) -> None:
        self.node = node
        self.id = node.id
        self.ready = node.status.state == "ready"
        self.free_nano_cpus = nano_cpus(node.resources.cpus)
        self.free_memory = node.resources.memory
        self.total_tasks = 0
        self.by_service: dict[str, int] = {}
        self.host_ports: set[HostPort] = set()

    def add(self, task: Task) -> None:
        """Account ``task`` as running here. A task still stopping (desired past
        running) holds its reservations and host ports until it has stopped, as in
        Swarm, but no longer counts for spread or max_replicas_per_node."""
        if task.desired_state <= TaskState.RUNNING:
            self.total_tasks += 1
            self.by_service[task.service_id] = self.by_service.get(task.service_id, 0) + 1
        self.free_nano_cpus -= task_nano_cpus(task)
        self.free_memory -= task_memory(task)
        self.host_ports.update(task_host_ports(task))

    def service_tasks(self, service_id: str) -> int:
        return self.by_service.get(service_id, 0)

    def __repr__(self) -> str:
        return f"NodeInfo({self.id!r}, tasks={self.total_tasks})"


def holds_node(task: Task) -> bool:
    """``task`` holds resources on its node: placed there and not stopped yet, whatever
    its desired state (a task being shut down still runs until the agent says so)."""
    return bool(task.node_id) and TaskState.ASSIGNED <= task.status.state <= TaskState.RUNNING


def build_node_infos(nodes: Iterable[Node], assigned: Iterable[Task]) -> dict[str, NodeInfo]:
    """Node id -> info, with every assigned task accounted; tasks on unknown nodes skipped."""
    infos = {n.id: NodeInfo(n) for n in nodes}
    for task in assigned:
        info = infos.get(task.node_id)
        if info is not None:
            info.add(task)
    return infos

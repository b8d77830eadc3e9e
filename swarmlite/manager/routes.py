"""Derive the mesh's routing snapshot from the cluster state. Pure."""

from __future__ import annotations

from swarmlite.spec.objects import TaskState
from swarmlite.spec.routes import Backend, RoutesSnapshot, ServiceRoute
from swarmlite.store.cache import ClusterState


def build_routes(state: ClusterState) -> RoutesSnapshot:
    backends: dict[str, list[Backend]] = {}
    unrouted: dict[str, list[Backend]] = {}
    for vt in state.tasks.values():
        task = vt.value
        status = task.status
        # A down or removed node's tasks keep their last reported status (no agent will
        # change it) and may not be replaced (restart policy spent, update halted).
        if state.on_lost_node(task):
            continue
        if task.routable and (status.addresses or status.remote_ports):
            backends.setdefault(task.service_id, []).append(
                Backend(
                    task_id=task.id,
                    node_id=task.node_id,
                    addresses=status.addresses,
                    remote_ports=status.remote_ports,
                )
            )
        elif status.addresses and status.state <= TaskState.RUNNING:
            # Starting (say, until its healthcheck passes) or stopping: it may ask names.
            unrouted.setdefault(task.service_id, []).append(
                Backend(task_id=task.id, node_id=task.node_id, addresses=status.addresses)
            )
    routes = []
    for vs in sorted(state.services.values(), key=lambda v: v.value.name):
        service = vs.value
        spec = service.spec
        routes.append(
            ServiceRoute(
                service_id=service.id,
                name=service.name,
                short_name=spec.name,
                stack=spec.stack,
                networks=tuple(f"{spec.stack}_{n}" for n in spec.networks),
                endpoints=service.endpoints,
                ports=tuple(p for p in service.published_ports() if p.published is not None),
                listen_ports=spec.listen_ports(),
                backends=tuple(sorted(backends.get(service.id, ()), key=lambda b: b.task_id)),
                unrouted=tuple(sorted(unrouted.get(service.id, ()), key=lambda b: b.task_id)),
            )
        )
    networks = tuple(sorted((v.value for v in state.networks.values()), key=lambda n: n.name))
    return RoutesSnapshot(revision=state.revision, services=tuple(routes), networks=networks)

"""``depends_on`` across the cluster: may a service's new tasks start yet? Pure.

    blocked(spec, state)       # "waiting for db: service_healthy (0/1 healthy)" or None
    removal_order(services)    # stack rm: dependents first, in layers

Conditions, judged on the tasks of the dependency (stack-local name ``db`` is the
service ``<stack>_db``), from their observed state:

* ``service_started``: at least one task RUNNING. A dependency scaled to 0 replicas
  counts as started (nothing will ever run).
* ``service_healthy``: every desired replica RUNNING. An agent reports RUNNING only
  once the healthcheck passed, so RUNNING is healthy; a dependency *without* a
  healthcheck counts as healthy as soon as it runs. (Note that a dependency with a
  healthcheck is reported STARTING until healthy, so ``service_started`` waits for its
  first healthy task too.)
* ``service_completed_successfully``: every desired replica has a task that ended
  COMPLETE with exit code 0 (a job-like service with ``restart_policy: none`` or
  ``on-failure``).

For ``service_started`` and ``service_healthy``, a task on a node that is down or
removed does not count (nor, in a global service, is it a desired one): its RUNNING
is the last word of an agent that no longer reports.

A missing dependency blocks when ``required`` (the default) and is ignored when
``required: false``. Every pending task is gated, not only the first ones: a task that
replaces a crashed one also waits while its dependency is down.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

from swarmlite.spec.objects import Service, Task, TaskState
from swarmlite.spec.service import Dependency, ServiceSpec
from swarmlite.store.cache import ClusterState


def blocked(spec: ServiceSpec, state: ClusterState) -> str | None:
    """Why tasks of ``spec`` must wait, in one line; None when every dependency holds."""
    if not spec.depends_on:
        return None
    by_name = {v.value.name: v.value for v in state.services.values()}
    waits = []
    for dep in spec.depends_on:
        found = by_name.get(f"{spec.stack}_{dep.service}")
        if found is None:
            if dep.required:
                waits.append(f"waiting for {dep.service}: service not deployed")
            continue
        why = unmet(dep, found, state.tasks_of(found.id), state.on_lost_node)
        if why is not None:
            waits.append(f"waiting for {dep.service}: {why}")
    return "; ".join(waits) or None


def unmet(
    dep: Dependency,
    service: Service,
    tasks: Sequence[Task],
    on_lost_node: Callable[[Task], bool],
) -> str | None:
    """What is missing for ``dep`` to hold on ``service``, or None when it holds."""
    live = [t for t in tasks if t.desired_state == TaskState.RUNNING and not on_lost_node(t)]
    running = sum(1 for t in live if t.status.state == TaskState.RUNNING)
    desired = len(live) if service.spec.mode == "global" else service.spec.replicas
    if dep.condition == "service_started":
        if desired == 0 or running >= 1:
            return None
        return f"service_started (0/{desired} running)"
    if dep.condition == "service_healthy":
        if running >= desired:
            return None
        return f"service_healthy ({running}/{desired} healthy)"
    return _completed(service, tasks, desired)


def _completed(service: Service, tasks: Sequence[Task], desired: int) -> str | None:
    done_slots = {
        (t.slot, t.node_id if not t.slot else "")
        for t in tasks
        if t.status.state == TaskState.COMPLETE and t.status.exit_code in (0, None)
    }
    still_live = any(
        t.desired_state == TaskState.RUNNING and not t.status.state.terminal for t in tasks
    )
    if desired == 0 or (len(done_slots) >= max(desired, 1) and not still_live):
        return None
    why = f"service_completed_successfully ({len(done_slots)}/{desired} completed)"
    failed = [t for t in tasks if t.status.state in (TaskState.FAILED, TaskState.REJECTED)]
    if failed and not still_live:
        last = max(failed, key=lambda t: t.status.timestamp)
        why += f", {last.name} failed: {last.status.err or last.status.state.label}"
    return why


def removal_order(services: Iterable[ServiceSpec]) -> list[list[ServiceSpec]]:
    """Layers of one stack's services for ``stack rm``: each layer only has services
    that no service of a later layer depends on (dependents go first).

    Cycles cannot be deployed; should one be found anyway, its services share the
    last layer rather than hanging the removal.
    """
    left = {s.name: s for s in services}
    layers: list[list[ServiceSpec]] = []
    while left:
        needed = {d.service for s in left.values() for d in s.depends_on if d.service in left}
        layer = [s for name, s in left.items() if name not in needed]
        if not layer:  # a cycle: nothing is free
            layer = list(left.values())
        layer.sort(key=lambda s: s.name)
        layers.append(layer)
        for s in layer:
            del left[s.name]
    return layers

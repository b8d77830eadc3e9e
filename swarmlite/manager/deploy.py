"""Turn a deployed StackSpec into one atomic batch of store writes. Pure.

Same spec → unchanged (no write at all); changed spec → version bump with the previous
spec kept for rollback; missing services stay unless ``prune``. Networks and volumes
the stack names are created on first use. The stack's secrets and configs are
stored (sealed) when new or changed, and each service's references carry their
content digests (``payloads.py``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import msgspec

from swarmlite.api.models import DeployResult
from swarmlite.errors import SpecError
from swarmlite.manager.allocator import allocate_subnet, allocate_vip
from swarmlite.manager.payloads import bind_digests, plan_payloads
from swarmlite.manager.ports import assign_ports, check_published_ports, ports_in_use
from swarmlite.manager.reconcile import new_id
from swarmlite.security.keeper import SecretKeeper
from swarmlite.spec.constraints import parse_constraints, parse_preferences
from swarmlite.spec.objects import Network, Service, UpdateStatus, Volume
from swarmlite.spec.service import SERVICE_NAME, STACK_NAME, ServiceSpec, StackSpec
from swarmlite.store.cache import ClusterState
from swarmlite.store.store import Delete, Put


@dataclass
class DeployPlan:
    ops: list[Put | Delete] = field(default_factory=list)
    result: DeployResult = field(default_factory=lambda: DeployResult(stack=""))


def plan_deploy(
    stack: StackSpec,
    state: ClusterState,
    *,
    prune: bool,
    now: float,
    keeper: SecretKeeper | None = None,
) -> DeployPlan:
    """``keeper`` seals the stack's secrets; a stack with none needs no keeper."""
    _check(stack)
    kept = {s.name for s in stack.services}
    check_published_ports(
        stack.services,
        (
            v.value
            for v in state.services.values()
            if v.value.spec.stack != stack.name or (v.value.spec.name not in kept and not prune)
        ),
    )
    plan = DeployPlan()
    cluster = state.cluster_entry
    pool = cluster.value.address_pool if cluster else "10.213.0.0/16"
    last_subnet = cluster.value.last_subnet if cluster else ""
    networks = {v.value.name: v.value for v in state.networks.values()}
    for net in stack.networks:
        full = f"{stack.name}_{net.name}"
        if full not in networks:
            subnet, gateway = allocate_subnet(pool, networks.values(), after=last_subnet)
            last_subnet = subnet
            networks[full] = Network(
                id=new_id(),
                name=full,
                stack=stack.name,
                subnet=subnet,
                gateway=gateway,
                labels=net.labels,
                internal=net.internal,
            )
            plan.ops.append(Put(networks[full], 0))
    volumes = {v.value.name for v in state.volumes.values()}
    for vol in stack.volumes:
        full = vol.external_name or f"{stack.name}_{vol.name}"
        if full not in volumes and not vol.external:
            plan.ops.append(
                Put(
                    Volume(
                        id=new_id(),
                        name=full,
                        stack=stack.name,
                        driver=vol.driver,
                        driver_opts=vol.driver_opts,
                        labels=vol.labels,
                    ),
                    0,
                )
            )

    payload_ops, digests = plan_payloads(
        stack.secrets, stack.configs, state, keeper, stack=stack.name, now=now
    )
    plan.ops.extend(payload_ops)

    existing = {
        v.value.spec.name: v for v in state.services.values() if v.value.spec.stack == stack.name
    }
    others = [v.value for v in state.services.values()]
    # Chosen port numbers must miss every other service's and every number this file names.
    used = ports_in_use(
        (s for s in others if s.spec.stack != stack.name or s.spec.name not in kept),
        stack.services,
    )
    created, updated, unchanged = [], [], []
    for spec in stack.services:
        spec = bind_digests(spec, digests)
        old = existing.get(spec.name)
        if old is not None:  # a compose file does not say it; keep 'service update --force''s
            spec = msgspec.structs.replace(spec, force_update=old.value.spec.force_update)
        endpoints = _endpoints(spec, old.value if old else None, networks, others)
        assigned = assign_ports(spec, old.value if old else None, used)
        if old is None:
            service = Service(
                id=new_id(),
                spec=spec,
                created_at=now,
                updated_at=now,
                endpoints=endpoints,
                assigned_ports=assigned,
            )
            plan.ops.append(Put(service, 0))
            others.append(service)
            created.append(spec.full_name)
        elif old.value.spec == spec and old.value.assigned_ports == assigned:
            unchanged.append(spec.full_name)
        else:
            service = msgspec.structs.replace(
                old.value,
                spec=spec,
                version=old.value.version + 1,
                previous_spec=old.value.spec,
                updated_at=now,
                endpoints=endpoints,
                assigned_ports=assigned,
                update_status=UpdateStatus(
                    state="updating", message="update in progress", started_at=now
                )
                if spec.task_hash() != old.value.spec.task_hash()
                else old.value.update_status,
            )
            plan.ops.append(Put(service, old.revision))
            others.append(service)  # its new endpoints' VIPs are taken for the next ones
            updated.append(spec.full_name)
    removed = []
    if prune:
        wanted = {s.name for s in stack.services}
        for name, old in existing.items():
            if name not in wanted:
                plan.ops.append(Delete(Service, old.value.id, old.revision))
                removed.append(old.value.name)
    if plan.ops and cluster is not None:
        # Every deploy that writes also compare-and-swaps the cluster object, so two
        # concurrent deploys cannot both create a service, share a subnet or a VIP, or
        # publish one port twice: the second one conflicts, re-plans and sees the first.
        plan.ops.append(
            Put(msgspec.structs.replace(cluster.value, last_subnet=last_subnet), cluster.revision)
        )
    plan.result = DeployResult(
        stack=stack.name,
        created=tuple(created),
        updated=tuple(updated),
        unchanged=tuple(unchanged),
        removed=tuple(removed),
        warnings=stack.warnings,
    )
    return plan


def _check(stack: StackSpec) -> None:
    """What the compose loader already refused, checked again for other API clients."""
    if not STACK_NAME.fullmatch(stack.name):
        raise SpecError(
            f"invalid stack name {stack.name!r}: use lowercase letters, digits, '_' and '-'"
        )
    nets = {n.name for n in stack.networks}
    seen: set[str] = set()
    for spec in stack.services:
        if not SERVICE_NAME.fullmatch(spec.name):
            raise SpecError(
                f"invalid service name {spec.name!r}: use letters, digits, '_', '.' and '-', "
                "starting with a letter or digit"
            )
        if spec.name in seen:
            raise SpecError(f"service {spec.name} is defined twice in stack {stack.name}")
        seen.add(spec.name)
        if spec.stack != stack.name:
            raise SpecError(f"service {spec.name} belongs to stack {spec.stack}, not {stack.name}")
        for net in spec.networks:
            if net not in nets:
                raise SpecError(
                    f"service {spec.name} uses network {net}, which the stack does not define"
                )
        if spec.replicas < 0:
            raise SpecError(f"service {spec.name}: replicas must be 0 or more")
        try:  # the compose loader checks these too; an API client may not have used it
            parse_constraints(spec.placement.constraints)
            parse_preferences(spec.placement.preferences)
        except SpecError as exc:
            raise SpecError(f"service {spec.name}: {exc}") from None


def _endpoints(
    spec: ServiceSpec,
    old: Service | None,
    networks: dict[str, Network],
    services: list[Service],
) -> dict[str, str]:
    out: dict[str, str] = {}
    for net in spec.networks:
        full = f"{spec.stack}_{net}"
        if old is not None and full in old.endpoints:
            out[full] = old.endpoints[full]
        else:
            out[full] = allocate_vip(networks[full], services)
    return out

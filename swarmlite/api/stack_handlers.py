"""Stack handlers: deploy a StackSpec, list stacks, remove a stack in dependency order."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping

import msgspec
from aiohttp import web

from swarmlite.api.context import ApiContext, _ctx, _fresh, _json, commit_fresh
from swarmlite.api.models import RemoveResult, StackSummary
from swarmlite.errors import ConflictError, NotFoundError, SpecError
from swarmlite.manager.dependencies import removal_order
from swarmlite.manager.deploy import plan_deploy
from swarmlite.manager.payloads import Kind, users_of
from swarmlite.spec.objects import Config, Network, Secret, Service
from swarmlite.spec.service import StackSpec
from swarmlite.store.cache import ClusterState
from swarmlite.store.store import Delete, Put, Versioned

log = logging.getLogger("swarmlite.api")


async def deploy(request: web.Request) -> web.Response:
    ctx = _ctx(request)
    stack = msgspec.json.decode(await request.read(), type=StackSpec)
    if stack.name != request.match_info["stack"]:
        raise SpecError("stack name in the path and the body differ")
    prune = request.query.get("prune") in ("1", "true", "yes")
    async with ctx.deploy_lock:
        return await _deploy(ctx, stack, prune)


async def _deploy(ctx: ApiContext, stack: StackSpec, prune: bool) -> web.Response:
    for _ in range(10):
        plan = plan_deploy(stack, ctx.cache.view(), prune=prune, now=time.time(), keeper=ctx.keeper)
        if not plan.ops:
            return _json(plan.result)
        try:
            revision = await ctx.store.commit(plan.ops)
        except ConflictError:
            await ctx.cache.wait_changed(ctx.cache.version, timeout=0.5)
            continue
        await _fresh(ctx, revision)
        log.info(
            "stack=%s deployed created=%s updated=%s removed=%s",
            stack.name,
            ",".join(plan.result.created),
            ",".join(plan.result.updated),
            ",".join(plan.result.removed),
        )
        return _json(plan.result)
    raise ConflictError("the cluster changed during the deploy; try again")


async def stacks(request: web.Request) -> web.Response:
    counts: dict[str, int] = {}
    for v in _ctx(request).cache.view().services.values():
        counts[v.value.spec.stack] = counts.get(v.value.spec.stack, 0) + 1
    return _json([StackSummary(name=k, services=n) for k, n in sorted(counts.items())])


async def remove_stack(request: web.Request) -> web.Response:
    """Dependents first: each layer of ``removal_order`` is deleted, and its tasks given
    until their stop_grace_period + 5 s to stop, before what they depend on goes.

    The stack's secrets and configs go with its last layer, except one that a service
    of another stack still uses (as external): as ``docker stack rm``, that one is kept
    and reported in ``errors``, and the rest is removed."""
    ctx = _ctx(request)
    name = request.match_info["stack"]
    state = ctx.cache.view()
    doomed = [v for v in state.services.values() if v.value.spec.stack == name]
    if not doomed and not any(v.value.stack == name for v in state.networks.values()):
        raise NotFoundError(f"stack {name} not found (see 'swarmlite stack ls')")
    layers = removal_order(v.value.spec for v in doomed) or [[]]  # [[]]: networks only
    errors: list[str] = []
    for i, layer in enumerate(layers):
        last = i == len(layers) - 1
        ids, errors = await _remove_services(ctx, name, {s.name for s in layer}, networks=last)
        if not last:
            grace = max(s.stop_grace_period for s in layer) + 5.0
            await _wait_tasks_stopped(ctx, ids, grace)
            log.info("stack=%s removed %s", name, ",".join(s.full_name for s in layer))
    for error in errors:
        log.warning("stack=%s removal: %s", name, error)
    return _json(
        RemoveResult(removed=tuple(sorted(v.value.name for v in doomed)), errors=tuple(errors))
    )


def _stack_files(
    state: ClusterState, stack: str, going: set[str]
) -> tuple[list[Delete], list[str]]:
    """Deletes of the stack's secrets and configs that no service but those ``going``
    (ids) uses, and why each other one is kept."""
    ops: list[Delete] = []
    kept: list[str] = []
    kinds: tuple[tuple[Kind, Mapping[str, Versioned[Secret] | Versioned[Config]]], ...] = (
        ("secret", state.secrets),
        ("config", state.configs),
    )
    for kind, items in kinds:
        for v in sorted(items.values(), key=lambda v: v.value.name):
            if v.value.stack != stack:
                continue
            users = [
                u.value.name for u in users_of(state, kind, v.value.name) if u.value.id not in going
            ]
            if users:
                kept.append(f"{kind} {v.value.name}: in use by service {', '.join(users)}")
            else:
                ops.append(Delete(type(v.value), v.value.id, v.revision))
    return ops, kept


async def _remove_services(
    ctx: ApiContext, stack: str, names: set[str], *, networks: bool
) -> tuple[set[str], list[str]]:
    """Delete the stack's services named (stack-local), and if asked its networks and
    the secrets and configs no other service uses; the ids of the services deleted, and
    why any secret or config was kept."""
    for _ in range(5):
        seen = ctx.cache.version
        state = ctx.cache.view()
        found = [
            v
            for v in state.services.values()
            if v.value.spec.stack == stack and v.value.spec.name in names
        ]
        ops: list[Put | Delete] = [Delete(Service, v.value.id, v.revision) for v in found]
        kept: list[str] = []
        if networks:
            ops += [
                Delete(Network, v.value.id, v.revision)
                for v in state.networks.values()
                if v.value.stack == stack
            ]
            # The stack's own secrets and configs go with it, as in Swarm, unless a
            # service of another stack uses one.
            files, kept = _stack_files(state, stack, {v.value.id for v in found})
            ops += files
            cluster = state.cluster_entry
            if files and cluster is not None:
                # A deploy compare-and-swaps the cluster object; so does this, so a
                # deploy that starts using one of these names meanwhile (through another
                # manager, or one this cache has not seen yet) makes this re-read: never
                # a service whose secret is gone (as secret rm).
                ops.append(Put(cluster.value, cluster.revision))
        if not ops:
            return set(), kept
        if not await commit_fresh(ctx, ops, seen):
            continue
        return {v.value.id for v in found}, kept
    raise ConflictError(f"stack {stack} kept changing during its removal; try again")


async def _wait_tasks_stopped(ctx: ApiContext, service_ids: set[str], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        seen = ctx.cache.version
        live = [
            v
            for v in ctx.cache.view().tasks.values()
            if v.value.service_id in service_ids and not v.value.status.state.terminal
        ]
        if not live:
            return
        await ctx.cache.wait_changed(seen, timeout=min(1.0, max(0.0, deadline - time.monotonic())))

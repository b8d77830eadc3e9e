"""HTTP handlers for secrets and configs: create, list, inspect, update, remove.

Registered on managers (the API context holds the ``SecretKeeper``). Data arrives
base64 in a request body over mutual TLS, is sealed before it is stored, and never
appears in an answer or a log line. ``update`` rebinds every service using the
name to the new digest in the same transaction: their tasks roll with their
update_config. ``rm`` is refused while a service uses the name.
"""

from __future__ import annotations

import logging
import re
import time

import msgspec
from aiohttp import web

from swarmlite.api.context import commit_fresh
from swarmlite.api.models import RemoveResult
from swarmlite.api.secret_models import FileCreate, FileSummary, FileUpdate, FileUpdateResult
from swarmlite.api.server import CTX, ApiContext, _fresh
from swarmlite.errors import ConflictError, NotFoundError, SpecError
from swarmlite.manager.payloads import (
    Kind,
    config_put,
    rebind_users,
    secret_put,
    users_of,
)
from swarmlite.spec.objects import Config, Secret
from swarmlite.spec.service import FilePayload
from swarmlite.store.cache import ClusterState
from swarmlite.store.store import Delete, Put, Versioned

log = logging.getLogger("swarmlite.api.secrets")

NAME = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]{0,63}")
_ATTEMPTS = 5


def register(app: web.Application) -> None:
    r = app.router
    kinds: tuple[tuple[str, Kind], ...] = (("secrets", "secret"), ("configs", "config"))
    for plural, kind in kinds:
        r.add_post(f"/v1/{plural}", _bind(create, kind))
        r.add_get(f"/v1/{plural}", _bind(list_all, kind))
        r.add_get(f"/v1/{plural}/{{name}}", _bind(inspect, kind))
        r.add_post(f"/v1/{plural}/{{name}}/update", _bind(update, kind))
        r.add_delete(f"/v1/{plural}/{{name}}", _bind(remove, kind))


def _bind(handler, kind: Kind):  # type: ignore[no-untyped-def]
    async def bound(request: web.Request) -> web.Response:
        return await handler(request, kind)  # type: ignore[no-any-return]

    return bound


def _json(obj: object, status: int = 200) -> web.Response:
    return web.Response(
        body=msgspec.json.encode(obj), status=status, content_type="application/json"
    )


def _items(state: ClusterState, kind: Kind) -> list[Versioned[Secret] | Versioned[Config]]:
    out: list[Versioned[Secret] | Versioned[Config]] = []
    out.extend(state.secrets.values() if kind == "secret" else state.configs.values())
    return out


def find(state: ClusterState, kind: Kind, key: str) -> Versioned[Secret] | Versioned[Config]:
    items = _items(state, kind)
    exact = [v for v in items if key in (v.value.name, v.value.id)]
    if exact:
        return exact[0]
    prefixed = [v for v in items if v.value.id.startswith(key)]
    if len(prefixed) == 1:
        return prefixed[0]
    if prefixed:
        names = ", ".join(sorted(v.value.name for v in prefixed))
        raise SpecError(f"{kind} {key} is ambiguous: it could be {names}; give the full name")
    raise NotFoundError(f"{kind} {key} not found (see 'swarmlite {kind} ls')")


def summary(state: ClusterState, kind: Kind, obj: Secret | Config) -> FileSummary:
    return FileSummary(
        id=obj.id,
        name=obj.name,
        digest=obj.digest[:12],
        stack=obj.stack,
        labels=obj.labels,
        created_at=obj.created_at,
        updated_at=obj.updated_at,
        services=tuple(v.value.name for v in users_of(state, kind, obj.name)),
    )


def _put(ctx: ApiContext, kind: Kind, payload: FilePayload, state: ClusterState) -> Put | None:
    now = time.time()
    if kind == "config":
        return config_put(payload, state, now)[0]
    if ctx.keeper is None:
        raise SpecError("this manager cannot store secrets: it has no cluster key")
    return secret_put(payload, state, ctx.keeper, now)[0]


async def create(request: web.Request, kind: Kind) -> web.Response:
    ctx: ApiContext = request.app[CTX]
    body = msgspec.json.decode(await request.read(), type=FileCreate)
    if not NAME.fullmatch(body.name):
        raise SpecError(
            f"invalid {kind} name {body.name!r}: use up to 64 letters, digits, '_', '.' "
            "and '-', starting with a letter or digit"
        )
    state = ctx.cache.view()
    if any(v.value.name == body.name for v in _items(state, kind)):
        raise ConflictError(f"{kind} {body.name} already exists (use '{kind} update')")
    op = _put(ctx, kind, FilePayload(name=body.name, data=body.data, labels=body.labels), state)
    assert op is not None  # a new name is always written
    revision = await ctx.store.commit([op])
    log.info("%s=%s created", kind, body.name)
    state = await _fresh(ctx, revision)
    return _json(summary(state, kind, find(state, kind, body.name).value), 201)


async def list_all(request: web.Request, kind: Kind) -> web.Response:
    state = request.app[CTX].cache.view()
    items = sorted(_items(state, kind), key=lambda v: v.value.name)
    return _json([summary(state, kind, v.value) for v in items])


async def inspect(request: web.Request, kind: Kind) -> web.Response:
    state = request.app[CTX].cache.view()
    obj = find(state, kind, request.match_info["name"]).value
    out = summary(state, kind, obj)
    if isinstance(obj, Config):
        out = msgspec.structs.replace(out, data=obj.data)
    return _json(out)


async def update(request: web.Request, kind: Kind) -> web.Response:
    ctx: ApiContext = request.app[CTX]
    body = msgspec.json.decode(await request.read(), type=FileUpdate)
    for _ in range(_ATTEMPTS):
        state = ctx.cache.view()
        current = find(state, kind, request.match_info["name"]).value
        op = _put(ctx, kind, FilePayload(name=current.name, data=body.data), state)
        if op is None:
            return _json(FileUpdateResult(summary=summary(state, kind, current), changed=False))
        assert isinstance(op.obj, Secret | Config)
        rebinds = rebind_users(state, kind, current.name, op.obj.digest, time.time())
        try:
            revision = await ctx.store.commit([op, *rebinds])
        except ConflictError:
            await ctx.cache.wait_changed(ctx.cache.version, timeout=0.5)
            continue
        names = tuple(v.value.name for v in users_of(state, kind, current.name))
        log.info("%s=%s updated; rolling services=%s", kind, current.name, ",".join(names))
        state = await _fresh(ctx, revision)
        return _json(
            FileUpdateResult(
                summary=summary(state, kind, find(state, kind, current.name).value),
                changed=True,
                services=names,
            )
        )
    raise ConflictError("the cluster changed during the update; try again")


async def remove(request: web.Request, kind: Kind) -> web.Response:
    ctx: ApiContext = request.app[CTX]
    for _ in range(_ATTEMPTS):
        seen = ctx.cache.version
        state = ctx.cache.view()
        found = find(state, kind, request.match_info["name"])
        users = users_of(state, kind, found.value.name)
        if users:
            names = ", ".join(v.value.name for v in users)
            raise ConflictError(
                f"{kind} {found.value.name} is in use by service {names}: "
                "remove it from those services first"
            )
        ops: list[Put | Delete] = [Delete(type(found.value), found.value.id, found.revision)]
        # A deploy compare-and-swaps the cluster object; so does this, so a deploy that
        # starts using the name meanwhile (through another manager, or one this cache
        # has not seen yet) makes one of the two re-read: never a service whose secret
        # is gone.
        cluster = state.cluster_entry
        if cluster is not None:
            ops.append(Put(cluster.value, cluster.revision))
        if not await commit_fresh(ctx, ops, seen):
            continue
        log.info("%s=%s removed", kind, found.value.name)
        return _json(RemoveResult(removed=(found.value.name,)))
    raise ConflictError(
        f"the cluster changed during the removal of {kind} {found.value.name}; try again"
    )

"""Secrets and configs in the store: writes for a deploy, digests bound into specs. Pure.

A service's ``FileRef.digest`` is the content digest of what it uses, filled in here:
a changed secret or config changes the spec's task hash, so the usual rolling update
(with the service's update_config) replaces its tasks. Unchanged content writes nothing.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable, Mapping
from typing import Literal, TypeVar

import msgspec

from swarmlite.errors import SpecError
from swarmlite.manager.reconcile import new_id
from swarmlite.security.keeper import MAX_SIZE, SecretKeeper, config_digest
from swarmlite.spec.objects import Config, Secret, Service, UpdateStatus
from swarmlite.spec.service import FilePayload, FileRef, ServiceSpec
from swarmlite.store.cache import ClusterState
from swarmlite.store.store import Put, Versioned

Kind = Literal["secret", "config"]
S = TypeVar("S", Secret, Config)
# (kind, stored name) -> content digest
Digests = dict[tuple[Kind, str], str]


def decode_data(name: str, data: str) -> bytes:
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise SpecError(f"{name}: data is not valid base64") from None
    if len(raw) > MAX_SIZE:
        raise SpecError(f"{name} is {len(raw)} bytes; at most 500 KB allowed")
    return raw


def by_name(items: Mapping[str, Versioned[S]], name: str) -> Versioned[S] | None:
    for v in items.values():
        if v.value.name == name:
            return v
    return None


def _store_put(
    kind: type[S],
    old: Versioned[S] | None,
    payload: FilePayload,
    digest: str,
    content: dict[str, str],
    now: float,
    stack: str,
) -> Put | None:
    """Create or replace one secret/config; None when its content is unchanged.

    ``content`` is the kind's stored form: ``{"sealed": ...}`` or ``{"data": ...}``.
    """
    if old is not None and old.value.digest == digest:
        return None
    if old is None:
        fresh = kind(
            id=new_id(),
            name=payload.name,
            digest=digest,
            stack=stack,
            labels=payload.labels,
            created_at=now,
            updated_at=now,
            **content,
        )
        return Put(fresh, 0)
    changed = msgspec.structs.replace(old.value, digest=digest, updated_at=now, **content)
    return Put(changed, old.revision)


def secret_put(
    payload: FilePayload, state: ClusterState, keeper: SecretKeeper, now: float, stack: str = ""
) -> tuple[Put | None, str]:
    """The write that stores ``payload`` as a secret (None: unchanged), and its digest."""
    raw = decode_data(f"secret {payload.name}", payload.data)
    digest = keeper.digest(raw)
    old = by_name(state.secrets, payload.name)
    # Seal only when something will be written: sealing draws a fresh nonce.
    unchanged = old is not None and old.value.digest == digest
    content = {} if unchanged else {"sealed": keeper.seal(payload.name, raw)}
    return _store_put(Secret, old, payload, digest, content, now, stack), digest


def config_put(
    payload: FilePayload, state: ClusterState, now: float, stack: str = ""
) -> tuple[Put | None, str]:
    raw = decode_data(f"config {payload.name}", payload.data)
    digest = config_digest(raw)
    content = {"data": base64.b64encode(raw).decode()}
    old = by_name(state.configs, payload.name)
    return _store_put(Config, old, payload, digest, content, now, stack), digest


def plan_payloads(
    secrets: Iterable[FilePayload],
    configs: Iterable[FilePayload],
    state: ClusterState,
    keeper: SecretKeeper | None,
    *,
    stack: str,
    now: float,
) -> tuple[list[Put], Digests]:
    """Writes for a stack's own secrets and configs, and every known digest."""
    digests: Digests = {("secret", v.value.name): v.value.digest for v in state.secrets.values()}
    digests |= {("config", v.value.name): v.value.digest for v in state.configs.values()}
    ops: list[Put] = []
    for payload in secrets:
        if keeper is None:
            raise SpecError("this manager cannot store secrets: it has no cluster key")
        op, digests[("secret", payload.name)] = secret_put(payload, state, keeper, now, stack)
        if op is not None:
            ops.append(op)
    for payload in configs:
        op, digests[("config", payload.name)] = config_put(payload, state, now, stack)
        if op is not None:
            ops.append(op)
    return ops, digests


def bind_digests(spec: ServiceSpec, digests: Digests) -> ServiceSpec:
    """``spec`` with each reference's digest filled in; a missing one is a SpecError."""

    def bind(kind: Kind, refs: tuple[FileRef, ...]) -> tuple[FileRef, ...]:
        out = []
        for ref in refs:
            digest = digests.get((kind, ref.name))
            if digest is None:
                raise SpecError(
                    f"service {spec.name} uses {kind} {ref.name}, which does not exist "
                    f"(create it with 'swarmlite {kind} create {ref.name} FILE')"
                )
            out.append(msgspec.structs.replace(ref, digest=digest))
        return tuple(out)

    if not spec.secrets and not spec.configs:
        return spec
    return msgspec.structs.replace(
        spec, secrets=bind("secret", spec.secrets), configs=bind("config", spec.configs)
    )


def refs_of(spec: ServiceSpec, kind: Kind) -> tuple[FileRef, ...]:
    return spec.secrets if kind == "secret" else spec.configs


def users_of(state: ClusterState, kind: Kind, name: str) -> list[Versioned[Service]]:
    return sorted(
        (
            v
            for v in state.services.values()
            if any(r.name == name for r in refs_of(v.value.spec, kind))
        ),
        key=lambda v: v.value.name,
    )


def with_spec(old: Service, spec: ServiceSpec, now: float) -> Service:
    """A new version of ``old`` running ``spec``: a rolling update if tasks change."""
    rolling = spec.task_hash() != old.spec.task_hash()
    return msgspec.structs.replace(
        old,
        spec=spec,
        version=old.version + 1,
        previous_spec=old.spec,
        updated_at=now,
        update_status=UpdateStatus(state="updating", message="update in progress", started_at=now)
        if rolling
        else old.update_status,
    )


def rebind_users(state: ClusterState, kind: Kind, name: str, digest: str, now: float) -> list[Put]:
    """Writes moving every service that uses ``name`` to its new ``digest``."""
    ops: list[Put] = []
    for v in users_of(state, kind, name):
        spec = bind_digests(v.value.spec, _own(v.value.spec) | {(kind, name): digest})
        if spec != v.value.spec:
            ops.append(Put(with_spec(v.value, spec, now), v.revision))
    return ops


def _own(spec: ServiceSpec) -> Digests:
    digests: Digests = {("secret", r.name): r.digest for r in spec.secrets}
    return digests | {("config", r.name): r.digest for r in spec.configs}

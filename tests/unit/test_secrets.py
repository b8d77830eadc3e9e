"""Secrets and configs: sealing, deploy plans, rebinding, delivery, materializing."""

from __future__ import annotations

import asyncio
import base64
import os
import stat
from pathlib import Path
from types import MappingProxyType
from typing import Any

import msgspec
import pytest

from swarmlite.agent.containers import container_config
from swarmlite.agent.secrets import TaskFiles, remove_node_files
from swarmlite.api.agent_protocol import FileData
from swarmlite.errors import AuthError, RuntimeFailure, SpecError
from swarmlite.manager.deploy import plan_deploy
from swarmlite.manager.dispatcher import assignments_for
from swarmlite.manager.payloads import rebind_users
from swarmlite.security.keeper import SecretKeeper
from swarmlite.spec.objects import Config, Network, Secret, Service, Task, TaskState, TaskStatus
from swarmlite.spec.routes import RoutesSnapshot
from swarmlite.spec.service import FilePayload, FileRef, NetworkSpec, ServiceSpec, StackSpec
from swarmlite.store.cache import ClusterState
from swarmlite.store.store import Put, Versioned

KEY = bytes(range(32))
KEEPER = SecretKeeper(KEY)
PLAIN = b"hunter2-plaintext"


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def web(**kw: Any) -> ServiceSpec:
    fields: dict[str, Any] = {
        "name": "web",
        "stack": "st",
        "image": "busybox",
        "secrets": (FileRef(source="pw", name="st_pw", target="/run/secrets/pw"),),
        "configs": (FileRef(source="app", name="st_app", target="/app", mode=0o444),),
    }
    return ServiceSpec(**(fields | kw))


def stack(secret: bytes = PLAIN, config: bytes = b"port=80") -> StackSpec:
    return StackSpec(
        name="st",
        services=(web(),),
        networks=(NetworkSpec(name="default"),),
        secrets=(FilePayload(name="st_pw", data=b64(secret)),),
        configs=(FilePayload(name="st_app", data=b64(config)),),
    )


def state_from(ops: list[Any], base: ClusterState | None = None) -> ClusterState:
    """The state after committing ``ops`` (each put gets revision 7)."""
    kinds = {"services": Service, "secrets": Secret, "configs": Config, "networks": Network}
    fields: dict[str, Any] = {}
    for name, kind in kinds.items():
        items = dict(getattr(base, name)) if base else {}
        for op in ops:
            if isinstance(op, Put) and isinstance(op.obj, kind):
                items[op.obj.id] = Versioned(op.obj, 7)
        fields[name] = MappingProxyType(items)
    return ClusterState(revision=7, **fields)


def test_keeper_seals_with_the_name_as_aad_and_digests_with_a_key() -> None:
    sealed = KEEPER.seal("a", PLAIN)
    assert PLAIN not in base64.b64decode(sealed)
    secret = Secret(id="1", name="a", digest="", sealed=sealed)
    assert KEEPER.open(secret) == PLAIN
    with pytest.raises(AuthError):
        KEEPER.open(msgspec.structs.replace(secret, name="b"))
    assert KEEPER.digest(PLAIN) == KEEPER.digest(PLAIN) != SecretKeeper(b"k" * 32).digest(PLAIN)
    import hashlib

    assert KEEPER.digest(PLAIN) != hashlib.sha256(PLAIN).hexdigest()


def test_deploy_stores_sealed_secret_and_binds_digests() -> None:
    plan = plan_deploy(stack(), ClusterState(), prune=False, now=1.0, keeper=KEEPER)
    secrets = [op.obj for op in plan.ops if isinstance(op, Put) and isinstance(op.obj, Secret)]
    assert len(secrets) == 1 and secrets[0].name == "st_pw" and secrets[0].stack == "st"
    raw = b"".join(msgspec.json.encode(op.obj) for op in plan.ops if isinstance(op, Put))
    assert PLAIN not in raw and b64(PLAIN).encode() not in raw
    service = next(op.obj for op in plan.ops if isinstance(op, Put) and isinstance(op.obj, Service))
    assert service.spec.secrets[0].digest == secrets[0].digest
    assert service.spec.configs[0].digest
    assert repr(secrets[0]).count("sealed") == 0


def test_redeploy_unchanged_writes_nothing_and_changed_content_rolls() -> None:
    first = plan_deploy(stack(), ClusterState(), prune=False, now=1.0, keeper=KEEPER)
    state = state_from(first.ops)
    same = plan_deploy(stack(), state, prune=False, now=2.0, keeper=KEEPER)
    assert same.ops == [] and same.result.unchanged == ("st_web",)
    changed = plan_deploy(stack(secret=b"new"), state, prune=False, now=3.0, keeper=KEEPER)
    kinds = sorted(type(op.obj).__name__ for op in changed.ops if isinstance(op, Put))
    assert kinds == ["Secret", "Service"]
    service = next(op.obj for op in changed.ops if isinstance(op.obj, Service))  # type: ignore[union-attr]
    old = next(v.value for v in state.services.values())
    assert service.spec.task_hash() != old.spec.task_hash()
    assert service.update_status.state == "updating" and service.version == 2


def test_deploy_without_keeper_or_with_unknown_external_is_refused() -> None:
    with pytest.raises(SpecError, match="no cluster key"):
        plan_deploy(stack(), ClusterState(), prune=False, now=1.0, keeper=None)
    lone = StackSpec(
        name="st",
        services=(web(configs=()),),
        networks=(NetworkSpec(name="default"),),
    )
    with pytest.raises(SpecError, match="secret st_pw, which does not exist"):
        plan_deploy(lone, ClusterState(), prune=False, now=1.0, keeper=KEEPER)


def test_secret_update_rebinds_every_user() -> None:
    state = state_from(
        plan_deploy(stack(), ClusterState(), prune=False, now=1.0, keeper=KEEPER).ops
    )
    ops = rebind_users(state, "secret", "st_pw", "d2", now=5.0)
    assert len(ops) == 1
    svc = ops[0].obj
    assert isinstance(svc, Service)
    assert svc.spec.secrets[0].digest == "d2"
    assert svc.spec.configs == next(iter(state.services.values())).value.spec.configs
    assert rebind_users(state, "secret", "other", "d3", now=5.0) == []


def _task(task_id: str, node: str, spec: ServiceSpec, desired: TaskState) -> Task:
    return Task(
        id=task_id,
        service_id="s1",
        service_name=spec.full_name,
        slot=1,
        spec=spec,
        spec_version=1,
        spec_hash=spec.task_hash(),
        node_id=node,
        desired_state=desired,
        status=TaskStatus(state=TaskState.ASSIGNED),  # placed by the scheduler
    )


def test_dispatcher_sends_only_what_this_nodes_live_tasks_use() -> None:
    state = state_from(
        plan_deploy(stack(), ClusterState(), prune=False, now=1.0, keeper=KEEPER).ops
    )
    plain = web(secrets=(), configs=())
    tasks = {
        "t1": _task("t1", "n1", web(), TaskState.RUNNING),
        "t2": _task("t2", "n2", plain, TaskState.RUNNING),
    }
    state = ClusterState(
        revision=8,
        secrets=state.secrets,
        configs=state.configs,
        tasks=MappingProxyType({k: Versioned(v, 8) for k, v in tasks.items()}),
    )
    routes = RoutesSnapshot(revision=8, services=(), networks=())
    n1 = assignments_for("n1", state, routes, KEEPER.open)
    assert [(f.name, base64.b64decode(f.data)) for f in n1.secrets] == [("st_pw", PLAIN)]
    assert [f.name for f in n1.configs] == ["st_app"]
    assert PLAIN.decode() not in repr(n1.secrets)
    n2 = assignments_for("n2", state, routes, KEEPER.open)
    assert n2.secrets == () and n2.configs == ()
    # A task being shut down gets no secrets.
    stopping = {"t1": Versioned(_task("t1", "n1", web(), TaskState.SHUTDOWN), 9)}
    state = ClusterState(revision=9, secrets=state.secrets, tasks=MappingProxyType(stopping))
    assert assignments_for("n1", state, routes, KEEPER.open).secrets == ()


def test_task_files_are_written_with_mode_and_mounted_read_only(tmp_path: Path) -> None:
    files = TaskFiles("node1234567890", base=tmp_path)
    spec = web(
        secrets=(FileRef(source="pw", name="st_pw", target="/run/secrets/pw", mode=0o400),),
        configs=(FileRef(source="app", name="st_app", target="/etc/app", mode=0o444),),
    )
    task = _task("t1", "n1", spec, TaskState.RUNNING)
    files.update(
        [task],
        [FileData(name="st_pw", digest="d", data=b64(PLAIN))],
        [FileData(name="st_app", digest="e", data=b64(b"port=80"))],
    )
    mounts = asyncio.run(files.mounts_for(task))
    assert [(m["Target"], m["Type"], m["ReadOnly"]) for m in mounts] == [
        ("/run/secrets/pw", "bind", True),
        ("/etc/app", "bind", True),
    ]
    secret_path = Path(mounts[0]["Source"])
    assert secret_path.read_bytes() == PLAIN
    assert stat.S_IMODE(os.stat(secret_path).st_mode) == 0o400
    assert stat.S_IMODE(os.stat(mounts[1]["Source"]).st_mode) == 0o444
    cfg = container_config(task, [], "n1", extra_mounts=mounts)
    assert PLAIN.decode() not in " ".join(cfg.environment)
    assert len(cfg.host_config["Mounts"]) == 2
    # Once the task is no longer assigned, its files go.
    files.update([], [], [])
    assert not secret_path.exists()


def test_a_secret_without_a_mode_is_readable_by_a_non_root_container_user(
    tmp_path: Path,
) -> None:
    """Owned by root (uid 0), as Swarm: mode 0400 kept a ``user: 1000`` service from
    its own secret ("Permission denied"); 0444, as Swarm and the Compose spec, lets it.
    An explicit mode is kept."""
    files = TaskFiles("node1234567890", base=tmp_path)
    spec = web(
        secrets=(
            FileRef(source="pw", name="st_pw", target="/run/secrets/pw"),
            FileRef(source="pw", name="st_pw", target="/run/secrets/pw2", mode=0o400),
        ),
        configs=(),
    )
    task = _task("t1", "n1", spec, TaskState.RUNNING)
    files.update([task], [FileData(name="st_pw", digest="d", data=b64(PLAIN))], [])
    default, explicit = (Path(m["Source"]) for m in asyncio.run(files.mounts_for(task)))
    assert spec.secrets[0].uid == "0"
    assert stat.S_IMODE(os.stat(default).st_mode) == 0o444  # others may read
    assert stat.S_IMODE(os.stat(explicit).st_mode) == 0o400


def test_task_files_use_only_private_directories(tmp_path: Path) -> None:
    """Under /dev/shm anyone may create entries first: a planted symlink (or a
    directory of another user) is refused, and the sweep does not follow it."""
    spec = web(configs=())
    task = _task("t1", "n1", spec, TaskState.RUNNING)
    secret = [FileData(name="st_pw", digest="d", data=b64(PLAIN))]
    elsewhere = tmp_path / "elsewhere"
    (elsewhere / "victim").mkdir(parents=True)
    base = tmp_path / "shm"
    base.mkdir(mode=0o755)  # as an older version left it: made private, then used
    (base / "node12345678").symlink_to(elsewhere)
    files = TaskFiles("node1234567890", base=base)
    files.update([task], secret, [])
    with pytest.raises(RuntimeFailure, match="is not a private directory of this daemon"):
        asyncio.run(files.mounts_for(task))
    assert (elsewhere / "victim").exists() and not list(elsewhere.glob("t1*"))
    files.update([], secret, [])  # the sweep would delete "victim" through the link
    assert (elsewhere / "victim").exists()
    (base / "node12345678").unlink()
    files.update([task], secret, [])
    (mount,) = asyncio.run(files.mounts_for(task))
    assert stat.S_IMODE(os.stat(base).st_mode) == 0o700
    assert Path(mount["Source"]).read_bytes() == PLAIN
    other = base / "othernode123"
    other.mkdir(mode=0o700)  # another node's folder on this host keeps the base
    remove_node_files("node1234567890", base=base)
    assert not (base / "node12345678").exists() and base.exists()
    other.rmdir()
    (base / "node12345678").mkdir(mode=0o700)
    remove_node_files("node1234567890", base=base)
    assert not base.exists()  # the last node leaves no empty base behind


def test_task_files_refuse_a_task_whose_secret_is_missing(tmp_path: Path) -> None:
    files = TaskFiles("node1234567890", base=tmp_path)
    task = _task("t1", "n1", web(), TaskState.RUNNING)
    files.update([task], [], [])
    with pytest.raises(RuntimeFailure, match="secret st_pw is not available"):
        asyncio.run(files.mounts_for(task))


def test_cli_refuses_content_over_500_kb(tmp_path: Path) -> None:
    from swarmlite.cli.secret_cmds import read_content

    big = tmp_path / "big"
    big.write_bytes(b"x" * (500 * 1024 + 1))
    with pytest.raises(SpecError, match="500 KB"):
        read_content(str(big), "secret")
    with pytest.raises(SpecError, match="cannot read"):
        read_content(str(tmp_path / "missing"), "secret")


def test_dispatcher_sends_a_global_task_only_once_the_scheduler_placed_it() -> None:
    """A global service's task names its node from the start; until the scheduler's
    filters pass it (say a constraint fails: pending), the node must not run it."""
    spec = web(secrets=(), configs=())
    waiting = msgspec.structs.replace(
        _task("t1", "n1", spec, TaskState.RUNNING),
        slot=0,
        status=TaskStatus(state=TaskState.PENDING),
        pending_reason="no suitable node: constraint node.role==manager fails on 1 node",
    )
    placed = msgspec.structs.replace(waiting, status=TaskStatus(state=TaskState.ASSIGNED))
    routes = RoutesSnapshot(revision=3, services=(), networks=())
    for task, sent in ((waiting, ()), (placed, ("t1",))):
        state = ClusterState(revision=3, tasks=MappingProxyType({"t1": Versioned(task, 3)}))
        assert tuple(t.id for t in assignments_for("n1", state, routes, KEEPER.open).tasks) == sent

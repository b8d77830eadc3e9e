"""Secrets and configs on a node: held in memory, written to a tmpfs, bind-mounted.

The manager sends the contents this node's tasks use in every Assignments message.
Before a task's container is created, each file it uses is written to
``BASE/<task id>/`` on a tmpfs (``/dev/shm``, so never to disk) with the reference's
mode, uid and gid, and bind-mounted read-only at its target, as Swarm does. A task's
directory is removed once the task is no longer assigned to this node, and the
node's whole directory when it leaves the cluster. Contents are never logged.

``/dev/shm`` is writable by every local user: each directory on the way is used only
if it is a real directory (not a symlink) of the daemon's user that no one else may
write, so another user cannot plant one and read the files, or redirect the sweep.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import os
import shutil
import stat
from collections.abc import Sequence
from pathlib import Path

from docker.types import Mount as DockerMount

from swarmlite.api.agent_protocol import FileData
from swarmlite.errors import RuntimeFailure
from swarmlite.spec.objects import Task
from swarmlite.spec.service import FileRef

log = logging.getLogger("swarmlite.agent.secrets")

DEFAULT_BASE = Path(os.environ.get("SWARMLITE_TASK_FILES_DIR", "/dev/shm/swarmlite"))


class TaskFiles:
    def __init__(self, node_id: str, base: Path | None = None) -> None:
        self.base = (base or DEFAULT_BASE) / node_id[:12]
        self._secrets: dict[str, FileData] = {}
        self._configs: dict[str, FileData] = {}
        self._assigned: set[str] | None = None  # task ids; None before the first update

    def __repr__(self) -> str:
        return f"TaskFiles(base={str(self.base)!r}, secrets={len(self._secrets)})"

    def update(
        self, tasks: Sequence[Task], secrets: Sequence[FileData], configs: Sequence[FileData]
    ) -> None:
        """The contents of an Assignments message; drops directories of gone tasks."""
        self._secrets = {f.name: f for f in secrets}
        self._configs = {f.name: f for f in configs}
        self._assigned = {t.id for t in tasks}
        self.sweep(self._assigned)

    def sweep(self, keep: set[str]) -> None:
        if not (_is_private_dir(self.base.parent) and _is_private_dir(self.base)):
            return
        for entry in self.base.iterdir():
            if entry.name not in keep:
                shutil.rmtree(entry, ignore_errors=True)
                log.debug("removed files of task=%s", entry.name[:12])

    async def mounts_for(self, task: Task) -> list[DockerMount]:
        """Write the task's secrets and configs; their bind mounts (none: nothing used)."""
        if not task.spec.secrets and not task.spec.configs:
            return []
        wanted: list[tuple[str, FileRef, bytes]] = []
        for kind, refs, have in (
            ("secret", task.spec.secrets, self._secrets),
            ("config", task.spec.configs, self._configs),
        ):
            for ref in refs:
                found = have.get(ref.name)
                if found is None:
                    raise RuntimeFailure(
                        f"{kind} {ref.name} is not available on this node "
                        "(removed, or the manager could not open it)"
                    )
                wanted.append((kind, ref, base64.b64decode(found.data)))
        return await asyncio.to_thread(self._write, task.id, wanted)

    def _write(self, task_id: str, wanted: list[tuple[str, FileRef, bytes]]) -> list[DockerMount]:
        folder = self.base / task_id
        try:
            for step in (self.base.parent, self.base, folder):
                _private_dir(step)
            mounts = []
            for i, (kind, ref, data) in enumerate(wanted):
                path = folder / f"{kind}-{i}"
                _write_file(path, data, ref)
                mounts.append(DockerMount(ref.target, str(path), type="bind", read_only=True))
            return mounts
        except OSError as exc:
            shutil.rmtree(folder, ignore_errors=True)
            raise RuntimeFailure(f"cannot write the task's secrets under {folder}: {exc}") from exc


def _is_private_dir(path: Path) -> bool:
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return False
    return stat.S_ISDIR(st.st_mode) and st.st_uid == os.geteuid() and not st.st_mode & 0o077


def _private_dir(path: Path) -> None:
    """Create ``path`` (0700), or accept an existing one only if it is a real directory
    of ours (then made 0700: an older version left it readable)."""
    with contextlib.suppress(FileExistsError):
        path.mkdir(mode=0o700)
    st = os.lstat(path)
    if stat.S_ISDIR(st.st_mode) and st.st_uid == os.geteuid() and st.st_mode & 0o077:
        os.chmod(path, 0o700)
    elif not _is_private_dir(path):
        raise RuntimeFailure(
            f"{path} is not a private directory of this daemon (owner uid {st.st_uid}, "
            f"mode {stat.filemode(st.st_mode)}): remove it and try again"
        )


def remove_node_files(node_id: str, base: Path | None = None) -> None:
    """The node's secrets and configs, when it leaves the cluster."""
    folder = (base or DEFAULT_BASE) / node_id[:12]
    if _is_private_dir(folder.parent) and _is_private_dir(folder):
        shutil.rmtree(folder, ignore_errors=True)
        with contextlib.suppress(OSError):  # the last node here: leave no empty base
            folder.parent.rmdir()


def _write_file(path: Path, data: bytes, ref: FileRef) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        uid, gid = _id(ref.uid), _id(ref.gid)
        if (uid, gid) != (os.geteuid(), os.getegid()):
            os.fchown(fd, uid, gid)
        os.fchmod(fd, ref.mode)
    finally:
        os.close(fd)


def _id(text: str) -> int:
    return int(text) if text.isdigit() else 0

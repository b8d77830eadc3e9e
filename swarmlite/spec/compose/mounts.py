"""A service's ``volumes`` (short and long syntax) and ``tmpfs`` as Mounts.

An anonymous volume (``- /data``) becomes a volume mount with an empty source:
Docker then creates a fresh volume for each container, as Swarm does; its data
does not follow a task to its replacement.
"""

from __future__ import annotations

import os
from collections.abc import Collection
from typing import cast

from swarmlite.spec.service import Mount, MountType

from .reader import Reader, to_str
from .tree import Pos, YList, YMap, type_name
from .units import parse_size

_LONG_TYPES = ("volume", "bind", "tmpfs")
_IGNORED_MODES = frozenset(
    [
        "z",
        "Z",
        "cached",
        "delegated",
        "consistent",
        "nocopy",
        "shared",
        "slave",
        "private",
        "rshared",
        "rslave",
        "rprivate",
    ]
)


def read_volumes(r: Reader, declared: Collection[str]) -> list[Mount]:
    value = r.get("volumes")
    if value is None:
        return []
    if not isinstance(value, YList):
        r.error("volumes", f"must be a list, not {type_name(value)}")
        return []
    out: list[Mount] = []
    for i, item in enumerate(value):
        pos = value.where(i)
        if isinstance(item, YMap):
            mount = _long(Reader(item, r.problems, r.service, "volumes"), declared)
        elif isinstance(item, str):
            mount = _short(r, item, pos, declared)
        else:
            r.error("volumes", f"items must be strings or mappings, not {type_name(item)}", pos=pos)
            mount = None
        if mount is not None:
            out.append(mount)
    return out


def _short(r: Reader, text: str, pos: Pos, declared: Collection[str]) -> Mount | None:
    parts = text.split(":")
    if len(parts) == 1:
        return _target_ok(r, Mount(type="volume", target=parts[0]), pos)
    if len(parts) > 3:
        r.error("volumes", f"invalid volume {text!r}: expected SOURCE:TARGET[:MODE]", pos=pos)
        return None
    source, target = parts[0], parts[1]
    read_only = False
    for opt in parts[2].split(",") if len(parts) == 3 else []:
        if opt in ("ro", "rw"):
            read_only = opt == "ro"
        elif opt in _IGNORED_MODES:
            r.problems.unsupported(f"volumes:{opt}", r.service)
        else:
            r.error("volumes", f"invalid volume {text!r}: unknown mode {opt!r}", pos=pos)
            return None
    if source[:1] in ("/", ".", "~"):
        mount = Mount(
            type="bind", source=_host_path(source, pos), target=target, read_only=read_only
        )
    else:
        if not _declared(r, source, declared, pos):
            return None
        mount = Mount(type="volume", source=source, target=target, read_only=read_only)
    return _target_ok(r, mount, pos)


def _long(r: Reader, declared: Collection[str]) -> Mount | None:
    r.check_keys("volumes")
    kind = r.str_("type")
    if kind is None:
        r.error("type", f"a volume in long syntax needs a type ({', '.join(_LONG_TYPES)})")
        return None
    if kind not in _LONG_TYPES:
        r.error("type", f"volume type {kind!r} is not supported; use {', '.join(_LONG_TYPES)}")
        return None
    target = r.str_("target")
    if not target:
        r.error("target", "a volume in long syntax needs a target", pos=r.node.pos)
        return None
    source = r.str_("source") or ""
    read_only = bool(r.bool_("read_only"))
    tmpfs_size = None
    tmpfs = r.sub("tmpfs", "volumes.tmpfs")
    if tmpfs is not None:
        if kind != "tmpfs":
            r.error("tmpfs", f"tmpfs options need type: tmpfs, not {kind}")
        tmpfs_size = tmpfs.size("size")
    if kind == "bind":
        if not source:
            r.error("source", "a bind mount needs a source path", pos=r.node.pos)
            return None
        source = _host_path(source, r.where("source"))
    elif kind == "volume" and source:
        if not _declared(r, source, declared, r.where("source")):
            return None
    elif kind == "tmpfs" and source:
        r.error("source", "a tmpfs mount takes no source")
        return None
    mount = Mount(
        type=cast(MountType, kind),  # checked against _LONG_TYPES above
        source=source,
        target=target,
        read_only=read_only,
        tmpfs_size=tmpfs_size,
    )
    return _target_ok(r, mount, r.where("target"))


def _declared(r: Reader, name: str, declared: Collection[str], pos: Pos) -> bool:
    if name in declared:
        return True
    hint = (
        f"declared volumes: {', '.join(sorted(declared))}"
        if declared
        else "declare it under the top-level 'volumes:' key"
    )
    r.error("volumes", f"volume {name!r} is not declared in the top-level volumes", hint, pos)
    return False


def _host_path(source: str, pos: Pos) -> str:
    """A bind source, relative to the directory of the file that wrote it."""
    path = os.path.expanduser(source)
    base = os.path.dirname(os.path.abspath(pos.file))
    return os.path.normpath(os.path.join(base, path))


def _target_ok(r: Reader, mount: Mount, pos: Pos) -> Mount | None:
    if not mount.target.startswith("/"):
        r.error("volumes", f"container path {mount.target!r} must be absolute", pos=pos)
        return None
    return mount


def read_tmpfs(r: Reader) -> list[Mount]:
    """``tmpfs: /run`` or a list of ``/path[:size=64m]``; other options are ignored."""
    value = r.get("tmpfs")
    if value is None:
        return []
    items = value if isinstance(value, YList) else [value]
    out: list[Mount] = []
    for i, item in enumerate(items):
        pos = value.where(i) if isinstance(value, YList) else r.where("tmpfs")
        if isinstance(item, YMap | YList) or item is None:
            r.error("tmpfs", f"must be a path or a list of paths, not {type_name(item)}", pos=pos)
            continue
        target, _, opts = to_str(item).partition(":")
        size = None
        for opt in filter(None, opts.split(",")):
            name, _, val = opt.partition("=")
            if name == "size":
                try:
                    size = parse_size(val)
                except ValueError:
                    r.error("tmpfs", f"invalid size {val!r} in {item!r}", pos=pos)
            else:  # mode, uid, noexec...: not carried to Docker (as long syntax's mode)
                r.problems.unsupported(f"tmpfs:{name}", r.service)
        mount = _target_ok(r, Mount(type="tmpfs", target=target, tmpfs_size=size), pos)
        if mount is not None:
            out.append(mount)
    return out

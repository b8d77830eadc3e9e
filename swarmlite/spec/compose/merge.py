"""Stage 3: merge several ``-f`` files, in order, as Compose does.

Mappings merge key by key and scalars override. Within a service, some keys
follow their own rule (Compose's merge spec):

* ``environment``, ``labels``, ``deploy.labels``, ``networks``, ``depends_on``,
  ``sysctls``, ``annotations``: the list form is read as a mapping, then merged.
* ``ports``, ``expose``, ``tmpfs``, ``env_file``, ``dns``, ``profiles`` and other
  lists of independent entries: appended, an identical entry kept once.
* ``volumes``: merged by container path; a later file's mount on the same path wins.
* anything else (``command``, ``entrypoint``, ``healthcheck.test``...): overridden.

A value tagged ``!reset`` removes the key (from earlier files and this one); one
tagged ``!override`` replaces the earlier value whole instead of merging with it.
"""

from __future__ import annotations

from .tree import Pos, Value, YList, YMap

_MAPPING_LIKE = {
    "environment",
    "labels",
    "deploy.labels",
    "networks",
    "depends_on",
    "sysctls",
    "annotations",
}
_APPENDED = {
    "ports",
    "expose",
    "tmpfs",
    "env_file",
    "dns",
    "dns_search",
    "dns_opt",
    "cap_add",
    "cap_drop",
    "external_links",
    "links",
    "extra_hosts",
    "security_opt",
    "devices",
    "configs",
    "secrets",
    "volumes_from",
    "group_add",
    "profiles",
    "deploy.placement.constraints",
    "deploy.placement.preferences",
}


def merge_files(trees: list[YMap]) -> YMap:
    merged = _plain_map(trees[0])
    for over in trees[1:]:
        merged = _merge_top(merged, over)
    return merged


def _plain(node: Value) -> Value:
    """``node`` taken whole: its ``!reset`` keys dropped, its tags spent."""
    if isinstance(node, YMap):
        return _plain_map(node)
    if isinstance(node, YList):
        return _plain_list(node)
    return node


def _plain_map(node: YMap) -> YMap:
    out = YMap(node.pos)
    for key, value in node.items():
        if node.tags.get(key) != "!reset":
            out.put(key, _plain(value), node.where(key))
    return out


def _plain_list(node: YList) -> YList:
    out = YList(node.pos)
    for i, item in enumerate(node):
        out.add(_plain(item), node.where(i))
    return out


def _merge_top(base: YMap, over: YMap) -> YMap:
    out = _copy(base)
    for key, value in over.items():
        old = out.get(key)
        if _tagged(out, over, key):
            continue
        if key == "services" and isinstance(old, YMap) and isinstance(value, YMap):
            services = _copy(old)
            for name, svc in value.items():
                prev = services.get(name)
                if _tagged(services, value, name):
                    continue
                if isinstance(prev, YMap) and isinstance(svc, YMap):
                    services.put(name, _merge_map(prev, svc, ""), old.where(name))
                else:
                    services.put(name, _plain(svc), value.where(name))
            out.put(key, services, base.where(key))
        elif isinstance(old, YMap) and isinstance(value, YMap):
            out.put(key, _merge_map(old, value, None), base.where(key))
        else:
            out.put(key, _plain(value), over.where(key))
    return out


def _tagged(out: YMap, over: YMap, key: str) -> bool:
    """Apply ``over``'s ``!reset`` or ``!override`` of ``key`` to ``out``; True if done."""
    tag = over.tags.get(key)
    if tag == "!reset":
        out.pop(key, None)
        out.key_pos.pop(key, None)
    elif tag == "!override":
        out.put(key, _plain(over[key]), over.where(key))
    return tag is not None


def _merge_map(base: YMap, over: YMap, path: str | None) -> YMap:
    """Merge two mappings; ``path`` is the dotted path inside a service, None elsewhere."""
    out = _copy(base)
    for key, value in over.items():
        sub = None if path is None else (f"{path}.{key}" if path else key)
        old = out.get(key)
        if _tagged(out, over, key):
            continue
        if key not in out:
            new: Value = _plain(value)
        elif (
            sub in _MAPPING_LIKE
            and isinstance(old, YMap | YList)
            and isinstance(value, YMap | YList)
        ):
            new = _merge_map(_as_map(old), _as_map(value), sub)
        elif sub in _APPENDED and old is not None and value is not None:
            new = _append(_as_list(old, out.where(key)), _as_list(_plain(value), over.where(key)))
        elif sub == "volumes" and isinstance(old, YList) and isinstance(value, YList):
            new = _merge_volumes(old, _plain_list(value))
        elif isinstance(old, YMap) and isinstance(value, YMap):
            new = _merge_map(old, value, sub)
        else:
            new = _plain(value)
        out.put(key, new, over.where(key))
    return out


def _copy(node: YMap) -> YMap:
    out = YMap(node.pos)
    for key, value in node.items():
        out.put(key, value, node.where(key))
    return out


def _as_map(node: YMap | YList) -> YMap:
    """The list form ``["K=V", "name"]`` as a mapping ``{K: V, name: None}``."""
    if isinstance(node, YMap):
        return node
    out = YMap(node.pos)
    for i, item in enumerate(node):
        key, sep, val = str(item).partition("=")
        out.put(key, val if sep else None, node.where(i))
    return out


def _as_list(node: Value, pos: Pos) -> YList:
    """A single string (``env_file: .env``) as a one-item list."""
    if isinstance(node, YList):
        return node
    out = YList(pos)
    out.add(node, pos)
    return out


def _append(base: YList, over: YList) -> YList:
    out = YList(base.pos)
    for seq in (base, over):
        for i, item in enumerate(seq):
            if item not in out:
                out.add(item, seq.where(i))
    return out


def _mount_target(item: Value) -> object:
    """Where the mount goes, to match an override's mounts with the base's; None when
    it cannot say (a malformed entry, reported when the merged file is read)."""
    if isinstance(item, YMap):
        target = item.get("target")
        return target if isinstance(target, str) else None
    if isinstance(item, str):
        parts = item.split(":")
        return parts[1] if len(parts) >= 2 else parts[0]
    return None


def _merge_volumes(base: YList, over: YList) -> YList:
    replaced = {_mount_target(item) for item in over} - {None}
    out = YList(base.pos)
    for i, item in enumerate(base):
        if _mount_target(item) not in replaced:
            out.add(item, base.where(i))
    for i, item in enumerate(over):
        out.add(item, over.where(i))
    return out

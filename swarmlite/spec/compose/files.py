"""Top-level ``secrets:``/``configs:`` and a service's references to them.

Contents are read here, on the CLI's side (``file`` relative to the compose file,
``environment`` from the environment, ``content`` for configs), and travel in the
StackSpec to the API over mutual TLS. A stack's own entries are stored as
``STACK_NAME`` (or their ``name:``); ``external`` ones must already exist.

A service uses them in short (``- token``) or long syntax (``source``, ``target``,
``uid``, ``gid``, ``mode``). Secrets mount at ``/run/secrets/NAME``, configs at
``/NAME``, both mode 0444 (as Swarm and the Compose spec: a non-root ``user:`` must
be able to read them; the file is seen only in that task's container; give ``mode``
to narrow it, e.g. 0400 with ``uid``). ``mode`` is octal: YAML 1.2 reads
``0440`` as the integer 440, so an integer whose digits are all 0-7 is taken as
octal digits; a string (``"0440"``) is always octal.

Problems of a top-level entry (missing file, too large, unset variable) are
reported once the services are read, naming the services that use it.
"""

from __future__ import annotations

import base64
import difflib
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from swarmlite.spec.service import FilePayload, FileRef

from .problems import Problems
from .reader import Reader, to_int, to_str
from .tree import Pos, Value, YList, YMap, type_name

Kind = Literal["secrets", "configs"]
MAX_SIZE = 500 * 1024


@dataclass
class FileDefs:
    """One kind's top-level entries: stack-local name -> stored name, and contents."""

    kind: Kind
    names: dict[str, str] = field(default_factory=dict)
    payloads: list[FilePayload] = field(default_factory=list)
    # local name -> (message, where, key) of a problem held back until users are known
    problems: dict[str, tuple[str, Pos, str]] = field(default_factory=dict)
    used_by: dict[str, list[str]] = field(default_factory=dict)

    @property
    def word(self) -> str:
        return self.kind[:-1]

    def drop(self, local: set[str]) -> None:
        """Leave out entries only inactive services use: not sent, their problems unsaid."""
        stored = {self.names[n] for n in local if n in self.names}
        self.payloads = [p for p in self.payloads if p.name not in stored]
        for name in local:
            self.problems.pop(name, None)


def read_defs(top: Reader, kind: Kind, stack: str, environ: Mapping[str, str]) -> FileDefs:
    defs = FileDefs(kind)
    node = top.sub(kind)
    if node is None:
        return defs
    sources = ("file", "environment", "content") if kind == "configs" else ("file", "environment")
    for name, options in node.node.items():
        if name.startswith("x-"):
            continue
        pos = node.where(name)
        if not isinstance(options, YMap):
            top.problems.error(
                f"{defs.word} {name!r} needs a mapping with one of {', '.join(sources)}",
                pos,
                key=f"{kind}.{name}",
            )
            continue
        r = Reader(options, top.problems, None, f"{kind}.{name}")
        r.check_keys(f"top.{defs.word}")
        external = bool(r.bool_("external"))
        custom = r.str_("name")
        defs.names[name] = custom or (name if external else f"{stack}_{name}")
        if external:
            continue
        given = [s for s in sources if s in options]
        if len(given) != 1:
            what = "none" if not given else " and ".join(given)
            r.error(
                given[1] if len(given) > 1 else "file",
                f"{defs.word} {name!r} needs exactly one of {', '.join(sources)}, not {what}",
                hint=f"or external: true for one created with 'swarmlite {defs.word} create'",
                pos=pos,
            )
            continue
        data = _content(r, given[0], environ, defs, name)
        if data is not None:
            labels = {k: v or "" for k, v in (r.str_map("labels") or {}).items()}
            payload = FilePayload(
                name=defs.names[name], data=base64.b64encode(data).decode(), labels=labels
            )
            defs.payloads.append(payload)
    return defs


def _content(
    r: Reader, source: str, environ: Mapping[str, str], defs: FileDefs, name: str
) -> bytes | None:
    value = r.str_(source)
    if value is None:
        return None
    where, key = r.where(source), r.path(source)
    if source == "content":
        data = value.encode()
    elif source == "environment":
        if value not in environ:
            defs.problems[name] = (f"environment variable {value!r} is not set", where, key)
            return None
        data = environ[value].encode()
    else:
        base = os.path.dirname(os.path.abspath(where.file))
        path = os.path.normpath(os.path.join(base, os.path.expanduser(value)))
        try:
            size = os.path.getsize(path)
            if size > MAX_SIZE:
                message = f"file {path} is {size} bytes; a {defs.word} holds at most 500 KB"
                defs.problems[name] = (message, where, key)
                return None
            with open(path, "rb") as f:
                data = f.read()
        except OSError as exc:
            defs.problems[name] = (f"cannot read file {path}: {exc.strerror}", where, key)
            return None
        except ValueError as exc:  # a NUL byte in the path
            defs.problems[name] = (f"cannot read file {path!r}: {exc}", where, key)
            return None
    if len(data) > MAX_SIZE:
        message = f"content is {len(data)} bytes; a {defs.word} holds at most 500 KB"
        defs.problems[name] = (message, where, key)
        return None
    return data


def read_refs(r: Reader, defs: FileDefs) -> tuple[FileRef, ...]:
    """A service's ``secrets:`` or ``configs:`` list."""
    value = r.get(defs.kind)
    if value is None:
        return ()
    if not isinstance(value, YList):
        r.error(defs.kind, f"must be a list, not {type_name(value)}")
        return ()
    out: list[FileRef] = []
    for i, item in enumerate(value):
        pos = value.where(i)
        ref = _ref(r, defs, item, pos)
        if ref is None:
            continue
        if any(o.target == ref.target for o in out):
            r.error(defs.kind, f"two {defs.kind} on the same path {ref.target!r}", pos=pos)
            continue
        out.append(ref)
    return tuple(out)


def _ref(r: Reader, defs: FileDefs, item: object, pos: Pos) -> FileRef | None:
    sub: Reader | None = None
    if isinstance(item, YMap):
        sub = Reader(item, r.problems, r.service, defs.kind)
        sub.check_keys(f"service.{defs.kind}")
        source = sub.str_("source")
    elif isinstance(item, str | int) and not isinstance(item, bool):
        source = str(item)
    else:
        r.error(defs.kind, f"items must be names or mappings, not {type_name(item)}", pos=pos)  # type: ignore[arg-type]
        return None
    if not source:
        r.error(defs.kind, f"a {defs.word} reference needs a source", pos=pos)
        return None
    if source not in defs.names:
        close = difflib.get_close_matches(source, list(defs.names), n=1)
        hint = (
            f"did you mean {close[0]!r}?"
            if close
            else f"declare it under the top-level '{defs.kind}:' key"
        )
        r.error(defs.kind, f"{defs.word} {source!r} is not defined", hint, pos)
        return None
    users = defs.used_by.setdefault(source, [])
    if r.service and r.service not in users:
        users.append(r.service)
    default_target = f"/run/secrets/{source}" if defs.kind == "secrets" else f"/{source}"
    ref = FileRef(
        source=source,
        name=defs.names[source],
        target=default_target,
    )
    if sub is None:
        return ref
    target = sub.str_("target") or ref.target
    if not target.startswith("/"):
        hint = f"use /run/secrets/{target}" if defs.kind == "secrets" else f"use /{target}"
        sub.error("target", f"target {target!r} must be an absolute path", hint)
        return None
    mode = _mode(sub)
    ids = {}
    for key in ("uid", "gid"):
        ids[key] = sub.str_(key) or "0"
        if not ids[key].isdigit():
            sub.error(key, f"must be a numeric id, not {ids[key]!r}")
    return FileRef(
        source=source,
        name=ref.name,
        target=os.path.normpath(target),
        uid=ids["uid"],
        gid=ids["gid"],
        mode=ref.mode if mode is None else mode,
    )


def _mode(r: Reader) -> int | None:
    value = r.get("mode")
    if value is None:
        return None
    try:
        if isinstance(value, str):
            text = value.strip().lower().removeprefix("0o")
            mode = int(text, 8)
        else:
            number = to_int(value)
            digits = str(number)
            mode = int(digits, 8) if set(digits) <= set("01234567") else number
    except (TypeError, ValueError):
        r.error("mode", f"must be an octal file mode like 0440, not {to_str_safe(value)}")
        return None
    if not 0 <= mode <= 0o777:
        r.error("mode", f"must be a file mode between 0 and 0777, not {oct(mode)}")
        return None
    return mode


def to_str_safe(value: object) -> str:
    try:
        return repr(to_str(value))  # type: ignore[arg-type]
    except TypeError:
        return type_name(value)  # type: ignore[arg-type]


def sources_named(node: Value, kind: Kind) -> set[str]:
    """What a service's ``secrets:``/``configs:`` list names, read leniently (the list
    of a service that is not converted)."""
    refs = node.get(kind) if isinstance(node, YMap) else None
    if not isinstance(refs, YList):
        return set()
    out: set[str] = set()
    for item in refs:
        source = item.get("source") if isinstance(item, YMap) else item
        if isinstance(source, str | int) and not isinstance(source, bool):
            out.add(str(source))
    return out


def report_problems(defs: FileDefs, problems: Problems) -> None:
    """Held-back problems of top-level entries, each naming the services that use it."""
    for name, (message, pos, key) in defs.problems.items():
        users = defs.used_by.get(name, [])
        used = f" (used by service {', '.join(users)})" if users else ""
        problems.error(
            f"{defs.word} {name!r}{used}: {message}",
            pos,
            service=users[0] if users else None,
            key=key,
        )

"""Stage 4a: one ``services.NAME`` mapping into a ServiceSpec."""

from __future__ import annotations

import difflib
import os
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import msgspec

from swarmlite.spec.service import (
    SERVICE_NAME,
    Dependency,
    DependsCondition,
    FileRef,
    Mount,
    ServiceSpec,
)

from .deploy import read_deploy, read_healthcheck, read_restart
from .envfile import EnvFileError, read_env_file
from .files import FileDefs, read_refs
from .mounts import read_tmpfs, read_volumes
from .ports import read_expose, read_ports
from .problems import Problems
from .profiles import EnabledProfiles, inactive_dependency
from .reader import Reader, to_str
from .tree import Pos, Value, YList, YMap, type_name

_CONDITIONS = ("service_started", "service_healthy", "service_completed_successfully")


@dataclass
class StackContext:
    """What every service's conversion may look up."""

    problems: Problems
    stack: str
    environ: Mapping[str, str]
    services: list[str]
    volumes: set[str]
    networks: set[str]
    # external volumes: stack-local name -> the volume's own name
    external_volumes: dict[str, str] = field(default_factory=dict)
    # (service, dependency) -> where the dependency is written, for cycle errors
    dependency_pos: dict[tuple[str, str], Pos] = field(default_factory=dict)
    secrets: FileDefs = field(default_factory=lambda: FileDefs("secrets"))
    configs: FileDefs = field(default_factory=lambda: FileDefs("configs"))
    # services left out by their profiles -> those profiles
    inactive: dict[str, tuple[str, ...]] = field(default_factory=dict)
    enabled: EnabledProfiles = field(default_factory=EnabledProfiles)


def read_service(name: str, node: Value, pos: Pos, ctx: StackContext) -> ServiceSpec | None:
    problems = ctx.problems
    if not SERVICE_NAME.fullmatch(name):
        problems.error(
            "invalid service name: use letters, digits, '_', '.' and '-', starting with a "
            "letter or digit",
            pos,
            service=name,
        )
        return None
    if not isinstance(node, YMap):
        problems.error(f"a service must be a mapping, not {type_name(node)}", pos, service=name)
        return None
    r = Reader(node, problems, name, "")
    r.check_keys("service")
    image = r.str_("image")
    if "build" in node:
        if image:
            problems.unsupported("build", name)
        else:
            r.error(
                "build",
                f"service {name!r} has 'build' but no 'image': swarmlite does not build images; "
                "build and tag it first (docker build -t NAME .) and set image: NAME",
            )
    elif not image and "image" not in node:
        r.error("image", "service has no image", "set image: NAME[:TAG]", pos=pos)
    deploy = read_deploy(r)
    fields: dict[str, Any] = dict(deploy.fields)
    if not deploy.has_restart_policy:
        policy = read_restart(r)
        if policy is not None:
            fields["restart_policy"] = policy
    elif "restart" in node:
        read_restart(r)  # still validated, but deploy.restart_policy wins
    fields["command"] = _command(r, "command")
    fields["entrypoint"] = _command(r, "entrypoint")
    fields["environment"] = _environment(r, ctx.environ)
    fields["labels"] = {k: v or "" for k, v in (r.str_map("labels") or {}).items()}
    fields["ports"] = read_ports(r)
    fields["expose"] = read_expose(r)
    fields["healthcheck"] = read_healthcheck(r)
    fields["working_dir"] = r.str_("working_dir")
    fields["user"] = r.str_("user")
    fields["stop_signal"] = r.str_("stop_signal")
    grace = r.duration("stop_grace_period")
    if grace is not None:
        fields["stop_grace_period"] = grace
    fields["mounts"] = _mounts(r, ctx.volumes, ctx.external_volumes)
    fields["networks"] = _networks(r, ctx.networks)
    fields["depends_on"] = _depends_on(r, ctx)
    fields["secrets"] = read_refs(r, ctx.secrets)
    fields["configs"] = read_refs(r, ctx.configs)
    _check_targets(r, fields["mounts"], fields["secrets"] + fields["configs"])
    if not image:
        return None
    return ServiceSpec(name=name, stack=ctx.stack, image=image, **fields)


def _command(r: Reader, key: str) -> tuple[str, ...] | None:
    def split(text: str) -> list[str]:
        try:
            return shlex.split(text)
        except ValueError as exc:  # "No closing quotation"
            r.error(key, f"cannot split {text!r} like a shell: {exc}")
            return []

    value = r.str_list(key, split=split)
    return None if value is None else tuple(value)


def _environment(r: Reader, environ: Mapping[str, str]) -> dict[str, str]:
    """env_file entries first, then ``environment``; a bare KEY comes from environ."""
    out: dict[str, str] = {}
    for key, value in _env_files(r, environ):
        _set_env(out, key, value, environ)
    for key, value in (r.str_map("environment") or {}).items():
        _set_env(out, key, value, environ)
    return out


def _set_env(out: dict[str, str], key: str, value: str | None, environ: Mapping[str, str]) -> None:
    if value is None:
        value = environ.get(key)
    if value is None:
        out.pop(key, None)  # unset in environ: dropped, as Compose does
    else:
        out[key] = value


def _env_files(r: Reader, environ: Mapping[str, str]) -> list[tuple[str, str | None]]:
    """Entries of every env_file; ``${VAR}`` in one reads earlier files, then environ."""
    value = r.get("env_file")
    if value is None:
        return []
    items = value if isinstance(value, YList) else [value]
    out: list[tuple[str, str | None]] = []
    for i, item in enumerate(items):
        pos = value.where(i) if isinstance(value, YList) else r.where("env_file")
        required = True
        if isinstance(item, YMap):
            sub = Reader(item, r.problems, r.service, "env_file")
            sub.check_keys("env_file")
            path, required = sub.str_("path"), sub.bool_("required") is not False
        elif isinstance(item, str):
            path = item
        else:
            r.error(
                "env_file", f"must be a path or a list of paths, not {type_name(item)}", pos=pos
            )
            continue
        if not path:
            r.error("env_file", "an env_file entry needs a path", pos=pos)
            continue
        # Relative to the file that named it, not to the current directory.
        full = os.path.join(os.path.dirname(os.path.abspath(pos.file)), os.path.expanduser(path))
        if not os.path.exists(full) and not required:
            continue
        try:
            earlier = {k: v for k, v in out if v is not None}
            out.extend((k, v) for k, v, _ in read_env_file(Path(full), {**environ, **earlier}))
        except EnvFileError as exc:
            where = f" (line {exc.line} of the env file)" if exc.line else ""
            r.error("env_file", f"{exc}{where}", pos=pos)
    return out


def _mounts(r: Reader, volumes: set[str], external: dict[str, str]) -> tuple[Mount, ...]:
    mounts = [
        msgspec.structs.replace(m, source=external[m.source], external=True)
        if m.type == "volume" and m.source in external
        else m
        for m in read_volumes(r, volumes)
    ] + read_tmpfs(r)
    seen: set[str] = set()
    for mount in mounts:
        if mount.target in seen:
            r.error("volumes", f"two mounts on the same container path {mount.target!r}")
        seen.add(mount.target)
    return tuple(mounts)


def _check_targets(r: Reader, mounts: tuple[Mount, ...], refs: tuple[FileRef, ...]) -> None:
    taken = {m.target for m in mounts}
    for ref in refs:
        if ref.target in taken:
            r.error("secrets", f"{ref.source!r} and another mount use the same path {ref.target!r}")
        taken.add(ref.target)


def _networks(r: Reader, declared: set[str]) -> tuple[str, ...]:
    value = r.get("networks")
    if value is None:
        return ("default",)
    names: list[tuple[str, Pos]] = []
    if isinstance(value, YList):
        for i, item in enumerate(value):
            if isinstance(item, YMap | YList) or item is None:
                msg = f"items must be network names, not {type_name(item)}"
                r.error("networks", msg, pos=value.where(i))
                continue
            names.append((to_str(item), value.where(i)))
    elif isinstance(value, YMap):
        for net, options in value.items():
            if isinstance(options, YMap):
                sub = Reader(options, r.problems, r.service, f"networks.{net}")
                sub.check_keys("networks")
            elif options is not None:
                r.error("networks", f"options of network {net!r} must be a mapping")
            names.append((net, value.where(net)))
    else:
        r.error("networks", f"must be a list or a mapping, not {type_name(value)}")
        return ("default",)
    out: list[str] = []
    for net, pos in names:
        if net != "default" and net not in declared:
            hint = (
                f"declared networks: {', '.join(sorted(declared))}"
                if declared
                else "declare it under the top-level 'networks:' key"
            )
            r.error(
                "networks", f"network {net!r} is not declared in the top-level networks", hint, pos
            )
        elif net not in out:
            out.append(net)
    return tuple(out)


def _depends_on(r: Reader, ctx: StackContext) -> tuple[Dependency, ...]:
    value = r.get("depends_on")
    if value is None:
        return ()
    entries: list[tuple[str, Pos, Reader | None]] = []
    if isinstance(value, YList):
        for i, item in enumerate(value):
            if not isinstance(item, str):
                msg = f"items must be service names, not {type_name(item)}"
                r.error("depends_on", msg, pos=value.where(i))
                continue
            entries.append((item, value.where(i), None))
    elif isinstance(value, YMap):
        for dep, options in value.items():
            sub = None
            if isinstance(options, YMap):
                sub = Reader(options, r.problems, r.service, f"depends_on.{dep}")
                sub.check_keys("depends_on")
            elif options is not None:
                r.error("depends_on", f"options of {dep!r} must be a mapping", pos=value.where(dep))
            entries.append((dep, value.where(dep), sub))
    else:
        r.error("depends_on", f"must be a list or a mapping, not {type_name(value)}")
        return ()
    out: list[Dependency] = []
    for dep, pos, sub in entries:
        if dep not in ctx.services:
            close = difflib.get_close_matches(dep, ctx.services, n=1)
            hint = (
                f"did you mean {close[0]!r}?" if close else f"services: {', '.join(ctx.services)}"
            )
            r.error("depends_on", f"depends on unknown service {dep!r}", hint, pos)
            continue
        if dep == r.service:
            r.error("depends_on", f"service {dep!r} depends on itself", pos=pos)
            continue
        if dep in ctx.inactive:
            # As Compose: refused, unless the dependency is optional; then it is dropped.
            if sub is None or sub.bool_("required") is not False:
                message, hint = inactive_dependency(
                    dep, ctx.inactive[dep], r.service or "", ctx.enabled
                )
                r.error("depends_on", message, hint, pos)
            continue
        ctx.dependency_pos[(r.service or "", dep)] = pos
        if sub is None:
            out.append(Dependency(service=dep))
            continue
        condition = sub.choice("condition", _CONDITIONS) or "service_started"
        out.append(
            Dependency(
                service=dep,
                condition=cast(DependsCondition, condition),
                required=sub.bool_("required") is not False,
                restart=bool(sub.bool_("restart")),
            )
        )
    return tuple(out)

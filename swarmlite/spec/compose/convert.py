"""Stage 4: the merged tree into a StackSpec, every problem gathered in one pass."""

from __future__ import annotations

from collections.abc import Mapping

from swarmlite.spec.service import NetworkSpec, ServiceSpec, StackSpec, VolumeSpec

from .files import read_defs, report_problems, sources_named
from .keys import check_keys
from .problems import Problems
from .profiles import (
    EnabledProfiles,
    check_inactive,
    no_active_service,
    read_profiles,
    unused_profiles,
)
from .reader import Reader, to_bool
from .services import StackContext, read_service
from .tree import Pos, Value, YMap, type_name

_QUIET_DRIVERS = ("bridge", "overlay")


def convert(
    tree: YMap,
    stack: str,
    environ: Mapping[str, str],
    problems: Problems,
    enabled: EnabledProfiles | None = None,
) -> StackSpec | None:
    """Build the stack of the services ``enabled`` makes active (``profiles.py``);
    returns None when errors were recorded."""
    enabled = enabled or EnabledProfiles()
    check_keys(tree, "", problems, service=None, prefix="")
    top = Reader(tree, problems, None, "")
    volumes = _volumes(top)
    networks = _networks(top)
    secrets = read_defs(top, "secrets", stack, environ)
    configs = read_defs(top, "configs", stack, environ)
    services_node = tree.get("services")
    if not isinstance(services_node, YMap) or not services_node:
        what = (
            "no services"
            if not services_node
            else f"services is {type_name(services_node)}, not a mapping"
        )
        problems.error(
            f"{what}; a compose file needs a 'services:' mapping", tree.where("services")
        )
        return None
    names = [n for n in services_node if not n.startswith("x-")]
    profiles = {n: read_profiles(n, services_node[n], problems) for n in names}
    inactive = {n: p for n, p in profiles.items() if not enabled.enables(p)}
    for unused in unused_profiles(enabled, profiles):
        problems.warn(f"profile {unused!r} ({enabled.source}) is not used by any service")
    if names and len(inactive) == len(names):
        no_active_service(profiles, enabled, tree.where("services"), problems)
        return None
    ctx = StackContext(
        problems=problems,
        stack=stack,
        environ=environ,
        services=names,
        inactive=inactive,
        enabled=enabled,
        volumes={v.name for v in volumes},
        external_volumes={v.name: v.external_name or v.name for v in volumes if v.external},
        networks={n.name for n in networks},
        secrets=secrets,
        configs=configs,
    )
    services: list[ServiceSpec] = []
    for name in names:
        if name in inactive:
            check_inactive(name, services_node[name], problems)
            continue
        spec = read_service(name, services_node[name], services_node.where(name), ctx)
        if spec is not None:
            services.append(spec)
    _check_cycles(services, ctx)
    for defs in (secrets, configs):
        named = {s for n in inactive for s in sources_named(services_node[n], defs.kind)}
        defs.drop(named - set(defs.used_by))
    report_problems(secrets, problems)
    report_problems(configs, problems)
    if problems.errors:
        return None
    if any("default" in s.networks for s in services) and "default" not in ctx.networks:
        networks.append(NetworkSpec(name="default"))
    return StackSpec(
        name=stack,
        services=tuple(services),
        networks=tuple(networks),
        volumes=tuple(volumes),
        warnings=problems.all_warnings(),
        secrets=tuple(secrets.payloads),
        configs=tuple(configs.payloads),
    )


def _entries(top: Reader, key: str, section: str) -> list[tuple[str, Reader | None, Pos]]:
    """``volumes:``/``networks:`` entries: each name with its (checked) options, if any."""
    node = top.sub(key)
    if node is None:
        return []
    out: list[tuple[str, Reader | None, Pos]] = []
    for name, options in node.node.items():
        if name.startswith("x-"):
            continue
        pos = node.where(name)
        if options is None:
            out.append((name, None, pos))
        elif isinstance(options, YMap):
            sub = Reader(options, top.problems, None, f"{key}.{name}")
            sub.check_keys(section)
            out.append((name, sub, pos))
        else:
            top.problems.error(
                f"options of {key[:-1]} {name!r} must be a mapping, not {type_name(options)}",
                pos,
                key=f"{key}.{name}",
            )
    return out


def _volumes(top: Reader) -> list[VolumeSpec]:
    out: list[VolumeSpec] = []
    for name, r, _ in _entries(top, "volumes", "top.volume"):
        if r is None:
            out.append(VolumeSpec(name=name))
            continue
        external = _external(r)
        custom = r.str_("name")
        if custom and not external:
            r.problems.warn(
                f"volume {name!r}: name {custom!r} is ignored; stack volumes are scoped"
            )
        out.append(
            VolumeSpec(
                name=name,
                driver=r.str_("driver") or "local",
                driver_opts={k: v or "" for k, v in (r.str_map("driver_opts") or {}).items()},
                labels={k: v or "" for k, v in (r.str_map("labels") or {}).items()},
                external=external,
                external_name=custom if external else None,
            )
        )
    return out


def _external(r: Reader) -> bool:
    value = r.get("external")
    if isinstance(value, YMap):  # the old `external: {name: x}` form
        if isinstance(value.get("name"), str) and "name" not in r.node:
            r.node.put("name", value["name"], value.where("name"))
        return True
    return bool(r.bool_("external"))


def _networks(top: Reader) -> list[NetworkSpec]:
    out: list[NetworkSpec] = []
    for name, r, _ in _entries(top, "networks", "top.network"):
        if r is None:
            out.append(NetworkSpec(name=name))
            continue
        driver = r.str_("driver")
        if driver and driver not in _QUIET_DRIVERS:
            r.problems.warn(
                f"network {name!r}: driver {driver!r} is ignored; swarmlite uses overlay"
            )
        if "external" in r.node and _safe_bool(r.get("external")):
            r.problems.unsupported(f"networks.{name}.external", None)
        if "name" in r.node:
            r.problems.unsupported(f"networks.{name}.name", None)
        out.append(
            NetworkSpec(
                name=name,
                labels={k: v or "" for k, v in (r.str_map("labels") or {}).items()},
                internal=bool(r.bool_("internal")),
            )
        )
    return out


def _safe_bool(value: Value) -> bool:
    try:
        return isinstance(value, YMap) or to_bool(value)
    except (TypeError, ValueError):
        return True


def _check_cycles(services: list[ServiceSpec], ctx: StackContext) -> None:
    """Report each depends_on cycle once, as ``web -> api -> web``."""
    graph = {s.name: [d.service for d in s.depends_on] for s in services}
    done: set[str] = set()
    reported: set[frozenset[str]] = set()

    def visit(name: str, path: list[str]) -> None:
        if name in path:
            cycle = [*path[path.index(name) :], name]
            if frozenset(cycle) not in reported:
                reported.add(frozenset(cycle))
                ctx.problems.error(
                    f"dependency cycle: {' -> '.join(cycle)}",
                    ctx.dependency_pos.get((cycle[0], cycle[1])),
                    service=cycle[0],
                    key="depends_on",
                )
            return
        if name in done:
            return
        for dep in graph.get(name, []):
            visit(dep, [*path, name])
        done.add(name)

    for name in graph:
        visit(name, [])

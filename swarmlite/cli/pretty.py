"""Human-readable ``inspect --pretty`` output for services and nodes (pure)."""

from __future__ import annotations

import datetime as dt

from swarmlite.spec.objects import Node, Service
from swarmlite.spec.service import UpdateConfig


def _when(timestamp: float) -> str:
    if timestamp <= 0:
        return "unknown"
    return dt.datetime.fromtimestamp(timestamp, dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _kv(lines: list[str], key: str, value: object, indent: int = 0) -> None:
    lines.append(f"{' ' * indent}{key + ':':<17} {value}")


def _labels(lines: list[str], title: str, labels: dict[str, str], indent: int = 0) -> None:
    if not labels:
        return
    lines.append(" " * indent + title + ":")
    lines.extend(f"{' ' * (indent + 1)}{k}={v}" for k, v in sorted(labels.items()))


def _update_config(lines: list[str], title: str, cfg: UpdateConfig) -> None:
    lines.append(f"{title}:")
    _kv(lines, "Parallelism", cfg.parallelism, 1)
    if cfg.delay:
        _kv(lines, "Delay", f"{cfg.delay:g}s", 1)
    _kv(lines, "On failure", cfg.failure_action, 1)
    _kv(lines, "Monitoring", f"{cfg.monitor:g}s", 1)
    _kv(lines, "Max failure", f"{cfg.max_failure_ratio:g}", 1)
    _kv(lines, "Order", cfg.order, 1)


def pretty_service(service: Service) -> str:
    spec = service.spec
    lines: list[str] = []
    _kv(lines, "ID", service.id)
    _kv(lines, "Name", service.name)
    _kv(lines, "Stack", spec.stack)
    _labels(lines, "Labels", spec.deploy_labels)
    _kv(lines, "Service Mode", spec.mode.capitalize())
    if spec.mode == "replicated":
        _kv(lines, "Replicas", spec.replicas, 1)
    _kv(lines, "Version", service.version)
    _kv(lines, "Created at", _when(service.created_at))
    _kv(lines, "Updated at", _when(service.updated_at))
    if service.update_status.state:
        lines.append("UpdateStatus:")
        _kv(lines, "State", service.update_status.state, 1)
        if service.update_status.message:
            _kv(lines, "Message", service.update_status.message, 1)
        if service.update_status.started_at:
            _kv(lines, "Started", _when(service.update_status.started_at), 1)
        if service.update_status.completed_at:
            _kv(lines, "Completed", _when(service.update_status.completed_at), 1)
    if service.previous_spec is not None:
        _kv(lines, "Previous image", service.previous_spec.image)
    placement = spec.placement
    if placement.constraints or placement.preferences or placement.max_replicas_per_node:
        lines.append("Placement:")
        if placement.constraints:
            _kv(lines, "Constraints", ", ".join(placement.constraints), 1)
        if placement.preferences:
            _kv(lines, "Preferences", ", ".join(placement.preferences), 1)
        if placement.max_replicas_per_node:
            _kv(lines, "Max per node", placement.max_replicas_per_node, 1)
    _update_config(lines, "UpdateConfig", spec.update_config)
    _update_config(lines, "RollbackConfig", spec.rollback_config)
    lines.append("ContainerSpec:")
    _kv(lines, "Image", spec.image, 1)
    if spec.entrypoint:
        _kv(lines, "Entrypoint", " ".join(spec.entrypoint), 1)
    if spec.command:
        _kv(lines, "Args", " ".join(spec.command), 1)
    if spec.environment:
        lines.append(" Env:")
        lines.extend(f"  {k}={v}" for k, v in sorted(spec.environment.items()))
    if spec.healthcheck is not None:
        test = " ".join(spec.healthcheck.test) or "the image's test"
        _kv(lines, "Healthcheck", test, 1)
    if spec.mounts:
        lines.append("Mounts:")
        for mount in spec.mounts:
            mode = " (read-only)" if mount.read_only else ""
            lines.append(f" {mount.type}: {mount.source or '-'} -> {mount.target}{mode}")
    limits, reservations = spec.resources.limits, spec.resources.reservations
    if limits.cpus or limits.memory or reservations.cpus or reservations.memory:
        lines.append("Resources:")
        for title, amounts in (("Limits", limits), ("Reservations", reservations)):
            if amounts.cpus or amounts.memory:
                lines.append(f" {title}:")
                if amounts.cpus:
                    _kv(lines, "CPU", f"{amounts.cpus:g}", 2)
                if amounts.memory:
                    _kv(lines, "Memory", f"{amounts.memory / 2**20:g}MiB", 2)
    if spec.networks:
        _kv(lines, "Networks", " ".join(spec.networks))
    if service.endpoints:
        lines.append("Endpoints:")
        lines.extend(f" {net}: {vip}" for net, vip in sorted(service.endpoints.items()))
    if spec.ports:
        lines.append("Ports:")
        for port in service.published_ports():
            lines.append(f" PublishedPort = {port.published or '-'}")
            lines.append(f"  Protocol = {port.protocol}")
            lines.append(f"  TargetPort = {port.target}")
            lines.append(f"  PublishMode = {port.mode}")
    return "\n".join(lines)


def pretty_node(node: Node) -> str:
    lines: list[str] = []
    _kv(lines, "ID", node.id)
    _labels(lines, "Labels", node.labels)
    _kv(lines, "Hostname", node.hostname)
    _kv(lines, "Joined at", _when(node.created_at))
    lines.append("Status:")
    _kv(lines, "State", node.status.state.capitalize(), 1)
    if node.status.message:
        _kv(lines, "Message", node.status.message, 1)
    if node.status.engine:
        _kv(lines, "Engine", node.status.engine, 1)
    _kv(lines, "Availability", node.availability.capitalize(), 1)
    _kv(lines, "Address", f"{node.addr}:{node.api_port}", 1)
    _kv(lines, "Role", node.role, 1)
    lines.append("Platform:")
    _kv(lines, "Operating System", node.platform.os, 1)
    _kv(lines, "Architecture", node.platform.arch, 1)
    lines.append("Resources:")
    _kv(lines, "CPUs", f"{node.resources.cpus:g}", 1)
    _kv(lines, "Memory", f"{node.resources.memory / 2**30:.1f}GiB", 1)
    return "\n".join(lines)

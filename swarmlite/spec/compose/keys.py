"""Which keys each section of a compose file may hold.

``SUPPORTED`` keys are converted. ``IGNORED`` keys are valid Compose that
swarmlite does not act on: they become one "Ignoring unsupported options"
warning. Any other key is a typo or not Compose at all: an error with a hint.
``x-*`` extension keys are skipped everywhere.
"""

from __future__ import annotations

import difflib

from .problems import Problems
from .tree import YMap


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


SUPPORTED: dict[str, frozenset[str]] = {
    "": _words("configs name networks secrets services version volumes"),
    "service": _words(
        "build command configs depends_on deploy entrypoint env_file environment expose "
        "healthcheck image labels networks ports profiles restart secrets stop_grace_period "
        "stop_signal tmpfs user volumes working_dir"
    ),
    "deploy": _words(
        "labels mode placement replicas resources restart_policy rollback_config update_config"
    ),
    "deploy.resources": _words("limits reservations"),
    "deploy.resources.limits": _words("cpus memory"),
    "deploy.resources.reservations": _words("cpus memory"),
    "deploy.restart_policy": _words("condition delay max_attempts window"),
    "deploy.placement": _words("constraints max_replicas_per_node preferences"),
    "deploy.update_config": _words(
        "delay failure_action max_failure_ratio monitor order parallelism"
    ),
    "healthcheck": _words("disable interval retries start_period test timeout"),
    "ports": _words("app_protocol host_ip mode protocol published target"),
    "volumes": _words("read_only source target tmpfs type"),
    "volumes.tmpfs": _words("size"),
    "depends_on": _words("condition required restart"),
    "env_file": _words("path required"),
    "networks": _words(""),
    "top.volume": _words("driver driver_opts external labels name"),
    "top.network": _words("driver external internal labels name"),
    "top.secret": _words("environment external file labels name"),
    "top.config": _words("content environment external file labels name"),
    "service.secrets": _words("gid mode source target uid"),
    "service.configs": _words("gid mode source target uid"),
}
SUPPORTED["deploy.rollback_config"] = SUPPORTED["deploy.update_config"]

IGNORED: dict[str, frozenset[str]] = {
    "": _words("include models"),
    "service": _words(
        "annotations attach blkio_config cap_add cap_drop cgroup cgroup_parent "
        "container_name cpu_count cpu_percent cpu_period cpu_quota cpu_rt_period "
        "cpu_rt_runtime cpu_shares cpus cpuset credential_spec develop "
        "device_cgroup_rules devices dns dns_opt dns_search domainname extends "
        "external_links extra_hosts gpus group_add hostname init ipc isolation "
        "label_file links logging mac_address mem_limit mem_reservation mem_swappiness "
        "memswap_limit models network_mode oom_kill_disable oom_score_adj pid "
        "pids_limit platform post_start pre_stop privileged provider "
        "pull_policy read_only runtime scale security_opt shm_size stdin_open "
        "storage_opt sysctls tty ulimits use_api_socket userns_mode uts volumes_from"
    ),
    "deploy": _words("endpoint_mode"),
    "deploy.resources.limits": _words("pids"),
    "deploy.resources.reservations": _words("devices generic_resources"),
    "healthcheck": _words("start_interval"),
    "ports": _words("name"),
    "volumes": _words("bind consistency image volume"),
    "volumes.tmpfs": _words("mode"),
    "env_file": _words("format"),
    "networks": _words(
        "aliases driver_opts gw_priority interface_name ipv4_address ipv6_address "
        "link_local_ips mac_address priority"
    ),
    "top.volume": _words(""),
    "top.network": _words("attachable driver_opts enable_ipv4 enable_ipv6 ipam"),
    "top.secret": _words("driver driver_opts template_driver"),
    "top.config": _words("template_driver"),
}


def check_keys(
    node: YMap,
    section: str,
    problems: Problems,
    *,
    service: str | None,
    prefix: str,
) -> None:
    """Report unknown keys of ``node`` and record ignored ones.

    ``section`` picks the key sets; ``prefix`` is how the node's keys are named
    in messages (``deploy.resources.limits``, ``networks.front``...).
    """
    supported = SUPPORTED.get(section, frozenset())
    ignored = IGNORED.get(section, frozenset())
    for key in node:
        if key.startswith("x-") or key in supported:
            continue
        dotted = f"{prefix}.{key}" if prefix else key
        if key in ignored:
            problems.unsupported(dotted, service)
            continue
        close = difflib.get_close_matches(key, sorted(supported | ignored), n=1)
        problems.error(
            f"unknown key {key!r}",
            node.where(key),
            service=service,
            key=dotted,
            hint=f"did you mean {close[0]!r}?" if close else None,
        )

"""Blocking container operations on the Docker SDK; they run in the runtime's threads."""

from __future__ import annotations

import logging

import docker
import docker.errors
import requests.exceptions

from swarmlite.agent.containers import LABEL_NODE, LABEL_TASK, ContainerConfig
from swarmlite.errors import RuntimeFailure

log = logging.getLogger("swarmlite.agent.runtime")


def create_container(
    api: docker.APIClient, cfg: ContainerConfig, task_id: str, node_id: str
) -> str:
    """Create the task's container (or take back its own, after a crash) on all networks."""
    try:
        cid: str = api.create_container(**cfg.create_kwargs())["Id"]
    except docker.errors.ImageNotFound as exc:
        raise RuntimeFailure(f"image not found: {cfg.image}") from exc
    except docker.errors.APIError as exc:
        if exc.status_code != 409:
            raise
        cid = _adopt(api, cfg, task_id, node_id)
    if len(cfg.networks) <= 1:
        return cid  # created on its only network
    try:
        attrs = api.inspect_container(cid)
        attached = (attrs.get("NetworkSettings") or {}).get("Networks") or {}
        for net in cfg.networks[1:]:
            if net not in attached:
                api.connect_container_to_network(cid, net)
    except Exception:
        _remove_quietly(api, cid)
        raise
    return cid


def _adopt(api: docker.APIClient, cfg: ContainerConfig, task_id: str, node_id: str) -> str:
    try:
        attrs = api.inspect_container(cfg.name)
    except docker.errors.NotFound as exc:
        raise RuntimeFailure(f"container name {cfg.name} conflicts, then vanished") from exc
    labels = attrs["Config"].get("Labels") or {}
    if labels.get(LABEL_TASK) != task_id or labels.get(LABEL_NODE) != node_id:
        raise RuntimeFailure(
            f"container name {cfg.name} is taken by container {attrs['Id'][:12]} "
            "that is not this task's; remove it"
        )
    return str(attrs["Id"])


def stop_container(api: docker.APIClient, cid: str, grace: float, signal: str | None) -> None:
    """Send ``signal`` (else the container's stop signal, else SIGTERM), wait up to
    ``grace`` seconds for it to exit, then SIGKILL; return once it has stopped."""
    try:
        attrs = api.inspect_container(cid)
    except docker.errors.NotFound:
        return
    if not attrs["State"].get("Running"):
        return
    sig = signal or attrs["Config"].get("StopSignal") or "SIGTERM"
    if not _kill(api, cid, sig):
        return
    if grace > 0 and _wait(api, cid, grace):
        return
    log.info("container=%s still running %.1fs after %s: killing", cid[:12], grace, sig)
    if _kill(api, cid, "SIGKILL"):
        _wait(api, cid, 30.0)


def _kill(api: docker.APIClient, cid: str, sig: str) -> bool:
    """Send ``sig``; False when the container is gone or no longer running."""
    try:
        api.kill(cid, sig)
    except docker.errors.NotFound:
        return False
    except docker.errors.APIError as exc:
        if exc.status_code == 409:  # not running
            return False
        raise
    return True


def _wait(api: docker.APIClient, cid: str, timeout: float) -> bool:
    """True when the container stopped within ``timeout`` seconds."""
    try:
        api.wait(cid, timeout=timeout)  # type: ignore[arg-type]  # float works (requests)
    except docker.errors.NotFound:
        return True
    except requests.exceptions.RequestException:
        return False
    return True


def _remove_quietly(api: docker.APIClient, cid: str) -> None:
    try:
        api.remove_container(cid, v=True, force=True)
    except docker.errors.DockerException:
        log.warning("container=%s could not be removed after a failed create", cid[:12])

"""Stack networks and volumes on the Docker Engine: blocking, run in the runtime's threads.

A stack network is a bridge named ``Network.name`` with the network's subnet and
gateway, containers drawing from the lower half of the subnet (the upper half holds
VIPs), interface ``sl-<id[:11]>`` and the label ``swarmlite.network.id``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import docker
import docker.errors
from docker.types import IPAMConfig, IPAMPool

from swarmlite.agent.containers import (
    BRIDGE_NAME_OPTION,
    LABEL_NAMESPACE,
    LABEL_NETWORK_ID,
    LABEL_NODE,
    LABEL_STACK,
    bridge_name,
    split_subnet,
)
from swarmlite.errors import RuntimeFailure
from swarmlite.spec.objects import Network

log = logging.getLogger("swarmlite.agent.runtime")


def find_network(api: docker.APIClient, name: str) -> dict[str, Any] | None:
    """The network named exactly ``name`` (Docker's name filter also matches parts)."""
    for found in api.networks(names=[name]):
        if found.get("Name") == name:
            return dict(found)
    return None


def network_matches(found: Mapping[str, Any], net: Network) -> bool:
    lower, _ = split_subnet(net.subnet)
    configs = (found.get("IPAM") or {}).get("Config") or []
    options = found.get("Options") or {}
    labels = found.get("Labels") or {}
    return (
        len(configs) == 1
        and configs[0].get("Subnet") == net.subnet
        and configs[0].get("Gateway") == net.gateway
        and configs[0].get("IPRange") == str(lower)
        and options.get(BRIDGE_NAME_OPTION) == bridge_name(net)
        and labels.get(LABEL_NETWORK_ID) == net.id
        and bool(found.get("Internal")) == net.internal
    )


def _describe(found: Mapping[str, Any]) -> str:
    configs = (found.get("IPAM") or {}).get("Config") or []
    subnets = ",".join(str(c.get("Subnet")) for c in configs) or "no subnet"
    netid = (found.get("Labels") or {}).get(LABEL_NETWORK_ID, "unlabelled")
    return f"subnet {subnets}, network id {netid}"


def _users(api: docker.APIClient, name: str) -> list[str]:
    """Names of the containers, running or not, attached to network ``name``."""
    found = api.containers(all=True, filters={"network": name})
    return sorted(c["Names"][0].lstrip("/") for c in found)


def ensure_network(api: docker.APIClient, net: Network, node_id: str) -> None:
    """Create the bridge, or accept an identical one; recreate a different one if unused.

    The bridge is labelled with ``node_id``, so ``leave`` can remove what this node made."""
    existing = find_network(api, net.name)
    if existing is not None:
        if network_matches(existing, net):
            return
        users = _users(api, net.name)
        if users:
            raise RuntimeFailure(
                f"network {net.name} exists with other settings ({_describe(existing)}) "
                f"and containers use it ({', '.join(users[:5])}); remove them, then deploy again"
            )
        log.info("network=%s recreating: was %s", net.name, _describe(existing))
        api.remove_network(existing["Id"])
    lower, _ = split_subnet(net.subnet)
    ipam = IPAMConfig(
        pool_configs=[IPAMPool(subnet=net.subnet, iprange=str(lower), gateway=net.gateway)]
    )
    labels = {**net.labels, LABEL_NETWORK_ID: net.id, LABEL_STACK: net.stack,
              LABEL_NAMESPACE: net.stack, LABEL_NODE: node_id}  # fmt: skip

    def create() -> None:
        api.create_network(
            net.name,
            driver="bridge",
            options={BRIDGE_NAME_OPTION: bridge_name(net)},
            ipam=ipam,
            internal=net.internal,
            labels=labels,
            check_duplicate=True,
        )

    try:
        try:
            create()
        except docker.errors.APIError as exc:
            if "overlaps" not in str(exc.explanation or exc).lower() or not _free_subnet(api, net):
                raise
            create()
    except docker.errors.APIError as exc:
        again = find_network(api, net.name)
        if again is not None and network_matches(again, net):
            return  # another caller created it meanwhile
        why = str(exc.explanation or exc)
        if "overlaps" in why.lower():
            why += (
                "; another Docker network on this node uses that range: remove it "
                "(docker network ls) or give the cluster another --default-addr-pool at init"
            )
        raise RuntimeFailure(f"create network {net.name} ({net.subnet}): {why}") from exc
    log.info("network=%s created subnet=%s bridge=%s", net.name, net.subnet, bridge_name(net))


def _free_subnet(api: docker.APIClient, net: Network) -> bool:
    """Remove an unused stack bridge that still holds ``net``'s subnet; True if one went.

    A removed stack's bridge goes only once its last container is gone, and its subnet
    may be allocated again before that (``stack rm`` then ``deploy``)."""
    freed = False
    for other in api.networks(filters={"label": LABEL_NETWORK_ID}):
        configs = (other.get("IPAM") or {}).get("Config") or []
        if other.get("Name") == net.name or net.subnet not in {c.get("Subnet") for c in configs}:
            continue
        if remove_network(api, str(other["Name"])):
            log.info("network=%s removed: it held subnet %s for %s", other["Name"], net.subnet,
                     net.name)  # fmt: skip
            freed = True
    return freed


def remove_network(api: docker.APIClient, name: str) -> bool:
    """Remove the network; False if it is still in use and was kept (not an error)."""
    found = find_network(api, name)
    if found is None:
        return True
    # Docker removes a network that only stopped containers reference; they could
    # then never start again, so any container keeps it.
    users = _users(api, name)
    if users:
        log.info("network=%s kept: containers %s reference it", name, ", ".join(users[:5]))
        return False
    try:
        api.remove_network(found["Id"])
    except docker.errors.NotFound:
        return True
    except docker.errors.APIError as exc:
        if exc.status_code in (403, 409):
            log.info("network=%s kept: %s", name, exc.explanation)
            return False
        raise
    return True


def node_networks(api: docker.APIClient, node_id: str) -> list[str]:
    """Names of the stack networks this node's agent created."""
    return sorted(n["Name"] for n in api.networks(filters={"label": f"{LABEL_NODE}={node_id}"}))


def ensure_volume(
    api: docker.APIClient,
    name: str,
    driver: str,
    driver_opts: Mapping[str, str],
    labels: Mapping[str, str],
) -> None:
    """Create the named volume unless it exists (an existing one is kept as it is)."""
    try:
        api.inspect_volume(name)
        return
    except docker.errors.NotFound:
        pass
    api.create_volume(name, driver=driver, driver_opts=dict(driver_opts), labels=dict(labels))

"""A node's on-disk configuration: where it listens, who it is, where its data lives.

Layout of a data dir (default ``~/.local/share/swarmlite``)::

    node.json          NodeConfig
    certs/             node.crt node.key ca.crt (ca.key on managers)
    admin/             client.crt client.key ca.crt: the local CLI's credential
    etcd/              the etcd member's data (managers)
    daemon.log daemon.pid etcd.log
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

import msgspec

from swarmlite.errors import DaemonError
from swarmlite.spec.service import Frozen

DEFAULT_API_PORT = 4377
DEFAULT_ETCD_CLIENT_PORT = 4379
DEFAULT_ETCD_PEER_PORT = 4380
DEFAULT_ADDRESS_POOL = "10.213.0.0/16"
# "bridge": each task gets its own address on its stack networks' bridges (one host).
# "node": the node runs in a container and each task shares that container's network
# namespace and address (multi-host tests; see swarmlite/agent/node_network.py).
WorkloadNetwork = Literal["bridge", "node"]
WORKLOAD_NETWORK_ENV = "SWARMLITE_WORKLOAD_NETWORK"
MESH_WORKERS_ENV = "SWARMLITE_MESH_WORKERS"
MAX_MESH_WORKERS = 64


def default_data_dir() -> Path:
    env = os.environ.get("SWARMLITE_DATA_DIR")
    if env:
        return Path(env)
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "swarmlite"


class NodeConfig(Frozen, frozen=True):
    node_id: str
    cluster_id: str
    role: str  # "manager" | "worker"
    hostname: str
    advertise_addr: str
    listen_host: str = "0.0.0.0"
    api_port: int = DEFAULT_API_PORT
    etcd_client_port: int = DEFAULT_ETCD_CLIENT_PORT
    etcd_peer_port: int = DEFAULT_ETCD_PEER_PORT
    # Where the mesh binds published ports (every address by default).
    mesh_host: str = "0.0.0.0"
    # Event loops (the daemon's and worker processes) serving the mesh; 0: one per CPU
    # but one (see proxy/workers.py).
    # $SWARMLITE_MESH_WORKERS overrides it when set.
    mesh_workers: int = 0
    # Managers this node may reach, "host:port"; its own address first on a manager.
    managers: tuple[str, ...] = ()
    # Port the service name server listens on at each network gateway.
    dns_port: int = 53
    # Where stack networks take their subnets (cluster-wide; used when the cluster is created).
    address_pool: str = DEFAULT_ADDRESS_POOL
    # Node certificate lifetime in seconds (cluster-wide; used when the cluster is created).
    cert_lifetime: float = 90 * 86400.0
    # A manager that joined: the etcd members to start with, and "existing" (first start).
    etcd_initial_cluster: dict[str, str] = {}
    etcd_initial_state: str = "new"
    # How tasks are networked; $SWARMLITE_WORKLOAD_NETWORK overrides it when set.
    workload_network: WorkloadNetwork = "bridge"

    @property
    def api_url(self) -> str:
        host = "127.0.0.1" if self.listen_host in ("0.0.0.0", "") else self.listen_host
        return f"https://{host}:{self.api_port}"


def config_path(data_dir: Path) -> Path:
    return data_dir / "node.json"


def load_config(data_dir: Path) -> NodeConfig:
    path = config_path(data_dir)
    try:
        config = msgspec.json.decode(path.read_bytes(), type=NodeConfig)
    except FileNotFoundError:
        raise DaemonError(
            f"no swarmlite node in {data_dir}: run 'swarmlite init' or 'swarmlite join' first"
        ) from None
    except msgspec.DecodeError as exc:
        raise DaemonError(f"{path} is damaged: {exc}") from exc
    except OSError as exc:  # unreadable: often a data dir that belongs to another user
        raise DaemonError(f"cannot read {path}: {exc.strerror}") from None
    mode = os.environ.get(WORKLOAD_NETWORK_ENV)
    if mode:
        if mode not in ("bridge", "node"):
            raise DaemonError(f"{WORKLOAD_NETWORK_ENV}={mode!r}: expected 'bridge' or 'node'")
        config = msgspec.structs.replace(config, workload_network=mode)
    workers = os.environ.get(MESH_WORKERS_ENV)
    if workers:
        count = mesh_workers_count(workers, MESH_WORKERS_ENV)
        config = msgspec.structs.replace(config, mesh_workers=count)
    return config


def mesh_workers_count(text: str, source: str) -> int:
    """``text`` as a mesh event loop count; ``source`` (a flag or variable) names it in
    the error."""
    if not text.isdigit() or int(text) > MAX_MESH_WORKERS:
        raise DaemonError(
            f"{source}={text!r}: expected 0 (the default: one per CPU but one) "
            f"to {MAX_MESH_WORKERS}"
        )
    return int(text)


def save_config(data_dir: Path, config: NodeConfig) -> None:
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = config_path(data_dir).with_suffix(".tmp")
    tmp.write_bytes(msgspec.json.format(msgspec.json.encode(config)))
    tmp.replace(config_path(data_dir))

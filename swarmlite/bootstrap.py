"""Putting a node on disk: a new cluster (``init``) or a node joining one (``join``).

Layout written under the data dir: ``node.json``, ``certs/`` (node.crt, node.key,
ca.crt; on managers also ca.key, cluster.key, join-tokens.json) and, on managers,
``admin/`` (the local CLI's credential). ``join`` writes nothing until the manager
has admitted the node, and sends the token's secret only to a manager whose CA
matches the token's fingerprint.
"""

from __future__ import annotations

import base64
import json
import socket
from datetime import timedelta
from pathlib import Path

import aiohttp
import msgspec

from swarmlite.api.models import JoinRequest, JoinResponse, JoinTokens
from swarmlite.config import DEFAULT_ADDRESS_POOL, NodeConfig, save_config
from swarmlite.errors import AuthError, DaemonError, SpecError, SwarmliteError
from swarmlite.manager.reconcile import new_id
from swarmlite.security.ca import ClusterCA, admin_cn, cert_dns_names, make_key_and_csr
from swarmlite.security.pinning import pinned_client_context
from swarmlite.security.secretbox import SecretBox
from swarmlite.security.tls import Credentials, write_private
from swarmlite.security.tokens import JoinToken


def _private_dir(data_dir: Path) -> None:
    """The data dir, made 0700 as Docker's swarm directory is: it holds the node's logs,
    config and etcd data beside the key directories. (``mkdir(parents=True)`` of
    ``certs/`` alone would make it with the umask's mode, 0755 as a rule.)"""
    created = not data_dir.exists()
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    if created:
        data_dir.chmod(0o700)  # mkdir's mode is masked by the umask


def _refuse_existing(data_dir: Path) -> None:
    if (data_dir / "node.json").exists():
        raise DaemonError(
            f"{data_dir} already holds a swarmlite node: "
            "use 'swarmlite daemon' or 'swarmlite leave --force'"
        )


def _manager_files(data_dir: Path, ca: ClusterCA, node_id: str, cluster_key: bytes) -> None:
    write_private(data_dir / "certs" / "cluster.key", base64.b64encode(cluster_key))
    admin_cert, admin_key = ca.issue(admin_cn(node_id), "admin")
    Credentials(cert_pem=admin_cert, key_pem=admin_key, ca_pem=ca.cert_pem).save(data_dir / "admin")


def write_manager_files(data_dir: Path, answer: JoinResponse) -> None:
    """The cluster key and a local admin credential, for a manager that joined."""
    ca = ClusterCA.load(answer.ca_pem, answer.ca_key_pem)
    _manager_files(data_dir, ca, answer.node_id, base64.b64decode(answer.cluster_key))


def load_cluster_key(data_dir: Path) -> bytes:
    return base64.b64decode((data_dir / "certs" / "cluster.key").read_bytes())


def bootstrap(
    data_dir: Path,
    *,
    advertise_addr: str,
    listen_host: str,
    api_port: int,
    address_pool: str = DEFAULT_ADDRESS_POOL,
    cert_lifetime: float = 90 * 86400.0,
    mesh_workers: int = 0,
) -> NodeConfig:
    """Create a new cluster's first node on disk: config, CA, certificates, join tokens.

    The etcd member listens on the two ports after the API port's next one
    (4377 -> 4379 client, 4380 peer), so one number places a whole node.
    """
    data_dir = data_dir.expanduser().resolve()
    _refuse_existing(data_dir)
    _private_dir(data_dir)
    node_id, cluster_id = new_id(), new_id()
    ca = ClusterCA.create(cluster_id)
    ips = sorted(
        {advertise_addr, "127.0.0.1"}
        | ({listen_host} if listen_host not in ("0.0.0.0", "") else set())
    )
    cert, key = ca.issue(
        node_id,
        "manager",
        san_ips=ips,
        san_dns=cert_dns_names(socket.gethostname()),
        lifetime=timedelta(seconds=cert_lifetime),
    )
    Credentials(cert_pem=cert, key_pem=key, ca_pem=ca.cert_pem, ca_key_pem=ca.key_pem).save(
        data_dir / "certs"
    )
    _manager_files(data_dir, ca, node_id, SecretBox.generate_key())
    tokens = JoinTokens(
        worker=str(JoinToken.generate(ca.fingerprint(), "worker")),
        manager=str(JoinToken.generate(ca.fingerprint(), "manager")),
    )
    write_private(data_dir / "certs" / "join-tokens.json", msgspec.json.encode(tokens))
    config = NodeConfig(
        node_id=node_id,
        cluster_id=cluster_id,
        role="manager",
        hostname=socket.gethostname(),
        advertise_addr=advertise_addr,
        listen_host=listen_host,
        api_port=api_port,
        etcd_client_port=api_port + 2,
        etcd_peer_port=api_port + 3,
        managers=(f"{advertise_addr}:{api_port}",),
        address_pool=address_pool,
        cert_lifetime=cert_lifetime,
        mesh_workers=mesh_workers,
    )
    save_config(data_dir, config)
    return config


def initial_tokens(data_dir: Path) -> JoinTokens:
    return msgspec.json.decode(
        (data_dir / "certs" / "join-tokens.json").read_bytes(), type=JoinTokens
    )


def split_addr(text: str, default_port: int) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep:
        return text, default_port
    if not port.isdigit():
        raise SpecError(f"{text!r} is not HOST:PORT")
    return host.strip("[]"), int(port)


async def join_cluster(
    data_dir: Path,
    *,
    token_text: str,
    manager: str,
    advertise_addr: str,
    listen_host: str,
    api_port: int,
    mesh_workers: int = 0,
    timeout: float = 30.0,
) -> NodeConfig:
    """Ask ``manager`` to admit this node; on success, write the node to ``data_dir``."""
    data_dir = data_dir.expanduser().resolve()
    _refuse_existing(data_dir)
    token = JoinToken.parse(token_text)
    host, port = split_addr(manager, 4377)
    # Check the manager's CA against the token before the secret leaves this host.
    context, _ = await pinned_client_context(host, port, token.ca_fingerprint, timeout=timeout)
    key_pem, csr_pem = make_key_and_csr("joining")
    request = JoinRequest(
        secret=token.secret,
        csr_pem=csr_pem,
        hostname=socket.gethostname(),
        advertise_addr=advertise_addr,
        api_port=api_port,
    )
    url = f"https://{host}:{port}/v1/join"
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as http,
            http.post(url, data=msgspec.json.encode(request), ssl=context) as resp,
        ):
            body = await resp.read()
            status = resp.status
    except (aiohttp.ClientError, OSError, TimeoutError) as exc:
        raise SwarmliteError(f"cannot reach the manager at {host}:{port}: {exc}") from None
    if status in (401, 403):
        raise AuthError(_error_text(body) or "the manager refused the join token")
    if status != 200:
        raise SwarmliteError(f"join failed ({status}): {_error_text(body)}")
    answer = msgspec.json.decode(body, type=JoinResponse)
    return _write_joined(
        data_dir,
        answer,
        key_pem,
        manager,
        NodeConfig(
            node_id=answer.node_id,
            cluster_id=answer.cluster_id,
            role=answer.role,
            hostname=socket.gethostname(),
            advertise_addr=advertise_addr,
            listen_host=listen_host,
            api_port=api_port,
            mesh_workers=mesh_workers,
        ),
    )


def _error_text(body: bytes) -> str:
    try:
        return str(json.loads(body).get("error", ""))
    except (ValueError, AttributeError):
        return body.decode(errors="replace")[:200]


def _write_joined(
    data_dir: Path, answer: JoinResponse, key_pem: str, manager: str, local: NodeConfig
) -> NodeConfig:
    """Save what the manager answered; ``local`` holds what this node chose itself."""
    is_manager = answer.role == "manager"
    _private_dir(data_dir)
    Credentials(
        cert_pem=answer.cert_pem,
        key_pem=key_pem,
        ca_pem=answer.ca_pem,
        ca_key_pem=answer.ca_key_pem or None,
    ).save(data_dir / "certs")
    if is_manager:
        write_manager_files(data_dir, answer)
    managers = tuple(dict.fromkeys((*answer.managers, manager)))
    me = f"{local.advertise_addr}:{local.api_port}"
    config = msgspec.structs.replace(
        local,
        etcd_client_port=local.api_port + 2,
        etcd_peer_port=local.api_port + 3,
        managers=(me, *managers) if is_manager else managers,
        address_pool=answer.address_pool or DEFAULT_ADDRESS_POOL,
        etcd_initial_cluster=answer.etcd_initial_cluster,
        etcd_initial_state="existing" if is_manager else "new",
    )
    save_config(data_dir, config)
    return config

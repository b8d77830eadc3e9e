"""A node's side of ``node promote`` and ``node demote``.

The cluster records the new role; the node's agent hears it with its assignments and
the daemon rewrites the node on disk, then restarts itself in the new role:

- promoted: it asks a manager for a manager certificate, the CA and cluster keys and
  its etcd learner membership (``POST /v1/promotion``, authenticated by its own
  certificate), and starts as a manager whose etcd joins the existing cluster;
- demoted: its etcd member was already removed by the demoting manager; it renews its
  certificate (the manager now signs it as a worker) and drops every manager secret.
"""

from __future__ import annotations

import logging
import shutil
import ssl
from collections.abc import Sequence
from pathlib import Path

import aiohttp
import msgspec

from swarmlite.api.join_handlers import PromotionRequest
from swarmlite.api.models import JoinResponse
from swarmlite.bootstrap import write_manager_files
from swarmlite.config import NodeConfig, save_config
from swarmlite.errors import SwarmliteError
from swarmlite.security.ca import make_key_and_csr
from swarmlite.security.renewal import CertRenewer
from swarmlite.security.tls import Credentials

log = logging.getLogger("swarmlite.node")

MANAGER_ONLY = ("certs/ca.key", "certs/cluster.key", "certs/join-tokens.json", "admin", "etcd")


async def become_manager(
    data_dir: Path, config: NodeConfig, managers: Sequence[str], context: ssl.SSLContext
) -> NodeConfig:
    key_pem, csr_pem = make_key_and_csr(config.node_id)
    body = msgspec.json.encode(PromotionRequest(csr_pem=csr_pem))
    last = ""
    for manager in managers:
        try:
            async with (
                aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http,
                http.post(f"https://{manager}/v1/promotion", data=body, ssl=context) as resp,
            ):
                raw = await resp.read()
                if resp.status != 200:
                    last = f"{manager} answered {resp.status}: {raw[:200]!r}"
                    continue
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            last = f"{manager}: {exc}"
            continue
        answer = msgspec.json.decode(raw, type=JoinResponse)
        _remove(data_dir, ("etcd",))  # a fresh member: old data would name another cluster
        Credentials(
            cert_pem=answer.cert_pem,
            key_pem=key_pem,
            ca_pem=answer.ca_pem,
            ca_key_pem=answer.ca_key_pem,
        ).save(data_dir / "certs")
        write_manager_files(data_dir, answer)
        promoted = msgspec.structs.replace(
            config,
            role="manager",
            managers=tuple(
                dict.fromkeys((f"{config.advertise_addr}:{config.api_port}", *answer.managers))
            ),
            etcd_initial_cluster=answer.etcd_initial_cluster,
            etcd_initial_state="existing",
        )
        save_config(data_dir, promoted)
        log.info("promoted: this node restarts as a manager")
        return promoted
    raise SwarmliteError(f"promotion failed: no manager answered ({last or 'none known'})")


async def become_worker(
    data_dir: Path, config: NodeConfig, managers: Sequence[str], renewer: CertRenewer
) -> NodeConfig:
    # A worker certificate first: the manager signs with the role it now records.
    await renewer.renew_once(Credentials.load(data_dir / "certs"))
    creds = Credentials.load(data_dir / "certs")
    Credentials(cert_pem=creds.cert_pem, key_pem=creds.key_pem, ca_pem=creds.ca_pem).save(
        data_dir / "certs"
    )
    _remove(data_dir, MANAGER_ONLY)
    own = f"{config.advertise_addr}:{config.api_port}"
    demoted = msgspec.structs.replace(
        config,
        role="worker",
        managers=tuple(m for m in managers if m != own) or config.managers,
        etcd_initial_cluster={},
        etcd_initial_state="new",
    )
    save_config(data_dir, demoted)
    log.info("demoted: this node restarts as a worker")
    return demoted


def _remove(data_dir: Path, names: Sequence[str]) -> None:
    for name in names:
        path = data_dir / name
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)

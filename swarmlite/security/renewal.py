"""Node certificates renew themselves before they expire.

Once two thirds of its certificate's lifetime has passed, a node sends a new CSR to a
manager over mutual TLS (``POST /v1/renew``, authenticated by the certificate that is
about to be replaced). The manager signs it for the same node id, with the role the
cluster records for that node, and the cluster's certificate lifetime. The node
writes the new pair (crash-safe: ``Credentials.save``) and loads it into its live TLS
contexts; new connections use it (etcd re-reads its files on every handshake).
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import tempfile
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import msgspec
from aiohttp import web

from swarmlite.background import BackgroundLoop
from swarmlite.errors import AuthError, NotFoundError, SwarmliteError
from swarmlite.security.ca import CLOCK_SKEW, ClusterCA, cert_dns_names, load_cert, make_key_and_csr
from swarmlite.security.mtls import request_identity
from swarmlite.security.tls import Credentials
from swarmlite.spec.objects import Node
from swarmlite.spec.service import Frozen
from swarmlite.store.store import Store

log = logging.getLogger("swarmlite.security")


class RenewRequest(Frozen, frozen=True):
    csr_pem: str


class RenewResponse(Frozen, frozen=True):
    cert_pem: str


def renew_at(cert_pem: str, fraction: float = 2 / 3) -> datetime:
    cert = load_cert(cert_pem)
    # The CA backdates not_before by CLOCK_SKEW; the lifetime counts from issuing.
    end = cert.not_valid_after_utc
    issued = min(cert.not_valid_before_utc + CLOCK_SKEW, end)
    return issued + (end - issued) * fraction


def renewal_handler(
    ca: ClusterCA, store: Store, lifetime: Callable[[], timedelta]
) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def renew(request: web.Request) -> web.Response:
        identity = request_identity(request)
        body = msgspec.json.decode(await request.read(), type=RenewRequest)
        if identity.role == "admin":
            raise AuthError("admin credentials are issued by 'swarmlite init', not renewed here")
        node = await store.get(Node, identity.node_id)
        if node is None:
            raise NotFoundError(f"node {identity.node_id} is not part of the cluster any more")
        cert = ca.sign_csr(
            body.csr_pem,
            node_id=identity.node_id,
            role=node.value.role,
            san_ips=sorted({node.value.addr, "127.0.0.1"}),
            san_dns=cert_dns_names(node.value.hostname),
            lifetime=lifetime(),
        )
        log.info("certificate renewed node=%s role=%s", identity.node_id[:12], node.value.role)
        return web.Response(
            body=msgspec.json.encode(RenewResponse(cert_pem=cert)), content_type="application/json"
        )

    return renew


def reload_contexts(contexts: Sequence[ssl.SSLContext], creds: Credentials) -> None:
    """Load a new key pair into live contexts; open connections keep the old one."""
    with tempfile.TemporaryDirectory() as tmp:
        cert_path, key_path = Path(tmp) / "node.crt", Path(tmp) / "node.key"
        cert_path.write_text(creds.cert_pem)
        key_path.write_text(creds.key_pem)
        key_path.chmod(0o600)
        for context in contexts:
            context.load_cert_chain(cert_path, key_path)


class CertRenewer(BackgroundLoop):
    """Sleeps until the node certificate is due, then renews it through a manager."""

    name = "cert-renewer"

    def __init__(
        self,
        certs_dir: Path,
        managers: Callable[[], Sequence[str]],
        contexts: Sequence[ssl.SSLContext],
        *,
        fraction: float = 2 / 3,
    ) -> None:
        super().__init__()
        self._dir = certs_dir
        self._managers = managers
        self._contexts = contexts
        self._fraction = fraction
        self.renewals = 0

    async def _run(self) -> None:
        while True:
            creds = Credentials.load(self._dir)
            due = renew_at(creds.cert_pem, self._fraction)
            wait = (due - datetime.now(UTC)).total_seconds()
            if wait > 0:
                await asyncio.sleep(min(wait, 3600.0))
                continue
            try:
                await self.renew_once(creds)
                await asyncio.sleep(1.0)  # never a hot loop, whatever the clock says
            except SwarmliteError as exc:
                log.warning("certificate renewal failed, retrying in 5 s: %s", exc)
                await asyncio.sleep(5.0)

    async def renew_once(self, creds: Credentials) -> None:
        identity = creds.identity
        key_pem, csr_pem = make_key_and_csr(identity.node_id)
        body = msgspec.json.encode(RenewRequest(csr_pem=csr_pem))
        context = creds.client_context(managers_only=True)
        last = ""
        for manager in self._managers():
            url = f"https://{manager}/v1/renew"
            try:
                async with (
                    aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http,
                    http.post(url, data=body, ssl=context) as resp,
                ):
                    raw = await resp.read()
                    if resp.status != 200:
                        last = f"{manager} answered {resp.status}: {raw[:200]!r}"
                        continue
            except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                last = f"{manager}: {exc}"
                continue
            cert = msgspec.json.decode(raw, type=RenewResponse).cert_pem
            fresh = Credentials(
                cert_pem=cert, key_pem=key_pem, ca_pem=creds.ca_pem, ca_key_pem=creds.ca_key_pem
            )
            fresh.save(self._dir)
            reload_contexts(self._contexts, fresh)
            self.renewals += 1
            log.info(
                "node certificate renewed until %s",
                load_cert(cert).not_valid_after_utc.isoformat(timespec="seconds"),
            )
            return
        raise SwarmliteError(f"no manager renewed the certificate ({last or 'no managers known'})")

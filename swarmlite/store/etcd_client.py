"""Connect to etcd over mutual TLS with the cluster CA's certificates.

``aetcd.Client.connect`` only opens an insecure gRPC channel. ``TLSClient`` is the same
client with one change: ``connect`` opens ``grpc.aio.secure_channel`` presenting this
node's certificate and trusting only the cluster CA. Everything else (stubs, watcher,
username/password auth) is what aetcd does. aetcd is untyped: ``Any`` stays at this seam.
"""

from __future__ import annotations

import asyncio
from typing import Any

import aetcd
import aetcd.exceptions
import aetcd.rpc
import aetcd.watcher
import grpc

__all__ = ["TLSClient", "TLSMaterial", "connect_etcd"]

TLSMaterial = tuple[bytes, bytes, bytes]  # (cert_pem, key_pem, ca_pem)


def _as_bytes(pem: str | bytes) -> bytes:
    return pem.encode("ascii") if isinstance(pem, str) else pem


# gRPC's default 4 MiB answer limit is ~3,000 tasks in one read: the full state of a
# large cluster must fit. Sending, 16 MiB is above etcd's request limit (10 MiB, see
# swarmlite/limits.py): a too-large write is refused by etcd, with its own message.
GRPC_OPTIONS = {
    "grpc.max_receive_message_length": 256 * 1024 * 1024,
    "grpc.max_send_message_length": 16 * 1024 * 1024,
}


class TLSClient(aetcd.Client):  # type: ignore[misc]  # aetcd is untyped
    """An ``aetcd.Client`` whose channel is mutual TLS."""

    _is_connecting: bool

    def __init__(
        self,
        host: str,
        port: int,
        *,
        tls: TLSMaterial,
        server_name: str | None = None,
        timeout: float | None = None,
        options: dict[str, Any] | None = None,
    ) -> None:
        opts = dict(options or {})
        if server_name:
            # Verify the server certificate against this name instead of the dialled host.
            opts["grpc.ssl_target_name_override"] = server_name
        super().__init__(host, port, timeout=timeout, options=opts)
        cert, key, ca = tls
        self._credentials = grpc.ssl_channel_credentials(
            root_certificates=ca, private_key=key, certificate_chain=cert
        )

    async def connect(self) -> None:
        """aetcd's ``connect`` with ``secure_channel`` in place of ``insecure_channel``."""
        try:
            await self._connect_secure()
        except aetcd.rpc.AioRpcError as exc:
            aetcd.exceptions._handle_exception(exc)

    async def _connect_secure(self) -> None:
        if self._connected.is_set():
            return
        if self._is_connecting:
            await asyncio.wait_for(self._connected.wait(), self._connect_wait_timeout)
            return
        try:
            self._is_connecting = True
            target = f"{self._host}:{self._port}"
            self.channel = grpc.aio.secure_channel(
                target, self._credentials, options=list(self._options.items())
            )
            if self._username is not None and self._password is not None:
                self.auth_stub = aetcd.rpc.AuthStub(self.channel)
                request = aetcd.rpc.AuthenticateRequest(
                    name=self._username, password=self._password
                )
                resp = await self.auth_stub.Authenticate(request, timeout=self._timeout)
                self.metadata = (("token", resp.token),)
            self.kvstub = aetcd.rpc.KVStub(self.channel)
            self.clusterstub = aetcd.rpc.ClusterStub(self.channel)
            self.leasestub = aetcd.rpc.LeaseStub(self.channel)
            self.maintenancestub = aetcd.rpc.MaintenanceStub(self.channel)
            self._watcher = aetcd.watcher.Watcher(
                aetcd.rpc.WatchStub(self.channel),
                timeout=self._timeout,
                metadata=self.metadata,
            )
            self._connected.set()
        finally:
            self._is_connecting = False


def connect_etcd(
    host: str,
    port: int,
    *,
    cert_pem: str | bytes | None = None,
    key_pem: str | bytes | None = None,
    ca_pem: str | bytes | None = None,
    timeout: float | None = None,
    server_name: str | None = None,
) -> aetcd.Client:
    """A client for the etcd at ``host:port``: mutual TLS if certificates are given.

    The channel opens lazily on the first call (as in aetcd). With no TLS material at all
    this is a plain ``aetcd.Client``; giving only some of the three PEMs is an error.
    """
    given = [p is not None for p in (cert_pem, key_pem, ca_pem)]
    if not any(given):
        return aetcd.Client(host, port, timeout=timeout, options=dict(GRPC_OPTIONS))
    if cert_pem is None or key_pem is None or ca_pem is None:
        raise ValueError("etcd TLS needs all of cert_pem, key_pem and ca_pem")
    tls = (_as_bytes(cert_pem), _as_bytes(key_pem), _as_bytes(ca_pem))
    return TLSClient(
        host, port, tls=tls, server_name=server_name, timeout=timeout, options=dict(GRPC_OPTIONS)
    )

"""The async HTTP client of the node API, used by the CLI (one method per endpoint).

Every answer is decoded into the typed models of ``api/models.py`` and
``spec/objects.py``; every failure becomes a ``SwarmliteError``:

    status 400            SpecError
    status 401, 403       AuthError
    status 404            NotFoundError
    status 409            ConflictError
    status 413            TooLargeError (also raised before sending a body that large)
    status 503            StoreUnavailableError
    other status >= 400   SwarmliteError
    connection refused    DaemonError ("is it running?")
    TLS failure           AuthError
    timeout               DaemonError

The transport is ``http11.Http11Client`` (one kept-alive connection), not aiohttp:
the CLI starts several times faster without aiohttp's import. Use it as an async
context manager so its connection is closed::

    async with ApiClient.for_data_dir(data_dir) as api:
        services = await api.services()
"""

from __future__ import annotations

import asyncio
import base64
import ssl as ssl_module
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar
from urllib.parse import quote

import msgspec

from swarmlite.api.http11 import Http11Client, IncompleteAnswer
from swarmlite.api.models import (
    ClusterInfo,
    DeployResult,
    ErrorBody,
    JoinTokens,
    NodeActionResult,
    NodeUpdateRequest,
    RemoveResult,
    ScaleRequest,
    ServiceSummary,
    ServiceUpdateRequest,
    StackSummary,
)
from swarmlite.api.secret_models import FileCreate, FileSummary, FileUpdate, FileUpdateResult
from swarmlite.config import load_config
from swarmlite.errors import (
    AuthError,
    ConflictError,
    DaemonError,
    NotFoundError,
    SpecError,
    StoreUnavailableError,
    SwarmliteError,
    TooLargeError,
)
from swarmlite.limits import MAX_REQUEST_BYTES, request_too_large
from swarmlite.spec.objects import Node, Service, Task
from swarmlite.spec.service import StackSpec

__all__ = ["ADMIN_DIR", "ApiClient", "error_for_status"]

T = TypeVar("T")

# The local CLI's credential, inside the data dir (node.crt, node.key, ca.crt).
ADMIN_DIR = "admin"

_ERRORS_BY_STATUS: dict[int, type[SwarmliteError]] = {
    400: SpecError,
    401: AuthError,
    403: AuthError,
    404: NotFoundError,
    409: ConflictError,
    413: TooLargeError,
    503: StoreUnavailableError,
}


def error_for_status(status: int, body: bytes) -> SwarmliteError:
    """The SwarmliteError a failed answer stands for, carrying the server's message."""
    cls = _ERRORS_BY_STATUS.get(status, SwarmliteError)
    try:
        message = msgspec.json.decode(body, type=ErrorBody).error
    except msgspec.DecodeError:
        text = body.decode("utf-8", "replace").strip().splitlines()
        message = f"the daemon answered {status}" + (f": {text[0][:200]}" if text else "")
    return cls(message)


def _q(name: str) -> str:
    return quote(name, safe="")


class ApiClient:
    """One daemon's API; ``ssl=None`` talks plain HTTP (tests only)."""

    def __init__(
        self, base_url: str, ssl: ssl_module.SSLContext | None, timeout: float = 30
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._timeout = timeout
        self._http = Http11Client(self.base_url, ssl)

    @classmethod
    def for_data_dir(cls, data_dir: Path, timeout: float = 30) -> ApiClient:
        """The client of the node in ``data_dir``, with the admin credential."""
        from swarmlite.security.tls import Credentials

        config = load_config(data_dir)
        # Workers have no admin credential; their own certificate may ask their own API.
        creds_dir = data_dir / ADMIN_DIR
        if not creds_dir.exists():
            creds_dir = data_dir / "certs"
        creds = Credentials.load(creds_dir)
        return cls(config.api_url, creds.client_context(), timeout)

    async def __aenter__(self) -> ApiClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        await self._http.close()

    # -- transport -------------------------------------------------------------

    def _translate(self, exc: BaseException) -> SwarmliteError:
        """A transport failure as the error the user should see."""
        url = self.base_url
        if isinstance(exc, ssl_module.SSLError):
            return AuthError(
                f"TLS handshake with the swarmlite daemon at {url} failed: {exc} "
                "(the data dir's admin credential does not belong to this cluster?)"
            )
        if isinstance(exc, TimeoutError):
            return DaemonError(
                f"the swarmlite daemon at {url} did not answer within {self._timeout:g} s"
            )
        if isinstance(exc, IncompleteAnswer | ConnectionResetError | BrokenPipeError):
            return DaemonError(
                f"the swarmlite daemon at {url} closed the connection ({exc}); "
                "if this repeats, check that the admin credential is valid"
            )
        if isinstance(exc, OSError):
            return DaemonError(
                f"cannot reach the swarmlite daemon at {url}: is it running? "
                "(swarmlite daemon / swarmlite init)"
            )
        return DaemonError(f"request to the swarmlite daemon at {url} failed: {exc}")

    async def _request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        body: Any = None,
        timeout: float | None = None,
    ) -> bytes:
        data = msgspec.json.encode(body) if body is not None else None
        if data is not None and len(data) > MAX_REQUEST_BYTES:  # the daemon would refuse it
            raise TooLargeError(request_too_large(len(data)))
        try:
            async with asyncio.timeout(timeout or self._timeout):
                answer = await self._http.request(method, path, params=params, body=data)
        except (OSError, TimeoutError) as exc:  # ssl.SSLError is an OSError
            raise self._translate(exc) from None
        if answer.status >= 400:
            raise error_for_status(answer.status, answer.body)
        return answer.body

    async def _get(self, path: str, type_: type[T], params: Mapping[str, str] | None = None) -> T:
        return self._decode(await self._request("GET", path, params=params), type_, path)

    def _decode(self, raw: bytes, type_: type[T], path: str) -> T:
        try:
            return msgspec.json.decode(raw, type=type_)
        except msgspec.DecodeError as exc:
            raise SwarmliteError(
                f"the daemon at {self.base_url} sent an unexpected answer for {path}: {exc} "
                "(are the CLI and the daemon the same version?)"
            ) from None

    # -- endpoints -------------------------------------------------------------

    async def info(self) -> ClusterInfo:
        return await self._get("/v1/info", ClusterInfo)

    async def deploy(self, stack_spec: StackSpec, prune: bool = False) -> DeployResult:
        path = f"/v1/stacks/{_q(stack_spec.name)}/deploy"
        params = {"prune": "1"} if prune else None
        raw = await self._request("POST", path, params=params, body=stack_spec)
        return self._decode(raw, DeployResult, path)

    async def stacks(self) -> list[StackSummary]:
        return await self._get("/v1/stacks", list[StackSummary])

    async def remove_stack(self, stack: str) -> RemoveResult:
        path = f"/v1/stacks/{_q(stack)}"
        # The daemon waits for dependents to stop before removing what they depend on.
        raw = await self._request("DELETE", path, timeout=max(self._timeout, 300.0))
        return self._decode(raw, RemoveResult, path)

    async def services(self, stack: str | None = None) -> list[ServiceSummary]:
        params = {"stack": stack} if stack else None
        return await self._get("/v1/services", list[ServiceSummary], params)

    async def service(self, name: str) -> Service:
        return await self._get(f"/v1/services/{_q(name)}", Service)

    async def remove_service(self, name: str) -> RemoveResult:
        path = f"/v1/services/{_q(name)}"
        return self._decode(await self._request("DELETE", path), RemoveResult, path)

    async def scale(self, name: str, replicas: int) -> Service:
        path = f"/v1/services/{_q(name)}/scale"
        raw = await self._request("POST", path, body=ScaleRequest(replicas=replicas))
        return self._decode(raw, Service, path)

    async def update_service(self, name: str, change: ServiceUpdateRequest) -> Service:
        path = f"/v1/services/{_q(name)}/update"
        return self._decode(await self._request("POST", path, body=change), Service, path)

    async def rollback(self, name: str, reason: str = "") -> Service:
        """Return the service to its previous spec (a rollback the orchestrator rolls out);
        ``reason`` is what ``service ps`` and ``inspect`` say started it."""
        path = f"/v1/services/{_q(name)}/rollback"
        params = {"reason": reason} if reason else None
        return self._decode(await self._request("POST", path, params=params), Service, path)

    async def tasks(
        self, service: str | None = None, stack: str | None = None, node: str | None = None
    ) -> list[Task]:
        params = {
            key: value
            for key, value in (("service", service), ("stack", stack), ("node", node))
            if value
        }
        return await self._get("/v1/tasks", list[Task], params or None)

    async def join_tokens(self) -> JoinTokens:
        return await self._get("/v1/join-tokens", JoinTokens)

    async def rotate_join_token(self, role: str) -> JoinTokens:
        raw = await self._request("POST", f"/v1/join-tokens/{role}/rotate")
        return self._decode(raw, JoinTokens, "/v1/join-tokens")

    async def nodes(self) -> list[Node]:
        return await self._get("/v1/nodes", list[Node])

    async def node(self, node_id: str) -> Node:
        return await self._get(f"/v1/nodes/{_q(node_id)}", Node)

    async def update_node(self, node_id: str, update: NodeUpdateRequest) -> Node:
        path = f"/v1/nodes/{_q(node_id)}/update"
        return self._decode(await self._request("POST", path, body=update), Node, path)

    async def remove_node(self, node_id: str, force: bool = False) -> NodeActionResult:
        path = f"/v1/nodes/{_q(node_id)}"
        params = {"force": "1"} if force else None
        raw = await self._request("DELETE", path, params=params)
        return self._decode(raw, NodeActionResult, path)

    async def promote_node(self, node_id: str) -> NodeActionResult:
        path = f"/v1/nodes/{_q(node_id)}/promote"
        return self._decode(await self._request("POST", path), NodeActionResult, path)

    async def demote_node(self, node_id: str) -> NodeActionResult:
        path = f"/v1/nodes/{_q(node_id)}/demote"
        return self._decode(await self._request("POST", path), NodeActionResult, path)

    # secrets and configs: ``kind`` is "secret" or "config"; data is raw bytes here.

    async def file_create(
        self, kind: str, name: str, data: bytes, labels: Mapping[str, str] | None = None
    ) -> FileSummary:
        path = f"/v1/{kind}s"
        body = FileCreate(
            name=name, data=base64.b64encode(data).decode(), labels=dict(labels or {})
        )
        return self._decode(await self._request("POST", path, body=body), FileSummary, path)

    async def file_update(self, kind: str, name: str, data: bytes) -> FileUpdateResult:
        path = f"/v1/{kind}s/{_q(name)}/update"
        body = FileUpdate(data=base64.b64encode(data).decode())
        return self._decode(await self._request("POST", path, body=body), FileUpdateResult, path)

    async def file_list(self, kind: str) -> list[FileSummary]:
        return await self._get(f"/v1/{kind}s", list[FileSummary])

    async def file_inspect(self, kind: str, name: str) -> FileSummary:
        return await self._get(f"/v1/{kind}s/{_q(name)}", FileSummary)

    async def file_remove(self, kind: str, name: str) -> RemoveResult:
        path = f"/v1/{kind}s/{_q(name)}"
        return self._decode(await self._request("DELETE", path), RemoveResult, path)

    async def service_logs(
        self, name: str, follow: bool = False, tail: int | None = None
    ) -> AsyncIterator[str]:
        """The service's log lines ("task | line"), as they come; endless with ``follow``."""
        async for line in self._log_lines(f"/v1/services/{_q(name)}/logs", follow, tail):
            yield line

    async def node_logs(
        self, service_id: str, follow: bool = False, tail: int | None = None
    ) -> AsyncIterator[str]:
        """This node's part of a service's log lines (what a manager asks each node)."""
        async for line in self._log_lines(f"/v1/node/services/{_q(service_id)}/logs", follow, tail):
            yield line

    async def _log_lines(self, path: str, follow: bool, tail: int | None) -> AsyncIterator[str]:
        params = {"follow": "1" if follow else "0"}
        if tail is not None:
            params["tail"] = str(tail)
        # No total deadline: the first answer is bounded, then (unless followed, when
        # a quiet service may print nothing for hours) each wait for more output.
        stream = self._http.stream("GET", path, params=params)
        pending = b""
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self._timeout) as deadline:
                status, first = await anext(stream)
                if follow:
                    deadline.reschedule(None)
                if status >= 400:
                    rest = b"".join([c async for _, c in stream])
                    raise error_for_status(status, first + rest)
                async for _, chunk in _prepend(first, stream):
                    if not follow:
                        deadline.reschedule(loop.time() + self._timeout)
                    *lines, pending = (pending + chunk).split(b"\n")
                    for line in lines:
                        yield line.decode("utf-8", "replace").rstrip("\r")
            if pending:
                yield pending.decode("utf-8", "replace").rstrip("\r")
        except (OSError, TimeoutError) as exc:
            raise self._translate(exc) from None
        except StopAsyncIteration:
            raise self._translate(IncompleteAnswer("no answer")) from None
        finally:
            await stream.aclose()


async def _prepend(
    first: bytes, rest: AsyncIterator[tuple[int, bytes]]
) -> AsyncIterator[tuple[int, bytes]]:
    yield 0, first
    async for item in rest:
        yield item

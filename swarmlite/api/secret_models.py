"""Request and response bodies of the secret and config endpoints (api/secret_handlers.py).

    POST   /v1/secrets                FileCreate -> FileSummary
    GET    /v1/secrets                -> list[FileSummary]
    GET    /v1/secrets/{name}         -> FileSummary   (name, id or id prefix)
    POST   /v1/secrets/{name}/update  FileUpdate -> FileUpdateResult
    DELETE /v1/secrets/{name}         -> RemoveResult  (409 while a service uses it)

and the same under ``/v1/configs``. No answer ever carries a secret's data; a
config's ``inspect`` carries its data (base64).
"""

from __future__ import annotations

from swarmlite.spec.service import Frozen


class FileCreate(Frozen, frozen=True):
    name: str
    data: str  # base64
    labels: dict[str, str] = {}

    def __repr__(self) -> str:
        return f"FileCreate(name={self.name!r}, data=<hidden>)"


class FileUpdate(Frozen, frozen=True):
    data: str  # base64

    def __repr__(self) -> str:
        return "FileUpdate(data=<hidden>)"


class FileSummary(Frozen, frozen=True):
    id: str
    name: str
    digest: str  # a prefix only
    stack: str = ""
    labels: dict[str, str] = {}
    created_at: float = 0.0
    updated_at: float = 0.0
    services: tuple[str, ...] = ()  # services that use it
    data: str = ""  # configs' inspect only


class FileUpdateResult(Frozen, frozen=True):
    summary: FileSummary
    changed: bool
    services: tuple[str, ...] = ()  # services whose tasks roll to the new content

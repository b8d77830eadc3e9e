"""The one exception tree of swarmlite.

    SwarmliteError                  base; ``str(err)`` is a complete one-line message
    ├── ComposeError                a compose file is wrong (file, line, service, key, hint)
    │   └── ComposeErrors           several ComposeError gathered into one report
    ├── SpecError                   a request or object does not validate (API 400)
    │   └── TooLargeError           a request body or a store write over its size limit
    │                               (API 413; the limits and why: ``limits.py``)
    ├── NotFoundError               an object does not exist (API 404)
    ├── ConflictError               a compare-and-swap lost, or a name is taken (API 409)
    ├── StoreUnavailableError       etcd cannot be reached or has no quorum (API 503)
    ├── RuntimeFailure              the Docker Engine refused or failed an operation
    ├── AuthError                   a token, certificate or credential was refused (API 401/403)
    └── DaemonError                 the node daemon cannot start, or the CLI cannot reach it

The CLI catches ``SwarmliteError`` alone, prints ``str(err)`` and exits non-zero.
"""

from __future__ import annotations


class SwarmliteError(Exception):
    """Base of every error swarmlite raises on purpose."""

    http_status = 500


class ComposeError(SwarmliteError):
    """One problem in a compose file, located as precisely as the loader can."""

    http_status = 400

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        line: int | None = None,
        service: str | None = None,
        key: str | None = None,
        hint: str | None = None,
    ) -> None:
        self.message = message
        self.file = file
        self.line = line
        self.service = service
        self.key = key
        self.hint = hint
        super().__init__(self.render())

    def render(self) -> str:
        where = ""
        if self.file:
            where = self.file + (f":{self.line}" if self.line else "")
        parts = []
        if self.service:
            parts.append(f"service {self.service!r}")
        if self.key:
            parts.append(f"key {self.key!r}")
        text = (where + ": " if where else "") + (", ".join(parts) + ": " if parts else "")
        text += self.message
        if self.hint:
            text += f" ({self.hint})"
        return text


class ComposeErrors(ComposeError):
    """All the problems found in one pass, reported together."""

    def __init__(self, errors: list[ComposeError]) -> None:
        self.errors = errors
        super().__init__("\n".join(e.render() for e in errors))

    def render(self) -> str:
        if not hasattr(self, "errors"):
            return self.message
        return "\n".join(e.render() for e in self.errors)


class SpecError(SwarmliteError):
    http_status = 400


class TooLargeError(SpecError):
    http_status = 413


class NotFoundError(SwarmliteError):
    http_status = 404


class ConflictError(SwarmliteError):
    http_status = 409


class StoreUnavailableError(SwarmliteError):
    http_status = 503


class RuntimeFailure(SwarmliteError):
    http_status = 502


class AuthError(SwarmliteError):
    http_status = 403


class DaemonError(SwarmliteError):
    http_status = 503

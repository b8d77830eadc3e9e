"""Collects every error and warning of one load, so a user sees them all at once."""

from __future__ import annotations

from swarmlite.errors import ComposeError, ComposeErrors

from .tree import Pos


class Problems:
    def __init__(self) -> None:
        self.errors: list[ComposeError] = []
        self.warnings: list[str] = []
        # option -> services using it ("" for top-level options)
        self._unsupported: dict[str, set[str]] = {}

    def error(
        self,
        message: str,
        pos: Pos | None = None,
        *,
        service: str | None = None,
        key: str | None = None,
        hint: str | None = None,
    ) -> None:
        self.errors.append(
            ComposeError(
                message,
                file=pos.file if pos else None,
                line=(pos.line or None) if pos else None,
                service=service,
                key=key,
                hint=hint,
            )
        )

    def warn(self, message: str) -> None:
        if message not in self.warnings:
            self.warnings.append(message)

    def unsupported(self, option: str, service: str | None) -> None:
        self._unsupported.setdefault(option, set()).add(service or "")

    def all_warnings(self) -> tuple[str, ...]:
        """Warnings, with every ignored option folded into one line as Swarm does."""
        if not self._unsupported:
            return tuple(self.warnings)
        service_opts = sorted(o for o, s in self._unsupported.items() if s - {""})
        top_opts = sorted(o for o, s in self._unsupported.items() if "" in s)
        services = sorted(set().union(*self._unsupported.values()) - {""})
        parts = []
        if service_opts:
            parts.append(f"{', '.join(service_opts)} (services {', '.join(services)})")
        if top_opts:
            parts.append(f"top-level {', '.join(top_opts)}")
        return (f"Ignoring unsupported options: {'; '.join(parts)}", *self.warnings)

    def raise_if_any(self) -> None:
        """Raise the errors in reading order: files as given, then by line."""
        if len(self.errors) == 1:
            raise self.errors[0]
        if self.errors:
            files = list(dict.fromkeys(e.file for e in self.errors))
            ordered = sorted(self.errors, key=lambda e: (files.index(e.file), e.line or 0))
            raise ComposeErrors(ordered)

"""Reads ``.env`` and ``env_file`` files: ``KEY=VALUE`` lines, ``#`` comments.

Unquoted and double-quoted values are interpolated as the compose file is
(``${VAR}``, ``${VAR:-default}``...), from ``lookup`` first, then from the
file's own earlier entries, as Compose does; single-quoted values are literal.
"""

from __future__ import annotations

from collections import ChainMap
from collections.abc import Mapping
from pathlib import Path

from .interpolate import InterpolationError, substitute


class EnvFileError(ValueError):
    def __init__(self, message: str, line: int | None = None) -> None:
        super().__init__(message)
        self.line = line


def read_env_file(
    path: Path, lookup: Mapping[str, str] | None = None
) -> list[tuple[str, str | None, int]]:
    """Entries as (key, value, line); value None for a bare ``KEY`` (taken from environ)."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise EnvFileError(f"cannot read env file {str(path)!r}: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise EnvFileError(
            f"env file {str(path)!r} is not UTF-8 text (byte {exc.start}): save it as UTF-8"
        ) from None
    except ValueError as exc:  # a NUL byte in the path
        raise EnvFileError(f"cannot read env file {str(path)!r}: {exc}") from None
    entries: list[tuple[str, str | None, int]] = []
    earlier: dict[str, str] = {}
    names = ChainMap(dict(lookup or {}), earlier)
    lines = text.splitlines()
    index = 0
    while index < len(lines):
        number, raw = index + 1, lines[index]
        index += 1
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("export "):
            line = line[len("export ") :].lstrip()
        key, sep, value = line.partition("=")
        key = key.strip()
        if not key or any(c.isspace() for c in key):
            raise EnvFileError(f"invalid line in env file {str(path)!r}: {raw!r}", number)
        if not sep:
            entries.append((key, None, number))
            continue
        value = value.strip()
        # A quoted value may go on over the next lines, up to its closing quote.
        while value[:1] in ("'", '"') and _closing_quote(value) < 0:
            if index == len(lines):
                raise EnvFileError(
                    f"unterminated quoted value in env file {str(path)!r}: {raw!r}", number
                )
            value = f"{value}\n{lines[index]}"
            index += 1
        found, literal = _unquote(value)
        if not literal and "$" in found:
            try:
                found = substitute(found, names, set())
            except InterpolationError as exc:
                raise EnvFileError(f"env file {str(path)!r}: {exc}", number) from None
        earlier[key] = found
        entries.append((key, found, number))
    return entries


def _closing_quote(value: str) -> int:
    """Where the quote opening ``value`` closes, -1 if not; a double-quoted \\" does not."""
    quote, end = value[0], 1
    while end < len(value) and value[end] != quote:
        end += 2 if quote == '"' and value[end] == "\\" else 1
    return end if end < len(value) else -1


def _unquote(value: str) -> tuple[str, bool]:
    """The value without its quotes, and whether it is literal (single-quoted)."""
    quote = value[:1]
    if quote in ("'", '"'):
        end = _closing_quote(value)
        rest = value[end + 1 :].strip()
        if end > 0 and (not rest or rest.startswith("#")):  # "x" # comment
            inner = value[1:end]
            # Double quotes allow the usual escapes; single quotes are literal.
            if quote == "'":
                return inner, True
            return inner.replace("\\n", "\n").replace('\\"', '"'), False
    # An unquoted value ends at a " #" comment.
    hash_at = value.find(" #")
    return (value[:hash_at].rstrip() if hash_at >= 0 else value), False

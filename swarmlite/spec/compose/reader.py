"""Typed reads from one mapping of the tree, each failure recorded, never raised.

Values are type-checked only here, after interpolation: Compose allows a string
anywhere (``replicas: ${N}``), so ``"3"`` is a fine integer.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TypeVar

from .keys import check_keys
from .problems import Problems
from .tree import Pos, Value, YList, YMap, type_name
from .units import parse_duration, parse_size

T = TypeVar("T")
N = TypeVar("N", int, float)
_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}


class Reader:
    """Reads keys of ``node``; messages name ``service`` and ``prefix.key``."""

    def __init__(self, node: YMap, problems: Problems, service: str | None, prefix: str) -> None:
        self.node = node
        self.problems = problems
        self.service = service
        self.prefix = prefix

    def path(self, key: str) -> str:
        return f"{self.prefix}.{key}" if self.prefix else key

    def where(self, key: str) -> Pos:
        return self.node.where(key)

    def error(
        self, key: str, message: str, hint: str | None = None, pos: Pos | None = None
    ) -> None:
        self.problems.error(
            message, pos or self.where(key), service=self.service, key=self.path(key), hint=hint
        )

    def check_keys(self, section: str) -> None:
        check_keys(self.node, section, self.problems, service=self.service, prefix=self.prefix)

    def get(self, key: str) -> Value:
        return self.node.get(key)

    def sub(self, key: str, section: str | None = None) -> Reader | None:
        """The mapping under ``key`` (None if absent or wrong), keys checked against ``section``."""
        value = self.node.get(key)
        if value is None:
            return None
        if not isinstance(value, YMap):
            self.error(key, f"must be a mapping, not {type_name(value)}")
            return None
        reader = Reader(value, self.problems, self.service, self.path(key))
        if section is not None:
            reader.check_keys(section)
        return reader

    def _typed(self, key: str, what: str, parse: Callable[[Value], T]) -> T | None:
        value = self.node.get(key)
        if value is None:
            return None
        try:
            return parse(value)
        except (ValueError, TypeError):
            self.error(key, f"must be {what}, not {value!r}")
            return None

    def str_(self, key: str) -> str | None:
        return self._typed(key, "a string", to_str)

    def int_(self, key: str, minimum: int | None = 0, maximum: int | None = None) -> int | None:
        value = self._typed(key, "an integer", to_int)
        return self._bounded(key, value, minimum, maximum)

    def float_(
        self, key: str, minimum: float | None = 0.0, maximum: float | None = None
    ) -> float | None:
        value = self._typed(key, "a number", to_float)
        return self._bounded(key, value, minimum, maximum)

    def _bounded(
        self, key: str, value: N | None, low: float | None, high: float | None
    ) -> N | None:
        if value is None:
            return None
        if (low is not None and value < low) or (high is not None and value > high):
            bounds = f"at least {low}" if high is None else f"between {low} and {high}"
            self.error(key, f"must be {bounds}, not {value}")
            return None
        return value

    def bool_(self, key: str) -> bool | None:
        return self._typed(key, "true or false", to_bool)

    def duration(self, key: str) -> float | None:
        value = self._typed(key, "a duration like 10s, 1m30s or 500ms", to_duration)
        return self._bounded(key, value, 0.0, None)

    def size(self, key: str) -> int | None:
        return self._typed(key, "a size like 512m, 1g or a number of bytes", to_size)

    def choice(self, key: str, choices: tuple[str, ...]) -> str | None:
        value = self.str_(key)
        if value is not None and value not in choices:
            self.error(key, f"must be one of {', '.join(choices)}, not {value!r}")
            return None
        return value

    def str_list(
        self, key: str, *, split: Callable[[str], list[str]] | None = None
    ) -> list[str] | None:
        """A list of strings; a lone string is ``split`` (or taken as one item)."""
        value = self.node.get(key)
        if value is None:
            return None
        if isinstance(value, str):
            return split(value) if split else [value]
        if isinstance(value, YList) and all(_is_scalar(v) for v in value):
            if any(v is None for v in value):
                self.error(key, "has an empty item (a '-' with nothing after it, or null)")
                return None
            return [to_str(v) for v in value]
        self.error(key, f"must be a string or a list of strings, not {type_name(value)}")
        return None

    def str_map(self, key: str) -> dict[str, str | None] | None:
        """``KEY=VALUE`` list or mapping; a bare ``KEY`` or null value gives None."""
        value = self.node.get(key)
        if value is None:
            return None
        out: dict[str, str | None] = {}
        if isinstance(value, YMap):
            for k, v in value.items():
                if not _is_scalar(v):
                    self.error(key, f"value of {k!r} must be a string, not {type_name(v)}")
                    continue
                out[k] = None if v is None else to_str(v)
            return out
        if isinstance(value, YList):
            for item in value:
                if not _is_scalar(item) or item is None:
                    self.error(key, f"items must be KEY=VALUE strings, not {type_name(item)}")
                    continue
                k, sep, v = to_str(item).partition("=")
                out[k] = v if sep else None
            return out
        self.error(key, f"must be a mapping or a list of KEY=VALUE, not {type_name(value)}")
        return None


def _is_scalar(value: Value) -> bool:
    return not isinstance(value, YMap | YList)


def to_str(value: Value) -> str:
    if isinstance(value, YMap | YList) or value is None:
        raise TypeError("not a scalar")
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def to_int(value: Value) -> int:
    if isinstance(value, bool | YMap | YList) or value is None:
        raise TypeError("not an integer")
    if isinstance(value, float) and not value.is_integer():
        raise ValueError("not an integer")
    return int(value) if isinstance(value, int | float) else int(value.strip(), 10)


def to_float(value: Value) -> float:
    if isinstance(value, bool | YMap | YList) or value is None:
        raise TypeError("not a number")
    return _finite(float(value))


def _finite(number: float) -> float:
    """YAML's .inf and .nan are floats; no count, ratio or duration takes them."""
    if not math.isfinite(number):
        raise ValueError("not a finite number")
    return number


def to_bool(value: Value) -> bool:
    if isinstance(value, bool):
        return value
    text = to_str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError("not a boolean")


def to_duration(value: Value) -> float:
    # A bare number is read as seconds, as older Compose files often write it.
    if isinstance(value, int | float) and not isinstance(value, bool):
        return _finite(float(value))
    if not isinstance(value, str):
        raise TypeError("not a duration")
    return parse_duration(value)


def to_size(value: Value) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if not isinstance(value, str | float):
        raise TypeError("not a size")
    return parse_size(str(value))

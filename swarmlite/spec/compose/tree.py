"""The located YAML tree every stage works on.

Plain dicts and lists would lose where each value came from once several files are
merged, so each mapping and sequence carries the (file, line) of itself and of each
key or item. Scalars are plain Python values: str, int, float, bool or None.
"""

from __future__ import annotations

from typing import NamedTuple, TypeAlias


class Pos(NamedTuple):
    file: str
    line: int  # 1-based; 0 when unknown


class YMap(dict[str, "Value"]):
    """A mapping that remembers where it and each of its keys were written."""

    __slots__ = ("key_pos", "pos", "tags")

    def __init__(self, pos: Pos) -> None:
        super().__init__()
        self.pos = pos
        self.key_pos: dict[str, Pos] = {}
        # key -> "!reset" or "!override", as written on its value; read by the merge
        self.tags: dict[str, str] = {}

    def put(self, key: str, value: Value, pos: Pos) -> None:
        self[key] = value
        self.key_pos[key] = pos

    def where(self, key: str) -> Pos:
        return self.key_pos.get(key, self.pos)


class YList(list["Value"]):
    """A sequence that remembers where it and each of its items were written."""

    __slots__ = ("item_pos", "pos")

    def __init__(self, pos: Pos) -> None:
        super().__init__()
        self.pos = pos
        self.item_pos: list[Pos] = []

    def add(self, value: Value, pos: Pos) -> None:
        self.append(value)
        self.item_pos.append(pos)

    def where(self, index: int) -> Pos:
        return self.item_pos[index] if index < len(self.item_pos) else self.pos


Scalar: TypeAlias = str | int | float | bool | None
Value: TypeAlias = "YMap | YList | Scalar"


def type_name(value: Value) -> str:
    """How a value's type is called in messages, in YAML words."""
    if isinstance(value, YMap):
        return "a mapping"
    if isinstance(value, YList):
        return "a list"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    return "a string"

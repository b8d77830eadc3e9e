"""Placement constraints (``node.labels.zone == eu``) and preferences, parsed once.

Supported keys: ``node.id``, ``node.hostname``, ``node.role``, ``node.platform.os``,
``node.platform.arch``, ``node.labels.KEY`` and ``engine.labels.KEY`` (read from the
node's labels too). Operators ``==`` and ``!=``; whitespace around them is ignored.
Values compare case-insensitively, as in Docker Swarm; a missing label fails ``==``
and satisfies ``!=``. A malformed expression raises ``SpecError`` naming it.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from swarmlite.errors import SpecError
from swarmlite.spec.objects import Node

_FIELDS = ("node.id", "node.hostname", "node.role", "node.platform.os", "node.platform.arch")
_LABEL_PREFIXES = ("node.labels.", "engine.labels.")
_ARCH_ALIASES = {"amd64": "x86_64", "x86-64": "x86_64", "arm64": "aarch64", "armhf": "armv7l"}


def _norm_arch(arch: str) -> str:
    arch = arch.lower()
    return _ARCH_ALIASES.get(arch, arch)


@dataclass(frozen=True)
class Constraint:
    """One parsed ``key op value`` expression."""

    key: str  # "node.hostname", or "node.labels" for a label
    label: str  # the label name when key is "node.labels", else ""
    equal: bool  # True for ==, False for !=
    value: str  # lower-cased (arch values normalised)
    text: str  # canonical form for messages: "node.labels.zone==eu"

    def node_value(self, node: Node) -> str | None:
        if self.key == "node.labels":
            value = node.labels.get(self.label)
            return None if value is None else value.lower()
        if self.key == "node.id":
            return node.id.lower()
        if self.key == "node.hostname":
            return node.hostname.lower()
        if self.key == "node.role":
            return node.role
        if self.key == "node.platform.os":
            return node.platform.os.lower()
        return _norm_arch(node.platform.arch)

    def matches(self, node: Node) -> bool:
        actual = self.node_value(node)
        if actual is None:
            return not self.equal
        return (actual == self.value) == self.equal


def parse_constraint(expr: str) -> Constraint:
    """Parse ``expr``; raise ``SpecError`` saying what is wrong with it."""
    eq, ne = expr.find("=="), expr.find("!=")
    if eq < 0 and ne < 0:
        raise SpecError(f"invalid placement constraint {expr!r}: expected KEY==VALUE or KEY!=VALUE")
    equal = ne < 0 or (0 <= eq < ne)
    pos = eq if equal else ne
    key, value = expr[:pos].strip(), expr[pos + 2 :].strip()
    if "==" in value or "!=" in value:
        raise SpecError(f"invalid placement constraint {expr!r}: more than one operator")
    if not value:
        raise SpecError(f"invalid placement constraint {expr!r}: empty value")
    if any(c.isspace() for c in key) or any(c.isspace() for c in value):
        raise SpecError(f"invalid placement constraint {expr!r}: whitespace inside key or value")
    op = "==" if equal else "!="
    text = f"{key}{op}{value}"
    for prefix in _LABEL_PREFIXES:
        if key.startswith(prefix):
            label = key[len(prefix) :]
            if not label:
                raise SpecError(f"invalid placement constraint {expr!r}: empty label name")
            return Constraint("node.labels", label, equal, value.lower(), text)
    if key not in _FIELDS:
        known = ", ".join((*_FIELDS, "node.labels.KEY", "engine.labels.KEY"))
        raise SpecError(f"invalid placement constraint {expr!r}: unknown key {key!r} ({known})")
    folded = _norm_arch(value) if key == "node.platform.arch" else value.lower()
    return Constraint(key, "", equal, folded, text)


@functools.lru_cache(maxsize=1024)
def parse_constraints(exprs: tuple[str, ...]) -> tuple[Constraint, ...]:
    # Cached: every reconcile and scheduling pass asks again for each task.
    return tuple(parse_constraint(e) for e in exprs)


def parse_preference(expr: str) -> str:
    """``spread=node.labels.KEY`` or ``node.labels.KEY`` -> the label name ``KEY``."""
    body = expr.strip()
    if "=" in body:
        strategy, _, body = body.partition("=")
        if strategy.strip() != "spread":
            raise SpecError(f"invalid placement preference {expr!r}: only 'spread' is supported")
        body = body.strip()
    for prefix in _LABEL_PREFIXES:
        if body.startswith(prefix) and len(body) > len(prefix):
            return body[len(prefix) :]
    raise SpecError(f"invalid placement preference {expr!r}: expected spread=node.labels.KEY")


def parse_preferences(exprs: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(parse_preference(e) for e in exprs)

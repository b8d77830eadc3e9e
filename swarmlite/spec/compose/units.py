"""Compose's duration and size notations, as Go's ParseDuration and go-units read them."""

from __future__ import annotations

import re

_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_DURATION_UNITS = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}
_SIZE = re.compile(r"^(\d+(?:\.\d+)?)\s?([kmgtp])?i?b?$", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40, "p": 1 << 50}


def parse_duration(text: str) -> float:
    """``1m30s`` -> 90.0 seconds. Raises ValueError on anything else."""
    s = text.strip()
    if s in ("0", "-0", "+0"):
        return 0.0
    if not s:
        raise ValueError("empty duration")
    pos, total = 0, 0.0
    while pos < len(s):
        m = _DURATION_PART.match(s, pos)
        if m is None:
            raise ValueError(f"invalid duration {text!r}")
        total += float(m.group(1)) * _DURATION_UNITS[m.group(2)]
        pos = m.end()
    return total


def parse_size(text: str) -> int:
    """``512m`` -> 536870912 bytes (binary units, as Docker uses)."""
    m = _SIZE.match(text.strip())
    if m is None:
        raise ValueError(f"invalid size {text!r}")
    return int(float(m.group(1)) * _SIZE_UNITS[(m.group(2) or "").lower()])

"""Compose durations and sizes."""

from __future__ import annotations

import pytest

from swarmlite.spec.compose.units import parse_duration, parse_size


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("10s", 10.0), ("1m30s", 90.0), ("500ms", 0.5), ("1h", 3600.0), ("1.5s", 1.5),
     ("2h45m", 9900.0), ("0", 0.0), ("100us", 1e-4)],
)  # fmt: skip
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["10x", "", "10", "s", "1m 30s", "-5s"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


@pytest.mark.parametrize(
    ("text", "size"),
    [("512m", 512 * 2**20), ("1g", 2**30), ("100M", 100 * 2**20), ("1.5g", 3 * 2**29),
     ("2048", 2048), ("64k", 65536), ("1gb", 2**30), ("512MiB", 512 * 2**20)],
)  # fmt: skip
def test_sizes(text: str, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["lots", "1x", "", "-1m", "1.g"])
def test_bad_sizes(text: str) -> None:
    with pytest.raises(ValueError):
        parse_size(text)

"""The agent's stop sequence timing: drain delay, then in-flight wait, within the grace."""

from __future__ import annotations

from swarmlite.agent.observe import DRAIN_DELAY, drain_waits


def test_pause_for_the_drain_delay_then_wait_the_rest_of_the_grace() -> None:
    assert drain_waits(10.0, received_at=100.0, now=100.0, delay=1.0) == (1.0, 9.0)


def test_time_already_spent_counts_from_when_the_shutdown_arrived() -> None:
    assert drain_waits(10.0, received_at=100.0, now=100.25, delay=1.0) == (0.75, 9.0)
    assert drain_waits(10.0, received_at=100.0, now=103.0, delay=1.0) == (0.0, 7.0)
    assert drain_waits(10.0, received_at=100.0, now=111.0, delay=1.0) == (0.0, 0.0)


def test_the_grace_period_bounds_the_whole_drain() -> None:
    assert drain_waits(0.5, received_at=100.0, now=100.0, delay=1.0) == (0.5, 0.0)
    assert drain_waits(0.0, received_at=100.0, now=100.0) == (0.0, 0.0)  # stop at once


def test_default_delay() -> None:
    assert drain_waits(10.0, received_at=0.0, now=0.0) == (DRAIN_DELAY, 10.0 - DRAIN_DELAY)

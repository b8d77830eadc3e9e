"""The engine watch: which calls make a node's Docker engine count as unresponsive."""

from __future__ import annotations

from swarmlite.agent.engine_watch import EngineWatch
from tests.unit.clock import Clock


def test_quick_calls_leave_the_engine_answering() -> None:
    clock = Clock()
    watch = EngineWatch(30.0, clock=clock)
    call = watch.begin("inspect container abc")
    clock.now += 29.0
    assert watch.problem() == ""
    watch.end(call)
    clock.now += 100.0
    assert watch.problem() == ""


def test_a_call_waiting_past_its_allowance_is_reported_until_it_ends() -> None:
    clock = Clock()
    watch = EngineWatch(30.0, clock=clock)
    stop = watch.begin("stop container abc", allowance=10.0)  # a 10 s grace period
    clock.now += 39.0
    assert watch.problem() == ""  # within grace + 30 s
    clock.now += 2.0
    assert watch.problem() == (
        "docker engine unresponsive: stop container abc still waiting after 40s"
    )
    clock.now += 1.0
    late = watch.begin("inspect container def")
    clock.now += 31.0
    assert watch.problem() == (
        "docker engine unresponsive: stop container abc still waiting after 40s (and 1 more)"
    )
    watch.end(stop)
    watch.end(late)
    assert watch.problem() == ""


def test_a_timed_out_call_is_reported_for_four_times_the_threshold() -> None:
    clock = Clock()
    watch = EngineWatch(30.0, clock=clock)
    call = watch.begin("kill container abc")
    clock.now += 60.0
    watch.end(call, timed_out=True)
    assert watch.problem() == "docker engine unresponsive: kill container abc timed out"
    clock.now += 119.0
    assert watch.problem() == "docker engine unresponsive: kill container abc timed out"
    clock.now += 2.0
    assert watch.problem() == ""


def test_the_threshold_comes_from_the_environment(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("SWARMLITE_ENGINE_STUCK_AFTER", "2.5")
    assert EngineWatch().stuck_after == 2.5
    monkeypatch.delenv("SWARMLITE_ENGINE_STUCK_AFTER")
    assert EngineWatch().stuck_after == 30.0

"""The agent session's messages across versions: unknown types skip, malformed ones raise."""

from __future__ import annotations

import msgspec
import pytest

from swarmlite.agent.session import reconnect_delay
from swarmlite.api.agent_protocol import (
    Assignments,
    EngineReport,
    StatusReport,
    Unknown,
    decode_agent_message,
    decode_manager_message,
    encoder,
)
from swarmlite.spec.routes import RoutesSnapshot


def test_known_messages_round_trip() -> None:
    report = EngineReport(problem="docker engine unresponsive")
    assert decode_agent_message(encoder.encode(report)) == report
    assert decode_agent_message(encoder.encode(StatusReport(updates=()))) == StatusReport(())
    plan = Assignments(revision=7, tasks=(), routes=RoutesSnapshot(revision=7))
    assert decode_manager_message(encoder.encode(plan)) == plan


def test_a_newer_peers_message_type_decodes_as_unknown() -> None:
    assert decode_agent_message(b'{"type": "metrics", "cpu": 0.5}') == Unknown("metrics")
    # An agent message sent to an agent is as unknown as a future one.
    assert decode_manager_message(b'{"type": "engine", "problem": ""}') == Unknown("engine")


def test_a_newer_peers_extra_fields_are_ignored() -> None:
    got = decode_agent_message(b'{"type": "engine", "problem": "", "since": 12}')
    assert got == EngineReport(problem="")


@pytest.mark.parametrize(
    "data",
    [
        b'{"type": "status", "updates": 5}',  # a known type with a wrong field
        b'{"type": "engine"}',  # a known type missing a field
        b'{"problem": ""}',  # no type
        b"[1, 2]",
        b'{"type": "status"',  # truncated
    ],
)
def test_malformed_messages_raise(data: bytes) -> None:
    with pytest.raises(msgspec.DecodeError):
        decode_agent_message(data)


def test_agents_spread_their_reconnects_over_half_the_backoff() -> None:
    delays = [reconnect_delay(2.0, draw) for draw in (0.0, 0.25, 0.5, 0.999)]
    assert delays[0] == 1.0 and delays[-1] < 2.0
    assert delays == sorted(delays) and len(set(delays)) == 4

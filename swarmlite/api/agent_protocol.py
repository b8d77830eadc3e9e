"""Messages of the agent session: one websocket per node, JSON frames (msgspec).

agent -> manager: Hello first, then StatusReport whenever observed state changes, and
EngineReport once per session and whenever the engine's health changes.
manager -> agent: Assignments whenever the node's tasks or the routing view change;
always the complete set (level-triggered), never a delta.

Compatibility across versions, for clusters upgraded one node at a time: a field added
to a message has a default (older peers drop fields they do not know, newer ones fill
the default in), and a message of a type the receiver does not know decodes as
``Unknown``, which the receiver logs and skips instead of ending the session.
"""

from __future__ import annotations

import msgspec

from swarmlite.spec.objects import NodeResources, Platform, Task, TaskStatus, Volume
from swarmlite.spec.routes import RoutesSnapshot


class Hello(msgspec.Struct, frozen=True, tag="hello"):
    node_id: str
    hostname: str
    addr: str
    api_port: int
    platform: Platform
    resources: NodeResources


class TaskUpdate(msgspec.Struct, frozen=True):
    task_id: str
    status: TaskStatus


class StatusReport(msgspec.Struct, frozen=True, tag="status"):
    updates: tuple[TaskUpdate, ...]


class EngineReport(msgspec.Struct, frozen=True, tag="engine"):
    problem: str  # "" while the node's Docker engine answers (``agent.engine_watch``)


class FileData(msgspec.Struct, frozen=True):
    """A secret's or config's content for this node's tasks (base64; plaintext for
    secrets, which is why it only ever travels over the mutual-TLS session)."""

    name: str
    digest: str
    data: str

    def __repr__(self) -> str:
        return f"FileData(name={self.name!r}, digest={self.digest[:12]!r})"


class Assignments(msgspec.Struct, frozen=True, tag="assignments"):
    revision: int
    tasks: tuple[Task, ...]
    routes: RoutesSnapshot
    volumes: tuple[Volume, ...] = ()
    # Every manager's API address, so the agent can fail over and find them after a restart.
    managers: tuple[str, ...] = ()
    # The role the cluster records for this node; a change is a promotion or demotion.
    node_role: str = ""
    # Every manager's node id: a worker serves its manager-only paths (its part of a
    # service's logs) only to these, not to any holder of a manager certificate.
    manager_ids: tuple[str, ...] = ()
    # Only the secrets and configs that tasks meant to run here reference.
    secrets: tuple[FileData, ...] = ()
    configs: tuple[FileData, ...] = ()


class Unknown(msgspec.Struct, frozen=True):
    """A message whose type this version does not know: sent by a newer peer."""

    type: str = ""


AgentMessage = Hello | StatusReport | EngineReport
ManagerMessage = Assignments

_agent_decoder = msgspec.json.Decoder(AgentMessage)
_manager_decoder = msgspec.json.Decoder(ManagerMessage)
_unknown_decoder = msgspec.json.Decoder(Unknown)
_AGENT_TYPES = frozenset(str(t.__struct_config__.tag) for t in (Hello, StatusReport, EngineReport))
_MANAGER_TYPES = frozenset({str(Assignments.__struct_config__.tag)})
encoder = msgspec.json.Encoder()


def decode_agent_message(data: bytes | str) -> AgentMessage | Unknown:
    """An agent's message; raises ``msgspec.DecodeError`` for malformed JSON or a known
    type with wrong fields."""
    try:
        return _agent_decoder.decode(data)
    except msgspec.ValidationError as err:
        return _unknown_or_raise(data, _AGENT_TYPES, err)


def decode_manager_message(data: bytes | str) -> ManagerMessage | Unknown:
    """A manager's message; raises as ``decode_agent_message`` does."""
    try:
        return _manager_decoder.decode(data)
    except msgspec.ValidationError as err:
        return _unknown_or_raise(data, _MANAGER_TYPES, err)


def _unknown_or_raise(
    data: bytes | str, known: frozenset[str], err: msgspec.ValidationError
) -> Unknown:
    message = _unknown_decoder.decode(data)
    if not message.type or message.type in known:
        raise err  # a known (or untyped) message with wrong fields: malformed
    return message

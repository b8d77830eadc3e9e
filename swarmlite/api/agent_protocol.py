"""Messages of the agent session: one websocket per node, JSON frames (msgspec).

agent -> manager: Hello first, then StatusReport whenever observed state changes, and
EngineReport once per session and whenever the engine's health changes.
manager -> agent: Assignments whenever the node's tasks or the routing view change;
always the complete set (level-triggered), never a delta.
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
    # Only the secrets and configs that tasks meant to run here reference.
    secrets: tuple[FileData, ...] = ()
    configs: tuple[FileData, ...] = ()


AgentMessage = Hello | StatusReport | EngineReport
ManagerMessage = Assignments

agent_decoder = msgspec.json.Decoder(AgentMessage)
manager_decoder = msgspec.json.Decoder(ManagerMessage)
encoder = msgspec.json.Encoder()

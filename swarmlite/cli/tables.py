"""Docker-like output: aligned tables, humanized times, and the rows of each listing.

Everything here is pure: values in, strings out (``now`` is passed in), so the
output of every command can be tested without a daemon.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from swarmlite.api.models import ServiceSummary, StackSummary
from swarmlite.spec.objects import Node, Task, TaskState

COLUMN_GAP = "   "
ID_WIDTH = 12
ERROR_WIDTH = 30


def render_table(headers: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    """Columns padded to their widest cell, three spaces apart; no trailing spaces."""
    all_rows = [list(headers), *(list(row) for row in rows)]
    widths = [max(len(row[i]) for row in all_rows) for i in range(len(headers))]
    lines = []
    for row in all_rows:
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=True)]
        lines.append(COLUMN_GAP.join(cells).rstrip())
    return "\n".join(lines)


def human_duration(seconds: float) -> str:
    """Docker's wording of a duration ("5 seconds", "About a minute", "2 hours")."""
    secs = int(seconds)
    if secs < 1:
        return "Less than a second"
    if secs == 1:
        return "1 second"
    if secs < 60:
        return f"{secs} seconds"
    minutes = secs // 60
    if minutes == 1:
        return "About a minute"
    if minutes < 60:
        return f"{minutes} minutes"
    hours = int(seconds / 3600 + 0.5)
    if hours == 1:
        return "About an hour"
    if hours < 48:
        return f"{hours} hours"
    if hours < 24 * 7 * 2:
        return f"{hours // 24} days"
    if hours < 24 * 30 * 2:
        return f"{hours // 24 // 7} weeks"
    if hours < 24 * 365 * 2:
        return f"{hours // 24 // 30} months"
    return f"{int(seconds / 3600) // 24 // 365} years"


def time_ago(timestamp: float, now: float) -> str:
    """ "5 seconds ago"; an unknown (zero) timestamp is "" and a future one is "now"."""
    if timestamp <= 0:
        return ""
    return human_duration(max(0.0, now - timestamp)) + " ago"


def short_id(value: str, no_trunc: bool = False) -> str:
    return value if no_trunc else value[:ID_WIDTH]


def _truncate(text: str, width: int, no_trunc: bool) -> str:
    if no_trunc or len(text) <= width:
        return text
    return text[: width - 1] + "…"


# -- service ls ----------------------------------------------------------------

SERVICE_HEADERS = ("ID", "NAME", "MODE", "REPLICAS", "IMAGE", "PORTS")


def service_rows(services: Iterable[ServiceSummary]) -> list[list[str]]:
    rows = []
    for svc in sorted(services, key=lambda s: s.name):
        replicas = f"{svc.running}/{svc.desired}"
        if svc.update_state in ("updating", "rollback_started", "paused", "rollback_paused"):
            replicas += f" ({svc.update_state.replace('_', ' ')})"
        rows.append(
            [short_id(svc.id), svc.name, svc.mode, replicas, svc.image, ",".join(svc.ports)]
        )
    return rows


# -- stack ls ------------------------------------------------------------------

STACK_HEADERS = ("NAME", "SERVICES")


def stack_rows(stacks: Iterable[StackSummary]) -> list[list[str]]:
    return [[s.name, str(s.services)] for s in sorted(stacks, key=lambda s: s.name)]


# -- node ls -------------------------------------------------------------------

NODE_HEADERS = ("ID", "HOSTNAME", "STATUS", "AVAILABILITY", "MANAGER STATUS")


def manager_status(node: Node, *, local_id: str, local_is_leader: bool, leader_id: str = "") -> str:
    """ "Leader", "Reachable" or "Unreachable" for managers, "" for workers.

    ``leader_id`` is the leader the API named; without it only the answering node
    can be known to lead.
    """
    if node.role != "manager":
        return ""
    if node.id == leader_id or (node.id == local_id and local_is_leader):
        return "Leader"
    return "Reachable" if node.status.state == "ready" else "Unreachable"


def node_rows(
    nodes: Iterable[Node], *, local_id: str, local_is_leader: bool, leader_id: str = ""
) -> list[list[str]]:
    rows = []
    for node in sorted(nodes, key=lambda n: (n.hostname, n.id)):
        node_id = node.id + (" *" if node.id == local_id else "")
        rows.append(
            [
                node_id,
                node.hostname,
                node.status.state.capitalize()
                + (" (engine unresponsive)" if node.status.engine else ""),
                node.availability.capitalize(),
                manager_status(
                    node, local_id=local_id, local_is_leader=local_is_leader, leader_id=leader_id
                ),
            ]
        )
    return rows


# -- service ps / stack ps / ps ------------------------------------------------

TASK_HEADERS = ("ID", "NAME", "IMAGE", "NODE", "DESIRED STATE", "CURRENT STATE", "ERROR")


def _task_time(task: Task) -> float:
    return task.status.timestamp or task.created_at


def _recency(task: Task) -> tuple[bool, float, float, str]:
    return (task.desired_state <= TaskState.RUNNING, task.created_at, _task_time(task), task.id)


def order_tasks(tasks: Iterable[Task]) -> list[tuple[Task, bool]]:
    """Tasks by service, then slot (node for global services), current first.

    Each task comes with ``True`` when it is its slot's current one: the task meant
    to run, else the newest created (a replacement that waits, pending, is created
    before its predecessor's shutdown is stamped). The others are history and print
    as `` \\_ name`` like docker.
    """

    def slot_key(task: Task) -> tuple[str, int, str]:
        return (task.service_name, task.slot, "" if task.slot else task.node_id)

    by_slot: dict[tuple[str, int, str], list[Task]] = {}
    for task in tasks:
        by_slot.setdefault(slot_key(task), []).append(task)
    ordered: list[tuple[Task, bool]] = []
    for key in sorted(by_slot):
        history = sorted(by_slot[key], key=_recency, reverse=True)
        ordered.extend((task, i == 0) for i, task in enumerate(history))
    return ordered


def task_error(task: Task) -> str:
    if task.status.err:
        return task.status.err
    if task.status.state <= TaskState.PENDING and task.pending_reason:
        return task.pending_reason
    return ""


def current_state(task: Task, now: float) -> str:
    state = task.status.state.label.capitalize()
    ago = time_ago(task.status.timestamp, now)
    return f"{state} {ago}" if ago else state


def task_rows(
    tasks: Iterable[Task],
    hostnames: Mapping[str, str],
    *,
    now: float,
    no_trunc: bool = False,
) -> list[list[str]]:
    rows = []
    for task, newest in order_tasks(tasks):
        name = task.name if newest else f" \\_ {task.name}"
        node = hostnames.get(task.node_id, short_id(task.node_id)) if task.node_id else ""
        error = task_error(task)
        rows.append(
            [
                short_id(task.id, no_trunc),
                name,
                task.spec.image,
                node,
                task.desired_state.label.capitalize(),
                current_state(task, now),
                f'"{_truncate(error, ERROR_WIDTH, no_trunc)}"' if error else "",
            ]
        )
    return rows

"""What one scheduling pass decided, as values the caller commits and logs."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Placement:
    task_id: str
    node_id: str


@dataclass(frozen=True)
class Unplaced:
    task_id: str
    reason: str  # one line: "no suitable node: insufficient memory on 1 node"


@dataclass(frozen=True)
class SchedulePlan:
    placements: tuple[Placement, ...]
    unplaced: tuple[Unplaced, ...]
    decision: str  # one line for the log


def _plural(count: int, word: str) -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


def decision(placements: tuple[Placement, ...], unplaced: tuple[Unplaced, ...]) -> str:
    """``placed 5 tasks on 2 nodes, 1 pending: no suitable node: ...``."""
    if not placements and not unplaced:
        return "nothing to schedule"
    used = len({p.node_id for p in placements})
    text = f"placed {_plural(len(placements), 'task')} on {_plural(used, 'node')}"
    if unplaced:
        reasons = list(dict.fromkeys(u.reason for u in unplaced))
        text += f", {len(unplaced)} pending: {reasons[0]}"
        if len(reasons) > 1:
            text += f" (and {_plural(len(reasons) - 1, 'other reason')})"
    return text

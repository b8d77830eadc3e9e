"""The scheduler: pure logic that assigns pending tasks to nodes and says why not.

    plan = schedule(pending, nodes, assigned, volumes)
    plan.placements   # (Placement(task_id, node_id), ...)
    plan.unplaced     # (Unplaced(task_id, "no suitable node: ..."), ...)
    plan.decision     # "placed 5 tasks on 2 nodes, 1 pending: no suitable node: ..."

Modules: ``nodeinfo`` (per-node accounting), ``constraints`` (parsing), ``filters`` (one
class per check, each with ``explain``), ``pipeline`` (filters in order and the pending
reason), ``planner`` (choosing among the nodes that pass), ``plan`` (result values).
"""

from swarmlite.manager.scheduler.filters import (
    AvailabilityFilter,
    ConstraintFilter,
    EngineFilter,
    Filter,
    HostPortFilter,
    MaxReplicasFilter,
    NewVolumeFilter,
    ReadyNodeFilter,
    ResourceFilter,
    VolumeAffinityFilter,
)
from swarmlite.manager.scheduler.nodeinfo import NodeInfo, build_node_infos
from swarmlite.manager.scheduler.pipeline import Pipeline
from swarmlite.manager.scheduler.plan import Placement, SchedulePlan, Unplaced
from swarmlite.manager.scheduler.planner import schedule
from swarmlite.spec.constraints import (
    Constraint,
    parse_constraint,
    parse_constraints,
    parse_preference,
)

__all__ = [
    "AvailabilityFilter",
    "Constraint",
    "ConstraintFilter",
    "EngineFilter",
    "Filter",
    "HostPortFilter",
    "MaxReplicasFilter",
    "NewVolumeFilter",
    "NodeInfo",
    "Pipeline",
    "Placement",
    "ReadyNodeFilter",
    "ResourceFilter",
    "SchedulePlan",
    "Unplaced",
    "VolumeAffinityFilter",
    "build_node_infos",
    "parse_constraint",
    "parse_constraints",
    "parse_preference",
    "schedule",
]

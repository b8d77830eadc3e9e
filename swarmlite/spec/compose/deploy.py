"""The ``deploy`` section, the service-level ``restart`` and ``healthcheck``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, TypeVar, cast

from swarmlite.errors import SpecError
from swarmlite.spec.constraints import parse_constraint, parse_preference
from swarmlite.spec.service import (
    FailureAction,
    HealthCheck,
    Placement,
    ResourceAmounts,
    Resources,
    RestartCondition,
    RestartPolicy,
    UpdateConfig,
    UpdateOrder,
)

from .reader import Reader, to_str
from .tree import YList, YMap, type_name

T = TypeVar("T")
_CONDITIONS = ("none", "on-failure", "any")


@dataclass(frozen=True)
class Deploy:
    """What ``deploy`` contributes to a ServiceSpec, as keyword arguments."""

    fields: dict[str, Any] = field(default_factory=dict)
    has_restart_policy: bool = False


def read_deploy(svc: Reader) -> Deploy:
    r = svc.sub("deploy", "deploy")
    if r is None:
        return Deploy()
    out: dict[str, Any] = {}
    mode = r.choice("mode", ("replicated", "global", "replicated-job", "global-job"))
    if mode in ("replicated-job", "global-job"):
        r.error("mode", f"mode {mode!r} is not supported; use replicated or global")
    elif mode:
        out["mode"] = mode
    replicas = r.int_("replicas", 0)
    if mode == "global" and r.get("replicas") is not None:
        r.error("replicas", "replicas cannot be set with mode: global (one task per node)")
    elif replicas is not None:
        out["replicas"] = replicas
    labels = r.str_map("labels")
    if labels:
        out["deploy_labels"] = {k: v or "" for k, v in labels.items()}
    policy = _restart_policy(r)
    if policy is not None:
        out["restart_policy"] = policy
    resources = r.sub("resources", "deploy.resources")
    if resources is not None:
        out["resources"] = Resources(
            limits=_amounts(resources, "limits"), reservations=_amounts(resources, "reservations")
        )
    placement = _placement(r)
    if placement is not None:
        out["placement"] = placement
    for key in ("update_config", "rollback_config"):
        config = _update_config(r, key)
        if config is not None:
            out[key] = config
    return Deploy(out, has_restart_policy=policy is not None)


def _restart_policy(deploy: Reader) -> RestartPolicy | None:
    r = deploy.sub("restart_policy", "deploy.restart_policy")
    if r is None:
        return None
    default = RestartPolicy()
    attempts = r.int_("max_attempts", 0)
    return RestartPolicy(
        condition=cast(
            RestartCondition,
            r.choice("condition", ("none", "on-failure", "any")) or default.condition,
        ),
        delay=_or(r.duration("delay"), default.delay),
        # Swarm reads max_attempts 0 as "no limit".
        max_attempts=attempts or None,
        window=_or(r.duration("window"), default.window),
    )


def _amounts(resources: Reader, key: str) -> ResourceAmounts:
    r = resources.sub(key, f"deploy.resources.{key}")
    if r is None:
        return ResourceAmounts()
    cpus = r.float_("cpus", 0.0)
    if cpus == 0.0:
        r.error("cpus", "must be more than 0")
        cpus = None
    return ResourceAmounts(cpus=cpus, memory=r.size("memory"))


def _placement(deploy: Reader) -> Placement | None:
    r = deploy.sub("placement", "deploy.placement")
    if r is None:
        return None
    preferences: list[str] = []
    value = r.get("preferences")
    items = value if isinstance(value, YList) else YList(r.where("preferences"))
    if value is not None and not isinstance(value, YList):
        r.error("preferences", f"must be a list, not {type_name(value)}")
    for i, item in enumerate(items):
        spread = item.get("spread") if isinstance(item, YMap) else None
        if not isinstance(item, YMap) or set(item) != {"spread"} or not isinstance(spread, str):
            msg = "each preference must be {spread: node.labels.KEY}"
            r.error("preferences", msg, pos=items.where(i))
            continue
        try:
            parse_preference(spread)
        except SpecError as exc:
            r.error("preferences", str(exc), pos=items.where(i))
            continue
        preferences.append(spread)
    constraints = r.str_list("constraints") or []
    listed = r.get("constraints")
    for i, expr in enumerate(constraints):
        try:
            parse_constraint(expr)
        except SpecError as exc:
            at = listed.where(i) if isinstance(listed, YList) else r.where("constraints")
            r.error("constraints", str(exc), pos=at)
    return Placement(
        constraints=tuple(constraints),
        preferences=tuple(preferences),
        max_replicas_per_node=r.int_("max_replicas_per_node", 0),
    )


def _update_config(deploy: Reader, key: str) -> UpdateConfig | None:
    r = deploy.sub(key, f"deploy.{key}")
    if r is None:
        return None
    default = UpdateConfig()
    actions = ("pause", "continue", "rollback") if key == "update_config" else ("pause", "continue")
    return UpdateConfig(
        parallelism=_or(r.int_("parallelism", 0), default.parallelism),
        delay=_or(r.duration("delay"), default.delay),
        failure_action=cast(
            FailureAction, r.choice("failure_action", actions) or default.failure_action
        ),
        monitor=_or(r.duration("monitor"), default.monitor),
        max_failure_ratio=_or(r.float_("max_failure_ratio", 0.0, 1.0), default.max_failure_ratio),
        order=cast(UpdateOrder, r.choice("order", ("stop-first", "start-first")) or default.order),
    )


def read_restart(svc: Reader) -> RestartPolicy | None:
    """Service-level ``restart``, used only when ``deploy.restart_policy`` is absent."""
    text = svc.str_("restart")
    if text is None:
        return None
    name, _, count = text.partition(":")
    if name == "no" and not count:
        return RestartPolicy(condition="none")
    if name in ("always", "unless-stopped") and not count:
        return RestartPolicy(condition="any")
    if name == "on-failure" and (not count or count.isdigit()):
        # on-failure:0 is no limit, as in Docker and Swarm (and deploy's max_attempts: 0).
        return RestartPolicy(condition="on-failure", max_attempts=int(count or 0) or None)
    svc.error("restart", f"must be no, always, on-failure[:N] or unless-stopped, not {text!r}")
    return None


def read_healthcheck(svc: Reader) -> HealthCheck | None:
    r = svc.sub("healthcheck", "healthcheck")
    if r is None:
        return None
    # Times first, so their errors are reported with the test's.
    times = (r.duration("interval"), r.duration("timeout"), r.duration("start_period"))
    retries = r.int_("retries", 0)
    test: tuple[str, ...] | None = None
    raw = r.get("test")
    if r.bool_("disable"):
        test = ("NONE",)
    elif isinstance(raw, str):
        test = ("CMD-SHELL", raw)
    elif (
        isinstance(raw, YList)
        and raw
        and all(v is not None and not isinstance(v, YMap | YList) for v in raw)
    ):
        test = tuple(to_str(v) for v in raw)
        if test[0] not in ("CMD", "CMD-SHELL", "NONE"):
            r.error("test", f"a test list must start with CMD, CMD-SHELL or NONE, not {test[0]!r}")
            return None
    elif raw is None:
        # As in Compose: the image's own test, with the times given here (0: the image's).
        interval, timeout, start_period = (t or 0.0 for t in times)
        return HealthCheck(
            test=(),
            interval=interval,
            timeout=timeout,
            retries=retries or 0,
            start_period=start_period,
        )
    else:
        r.error("test", f"must be a string or a non-empty list of strings, not {type_name(raw)}")
        return None
    default = HealthCheck(test=test)
    return HealthCheck(
        test=test,
        interval=_or(times[0], default.interval),
        timeout=_or(times[1], default.timeout),
        retries=_or(retries, default.retries),
        start_period=_or(times[2], default.start_period),
    )


def _or(value: T | None, default: T) -> T:
    return default if value is None else value

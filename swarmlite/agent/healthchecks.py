"""Docker's Healthcheck object both ways, pure: the one a task's container is created
with, and the check and health state ``inspect`` shows (the image's own HEALTHCHECK
when the service sets none: Docker merges it into the container's config)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from swarmlite.spec.service import HealthCheck

_NS = 1_000_000_000


def docker_healthcheck(hc: HealthCheck | None) -> dict[str, Any] | None:
    """Docker's Healthcheck object; None keeps the image's own healthcheck."""
    if hc is None:
        return None
    if hc.disabled:
        return {"test": ["NONE"]}
    # An empty test (and each 0) keeps the image's: the engine fills them from it.
    return {
        "test": list(hc.test),
        "interval": round(hc.interval * _NS),
        "timeout": round(hc.timeout * _NS),
        "retries": hc.retries,
        "start_period": round(hc.start_period * _NS),
    }


def healthcheck_of(attrs: Mapping[str, Any]) -> HealthCheck | None:
    """The container's healthcheck (None without one); unset times are Docker's defaults."""
    hc = (attrs.get("Config") or {}).get("Healthcheck") or {}
    test = tuple(str(t) for t in hc.get("Test") or ())
    if not test or test[0] == "NONE":
        return None
    default = HealthCheck(test=test)
    return HealthCheck(
        test=test,
        interval=(hc.get("Interval") or 0) / _NS or default.interval,
        timeout=(hc.get("Timeout") or 0) / _NS or default.timeout,
        retries=hc.get("Retries") or default.retries,
        start_period=(hc.get("StartPeriod") or 0) / _NS,
    )


def health_of(attrs: Mapping[str, Any]) -> str:
    """'none' when the container has no healthcheck, else starting/healthy/unhealthy."""
    health = (attrs.get("State") or {}).get("Health")
    if not health:
        return "none"
    return str(health.get("Status") or "none")

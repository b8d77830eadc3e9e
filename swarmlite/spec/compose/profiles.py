"""Compose ``profiles``: which services of the file a deploy includes.

A service without ``profiles`` is always active; one with ``profiles: [a, b]`` is
active only when ``a`` or ``b`` is enabled. Profiles are enabled by ``--profile``
(repeatable) or, when none is given, by ``COMPOSE_PROFILES`` (comma-separated, from
the environment or ``.env``), as ``docker compose`` does; ``*`` enables them all.

An inactive service is not part of the stack, as if the file did not have it: it
is not converted (only its keys and profile names are checked, as Compose's schema
checks every service), and ``--prune`` removes it. An active service may not depend
on it, unless with ``required: false`` (``services.py``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from .keys import check_keys
from .problems import Problems
from .tree import Pos, Value, YList, YMap, type_name

# The Compose spec's pattern for a profile name.
PROFILE_NAME = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]+")
ALL = "*"


@dataclass(frozen=True)
class EnabledProfiles:
    names: frozenset[str] = frozenset()
    # where the names came from, for messages: "--profile" or "COMPOSE_PROFILES"
    source: str = "--profile"

    def enables(self, profiles: tuple[str, ...]) -> bool:
        return not profiles or ALL in self.names or not self.names.isdisjoint(profiles)

    def described(self, when_none: str) -> str:
        """What is enabled and by what, for a message; ``when_none`` if nothing is."""
        if not self.names:
            return when_none
        return f"{self.source} enables {', '.join(sorted(self.names))}"


def enabled_profiles(given: Sequence[str] | None, env: Mapping[str, str]) -> EnabledProfiles:
    """``--profile`` names if any, else ``COMPOSE_PROFILES``; blanks are dropped."""
    if given:
        return EnabledProfiles(frozenset(p.strip() for p in given if p.strip()), "--profile")
    names = (p.strip() for p in env.get("COMPOSE_PROFILES", "").split(","))
    return EnabledProfiles(frozenset(p for p in names if p), "COMPOSE_PROFILES")


def read_profiles(name: str, node: Value, problems: Problems) -> tuple[str, ...]:
    """A service's ``profiles:`` list, each name checked; () when absent or wrong."""
    if not isinstance(node, YMap) or node.get("profiles") is None:
        return ()
    value = node["profiles"]
    if not isinstance(value, YList):
        problems.error(
            f"must be a list of profile names, not {type_name(value)}",
            node.where("profiles"),
            service=name,
            key="profiles",
            hint="profiles: [NAME]" if isinstance(value, str) else None,
        )
        return ()
    out: list[str] = []
    for i, item in enumerate(value):
        text = item if isinstance(item, str) else None
        if text is None or not PROFILE_NAME.fullmatch(text):
            shown = repr(text) if text is not None else type_name(item)
            problems.error(
                f"invalid profile name {shown}: use letters, digits, '_', '.' and '-', "
                "starting with a letter or digit, at least 2 characters",
                value.where(i),
                service=name,
                key="profiles",
            )
            continue
        if text not in out:
            out.append(text)
    return tuple(out)


def check_inactive(name: str, node: Value, problems: Problems) -> None:
    """An inactive service's unknown keys are still errors; its ignored keys warn nothing."""
    if not isinstance(node, YMap):
        return
    scratch = Problems()
    check_keys(node, "service", scratch, service=name, prefix="")
    problems.errors.extend(scratch.errors)


def unused_profiles(enabled: EnabledProfiles, profiles: Mapping[str, tuple[str, ...]]) -> list[str]:
    """Enabled names no service has: most likely a typo, worth a warning."""
    known = {p for names in profiles.values() for p in names}
    return sorted(enabled.names - known - {ALL})


def no_active_service(
    profiles: Mapping[str, tuple[str, ...]], enabled: EnabledProfiles, pos: Pos, problems: Problems
) -> None:
    known = ", ".join(sorted({p for names in profiles.values() for p in names}))
    now = enabled.described("none is enabled")
    problems.error(
        f"no service is active: every service has profiles ({known}) and {now}",
        pos,
        key="services",
        hint="enable one with --profile NAME or COMPOSE_PROFILES=NAME",
    )


def inactive_dependency(
    dep: str, dep_profiles: tuple[str, ...], service: str, enabled: EnabledProfiles
) -> tuple[str, str]:
    """Message and hint for an active service that depends on an inactive one."""
    now = enabled.described("no profile is enabled")
    message = (
        f"depends on service {dep!r}, which is not active "
        f"(its profiles: {', '.join(dep_profiles)}; {now})"
    )
    hint = (
        f"enable it with --profile {dep_profiles[0]}, put {service!r} in the same profile, "
        "or make the dependency required: false"
    )
    return message, hint

"""Compose ``profiles``: which services a deploy includes, chosen by ``--profile`` or
``COMPOSE_PROFILES``; an inactive service counts as absent from the file."""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from pathlib import Path

import pytest

from swarmlite.api import stack_handlers
from swarmlite.cli.main import parse_args
from swarmlite.errors import ComposeError, ComposeErrors
from swarmlite.spec.compose import load_stack
from swarmlite.spec.service import Dependency, StackSpec
from tests.unit.api_harness import MemoryStore, context, serve

SHOP = """
services:
  web:
    image: nginx
  debug:
    image: busybox
    profiles: [dev]
    cap_add: [NET_ADMIN]
  db:
    image: postgres
    profiles: [prod, staging]
"""


def load(
    tmp_path: Path,
    text: str = SHOP,
    profiles: Sequence[str] | None = None,
    environ: dict[str, str] | None = None,
) -> StackSpec:
    path = tmp_path / "compose.yaml"
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return load_stack([path], stack="shop", environ=environ or {}, profiles=profiles)


def names(stack: StackSpec) -> list[str]:
    return [s.name for s in stack.services]


def errors_of(tmp_path: Path, text: str, **kw: object) -> list[ComposeError]:
    with pytest.raises(ComposeError) as info:
        load(tmp_path, text, **kw)  # type: ignore[arg-type]
    err = info.value
    return err.errors if isinstance(err, ComposeErrors) else [err]


def test_no_profile_enabled_deploys_only_services_without_profiles(tmp_path: Path) -> None:
    stack = load(tmp_path)
    assert names(stack) == ["web"]
    # profiles is acted on, not ignored; an inactive service's ignored keys warn nothing
    assert stack.warnings == ()


def test_profile_flag_enables_its_services_and_repeats(tmp_path: Path) -> None:
    assert names(load(tmp_path, profiles=["dev"])) == ["web", "debug"]
    assert names(load(tmp_path, profiles=["staging"])) == ["web", "db"]
    assert names(load(tmp_path, profiles=["dev", "prod"])) == ["web", "debug", "db"]
    assert load(tmp_path, profiles=["dev"]).warnings == (
        "Ignoring unsupported options: cap_add (services debug)",
    )


def test_compose_profiles_variable_enables_comma_separated(tmp_path: Path) -> None:
    stack = load(tmp_path, environ={"COMPOSE_PROFILES": "dev, prod"})
    assert names(stack) == ["web", "debug", "db"]
    # As docker compose: --profile, when given, replaces COMPOSE_PROFILES.
    stack = load(tmp_path, profiles=["prod"], environ={"COMPOSE_PROFILES": "dev"})
    assert names(stack) == ["web", "db"]


def test_compose_profiles_from_the_dot_env_file(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("COMPOSE_PROFILES=staging\n")
    assert names(load(tmp_path)) == ["web", "db"]


def test_star_enables_every_profile(tmp_path: Path) -> None:
    assert names(load(tmp_path, profiles=["*"])) == ["web", "debug", "db"]
    assert names(load(tmp_path, environ={"COMPOSE_PROFILES": "*"})) == ["web", "debug", "db"]
    assert load(tmp_path, profiles=["*"]).warnings == (
        "Ignoring unsupported options: cap_add (services debug)",
    )


def test_depending_on_an_inactive_service_is_refused(tmp_path: Path) -> None:
    text = """
    services:
      web:
        image: nginx
        depends_on:
          - db
      db:
        image: postgres
        profiles: [prod]
    """
    (err,) = errors_of(tmp_path, text, profiles=["dev"])
    assert (err.file, err.line, err.service, err.key) == (
        str(tmp_path / "compose.yaml"),
        5,
        "web",
        "depends_on",
    )
    assert err.message == (
        "depends on service 'db', which is not active (its profiles: prod; --profile enables dev)"
    )
    assert err.hint is not None and "--profile prod" in err.hint
    assert "\n" not in str(err)
    # Enabling the dependency's profile makes the file good.
    assert names(load(tmp_path, text, profiles=["prod"])) == ["web", "db"]


def test_an_optional_dependency_on_an_inactive_service_is_dropped(tmp_path: Path) -> None:
    text = """
    services:
      web:
        image: nginx
        depends_on:
          db: {condition: service_healthy, required: false}
      db:
        image: postgres
        profiles: [prod]
    """
    assert load(tmp_path, text).services[0].depends_on == ()
    web = load(tmp_path, text, profiles=["prod"]).services[0]
    assert web.depends_on == (
        Dependency(service="db", condition="service_healthy", required=False),
    )


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ("[dev, x]", "'x'"),
        ("[dev, -dev]", "'-dev'"),
        ('[dev, "a b"]', "'a b'"),
        ("[[dev]]", "a list"),
    ],
)
def test_a_bad_profile_name_is_refused(tmp_path: Path, value: str, shown: str) -> None:
    text = f"services:\n  web:\n    image: nginx\n    profiles: {value}\n"
    (err,) = errors_of(tmp_path, text, profiles=["*"])
    assert (err.line, err.service, err.key) == (4, "web", "profiles")
    assert f"invalid profile name {shown}" in err.message
    assert "compose.yaml:4: service 'web', key 'profiles'" in str(err)


def test_profiles_must_be_a_list(tmp_path: Path) -> None:
    (err,) = errors_of(tmp_path, "services:\n  web:\n    image: nginx\n    profiles: dev\n")
    assert (err.line, err.service, err.key) == (4, "web", "profiles")
    assert err.hint == "profiles: [NAME]"


def test_resources_only_inactive_services_use_cause_no_error(tmp_path: Path) -> None:
    text = """
    services:
      web:
        image: nginx
      debug:
        image: busybox
        profiles: [dev]
        networks: [tools, undeclared]
        volumes: [cache:/cache, nowhere:/x]
        secrets: [token]
        configs: [{source: conf, target: /etc/c}]
        depends_on: [ghost]
    networks:
      tools: {}
    volumes:
      cache: {}
    secrets:
      token: {file: ./missing-token}
    configs:
      conf: {environment: UNSET_VARIABLE}
    """
    stack = load(tmp_path, text)
    assert names(stack) == ["web"]
    # Not sent: the stack does not use them. (Networks and volumes are declared
    # resources and are created as before, used or not.)
    assert stack.secrets == () and stack.configs == ()
    # Enabled, the same service's problems are all reported.
    messages = [e.message for e in errors_of(tmp_path, text, profiles=["dev"])]
    assert any("'undeclared' is not declared" in m for m in messages)
    assert any("unknown service 'ghost'" in m for m in messages)
    assert any("missing-token" in m for m in messages)
    assert any("UNSET_VARIABLE" in m for m in messages)


def test_an_inactive_service_has_only_its_keys_checked(tmp_path: Path) -> None:
    text = """
    services:
      web: {image: nginx}
      debug:
        image: x
        profiles: [dev]
        networks: [undeclared]
        imagee: y
    """
    # As Compose's schema: a typo is an error in any service; references are not
    # checked in a service the deploy leaves out.
    (err,) = errors_of(tmp_path, text)
    assert (err.line, err.service, err.key) == (7, "debug", "imagee")


def test_no_active_service_is_refused(tmp_path: Path) -> None:
    text = "services:\n  debug:\n    image: busybox\n    profiles: [dev]\n"
    (err,) = errors_of(tmp_path, text, profiles=["prod"])
    assert err.message == (
        "no service is active: every service has profiles (dev) and --profile enables prod"
    )


def test_an_enabled_profile_no_service_has_is_a_warning(tmp_path: Path) -> None:
    stack = load(tmp_path, profiles=["dve"])
    assert names(stack) == ["web"]
    assert stack.warnings == ("profile 'dve' (--profile) is not used by any service",)


def test_profiles_of_several_files_are_appended(tmp_path: Path) -> None:
    base = tmp_path / "compose.yaml"
    base.write_text("services:\n  db:\n    image: postgres\n    profiles: [prod]\n")
    over = tmp_path / "compose.dev.yaml"
    over.write_text("services:\n  db:\n    profiles: [dev]\n")
    both = [base, over]
    assert names(load_stack(both, stack="s", environ={}, profiles=["prod"])) == ["db"]
    assert names(load_stack(both, stack="s", environ={}, profiles=["dev"])) == ["db"]


def test_deploy_and_stack_deploy_take_repeated_profile_flags() -> None:
    args = parse_args(["deploy", "--profile", "dev", "--profile", "prod"])
    assert args.profiles == ["dev", "prod"]
    assert parse_args(["deploy"]).profiles is None
    assert parse_args(["stack", "deploy", "-c", "a.yml", "--profile", "*", "s"]).profiles == ["*"]


async def test_prune_removes_a_service_whose_profile_is_no_longer_enabled(
    tmp_path: Path,
) -> None:
    store = MemoryStore()
    routes = [("POST", "/v1/stacks/{stack}/deploy", stack_handlers.deploy)]
    async for api in serve(context(store), routes):
        first = await api.deploy(load(tmp_path, profiles=["dev"]), prune=True)
        kept = await api.deploy(load(tmp_path), prune=False)
        pruned = await api.deploy(load(tmp_path), prune=True)
    assert first.created == ("shop_web", "shop_debug")
    # Without --prune an inactive service stays, like one missing from the file.
    assert kept.removed == () and kept.unchanged == ("shop_web",)
    assert pruned.removed == ("shop_debug",) and pruned.unchanged == ("shop_web",)

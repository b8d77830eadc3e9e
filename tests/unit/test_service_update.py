"""``service update`` / ``service rollback``: the spec change, the CLI's arguments and output."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from swarmlite.api.models import ServiceUpdateRequest
from swarmlite.api.update_handlers import updated_spec
from swarmlite.cli.main import parse_args
from swarmlite.cli.pretty import pretty_service
from swarmlite.cli.service_cmds import _update_line
from swarmlite.errors import SpecError
from swarmlite.manager.updater import begin_rollback, begin_update
from swarmlite.spec.objects import Service, UpdateStatus
from swarmlite.spec.service import ServiceSpec

SPEC = ServiceSpec(name="web", stack="s", image="nginx:1", environment={"A": "1", "B": "2"})


@pytest.fixture(autouse=True)
def _default_data_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SWARMLITE_DATA_DIR", str(tmp_path / "default"))


def test_updated_spec_applies_only_what_is_given() -> None:
    assert updated_spec(SPEC, ServiceUpdateRequest()) == SPEC
    new = updated_spec(
        SPEC, ServiceUpdateRequest(image="nginx:2", env_add={"C": "3", "A": "9"}, env_rm=("B",))
    )
    assert (new.image, new.environment, new.replicas) == ("nginx:2", {"A": "9", "C": "3"}, 1)
    assert updated_spec(SPEC, ServiceUpdateRequest(replicas=4)).replicas == 4


def test_force_bumps_the_counter_and_changes_the_task_hash() -> None:
    forced = updated_spec(SPEC, ServiceUpdateRequest(force=True))
    assert forced.force_update == 1 and forced.task_hash() != SPEC.task_hash()
    assert begin_update(Service(id="x", spec=SPEC), forced, 5.0).update_status.state == "updating"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (ServiceUpdateRequest(image=" "), "image must not be empty"),
        (ServiceUpdateRequest(replicas=-1), "replicas must be 0 or more"),
        (ServiceUpdateRequest(env_add={"": "x"}), "invalid environment variable name ''"),
    ],
)
def test_updated_spec_refuses_bad_input(change: ServiceUpdateRequest, message: str) -> None:
    with pytest.raises(SpecError, match=message):
        updated_spec(SPEC, change)


def test_replicas_of_a_global_service_is_refused() -> None:
    glob = msgspec.structs.replace(SPEC, mode="global")
    with pytest.raises(SpecError, match="replicated mode; web is global"):
        updated_spec(glob, ServiceUpdateRequest(replicas=2))


def test_cli_arguments() -> None:
    args = parse_args(
        ["service", "update", "--image", "nginx:2", "--env-add", "A=1", "--env-add", "B=x=y",
         "--env-rm", "C", "--replicas", "3", "--force", "web"]
    )  # fmt: skip
    assert (args.service, args.image, args.replicas, args.force) == ("web", "nginx:2", 3, True)
    assert (args.env_add, args.env_rm) == ([("A", "1"), ("B", "x=y")], ["C"])
    plain = parse_args(["service", "update", "web"])
    assert (plain.image, plain.env_add, plain.replicas, plain.force) == (None, [], None, False)
    assert parse_args(["service", "rollback", "web"]).service == "web"


def test_cli_env_add_needs_a_key_and_equals(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        parse_args(["service", "update", "--env-add", "NOEQUALS", "web"])
    assert exc.value.code == 2
    assert "expected K=V" in capsys.readouterr().err


def test_update_and_rollback_lines_and_pretty_status() -> None:
    v1 = Service(id="x", spec=SPEC)
    v2 = begin_update(v1, msgspec.structs.replace(SPEC, image="nginx:2"), 1_700_000_000.0)
    assert _update_line(v2) == "s_web: update started (version 2)"
    v3 = begin_rollback(v2, 1_700_000_100.0, "manually requested")
    assert _update_line(v3) == "s_web: rollback started (version 3)"
    assert v3.spec == SPEC and v3.previous_spec is not None
    scaled = begin_update(v1, msgspec.structs.replace(SPEC, replicas=2), 1.0)
    assert _update_line(scaled) == "s_web: updated, no task needs replacing (version 2)"
    paused = msgspec.structs.replace(
        v2,
        update_status=UpdateStatus(
            state="paused",
            message="update paused: task s_web.1 failed: image not found: nginx:2",
            started_at=1_700_000_000.0,
        ),
    )
    text = pretty_service(paused)
    assert "State:            paused" in text
    assert "Message:          update paused: task s_web.1 failed: image not found" in text
    assert "Started:          2023-11-14 22:13:20 UTC" in text
    assert "Completed" not in text
    assert "Previous image:   nginx:1" in text

"""Argument parsing of every command, and the exit codes of usage errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from swarmlite.cli import daemon_cmds
from swarmlite.cli.main import main, parse_args
from swarmlite.cli.stack_cmds import compose_files
from swarmlite.errors import SpecError


@pytest.fixture(autouse=True)
def _default_data_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SWARMLITE_DATA_DIR", str(tmp_path / "default"))


def test_data_dir_defaults_to_default_data_dir(tmp_path: Path) -> None:
    assert parse_args(["service", "ls"]).data_dir == tmp_path / "default"


@pytest.mark.parametrize(
    "argv",
    [
        ["--data-dir", "/d", "service", "ls"],
        ["service", "--data-dir", "/d", "ls"],
        ["service", "ls", "--data-dir", "/d"],
        ["init", "--data-dir", "/d"],
    ],
)
def test_data_dir_before_or_after_the_command(argv: list[str]) -> None:
    assert parse_args(argv).data_dir == Path("/d")


def test_init() -> None:
    args = parse_args(
        ["init", "--advertise-addr", "10.0.0.2", "--listen-addr", "0.0.0.0:5000", "--foreground"]
    )
    assert args.func is daemon_cmds.init_cmd
    assert (args.advertise_addr, args.listen_addr, args.foreground) == (
        "10.0.0.2",
        "0.0.0.0:5000",
        True,
    )
    defaults = parse_args(["init"])
    assert defaults.advertise_addr is None and defaults.listen_addr == "0.0.0.0:4377"
    assert not defaults.foreground


def test_daemon_and_leave() -> None:
    assert parse_args(["daemon"]).func is daemon_cmds.daemon_cmd
    leave = parse_args(["leave", "--force"])
    assert leave.func is daemon_cmds.leave_cmd and leave.force
    assert not parse_args(["leave"]).force


def test_deploy_files_stack_prune() -> None:
    args = parse_args(["deploy", "-f", "a.yml", "-f", "b.yml", "--stack", "shop", "--prune"])
    assert (args.files, args.stack, args.prune) == (["a.yml", "b.yml"], "shop", True)
    bare = parse_args(["deploy"])
    assert (bare.files, bare.stack, bare.prune) == (None, None, False)


def test_stack_deploy_alias_like_docker() -> None:
    args = parse_args(["stack", "deploy", "-c", "a.yml", "--prune", "shop"])
    assert (args.files, args.stack, args.prune) == (["a.yml"], "shop", True)
    assert args.func.__qualname__ == parse_args(["deploy"]).func.__qualname__


def test_stack_commands() -> None:
    assert parse_args(["stack", "ls", "--format", "json"]).format == "json"
    assert parse_args(["stack", "ps", "shop", "--no-trunc"]).stack == "shop"
    assert parse_args(["stack", "rm", "a", "b"]).stacks == ["a", "b"]


def test_service_commands() -> None:
    assert parse_args(["service", "ls"]).format == "table"
    ps = parse_args(["service", "ps", "web", "api", "--no-trunc"])
    assert (ps.services, ps.no_trunc) == (["web", "api"], True)
    inspect = parse_args(["service", "inspect", "web", "--pretty"])
    assert (inspect.services, inspect.pretty, inspect.format) == (["web"], True, "json")
    scale = parse_args(["service", "scale", "web=3", "api=0"])
    assert scale.specs == [("web", 3), ("api", 0)]
    assert parse_args(["service", "rm", "web"]).services == ["web"]
    logs = parse_args(["service", "logs", "-f", "--tail", "20", "web"])
    assert (logs.service, logs.follow, logs.tail) == ("web", True, 20)
    plain = parse_args(["service", "logs", "web"])
    assert (plain.follow, plain.tail) == (False, None)


def test_ps_and_node_commands() -> None:
    assert parse_args(["ps", "--format", "json"]).format == "json"
    assert parse_args(["node", "ls"]).format == "table"
    inspect = parse_args(["node", "inspect", "self", "--pretty"])
    assert (inspect.nodes, inspect.pretty) == (["self"], True)


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["nonsense"],
        ["service"],
        ["service", "scale", "web"],
        ["service", "scale", "web=x"],
        ["service", "logs", "--tail", "many", "web"],
        ["service", "ls", "--format", "yaml"],
        ["node", "inspect"],
    ],
)
def test_usage_errors_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    assert "usage:" in capsys.readouterr().err


def test_help_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    assert "service" in capsys.readouterr().out


def test_compose_files_default_and_missing(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="no compose file given"):
        compose_files(None, tmp_path)
    (tmp_path / "docker-compose.yml").write_text("services: {}\n")
    assert compose_files(None, tmp_path) == [tmp_path / "docker-compose.yml"]
    assert compose_files(["x.yml"], tmp_path) == [Path("x.yml")]


def test_init_and_join_take_the_mesh_event_loop_count() -> None:
    assert parse_args(["init"]).mesh_workers == "0"
    assert parse_args(["init", "--mesh-workers", "3"]).mesh_workers == "3"
    join = parse_args(["join", "--token", "t", "--mesh-workers", "2", "10.0.0.5:4377"])
    assert join.mesh_workers == "2"


@pytest.mark.parametrize("command", [["init"], ["join", "--token", "t", "10.0.0.5:4377"]])
@pytest.mark.parametrize("bad", ["-1", "x", "65"])
def test_a_bad_mesh_event_loop_count_is_one_line_and_writes_nothing(
    command: list[str], bad: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data_dir = tmp_path / "node"
    assert main(["--data-dir", str(data_dir), *command, "--mesh-workers", bad]) != 0
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"--mesh-workers='{bad}': expected 0" in err
    assert not data_dir.exists()

"""Bad compose files: each problem names file, line, service and key, all in one report."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from swarmlite.errors import ComposeError, ComposeErrors
from swarmlite.spec.compose import load_stack


def errors_of(tmp_path: Path, text: str) -> list[ComposeError]:
    path = tmp_path / "compose.yaml"
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    with pytest.raises(ComposeError) as info:
        load_stack([path], environ={})
    err = info.value
    return err.errors if isinstance(err, ComposeErrors) else [err]


def the_error(tmp_path: Path, text: str) -> ComposeError:
    errors = errors_of(tmp_path, text)
    assert len(errors) == 1, [str(e) for e in errors]
    return errors[0]


def assert_located(err: ComposeError, line: int, service: str | None, key: str) -> None:
    text = str(err)
    assert "compose.yaml" in text
    assert f"compose.yaml:{line}:" in text
    if service:
        assert f"service {service!r}" in text
    assert f"key {key!r}" in text


def test_unknown_service_key_has_did_you_mean(tmp_path: Path) -> None:
    err = the_error(tmp_path, "services:\n  web:\n    image: x\n    enviroment: [A=1]\n")
    assert_located(err, 4, "web", "enviroment")
    assert "unknown key 'enviroment'" in str(err)
    assert err.hint == "did you mean 'environment'?"


def test_typo_of_image_reports_unknown_key_and_missing_image(tmp_path: Path) -> None:
    errors = errors_of(tmp_path, "services:\n  web:\n    imagee: nginx\n")
    assert len(errors) == 2
    assert_located(errors[0], 2, "web", "image")
    assert "service has no image" in str(errors[0])
    assert_located(errors[1], 3, "web", "imagee")
    assert "did you mean 'image'?" in str(errors[1])


def test_unknown_deploy_key(tmp_path: Path) -> None:
    err = the_error(tmp_path, "services:\n  web:\n    image: x\n    deploy:\n      replicass: 2\n")
    assert_located(err, 5, "web", "deploy.replicass")
    assert "did you mean 'replicas'?" in str(err)


@pytest.mark.parametrize(
    ("port", "message"),
    [
        ('"70000:80"', "70000 is not between 1 and 65535"),
        ('"abc"', "'abc' is not a port number"),
        ('"80/sctp"', "protocol must be tcp or udp"),
        ('"8000-8002:80-81"', "differ in size"),
        ("{published: 80}", "needs a target"),
        ("{target: 0}", "must be between 1 and 65535"),
    ],
)
def test_bad_ports(tmp_path: Path, port: str, message: str) -> None:
    err = the_error(tmp_path, f"services:\n  web:\n    image: x\n    ports:\n      - {port}\n")
    assert message in str(err)
    assert_located(err, 5, "web", err.key or "")
    assert (err.key or "").startswith("ports")


@pytest.mark.parametrize(
    ("deploy", "key", "message"),
    [
        ("replicas: -1", "deploy.replicas", "must be at least 0, not -1"),
        ("replicas: three", "deploy.replicas", "must be an integer, not 'three'"),
        ("mode: everywhere", "deploy.mode", "must be one of replicated, global"),
        ("{mode: global, replicas: 2}", "deploy.replicas", "cannot be set with mode: global"),
        ("update_config: {delay: 10x}", "deploy.update_config.delay", "must be a duration"),
        ("update_config: {order: last}", "deploy.update_config.order", "stop-first, start-first"),
        ("restart_policy: {condition: sometimes}", "deploy.restart_policy.condition", "one of"),
        ("resources: {limits: {memory: lots}}", "deploy.resources.limits.memory", "a size"),
        ("resources: {limits: {cpus: 0}}", "deploy.resources.limits.cpus", "more than 0"),
        ("placement: {preferences: [node.labels.zone]}", "deploy.placement.preferences", "spread"),
    ],
)
def test_bad_deploy_values(tmp_path: Path, deploy: str, key: str, message: str) -> None:
    if deploy.startswith("{"):
        text = f"services:\n  web:\n    image: x\n    deploy: {deploy}\n"
        line = 4
    else:
        text = f"services:\n  web:\n    image: x\n    deploy:\n      {deploy}\n"
        line = 5
    err = the_error(tmp_path, text)
    assert_located(err, line, "web", key)
    assert message in str(err)


def test_bad_duration_and_healthcheck(tmp_path: Path) -> None:
    errors = errors_of(
        tmp_path,
        """
        services:
          web:
            image: x
            stop_grace_period: 10x
            healthcheck: {interval: 5parsecs}
          db:
            image: x
            healthcheck: {test: ["RUN", "x"], timeout: 1fortnight}
        """,
    )
    assert len(errors) == 4  # every one, the test's beside the times'
    assert_located(errors[0], 4, "web", "stop_grace_period")
    assert "must be a duration like 10s" in str(errors[0])
    assert_located(errors[1], 5, "web", "healthcheck.interval")
    assert_located(errors[2], 8, "db", "healthcheck.timeout")
    assert_located(errors[3], 8, "db", "healthcheck.test")


def test_build_without_image(tmp_path: Path) -> None:
    err = the_error(tmp_path, "services:\n  app:\n    build: .\n")
    assert_located(err, 3, "app", "build")
    assert (
        "service 'app' has 'build' but no 'image': swarmlite does not build images; "
        "build and tag it first (docker build -t NAME .) and set image: NAME"
    ) in str(err)


def test_undeclared_volume_lists_declared_ones(tmp_path: Path) -> None:
    err = the_error(
        tmp_path,
        """
        services:
          db:
            image: x
            volumes:
              - dta:/data
        volumes:
          data:
          logs:
        """,
    )
    assert_located(err, 5, "db", "volumes")
    assert "volume 'dta' is not declared" in str(err)
    assert err.hint == "declared volumes: data, logs"


def test_undeclared_network(tmp_path: Path) -> None:
    err = the_error(tmp_path, "services:\n  web:\n    image: x\n    networks: [front]\n")
    assert_located(err, 4, "web", "networks")
    assert "network 'front' is not declared" in str(err)
    assert "top-level 'networks:'" in str(err)


def test_depends_on_unknown_service_has_did_you_mean(tmp_path: Path) -> None:
    err = the_error(
        tmp_path,
        "services:\n  web:\n    image: x\n    depends_on: [databse]\n  database:\n    image: y\n",
    )
    assert_located(err, 4, "web", "depends_on")
    assert "unknown service 'databse'" in str(err)
    assert err.hint == "did you mean 'database'?"


def test_self_dependency_and_cycle(tmp_path: Path) -> None:
    errors = errors_of(
        tmp_path,
        """
        services:
          loner: {image: x, depends_on: [loner]}
          web:
            image: x
            depends_on: [api]
          api:
            image: x
            depends_on:
              web: {condition: service_started}
        """,
    )
    assert len(errors) == 2
    assert "service 'loner' depends on itself" in str(errors[0])
    assert_located(errors[0], 2, "loner", "depends_on")
    assert "dependency cycle: web -> api -> web" in str(errors[1])
    assert_located(errors[1], 5, "web", "depends_on")


def test_invalid_service_name(tmp_path: Path) -> None:
    err = the_error(tmp_path, "services:\n  -web:\n    image: x\n")
    assert "invalid service name" in str(err)
    assert "compose.yaml:2" in str(err)


def test_all_errors_gathered_in_one_report(tmp_path: Path) -> None:
    path = tmp_path / "compose.yaml"
    path.write_text(
        "services:\n"
        "  web:\n"
        "    image: x\n"
        "    ports: ['99999']\n"
        "    deploy: {replicas: -2}\n"
        "  api:\n"
        "    imag: y\n"
    )
    with pytest.raises(ComposeErrors) as info:
        load_stack([path], environ={})
    assert len(info.value.errors) == 4
    lines = str(info.value).splitlines()
    assert [line.split(":")[1] for line in lines] == ["4", "5", "6", "7"]


def test_yaml_syntax_error_has_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "compose.yaml"
    path.write_text("services:\n  web:\n    image: x\n   ports: [80\n")
    with pytest.raises(ComposeError) as info:
        load_stack([path], environ={})
    assert info.value.file == str(path)
    assert info.value.line == 4
    assert "YAML syntax error" in str(info.value)


def test_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ComposeError, match="compose file not found") as info:
        load_stack([tmp_path / "nope.yaml"], environ={})
    assert "nope.yaml" in str(info.value)


def test_missing_env_file_is_an_error_unless_not_required(tmp_path: Path) -> None:
    err = the_error(tmp_path, "services:\n  web:\n    image: x\n    env_file: missing.env\n")
    assert_located(err, 4, "web", "env_file")
    assert "missing.env" in str(err)


def test_top_level_problems(tmp_path: Path) -> None:
    errors = errors_of(tmp_path, "servces:\n  web: {image: x}\nname: Bad Name\n")
    messages = [str(e) for e in errors]
    assert any("invalid project name 'Bad Name'" in m and "compose.yaml:3" in m for m in messages)
    assert any("did you mean 'services'?" in m for m in messages)
    assert any("no services" in m for m in messages)


@pytest.mark.parametrize(
    ("body", "line", "key", "message"),
    [
        ("    command:\n      - sh\n      -\n", 4, "command", "has an empty item"),
        ("    entrypoint: [~]\n", 4, "entrypoint", "has an empty item"),
        ("    healthcheck:\n      test: [CMD, ~]\n", 5, "healthcheck.test", "list of strings"),
    ],
)
def test_empty_list_items_are_errors_not_crashes(
    tmp_path: Path, body: str, line: int, key: str, message: str
) -> None:
    err = the_error(tmp_path, "services:\n  web:\n    image: x\n" + body)
    assert_located(err, line, "web", key)
    assert message in str(err)


def test_an_env_file_that_is_not_utf8_is_named(tmp_path: Path) -> None:
    (tmp_path / "latin.env").write_bytes(b"A=caf\xe9\n")
    err = the_error(tmp_path, "services:\n  web:\n    image: x\n    env_file: latin.env\n")
    assert_located(err, 4, "web", "env_file")
    assert "is not UTF-8 text" in str(err)


def test_bad_placement_constraints_and_preferences_are_refused_at_load(tmp_path: Path) -> None:
    errors = errors_of(
        tmp_path,
        """
        services:
          web:
            image: x
            deploy:
              placement:
                constraints:
                  - node.role==manager
                  - node.role=manager
                preferences:
                  - spread: zone
        """,
    )
    assert len(errors) == 2, [str(e) for e in errors]
    assert_located(errors[0], 8, "web", "deploy.placement.constraints")
    assert "expected KEY==VALUE or KEY!=VALUE" in str(errors[0])
    assert_located(errors[1], 10, "web", "deploy.placement.preferences")
    assert "expected spread=node.labels.KEY" in str(errors[1])

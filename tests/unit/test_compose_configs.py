"""Compose: top-level secrets/configs and services' references to them."""

from __future__ import annotations

import base64
import textwrap
from pathlib import Path

import pytest

from swarmlite.errors import ComposeError
from swarmlite.spec.compose import load_stack
from swarmlite.spec.service import FileRef, StackSpec


def load(tmp_path: Path, text: str, environ: dict[str, str] | None = None) -> StackSpec:
    path = tmp_path / "compose.yaml"
    path.write_text(textwrap.dedent(text))
    return load_stack([path], stack="st", environ=environ or {})


def failure(tmp_path: Path, text: str) -> str:
    with pytest.raises(ComposeError) as info:
        load(tmp_path, text)
    return str(info.value)


def test_short_and_long_syntax_with_defaults(tmp_path: Path) -> None:
    (tmp_path / "token.txt").write_bytes(b"s3cret\n")
    stack = load(
        tmp_path,
        """
        services:
          web:
            image: busybox
            secrets:
              - token
              - {source: token, target: /etc/tok, uid: "100", gid: "101", mode: 0440}
            configs:
              - app
              - {source: app, target: /etc/app.conf, mode: "0600"}
        secrets:
          token: {file: ./token.txt}
        configs:
          app:
            content: "port=${PORT:-80}"
        """,
    )
    web = stack.services[0]
    assert web.secrets == (
        # World-readable by default, as Swarm and the Compose spec: a service with a
        # non-root ``user:`` must be able to read its own secret.
        FileRef(source="token", name="st_token", target="/run/secrets/token", mode=0o444),
        FileRef(
            source="token", name="st_token", target="/etc/tok", uid="100", gid="101", mode=0o440
        ),
    )
    assert web.configs[0] == FileRef(source="app", name="st_app", target="/app", mode=0o444)
    assert web.configs[1].mode == 0o600
    assert [(p.name, base64.b64decode(p.data)) for p in stack.secrets] == [
        ("st_token", b"s3cret\n")
    ]
    assert [(p.name, base64.b64decode(p.data)) for p in stack.configs] == [("st_app", b"port=80")]
    assert stack.warnings == ()


def test_environment_source_and_external(tmp_path: Path) -> None:
    stack = load(
        tmp_path,
        """
        services:
          web: {image: busybox, secrets: [pw, shared]}
        secrets:
          pw: {environment: DB_PASSWORD}
          shared: {external: true, name: global-shared}
        """,
        environ={"DB_PASSWORD": "hunter2"},
    )
    assert [r.name for r in stack.services[0].secrets] == ["st_pw", "global-shared"]
    assert [p.name for p in stack.secrets] == ["st_pw"]  # external: no payload
    assert base64.b64decode(stack.secrets[0].data) == b"hunter2"


def test_payload_repr_hides_the_data(tmp_path: Path) -> None:
    (tmp_path / "t").write_bytes(b"very-secret")
    stack = load(
        tmp_path,
        "services:\n  web: {image: b, secrets: [t]}\nsecrets:\n  t: {file: ./t}\n",
    )
    assert base64.b64encode(b"very-secret").decode() not in repr(stack)


def test_missing_file_names_file_line_and_service(tmp_path: Path) -> None:
    text = failure(
        tmp_path,
        """
        services:
          web: {image: busybox, secrets: [token]}
        secrets:
          token: {file: ./nope.txt}
        """,
    )
    assert "compose.yaml:5" in text
    assert "service 'web'" in text
    assert "nope.txt" in text


def test_file_larger_than_500_kb_is_refused(tmp_path: Path) -> None:
    (tmp_path / "big").write_bytes(b"x" * (500 * 1024 + 1))
    text = failure(
        tmp_path,
        """
        services:
          api: {image: busybox, secrets: [big]}
        secrets:
          big: {file: ./big}
        """,
    )
    assert "compose.yaml:5" in text and "service 'api'" in text and "500 KB" in text


def test_undefined_secret_is_refused_with_a_hint(tmp_path: Path) -> None:
    (tmp_path / "t").write_text("x")
    text = failure(
        tmp_path,
        """
        services:
          web:
            image: busybox
            secrets:
              - tokn
        secrets:
          token: {file: ./t}
        """,
    )
    assert "compose.yaml:6" in text and "service 'web'" in text
    assert "secret 'tokn' is not defined" in text and "did you mean 'token'" in text


def test_relative_target_is_refused(tmp_path: Path) -> None:
    text = failure(
        tmp_path,
        """
        services:
          web:
            image: busybox
            configs:
              - source: app
                target: etc/app.conf
        configs:
          app: {content: x}
        """,
    )
    assert "compose.yaml:7" in text and "service 'web'" in text and "absolute" in text


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    text = failure(
        tmp_path,
        """
        services:
          web:
            image: busybox
            secrets: [a, b]
            configs: [{source: c, uid: root}]
        secrets:
          a: {environment: UNSET_VAR}
          b: {}
        configs:
          c: {content: x}
        """,
    )
    assert "UNSET_VAR" in text
    assert "secret 'b' needs exactly one of file, environment" in text
    assert "must be a numeric id" in text


def test_unused_top_level_problem_still_reported(tmp_path: Path) -> None:
    text = failure(
        tmp_path,
        """
        services:
          web: {image: busybox}
        secrets:
          lonely: {file: ./missing}
        """,
    )
    assert "secret 'lonely'" in text and "compose.yaml:5" in text


def test_same_target_twice_is_refused(tmp_path: Path) -> None:
    text = failure(
        tmp_path,
        """
        services:
          web:
            image: busybox
            configs:
              - {source: a, target: /x}
              - {source: b, target: /x}
        configs:
          a: {content: "1"}
          b: {content: "2"}
        """,
    )
    assert "same path '/x'" in text

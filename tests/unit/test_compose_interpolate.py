"""``${VAR}`` interpolation, the ``.env`` file, and its errors."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from swarmlite.errors import ComposeError
from swarmlite.spec.compose import load_stack
from swarmlite.spec.compose.interpolate import InterpolationError, substitute

ENV = {"SET": "value", "EMPTY": ""}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("plain", "plain"),
        ("$SET", "value"),
        ("${SET}", "value"),
        ("a-${SET}-b", "a-value-b"),
        ("${MISSING:-dflt}", "dflt"),
        ("${EMPTY:-dflt}", "dflt"),
        ("${EMPTY-dflt}", ""),
        ("${MISSING-dflt}", "dflt"),
        ("${SET:-dflt}", "value"),
        ("${MISSING:-${SET}}", "value"),
        ("${SET:+alt}", "alt"),
        ("${EMPTY:+alt}", ""),
        ("${EMPTY+alt}", "alt"),
        ("$$SET and $${SET}", "$SET and ${SET}"),
        ("cost: 5$", "cost: 5$"),
        ("${SET:?must be set}", "value"),
        ("${EMPTY?only unset fails}", ""),
    ],
)
def test_substitute(text: str, expected: str) -> None:
    assert substitute(text, ENV, set()) == expected


def test_unset_names_are_reported() -> None:
    unset: set[str] = set()
    assert substitute("${A}$B${C:-x}", {}, unset) == "x"
    assert unset == {"A", "B"}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("${EMPTY:?needs a value}", "required variable EMPTY is missing a value: needs a value"),
        ("${MISSING?}", "required variable MISSING is missing a value"),
        ("${unterminated", "missing '}'"),
        ("${1BAD}", "invalid interpolation format"),
        ("${SET:bad}", "invalid interpolation format"),
    ],
)
def test_substitute_errors(text: str, message: str) -> None:
    with pytest.raises(InterpolationError, match=message):
        substitute(text, ENV, set())


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "compose.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def test_env_file_beside_compose_file_and_environ_wins(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("TAG=from-dotenv\nREPLICAS=3\n# comment\n")
    path = write(
        tmp_path,
        """
        services:
          web:
            image: "app:${TAG}"
            deploy: {replicas: "${REPLICAS}"}
            ports: ["${PORT:-8080}:80"]
        """,
    )
    web = load_stack([path], environ={}).services[0]
    assert (web.image, web.replicas, web.ports[0].published) == ("app:from-dotenv", 3, 8080)
    web = load_stack([path], environ={"TAG": "from-env", "PORT": "9000"}).services[0]
    assert (web.image, web.ports[0].published) == ("app:from-env", 9000)


def test_unset_variable_warns_and_becomes_empty(tmp_path: Path) -> None:
    path = write(tmp_path, "services:\n  web:\n    image: app\n    user: '${WHO}'\n")
    stack = load_stack([path], environ={})
    assert stack.services[0].user == ""
    assert stack.warnings == ('The "WHO" variable is not set. Defaulting to a blank string.',)


def test_required_variable_error_names_file_line_service_key(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        services:
          db:
            image: postgres
            environment:
              POSTGRES_PASSWORD: ${DB_PASSWORD:?set DB_PASSWORD in .env}
        """,
    )
    with pytest.raises(ComposeError) as info:
        load_stack([path], environ={})
    err = info.value
    assert (err.file, err.line, err.service, err.key) == (
        str(path),
        6,
        "db",
        "environment.POSTGRES_PASSWORD",
    )
    text = str(err)
    assert f"{path}:6" in text
    assert "service 'db'" in text
    assert "required variable DB_PASSWORD is missing a value: set DB_PASSWORD in .env" in text


def test_interpolated_value_is_type_checked_after_interpolation(tmp_path: Path) -> None:
    path = write(tmp_path, "services:\n  web:\n    image: a\n    deploy: {replicas: '${N}'}\n")
    with pytest.raises(ComposeError, match="must be an integer, not 'three'"):
        load_stack([path], environ={"N": "three"})


def test_dotenv_values_are_interpolated_except_single_quoted(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text(
        "BASE=/opt\nBIN=${BASE}/bin\nDQ=\"$BASE/x\"\nLIT='${BASE}'\nDFLT=${NOPE:-d}\n"
    )
    path = write(tmp_path, "services:\n  web:\n    image: a\n    command: $BIN $DQ $LIT $DFLT\n")
    web = load_stack([path], environ={}).services[0]
    assert web.command == ("/opt/bin", "/opt/x", "${BASE}", "d")
    # The real environment is looked up first, also for the .env file's own references.
    web = load_stack([path], environ={"BASE": "/usr"}).services[0]
    assert web.command == ("/usr/bin", "/usr/x", "${BASE}", "d")


def test_env_file_values_are_interpolated(tmp_path: Path) -> None:
    (tmp_path / "a.env").write_text("HOST=db\n")
    (tmp_path / "b.env").write_text("URL=pg://${HOST}:${PORT}/x\nRAW='$HOST'\n")
    path = write(tmp_path, "services:\n  web:\n    image: a\n    env_file: [a.env, b.env]\n")
    web = load_stack([path], environ={"PORT": "5432"}).services[0]
    assert web.environment == {"HOST": "db", "URL": "pg://db:5432/x", "RAW": "$HOST"}


def test_required_variable_in_dotenv_names_its_line(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("A=1\nB=${MISSING:?set it}\n")
    path = write(tmp_path, "services:\n  web:\n    image: a\n")
    with pytest.raises(ComposeError) as info:
        load_stack([path], environ={})
    assert (info.value.file, info.value.line) == (str(tmp_path / ".env"), 2)
    assert "required variable MISSING is missing a value: set it" in str(info.value)


def test_quoted_dotenv_and_env_file_values_may_span_lines(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text('KEY="-----BEGIN KEY-----\nabc\n-----END KEY-----"\nNEXT=1\n')
    (tmp_path / "app.env").write_text("MOTD='one\n  two'  # comment\nAFTER=2\n")
    path = write(tmp_path, "services:\n  web:\n    image: a\n    env_file: app.env\n")
    path.write_text(path.read_text() + "    environment: [KEY, NEXT]\n")
    web = load_stack([path], environ={}).services[0]
    assert web.environment == {
        "MOTD": "one\n  two",
        "AFTER": "2",
        "KEY": "-----BEGIN KEY-----\nabc\n-----END KEY-----",
        "NEXT": "1",
    }


def test_unterminated_quote_in_dotenv_names_its_line(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text('A=1\nB="never closed\nC=3\n')
    path = write(tmp_path, "services:\n  web:\n    image: a\n")
    with pytest.raises(ComposeError, match="unterminated quoted value") as info:
        load_stack([path], environ={})
    assert (info.value.file, info.value.line) == (str(tmp_path / ".env"), 2)

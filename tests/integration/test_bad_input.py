"""Bad input against one real node: missing images, broken compose files, malformed API calls."""

from __future__ import annotations

import asyncio
import json
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import msgspec
import pytest

from swarmlite.api.agent_protocol import Assignments, Hello, decode_manager_message, encoder
from swarmlite.config import load_config
from swarmlite.security.ca import ClusterCA, admin_cn
from swarmlite.security.tls import Credentials
from swarmlite.spec.objects import NodeResources, Platform
from swarmlite.spec.service import NetworkSpec, ServiceSpec, StackSpec
from tests.integration.harness import SwarmNode, wait_until

pytestmark = pytest.mark.integration

MIXED = """
services:
  good:
    image: swarmlite/busybox:1
    command: ["sleep", "3600"]
  ghost:
    image: swarmlite/no-such-image:404
    command: ["sleep", "3600"]
"""

GOOD = """
services:
  keep:
    image: swarmlite/busybox:1
    command: ["sleep", "3600"]
    ports:
      - "18391:8080"
"""


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SwarmNode]:
    n = SwarmNode(tmp_path_factory.mktemp("badinput") / "data", pool="10.225.0.0/16")
    try:
        n.init()
        yield n
    finally:
        n.destroy()


def write(tmp_path: Path, text: str, name: str = "compose.yml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def ensure_base(node: SwarmNode, tmp_path: Path) -> None:
    """The stack ``base`` with one running service, the yardstick of "nothing changed"."""
    if node.cli("service", "ps", "base_keep").returncode != 0:
        out = node.deploy(write(tmp_path, GOOD, "good.yml"), "base")
        assert out.returncode == 0, out.stderr
    node.wait_running("base_keep", 1)


def test_missing_image_is_rejected_and_the_rest_runs(node: SwarmNode, tmp_path: Path) -> None:
    out = node.deploy(write(tmp_path, MIXED), "mixed")
    assert out.returncode == 0, out.stderr
    node.wait_running("mixed_good", 1)

    def rejected() -> bool:
        return any(t["status"]["state"] == 9 for t in node.tasks("mixed_ghost"))  # REJECTED

    wait_until(rejected, timeout=30, what="a REJECTED task of mixed_ghost")
    ps = node.cli("service", "ps", "--no-trunc", "mixed_ghost")
    assert ps.returncode == 0, ps.stderr
    assert "Rejected" in ps.stdout or "REJECTED" in ps.stdout.upper()
    assert "image not found" in ps.stdout.lower()
    assert len(node.running("mixed_good")) == 1
    assert len(node.containers("mixed_good")) == 1
    assert not node.containers("mixed_ghost")


BAD_FILES: dict[str, tuple[str, list[str]]] = {
    "yaml": (
        "services:\n  web:\n    image: [unclosed\n",
        ["compose.yml:4", "YAML"],
    ),
    "unknown_key": (
        "services:\n  web:\n    image: swarmlite/busybox:1\n    enviroment:\n      A: b\n",
        ["compose.yml:4", "'web'", "enviroment", "did you mean 'environment'"],
    ),
    "bad_port": (
        'services:\n  web:\n    image: swarmlite/busybox:1\n    ports:\n      - "99999:80"\n',
        ["compose.yml:5", "'web'", "ports", "99999"],
    ),
    "bad_duration": (
        "services:\n  web:\n    image: swarmlite/busybox:1\n    healthcheck:\n"
        '      test: ["CMD", "true"]\n      interval: 5 parsecs\n',
        ["compose.yml:6", "'web'", "interval", "parsecs"],
    ),
    "negative_replicas": (
        "services:\n  web:\n    image: swarmlite/busybox:1\n    deploy:\n      replicas: -2\n",
        ["compose.yml:5", "'web'", "replicas"],
    ),
    "unknown_depends_on": (
        "services:\n  web:\n    image: swarmlite/busybox:1\n    depends_on:\n      - dbb\n",
        ["compose.yml:5", "'web'", "depends_on", "dbb"],
    ),
    "required_var": (
        "services:\n  web:\n    image: swarmlite/busybox:1\n    environment:\n"
        "      TOKEN: ${SWARMLITE_TEST_UNSET_TOKEN:?set the token}\n",
        ["compose.yml:5", "'web'", "SWARMLITE_TEST_UNSET_TOKEN", "set the token"],
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_bad_compose_is_refused_and_changes_nothing(
    node: SwarmNode, tmp_path: Path, case: str
) -> None:
    ensure_base(node, tmp_path)
    before = node.cli("service", "ls", check=True).stdout
    tasks_before = {t["id"] for t in node.tasks("base_keep")}

    text, expected = BAD_FILES[case]
    out = node.deploy(write(tmp_path, text), "base")
    assert out.returncode == 1, out
    assert "Traceback" not in out.stderr
    assert out.stderr.startswith("Error: "), out.stderr
    assert out.stderr.count("Error: ") == 1, out.stderr
    for needle in expected:
        assert needle in out.stderr, f"{needle!r} not in {out.stderr!r}"
    assert node.cli("service", "ls", check=True).stdout == before
    assert {t["id"] for t in node.tasks("base_keep")} == tasks_before


def test_gathered_errors_come_in_one_message(node: SwarmNode, tmp_path: Path) -> None:
    text = (
        "services:\n  web:\n    image: swarmlite/busybox:1\n    enviroment: {}\n"
        "    deploy:\n      replicas: -1\n  db:\n    image: swarmlite/busybox:1\n    portz: []\n"
    )
    out = node.deploy(write(tmp_path, text), "gathered")
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert out.stderr.count("Error: ") == 1
    assert "enviroment" in out.stderr and "replicas" in out.stderr and "portz" in out.stderr
    assert node.cli("service", "ps", "gathered_web").returncode != 0


REAL_WORLD = """
services:
  app:
    build: ./app
    image: swarmlite/demo-web:1
    container_name: my-app
    cap_add: [NET_ADMIN]
    platform: linux/amd64
    logging:
      driver: json-file
      options:
        max-size: 10m
    environment:
      MESSAGE: real
    ports:
      - "18392:8080"
"""


def test_real_world_file_deploys_with_one_warning(node: SwarmNode, tmp_path: Path) -> None:
    out = node.deploy(write(tmp_path, REAL_WORLD), "real")
    assert out.returncode == 0, out.stderr
    warnings = [line for line in out.stderr.splitlines() if line.startswith("WARNING")]
    assert len(warnings) == 1, out.stderr
    for key in ("container_name", "cap_add", "platform", "logging"):
        assert key in warnings[0], warnings[0]
    assert "Creating service real_app" in out.stdout
    node.wait_running("real_app", 1)


# -- the API, called directly ---------------------------------------------------------


def _api(
    node: SwarmNode, method: str, path: str, body: bytes | None, *, cert: bool = True
) -> tuple[int, Any]:
    config = load_config(node.data_dir)
    if cert:
        ctx = Credentials.load(node.data_dir / "admin").client_context()
    else:
        ctx = ssl.create_default_context(cadata=(node.data_dir / "admin" / "ca.crt").read_text())
        ctx.check_hostname = False

    async def call() -> tuple[int, Any]:
        async with (
            aiohttp.ClientSession() as session,
            session.request(
                method,
                config.api_url + path,
                data=body,
                headers={"Content-Type": "application/json"},
                ssl=ctx,
                timeout=aiohttp.ClientTimeout(total=15),
            ) as resp,
        ):
            raw = await resp.read()
            return resp.status, json.loads(raw) if raw else None

    return asyncio.run(call())


def test_api_refuses_malformed_requests(node: SwarmNode, tmp_path: Path) -> None:
    ensure_base(node, tmp_path)
    before = node.json("service", "ls")
    cases = [
        ("POST", "/v1/stacks/junk/deploy", b"{not json"),
        ("POST", "/v1/stacks/junk/deploy", b'{"name": "junk", "services": "nope"}'),
        ("POST", "/v1/stacks/junk/deploy", b'{"name": 7}'),
        ("POST", "/v1/stacks/base/deploy", b'{"name": "other", "services": []}'),
        ("POST", "/v1/services/base_keep/scale", b'{"replicas": -3}'),
        ("POST", "/v1/services/base_keep/scale", b'{"replicas": "many"}'),
        ("POST", "/v1/services/base_keep/scale", b"[]"),
    ]
    for method, path, body in cases:
        status, answer = _api(node, method, path, body)
        assert status == 400, (path, body, status, answer)
        assert isinstance(answer, dict) and isinstance(answer.get("error"), str), answer
        assert answer["error"], answer
    status, answer = _api(node, "GET", "/v1/services", None, cert=False)
    assert status == 401 and "certificate" in answer["error"], (status, answer)
    after = node.json("service", "ls")
    assert [s["name"] for s in after] == [s["name"] for s in before]
    assert [s["desired"] for s in after] == [s["desired"] for s in before]
    assert "junk" not in node.cli("stack", "ls", check=True).stdout


def test_agent_session_skips_unknown_messages_and_closes_on_malformed(node: SwarmNode) -> None:
    """A message type from a newer version is skipped (the session lives on, as in a
    cluster upgraded one node at a time); a malformed message ends the session only."""
    [me] = node.json("node", "inspect", node.node_id)
    hello = Hello(
        node_id=node.node_id,
        hostname=me["hostname"],
        addr=me["addr"],
        api_port=me["api_port"],
        platform=Platform(**me["platform"]),
        resources=NodeResources(**me["resources"]),
    )
    ctx = Credentials.load(node.data_dir / "certs").client_context()
    url = load_config(node.data_dir).api_url + "/v1/agent/session"

    async def session() -> tuple[str, str]:
        async with aiohttp.ClientSession() as http, http.ws_connect(url, ssl=ctx) as ws:
            await ws.send_str(encoder.encode(hello).decode())
            first = await ws.receive(timeout=10)
            assert first.type == aiohttp.WSMsgType.TEXT, first
            assert isinstance(decode_manager_message(first.data), Assignments)
            await ws.send_str('{"type": "from-the-future", "detail": 1}')
            # Not closed: the session goes on for 2 s (new assignments may come meanwhile).
            deadline = asyncio.get_running_loop().time() + 2
            while (left := deadline - asyncio.get_running_loop().time()) > 0:
                try:
                    during = await ws.receive(timeout=left)
                except TimeoutError:
                    break
                assert during.type == aiohttp.WSMsgType.TEXT, during
            await ws.send_str('{"type": "status", "updates": 5}')
            closing = await ws.receive(timeout=10)
            return str(closing.type), str(closing.extra)

    kind, reason = asyncio.run(session())
    assert kind == str(aiohttp.WSMsgType.CLOSE) and reason == "malformed message", (kind, reason)
    log = (node.data_dir / "daemon.log").read_text()
    assert "sent message type 'from-the-future', unknown to this manager" in log
    assert "malformed message: Expected `array`, got `int` - at `$.updates`" in log
    wait_until(
        lambda: node.json("node", "inspect", node.node_id)[0]["status"]["state"] == "ready",
        timeout=20,
        what="node still ready",
    )


def test_concurrent_deploys_of_one_new_service_create_it_once(node: SwarmNode) -> None:
    def stack(*names: str) -> bytes:
        services = tuple(
            ServiceSpec(name=n, stack="race", image="swarmlite/busybox:1", replicas=0)
            for n in names
        )
        spec = StackSpec(name="race", services=services, networks=(NetworkSpec(name="default"),))
        return msgspec.json.encode(spec)

    ctx = Credentials.load(node.data_dir / "admin").client_context()
    url = load_config(node.data_dir).api_url + "/v1/stacks/race/deploy"

    async def deploy(body: bytes, times: int) -> list[int]:
        async with aiohttp.ClientSession() as http:

            async def one() -> int:
                async with http.post(url, data=body, ssl=ctx) as resp:
                    await resp.read()
                    return resp.status

            return list(await asyncio.gather(*(one() for _ in range(times))))

    # The stack and its network exist; then three deploys add "web" at the same time.
    assert asyncio.run(deploy(stack("base"), 1)) == [200]
    assert asyncio.run(deploy(stack("base", "web"), 3)) == [200, 200, 200]
    names = [s["name"] for s in node.json("service", "ls")]
    assert names.count("race_web") == 1, names
    node.cli("stack", "rm", "race", check=True)


def test_a_rollback_to_a_port_another_service_took_is_refused(
    node: SwarmNode, tmp_path: Path
) -> None:
    def service(name: str, ports: str) -> str:
        return (
            f"services:\n  {name}:\n    image: swarmlite/busybox:1\n"
            f'    command: ["sleep", "3600"]\n    deploy:\n      replicas: 0\n{ports}'
        )

    published = '    ports: ["18395:8080"]\n'
    assert node.deploy(write(tmp_path, service("web", published), "a.yml"), "rb").returncode == 0
    assert node.deploy(write(tmp_path, service("web", ""), "b.yml"), "rb").returncode == 0
    # rb_web let the port go; another stack takes it; rolling rb_web back would clash.
    assert node.deploy(write(tmp_path, service("other", published), "c.yml"), "rb2").returncode == 0
    out = node.cli("service", "rollback", "rb_web")
    assert out.returncode == 1, out
    assert "port 18395/tcp is already published by service rb2_other" in out.stderr
    assert node.json("service", "inspect", "rb_web")[0]["spec"]["ports"] == []
    for stack in ("rb", "rb2"):
        node.cli("stack", "rm", stack, check=True)


def test_a_certificate_of_a_node_not_in_the_cluster_is_refused(
    node: SwarmNode, tmp_path: Path
) -> None:
    """As after `node rm`: the certificate is valid (same CA, not expired), the node is
    no member, so neither the API nor an agent session accepts it."""
    own = Credentials.load(node.data_dir / "certs")
    assert own.ca_key_pem is not None
    ca = ClusterCA.load(own.ca_pem, own.ca_key_pem)
    cert, key = ca.issue("removed0000000000000000000", "manager")
    ctx = Credentials(cert, key, own.ca_pem).client_context()
    base = load_config(node.data_dir).api_url

    async def calls() -> tuple[int, str, str]:
        async with aiohttp.ClientSession() as http:
            async with http.get(base + "/v1/tasks", ssl=ctx) as resp:
                status, text = resp.status, await resp.text()
            try:
                async with http.ws_connect(base + "/v1/agent/session", ssl=ctx) as ws:
                    return status, text, f"session opened: {await ws.receive(timeout=5)}"
            except aiohttp.WSServerHandshakeError as exc:
                return status, text, f"session refused: {exc.status}"

    status, text, session = asyncio.run(calls())
    assert status == 403 and "not part of the cluster" in text, (status, text)
    assert session == "session refused: 403", session

    # An admin credential a manager no longer in the cluster issued: refused too.
    cert, key = ca.issue(admin_cn("removed0000000000000000000"), "admin")
    admin = Credentials(cert, key, own.ca_pem).client_context()

    async def admin_call() -> tuple[int, str]:
        async with aiohttp.ClientSession() as http, http.get(base + "/v1/tasks", ssl=admin) as r:
            return r.status, await r.text()

    status, text = asyncio.run(admin_call())
    assert status == 403 and "issued by node removed00000" in text, (status, text)

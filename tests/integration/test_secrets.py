"""Secrets and configs on one real node: mounted content and modes, never in plaintext
in etcd, the environment or the logs; a changed secret rolls its service; the CLI;
bad compose input refused with file, line and service."""

from __future__ import annotations

import asyncio
import base64
import json
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from swarmlite.agent.secrets import DEFAULT_BASE
from swarmlite.store.etcd_member import EtcdConfig
from tests.integration.harness import SwarmNode, wait_until

pytestmark = pytest.mark.integration

SECRET_V1 = "pw-v1-7f3a9c2e1b"
SECRET_V2 = "pw-v2-0d4e8b6a55"
SHARED_V1 = "shared-v1-91ac3f"
SHARED_V2 = "shared-v2-c27d10"

COMPOSE = """
services:
  web:
    image: swarmlite/busybox:1
    command: ["sleep", "3600"]
    stop_grace_period: 1s  # sleep ignores SIGTERM: keep the kill wait out of the timing
    deploy:
      replicas: 2
      update_config: {parallelism: 1, delay: 0s, monitor: 1s}
    secrets:
      - token
      - source: shared
        target: /etc/shared
        mode: 0440
    configs:
      - source: app
        target: /etc/app.conf
secrets:
  token:
    file: ./token.txt
  shared:
    external: true
configs:
  app:
    content: "listen=8080"
"""


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SwarmNode]:
    n = SwarmNode(tmp_path_factory.mktemp("secrets") / "data", pool="10.231.0.0/16")
    try:
        n.init()
        yield n
    finally:
        n.destroy()
        # The daemon stopped with its tasks assigned: their tmpfs files stay until now.
        if n.node_id:
            shutil.rmtree(DEFAULT_BASE / n.node_id[:12], ignore_errors=True)


def sh(*args: str) -> str:
    return subprocess.run(args, capture_output=True, text=True, check=True).stdout.strip()


def exec_in(cid: str, *cmd: str) -> str:
    return sh("docker", "exec", cid, *cmd)


def contents(node: SwarmNode, path: str) -> list[str]:
    return [exec_in(cid, "cat", path) for cid in node.containers("st_web")]


def etcd_values(node: SwarmNode) -> list[bytes]:
    async def read() -> list[bytes]:
        cfg = EtcdConfig(
            name=node.node_id,
            data_dir=node.data_dir / "etcd",
            client_port=node.api_port + 2,
            tls_dir=node.data_dir / "certs",
        )
        client = cfg.connect(timeout=5)
        try:
            return [kv.value for kv in await client.get_prefix(b"/")]
        finally:
            await client.close()

    return asyncio.run(read())


def test_secrets_and_configs_end_to_end(node: SwarmNode, tmp_path: Path) -> None:
    shared = tmp_path / "shared.txt"
    shared.write_text(SHARED_V1)
    out = node.cli("secret", "create", "shared", str(shared))
    assert out.returncode == 0, out.stderr
    (tmp_path / "token.txt").write_text(SECRET_V1)
    compose = tmp_path / "compose.yml"
    compose.write_text(COMPOSE)
    out = node.deploy(compose, "st")
    assert out.returncode == 0, out.stderr
    node.wait_running("st_web", 2)
    cids = node.containers("st_web")
    assert len(cids) == 2
    for cid in cids:
        assert exec_in(cid, "cat", "/run/secrets/token") == SECRET_V1
        # 0444 by default, as the Compose spec and Swarm: a non-root `user:` can read it.
        assert exec_in(cid, "stat", "-c", "%a", "/run/secrets/token") == "444"
        assert exec_in(cid, "cat", "/etc/shared") == SHARED_V1
        assert exec_in(cid, "stat", "-c", "%a", "/etc/shared") == "440"
        assert exec_in(cid, "cat", "/etc/app.conf") == "listen=8080"
        assert exec_in(cid, "stat", "-c", "%a", "/etc/app.conf") == "444"
        # Read-only, and not in the environment.
        write = subprocess.run(
            ["docker", "exec", cid, "sh", "-c", "echo x > /run/secrets/token"],
            capture_output=True,
        )
        assert write.returncode != 0
        env = json.loads(sh("docker", "inspect", "--format", "{{json .Config.Env}}", cid))
        assert not any(SECRET_V1 in e or SHARED_V1 in e for e in env)
        # The host side of the mount is a tmpfs.
        mounts = json.loads(sh("docker", "inspect", "--format", "{{json .Mounts}}", cid))
        source = next(m["Source"] for m in mounts if m["Destination"] == "/run/secrets/token")
        assert sh("stat", "-f", "-c", "%T", source) == "tmpfs"

    # etcd holds neither plaintext nor its base64.
    raw = b"\n".join(etcd_values(node))
    assert b"listen=8080" not in raw  # configs are base64 in the store
    for plain in (SECRET_V1, SHARED_V1):
        assert plain.encode() not in raw
        assert base64.b64encode(plain.encode()) not in raw

    # ls / inspect show names and digests, never data.
    listing = node.cli("secret", "ls")
    assert listing.returncode == 0, listing.stderr
    assert "st_token" in listing.stdout and "shared" in listing.stdout
    assert "st_web" in listing.stdout
    inspect = node.cli("secret", "inspect", "st_token")
    assert inspect.returncode == 0 and SECRET_V1 not in inspect.stdout + listing.stdout
    conf = node.cli("config", "inspect", "st_app")
    assert "listen=8080" in conf.stdout

    # rm of one in use is refused, naming the service.
    refused = node.cli("secret", "rm", "st_token")
    assert refused.returncode != 0 and "st_web" in refused.stderr
    refused = node.cli("config", "rm", "st_app")
    assert refused.returncode != 0 and "in use" in refused.stderr

    # Redeploy with a changed secret file: the tasks are replaced and see it.
    (tmp_path / "token.txt").write_text(SECRET_V2)
    started = time.monotonic()
    out = node.deploy(compose, "st")
    assert out.returncode == 0, out.stderr
    wait_until(
        lambda: (
            len(node.running("st_web")) == 2
            and contents(node, "/run/secrets/token") == [SECRET_V2] * 2
        ),
        timeout=90,
        interval=0.2,
        what="both replicas on the new secret",
    )
    seconds = time.monotonic() - started
    print(f"\nsecret change -> all replicas on the new content: {seconds:.1f} s")
    assert not set(cids) & set(node.containers("st_web"))

    # The same deploy again changes nothing.
    again = node.deploy(compose, "st")
    assert again.returncode == 0 and "up to date" in again.stdout, again.stdout

    # `secret update` of a global secret rolls the services that use it.
    shared.write_text(SHARED_V2)
    before = node.containers("st_web")
    upd = node.cli("secret", "update", "shared", str(shared))
    assert upd.returncode == 0 and "st_web" in upd.stdout, upd.stderr
    wait_until(
        lambda: (
            len(node.running("st_web")) == 2 and contents(node, "/etc/shared") == [SHARED_V2] * 2
        ),
        timeout=90,
        what="both replicas on the updated shared secret",
    )
    assert not set(before) & set(node.containers("st_web"))

    # Nothing of the plaintext in the daemon's log.
    log = (node.data_dir / "daemon.log").read_text(errors="replace")
    for plain in (SECRET_V1, SECRET_V2, SHARED_V1, SHARED_V2):
        assert plain not in log


def test_secret_cli_create_ls_inspect_rm(node: SwarmNode, tmp_path: Path) -> None:
    created = subprocess.run(
        [*_cli(node), "secret", "create", "from-stdin", "-"],
        input="stdin-secret-83bd",
        capture_output=True,
        text=True,
    )
    assert created.returncode == 0, created.stderr
    dup = node.cli("secret", "create", "from-stdin", str(tmp_path / "none"))
    assert dup.returncode != 0
    listed = node.json("secret", "ls")
    entry = next(s for s in listed if s["name"] == "from-stdin")
    assert entry["digest"] and "stdin-secret-83bd" not in json.dumps(listed)
    assert node.cli("secret", "inspect", entry["id"][:8]).returncode == 0
    assert node.cli("secret", "rm", "from-stdin").returncode == 0
    assert node.cli("secret", "inspect", "from-stdin").returncode != 0
    (tmp_path / "c.txt").write_text("a=1")
    assert node.cli("config", "create", "cfg1", str(tmp_path / "c.txt")).returncode == 0
    assert "cfg1" in node.cli("config", "ls").stdout
    assert node.cli("config", "rm", "cfg1").returncode == 0


def _cli(node: SwarmNode) -> list[str]:
    from tests.integration.harness import SWARMLITE

    return [*SWARMLITE, "--data-dir", str(node.data_dir)]


BAD = {
    "missing": (
        "services:\n  web:\n    image: swarmlite/busybox:1\n    secrets: [token]\n"
        "secrets:\n  token:\n    file: ./nope.txt\n",
        ":7",
    ),
    "big": (
        "services:\n  web:\n    image: swarmlite/busybox:1\n    secrets: [big]\n"
        "secrets:\n  big:\n    file: ./big.bin\n",
        ":7",
    ),
    "undefined": (
        "services:\n  web:\n    image: swarmlite/busybox:1\n    secrets: [ghost]\n",
        ":4",
    ),
    "relative": (
        "services:\n  web:\n    image: swarmlite/busybox:1\n    secrets:\n"
        "      - source: t\n        target: run/t\nsecrets:\n  t:\n    environment: HOME\n",
        ":6",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_compose_input_is_refused(node: SwarmNode, tmp_path: Path, case: str) -> None:
    text, line = BAD[case]
    (tmp_path / "big.bin").write_bytes(b"x" * (500 * 1024 + 10))
    path = tmp_path / "compose.yml"
    path.write_text(text)
    out = node.deploy(path, "bad")
    assert out.returncode != 0
    assert f"{path}{line}" in out.stderr, out.stderr
    assert "service 'web'" in out.stderr
    assert node.cli("service", "ps", "bad_web").returncode != 0

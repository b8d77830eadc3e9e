"""Fixtures for tests against the real Docker Engine on this host.

Generic on purpose: a test image built locally (nothing is ever pulled), a random
node id, free subnets in 10.213.200.0/24 and up, and a ``docker_cleanup`` registry
that removes what a test made, even when it fails.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import secrets
import shutil
import subprocess
import tempfile
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import docker
import docker.errors
import pytest

DOCKER_HOST = os.environ.setdefault("DOCKER_HOST", "unix:///var/run/docker.sock")
BUSYBOX_IMAGE = "swarmlite/busybox:1"
REPO = Path(__file__).resolve().parents[2]


def _docker() -> docker.APIClient:
    return docker.APIClient(base_url=DOCKER_HOST, version="auto")


@pytest.fixture(scope="session")
def docker_api() -> Iterator[docker.APIClient]:
    """A synchronous SDK client, for test-side checks and cleanup."""
    try:
        api = _docker()
        api.ping()
    except docker.errors.DockerException as exc:
        pytest.skip(f"no Docker engine at {DOCKER_HOST}: {exc}")
    yield api
    api.close()


def _image_present(api: docker.APIClient, name: str) -> bool:
    try:
        api.inspect_image(name)  # type: ignore[no-untyped-call]
    except docker.errors.ImageNotFound:
        return False
    return True


def _build_busybox(tag: str) -> None:
    """FROM scratch + Debian's static busybox with its applets linked; never pulls."""
    with tempfile.TemporaryDirectory(prefix="sl-busybox-") as tmp:
        work = Path(tmp)
        subprocess.run(
            ["apt-get", "download", "busybox-static"], cwd=work, check=True, capture_output=True
        )
        deb = next(work.glob("busybox-static_*.deb"))
        root = work / "ctx" / "rootfs"
        subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], check=True)
        shutil.rmtree(root / "usr", ignore_errors=True)
        busybox = root / "bin" / "busybox"
        applets = subprocess.run(
            [str(busybox), "--list"], check=True, capture_output=True, text=True
        ).stdout.split()
        for applet in applets:
            link = root / "bin" / applet
            if applet != "busybox" and not link.exists():
                link.symlink_to("busybox")
        for d in ("tmp", "www", "data", "etc"):
            (root / d).mkdir(exist_ok=True)
        (root / "tmp").chmod(0o1777)
        (root / "www" / "index.html").write_text("hello from swarmlite/busybox\n")
        (root / "etc" / "passwd").write_text("root:x:0:0:root:/:/bin/sh\n")
        (work / "ctx" / "Dockerfile").write_text('FROM scratch\nCOPY rootfs/ /\nCMD ["sh"]\n')
        subprocess.run(
            ["docker", "build", "-q", "-t", tag, str(work / "ctx")],
            check=True,
            capture_output=True,
            env={**os.environ, "DOCKER_HOST": DOCKER_HOST},
        )


@pytest.fixture(scope="session")
def busybox_image(docker_api: docker.APIClient) -> str:
    """``swarmlite/busybox:1``: present, else built by scripts/build-images.sh, else here."""
    if not _image_present(docker_api, BUSYBOX_IMAGE):
        script = REPO / "scripts" / "build-images.sh"
        if script.exists():
            subprocess.run(
                [str(script), "busybox"],
                check=True,
                env={**os.environ, "DOCKER_HOST": DOCKER_HOST},
            )
        else:
            _build_busybox(BUSYBOX_IMAGE)
    assert _image_present(docker_api, BUSYBOX_IMAGE)
    return BUSYBOX_IMAGE


@pytest.fixture
def node_id() -> str:
    """A fresh node id, so each test sees only its own containers."""
    return "tn" + secrets.token_hex(8)


@pytest.fixture
def unique() -> str:
    """A short random suffix for names."""
    return secrets.token_hex(3)


class DockerCleanup:
    """Names a test created; removed at teardown in dependency order."""

    def __init__(self, api: docker.APIClient) -> None:
        self.api = api
        self.node_ids: list[str] = []
        self.containers: list[str] = []
        self.networks: list[str] = []
        self.volumes: list[str] = []
        self._taken: set[ipaddress.IPv4Network] = set()

    def free_subnet(self) -> ipaddress.IPv4Network:
        """A /24 in 10.213.200.0-10.213.254.0 that no Docker network overlaps."""
        used = set(self._taken)
        for net in self.api.networks():
            for cfg in (net.get("IPAM") or {}).get("Config") or []:
                if cfg.get("Subnet") and ":" not in cfg["Subnet"]:
                    used.add(ipaddress.IPv4Network(cfg["Subnet"], strict=False))
        for third in range(200, 255):
            candidate = ipaddress.IPv4Network(f"10.213.{third}.0/24")
            if not any(candidate.overlaps(u) for u in used):
                self._taken.add(candidate)
                return candidate
        raise RuntimeError("no free test subnet in 10.213.200.0/24..10.213.254.0/24")

    def run(self) -> None:
        ids = list(self.containers)
        for nid in self.node_ids:
            found = self.api.containers(all=True, filters={"label": f"swarmlite.node={nid}"})
            ids += [c["Id"] for c in found]
        for cid in ids:
            with contextlib.suppress(docker.errors.NotFound):
                self.api.remove_container(cid, v=True, force=True)
        for name in self.networks:
            for net in self.api.networks(names=[name]):
                if net["Name"] == name:
                    self._remove_network(net["Id"], name)
        for name in self.volumes:
            with contextlib.suppress(docker.errors.NotFound):
                self.api.remove_volume(name, force=True)

    def _remove_network(self, net_id: str, name: str) -> None:
        # Docker 20.10 sometimes keeps a stale endpoint count for a moment (or for
        # good, moby/moby#42119) after containers are removed: retry, then warn.
        for attempt in range(10):
            try:
                self.api.remove_network(net_id)
                return
            except docker.errors.NotFound:
                return
            except docker.errors.APIError as exc:
                if "active endpoints" not in str(exc.explanation) or attempt == 9:
                    warnings.warn(
                        f"test network {name} left behind: {exc.explanation}", stacklevel=1
                    )
                    return
                time.sleep(0.3)


@pytest.fixture
def docker_cleanup(docker_api: docker.APIClient, node_id: str) -> Iterator[DockerCleanup]:
    """Register what you create; it is removed after the test, pass or fail.

    Containers labelled ``swarmlite.node=<node_id>`` are always removed.
    """
    cleanup = DockerCleanup(docker_api)
    cleanup.node_ids.append(node_id)
    yield cleanup
    cleanup.run()

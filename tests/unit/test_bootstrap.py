"""A node on disk: what ``init`` and ``join`` write, and with which permissions."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from swarmlite.api.models import JoinResponse
from swarmlite.bootstrap import _write_joined, bootstrap
from swarmlite.config import NodeConfig, load_config
from swarmlite.security.ca import ClusterCA, make_key_and_csr


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture(autouse=True)
def usual_umask() -> Iterator[None]:
    old = os.umask(0o022)
    yield
    os.umask(old)


def test_init_makes_a_private_data_dir(tmp_path: Path) -> None:
    data_dir = tmp_path / "share" / "swarmlite"
    bootstrap(data_dir, advertise_addr="10.0.0.5", listen_host="0.0.0.0", api_port=4377)
    # The node's own directory is private (logs, node.json, etcd); its parents are not ours.
    assert mode(data_dir) == 0o700
    assert mode(tmp_path / "share") == 0o755
    for sub in ("certs", "admin"):
        assert mode(data_dir / sub) == 0o700
    for key in ("certs/node.key", "certs/ca.key", "certs/cluster.key", "admin/node.key"):
        assert mode(data_dir / key) == 0o600


def _worker_answer(node_id: str, address_pool: str = "") -> tuple[JoinResponse, str]:
    """A manager's answer admitting ``node_id`` as a worker, and the node's key."""
    ca = ClusterCA.create("c1")
    key_pem, csr_pem = make_key_and_csr("joining")
    answer = JoinResponse(
        node_id=node_id,
        cluster_id="c1",
        role="worker",
        cert_pem=ca.sign_csr(csr_pem, node_id=node_id, role="worker"),
        ca_pem=ca.cert_pem,
        managers=("10.0.0.5:4377",),
        address_pool=address_pool,
    )
    return answer, key_pem


def test_join_makes_a_private_data_dir(tmp_path: Path) -> None:
    answer, key_pem = _worker_answer("n2")
    data_dir = tmp_path / "share" / "swarmlite"
    local = NodeConfig(
        node_id="n2", cluster_id="c1", role="worker", hostname="h", advertise_addr="10.0.0.6"
    )
    _write_joined(data_dir, answer, key_pem, "10.0.0.5:4377", local)
    assert mode(data_dir) == 0o700
    assert mode(data_dir / "certs") == 0o700
    assert mode(data_dir / "certs" / "node.key") == 0o600


def test_join_keeps_what_the_node_chose_and_takes_what_the_manager_said(tmp_path: Path) -> None:
    answer, key_pem = _worker_answer("n3", address_pool="10.77.0.0/16")
    local = NodeConfig(
        node_id="n3",
        cluster_id="c1",
        role="worker",
        hostname="h",
        advertise_addr="10.0.0.7",
        api_port=5000,
        mesh_workers=3,
    )
    _write_joined(tmp_path, answer, key_pem, "10.0.0.8:4377", local)
    config = load_config(tmp_path)
    assert (config.mesh_workers, config.api_port, config.etcd_client_port) == (3, 5000, 5002)
    assert config.managers == ("10.0.0.5:4377", "10.0.0.8:4377")
    assert config.address_pool == "10.77.0.0/16"


def test_init_keeps_the_mesh_event_loop_count(tmp_path: Path) -> None:
    bootstrap(
        tmp_path, advertise_addr="10.0.0.5", listen_host="0.0.0.0", api_port=4377, mesh_workers=2
    )
    assert load_config(tmp_path).mesh_workers == 2

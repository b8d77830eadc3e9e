"""A node on disk: what ``init`` and ``join`` write, and with which permissions."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from swarmlite.api.models import JoinResponse
from swarmlite.bootstrap import _write_joined, bootstrap
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


def test_join_makes_a_private_data_dir(tmp_path: Path) -> None:
    ca = ClusterCA.create("c1")
    key_pem, csr_pem = make_key_and_csr("joining")
    answer = JoinResponse(
        node_id="n2",
        cluster_id="c1",
        role="worker",
        cert_pem=ca.sign_csr(csr_pem, node_id="n2", role="worker"),
        ca_pem=ca.cert_pem,
        managers=("10.0.0.5:4377",),
    )
    data_dir = tmp_path / "share" / "swarmlite"
    _write_joined(data_dir, answer, key_pem, "10.0.0.6", "0.0.0.0", 4377, "10.0.0.5:4377")
    assert mode(data_dir) == 0o700
    assert mode(data_dir / "certs") == 0o700
    assert mode(data_dir / "certs" / "node.key") == 0o600

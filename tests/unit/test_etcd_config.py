"""EtcdConfig.argv (pure), quorum arithmetic for member removal, client construction."""

from __future__ import annotations

from pathlib import Path

import aetcd
import pytest

from swarmlite.security.ca import STORE_ACCESS_NAME
from swarmlite.store.etcd_client import TLSClient, connect_etcd
from swarmlite.store.etcd_member import EtcdConfig
from swarmlite.store.membership import Member, quorum_safe_to_remove


def flags(argv: list[str]) -> dict[str, str]:
    out = {}
    for arg in argv[1:]:
        name, _, value = arg.partition("=")
        out[name] = value
    return out


def test_plain_config_keeps_http_and_one_client_url() -> None:
    cfg = EtcdConfig(name="n1", data_dir=Path("/d/etcd"), client_port=4379, peer_port=4380)
    f = flags(cfg.argv("/usr/bin/etcd"))
    assert f["--listen-client-urls"] == "http://127.0.0.1:4379"
    assert f["--advertise-client-urls"] == "http://127.0.0.1:4379"
    assert f["--listen-peer-urls"] == "http://127.0.0.1:4380"
    assert f["--initial-cluster"] == "n1=http://127.0.0.1:4380"
    assert f["--initial-cluster-state"] == "new"
    assert not any(k.endswith(("cert-file", "key-file", "ca-file", "cert-auth")) for k in f)


def test_tls_config_uses_https_and_every_tls_flag() -> None:
    tls = Path("/d/tls")
    cfg = EtcdConfig(
        name="n2",
        data_dir=Path("/d/etcd"),
        peer_host="10.0.0.2",
        client_port=4379,
        peer_port=4380,
        initial_cluster={"n1": "https://10.0.0.1:4380", "n2": "https://10.0.0.2:4380"},
        initial_state="existing",
        tls_dir=tls,
    )
    argv = cfg.argv("etcd")
    f = flags(argv)
    assert cfg.client_hosts == ("127.0.0.1", "10.0.0.2")
    assert f["--listen-client-urls"] == "https://127.0.0.1:4379,https://10.0.0.2:4379"
    assert f["--advertise-client-urls"] == "https://10.0.0.2:4379"
    assert f["--listen-peer-urls"] == "https://10.0.0.2:4380"
    assert f["--initial-advertise-peer-urls"] == "https://10.0.0.2:4380"
    assert f["--initial-cluster"] == "n1=https://10.0.0.1:4380,n2=https://10.0.0.2:4380"
    assert f["--initial-cluster-state"] == "existing"
    assert f["--cert-file"] == f["--peer-cert-file"] == str(tls / "node.crt")
    assert f["--key-file"] == f["--peer-key-file"] == str(tls / "node.key")
    assert f["--trusted-ca-file"] == f["--peer-trusted-ca-file"] == str(tls / "ca.crt")
    assert "--client-cert-auth" in argv and "--peer-client-cert-auth" in argv
    # Any certificate of the cluster CA is not enough: only managers' name this host.
    assert f["--client-cert-allowed-hostname"] == STORE_ACCESS_NAME
    assert f["--peer-cert-allowed-hostname"] == STORE_ACCESS_NAME
    assert cfg.client_url == "https://127.0.0.1:4379"


def test_tls_on_loopback_only_listens_once() -> None:
    cfg = EtcdConfig(name="n1", data_dir=Path("/d"), tls_dir=Path("/t"))
    assert cfg.client_hosts == ("127.0.0.1",)
    assert flags(cfg.argv("etcd"))["--advertise-client-urls"] == "https://127.0.0.1:4379"


def test_argv_is_pure() -> None:
    cfg = EtcdConfig(name="n1", data_dir=Path("/nonexistent/etcd"), tls_dir=Path("/nope"))
    assert cfg.argv("etcd") == cfg.argv("etcd")


def members(voters: int, learners: int = 0) -> list[Member]:
    return [Member(i, f"m{i}", (), (), False) for i in range(1, voters + 1)] + [
        Member(100 + i, f"l{i}", (), (), True) for i in range(learners)
    ]


@pytest.mark.parametrize(
    ("voters", "healthy", "remove", "safe"),
    [
        (3, {1, 2, 3}, 3, True),  # 3 -> 2, both healthy
        (3, {1, 2}, 3, True),  # removing the dead one leaves 2 of 2 healthy
        (3, {1, 2}, 2, False),  # removing a healthy one leaves 1 of 2
        (3, {1}, 3, False),  # no quorum now: the removal cannot commit
        (2, {1}, 2, False),  # 1 of 2 healthy: no quorum to commit the removal
        (5, {1, 2, 3}, 5, True),
        (5, {1, 2, 3}, 1, False),  # 2 of 4 is not a majority
        (1, {1}, 1, False),  # never remove the last voter
        (3, {1, 2, 3}, 42, False),  # not a member
    ],
)
def test_quorum_safe_to_remove(voters: int, healthy: set[int], remove: int, safe: bool) -> None:
    assert quorum_safe_to_remove(members(voters), healthy, remove) is safe


def test_removing_a_learner_changes_no_majority() -> None:
    assert quorum_safe_to_remove(members(3, learners=1), {1, 2}, 100)
    assert not quorum_safe_to_remove(members(3, learners=1), {1}, 100)


def test_connect_etcd_plain_or_tls() -> None:
    assert type(connect_etcd("127.0.0.1", 1)) is aetcd.Client
    client = connect_etcd("127.0.0.1", 1, cert_pem="c", key_pem="k", ca_pem="a", timeout=1)
    assert isinstance(client, TLSClient)
    with pytest.raises(ValueError, match="all of"):
        connect_etcd("127.0.0.1", 1, cert_pem="c")


def test_etcd_takes_the_largest_write_the_api_can_make() -> None:
    """One deploy is one transaction of up to about twice the 4 MiB body (limits.py)."""
    from swarmlite.limits import ETCD_MAX_REQUEST_BYTES, MAX_REQUEST_BYTES

    cfg = EtcdConfig(name="n1", data_dir=Path("/d/etcd"))
    f = flags(cfg.argv("/usr/bin/etcd"))
    assert int(f["--max-request-bytes"]) == ETCD_MAX_REQUEST_BYTES > 2 * MAX_REQUEST_BYTES
    assert ETCD_MAX_REQUEST_BYTES <= 10 * 1024 * 1024  # etcd's recommended maximum

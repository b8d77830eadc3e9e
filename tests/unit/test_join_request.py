"""A join request is checked before anything is signed for it."""

from __future__ import annotations

import msgspec
import pytest

from swarmlite.api.join import decode_join
from swarmlite.api.models import JoinRequest, JoinResponse, JoinTokens
from swarmlite.errors import SpecError
from swarmlite.security.ca import cert_dns_names


def body(addr: str = "10.0.0.5", hostname: str = "node-1") -> bytes:
    request = JoinRequest(
        secret="s", csr_pem="csr", hostname=hostname, advertise_addr=addr, api_port=4377
    )
    return msgspec.json.encode(request)


def test_an_advertise_address_that_is_not_an_ip_is_a_clear_400() -> None:
    assert decode_join(body()).advertise_addr == "10.0.0.5"
    assert decode_join(body("fd00::5")).advertise_addr == "fd00::5"
    with pytest.raises(SpecError, match=r"advertise address 'node-1\.lan' is not an IP address"):
        decode_join(body("node-1.lan"))


def test_only_valid_dns_host_names_go_into_a_certificate() -> None:
    assert cert_dns_names("node-1.lan") == ["localhost", "node-1.lan"]
    for odd in ("my_host", "nœud", "", "-x", "a" * 254):
        assert cert_dns_names(odd) == ["localhost"], odd
    # Such a node still joins: its request is accepted.
    assert decode_join(body(hostname="nœud")).hostname == "nœud"


def test_the_cli_takes_only_an_ip_as_advertise_address() -> None:
    from swarmlite.cli.daemon_cmds import advertise_addr

    assert advertise_addr("10.1.2.3") == "10.1.2.3"
    assert advertise_addr("FD00::5") == "fd00::5"
    with pytest.raises(SpecError, match="--advertise-addr takes an IP address, not 'eth0'"):
        advertise_addr("eth0")


def test_join_bodies_never_show_their_secrets_in_a_repr() -> None:
    request = JoinRequest(
        secret="s3cr3t-token", csr_pem="csr", hostname="n1", advertise_addr="10.0.0.5", api_port=1
    )
    response = JoinResponse(
        node_id="n1",
        cluster_id="c1",
        role="manager",
        cert_pem="cert",
        ca_pem="ca",
        managers=("10.0.0.1:4377",),
        ca_key_pem="-----BEGIN PRIVATE KEY-----ca-key",
        cluster_key="Y2x1c3Rlci1rZXk=",
    )
    tokens = JoinTokens(worker="SWLTKN-1-abc-wsecret", manager="SWLTKN-1-abc-msecret")
    for obj, secrets in (
        (request, ("s3cr3t-token",)),
        (response, ("ca-key", "Y2x1c3Rlci1rZXk=")),
        (tokens, ("wsecret", "msecret")),
    ):
        shown = f"{obj!r} {obj!s} {[obj]}"
        assert "<hidden>" in shown
        for secret in secrets:
            assert secret not in shown, (type(obj).__name__, secret)
    assert "hostname='n1'" in repr(request) and "node_id='n1'" in repr(response)

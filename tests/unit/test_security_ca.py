"""The cluster CA: creation, loading, CSR signing, identities, renewal."""

from __future__ import annotations

import ipaddress
from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID

from swarmlite.errors import AuthError
from swarmlite.security.ca import (
    STORE_ACCESS_NAME,
    ClusterCA,
    Identity,
    cert_identity,
    grants_store_access,
    load_cert,
    make_key_and_csr,
    needs_renewal,
)


@pytest.fixture(scope="module")
def ca() -> ClusterCA:
    return ClusterCA.create("cluster-1")


def test_create_and_load_round_trip(ca: ClusterCA) -> None:
    loaded = ClusterCA.load(ca.cert_pem, ca.key_pem)
    assert loaded.fingerprint() == ca.fingerprint()
    assert len(ca.fingerprint()) == 64
    assert loaded.cluster_id == "cluster-1"
    basic = ca.cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    assert basic.ca is True
    lifetime = ca.cert.not_valid_after_utc - ca.cert.not_valid_before_utc
    assert lifetime > timedelta(days=3600)
    assert "BEGIN" not in repr(ca)


def test_load_refuses_a_key_of_another_ca(ca: ClusterCA) -> None:
    other = ClusterCA.create("cluster-2")
    with pytest.raises(AuthError, match="does not match"):
        ClusterCA.load(ca.cert_pem, other.key_pem)


def test_sign_csr_sets_identity_sans_and_eku(ca: ClusterCA) -> None:
    key_pem, csr_pem = make_key_and_csr("node-a")
    cert_pem = ca.sign_csr(
        csr_pem,
        node_id="node-a",
        role="worker",
        san_ips=["10.0.0.5", "127.0.0.1"],
        san_dns=["node-a.local"],
        lifetime=timedelta(days=90),
    )
    cert = load_cert(cert_pem)
    assert ca.issued(cert_pem)
    identity = cert_identity(cert_pem)
    assert (identity.node_id, identity.role) == ("node-a", "worker")
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.IPAddress) == [
        ipaddress.ip_address("10.0.0.5"),
        ipaddress.ip_address("127.0.0.1"),
    ]
    assert san.get_values_for_type(x509.DNSName) == ["node-a.local"]
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert set(eku) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
    # The certified key is the CSR's key.
    key = serialization.load_pem_private_key(key_pem.encode(), None)
    assert key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    ) == cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assert timedelta(days=89) < identity.not_after - datetime.now(UTC) <= timedelta(days=90)


def test_identity_comes_from_the_ca_not_the_csr(ca: ClusterCA) -> None:
    _, csr_pem = make_key_and_csr("i-want-to-be-someone-else")
    identity = cert_identity(ca.sign_csr(csr_pem, node_id="n7", role="manager"))
    assert (identity.node_id, identity.role) == ("n7", "manager")


def test_sign_csr_refuses_a_bad_signature(ca: ClusterCA) -> None:
    _, csr_pem = make_key_and_csr("node-b")
    csr = x509.load_pem_x509_csr(csr_pem.encode())
    der = bytearray(csr.public_bytes(serialization.Encoding.DER))
    der[-3] ^= 0x01  # inside the signature value
    bad = x509.load_der_x509_csr(bytes(der)).public_bytes(serialization.Encoding.PEM)
    with pytest.raises(AuthError, match="invalid signature"):
        ca.sign_csr(bad, node_id="node-b", role="worker")


def test_sign_csr_refuses_garbage_and_unknown_roles(ca: ClusterCA) -> None:
    with pytest.raises(AuthError, match="certificate request"):
        ca.sign_csr("not a csr", node_id="x", role="worker")
    _, csr_pem = make_key_and_csr("x")
    with pytest.raises(AuthError, match="unknown role"):
        ca.sign_csr(csr_pem, node_id="x", role="root")  # type: ignore[arg-type]


def test_cert_identity_from_der_and_peercert_dict(ca: ClusterCA) -> None:
    cert_pem, _ = ca.issue("admin-1", "admin", lifetime=timedelta(days=1))
    cert = load_cert(cert_pem)
    from_der = cert_identity(cert.public_bytes(serialization.Encoding.DER))
    peer = {
        "subject": (
            (("organizationName", "cluster-1"),),
            (("commonName", "admin-1"),),
            (("organizationalUnitName", "admin"),),
        ),
        "notAfter": cert.not_valid_after_utc.strftime("%b %d %H:%M:%S %Y GMT"),
    }
    from_dict = cert_identity(peer)
    assert from_der == from_dict == Identity("admin-1", "admin", cert.not_valid_after_utc)


def test_cert_identity_refuses_a_cert_without_role(ca: ClusterCA) -> None:
    with pytest.raises(AuthError, match="role"):
        cert_identity(ca.cert_pem)  # the CA cert has a CN but no OU


def test_needs_renewal_after_two_thirds(ca: ClusterCA) -> None:
    cert_pem, _ = ca.issue("n1", "worker", lifetime=timedelta(days=90))
    cert = load_cert(cert_pem)
    start = cert.not_valid_before_utc
    span = cert.not_valid_after_utc - start
    assert not needs_renewal(cert_pem, start + span * 0.6)
    assert needs_renewal(cert_pem, start + span * 0.67)
    assert not needs_renewal(cert_pem, start + span * 0.6, fraction=0.7)
    assert needs_renewal(cert_pem, cert.not_valid_after_utc + timedelta(days=1))


def test_expired_issue_has_a_valid_window(ca: ClusterCA) -> None:
    cert = load_cert(ca.issue("old", "worker", lifetime=timedelta(minutes=-1))[0])
    assert cert.not_valid_before_utc < cert.not_valid_after_utc < datetime.now(UTC)


def test_only_manager_certificates_name_the_store_access_host(ca: ClusterCA) -> None:
    manager, _ = ca.issue("m1", "manager", san_ips=["10.0.0.1"], san_dns=["host-a"])
    worker, _ = ca.issue("w1", "worker", san_ips=["10.0.0.2"])
    _, csr = make_key_and_csr("w2")
    promoted = ca.sign_csr(csr, node_id="w2", role="manager", san_ips=["10.0.0.3"])
    demoted = ca.sign_csr(csr, node_id="w2", role="worker", san_ips=["10.0.0.3"])
    assert grants_store_access(manager) and grants_store_access(promoted)
    assert not grants_store_access(worker) and not grants_store_access(demoted)
    assert not grants_store_access(ca.issue("admin-1", "admin")[0])
    names = load_cert(manager).extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert names.value.get_values_for_type(x509.DNSName) == ["host-a", STORE_ACCESS_NAME]

"""A manager certificate made before etcd required the store-access name gets it on start."""

from __future__ import annotations

import ipaddress
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from swarmlite.node import _with_store_access
from swarmlite.security.ca import (
    STORE_ACCESS_NAME,
    ClusterCA,
    cert_identity,
    grants_store_access,
    load_cert,
)
from swarmlite.security.tls import Credentials


def old_manager_cert(ca: ClusterCA, node_id: str, key: ec.EllipticCurvePrivateKey) -> str:
    """A manager certificate as made before the name existed."""
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(
            x509.Name(
                [
                    x509.NameAttribute(NameOID.COMMON_NAME, node_id),
                    x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "manager"),
                    x509.NameAttribute(NameOID.ORGANIZATION_NAME, ca.cluster_id),
                ]
            )
        )
        .issuer_name(ca.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=1))
        .not_valid_after(now + timedelta(days=30))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("10.0.0.5")), x509.DNSName("host-b")]
            ),
            critical=False,
        )
        .sign(ca._key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def test_the_ca_re_signs_it_with_the_name_and_nothing_else() -> None:
    ca = ClusterCA.create("c1")
    key = ec.generate_private_key(ec.SECP256R1())
    old_pem = old_manager_cert(ca, "m2", key)
    assert not grants_store_access(old_pem)
    fresh = load_cert(ca.with_store_access(old_pem))
    assert ca.issued(ca.with_store_access(old_pem))
    assert cert_identity(fresh).node_id == "m2" and cert_identity(fresh).role == "manager"
    assert fresh.public_key() == key.public_key()
    sans = fresh.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("10.0.0.5")]
    assert sans.get_values_for_type(x509.DNSName) == ["host-b", STORE_ACCESS_NAME]
    old = load_cert(old_pem)
    assert abs((fresh.not_valid_after_utc - old.not_valid_after_utc).total_seconds()) < 5


def test_a_manager_starting_with_an_old_certificate_saves_the_re_signed_one(
    tmp_path: Path,
) -> None:
    ca = ClusterCA.create("c1")
    key = ec.generate_private_key(ec.SECP256R1())
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    old = Credentials(
        cert_pem=old_manager_cert(ca, "m1", key),
        key_pem=key_pem,
        ca_pem=ca.cert_pem,
        ca_key_pem=ca.key_pem,
    )
    old.save(tmp_path)
    fresh = _with_store_access(old, tmp_path)
    assert grants_store_access(fresh.cert_pem) and fresh.key_pem == key_pem
    assert Credentials.load(tmp_path) == fresh
    assert _with_store_access(fresh, tmp_path) is fresh  # once only


def test_a_node_without_the_ca_key_leaves_its_certificate_alone(tmp_path: Path) -> None:
    ca = ClusterCA.create("c1")
    key = ec.generate_private_key(ec.SECP256R1())
    creds = Credentials(cert_pem=old_manager_cert(ca, "m3", key), key_pem="k", ca_pem=ca.cert_pem)
    assert _with_store_access(creds, tmp_path) is creds
    assert not any(tmp_path.iterdir())

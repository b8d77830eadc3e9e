"""The cluster certificate authority and node certificate helpers.

Every node proves who it is with a certificate signed by the cluster CA. The
certificate's CN is the node id and its OU is the node's role, so a server can
authorize a request from the verified peer certificate alone, with no lookup.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, cast, get_args

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from swarmlite.errors import AuthError

Role = Literal["manager", "worker", "admin"]
ROLES: tuple[Role, ...] = get_args(Role)

DEFAULT_NODE_CERT_LIFETIME = timedelta(days=90)

# Only manager certificates carry this DNS name. Every etcd member accepts only clients
# and peers whose certificate names it (--client-cert-allowed-hostname and
# --peer-cert-allowed-hostname): a worker's certificate, signed by the same CA, must not
# reach the cluster store, where it could rewrite every service.
STORE_ACCESS_NAME = "managers.swarmlite.internal"
DEFAULT_CA_LIFETIME = timedelta(days=3650)
# Allow for clocks that disagree a little between nodes.
CLOCK_SKEW = timedelta(minutes=5)

# What cert_identity accepts: PEM text or bytes, DER bytes, a parsed certificate,
# or the dict that ssl.SSLSocket.getpeercert() returns.
CertLike = str | bytes | x509.Certificate | Mapping[str, Any]


ADMIN_PREFIX = "admin-"


def admin_cn(node_id: str) -> str:
    """The common name of the admin credential a manager issues for its own CLI."""
    return ADMIN_PREFIX + node_id[:12]


@dataclass(frozen=True, slots=True)
class Identity:
    """Who a verified certificate says its holder is."""

    node_id: str
    role: Role
    not_after: datetime


def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _key_pem(key: ec.EllipticCurvePrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode("ascii")


def _cert_pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode("ascii")


def _check_role(role: str) -> Role:
    for known in ROLES:
        if role == known:
            return known
    raise AuthError(f"unknown role {role!r}: expected one of {', '.join(ROLES)}")


def _check_node_id(node_id: str) -> str:
    # The node id becomes a CN and appears in logs: keep it short and printable.
    if not node_id or len(node_id) > 64 or not node_id.isprintable():
        raise AuthError(f"invalid node id {node_id!r}: use 1-64 printable characters")
    return node_id


def load_cert(pem: str | bytes) -> x509.Certificate:
    """Parse one PEM certificate; a bad one is an AuthError, not a crash."""
    data = pem.encode("ascii") if isinstance(pem, str) else pem
    try:
        return x509.load_pem_x509_certificate(data)
    except ValueError as exc:
        raise AuthError(f"not a valid PEM certificate: {exc}") from None


def fingerprint_of(cert: x509.Certificate | str) -> str:
    """sha256 of the DER encoding, lowercase hex (what join tokens carry)."""
    if isinstance(cert, str):
        cert = load_cert(cert)
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


def make_key_and_csr(node_id: str) -> tuple[str, str]:
    """A fresh P-256 key and a CSR for it; the key never leaves the node."""
    key = _new_key()
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, _check_node_id(node_id))]))
        .sign(key, hashes.SHA256())
    )
    return _key_pem(key), csr.public_bytes(serialization.Encoding.PEM).decode("ascii")


class ClusterCA:
    """The cluster's root of trust; only managers hold its private key."""

    def __init__(self, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> None:
        self.cert = cert
        self._key = key
        orgs = cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
        self.cluster_id = str(orgs[0].value) if orgs else "swarmlite"

    def __repr__(self) -> str:
        fp = self.fingerprint()[:16]
        return f"ClusterCA(cluster_id={self.cluster_id!r}, fingerprint={fp}...)"

    @classmethod
    def create(cls, cluster_id: str, *, lifetime: timedelta = DEFAULT_CA_LIFETIME) -> ClusterCA:
        key = _new_key()
        name = x509.Name(
            [
                x509.NameAttribute(NameOID.COMMON_NAME, "swarmlite-ca"),
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, cluster_id),
            ]
        )
        now = datetime.now(UTC)
        ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - CLOCK_SKEW)
            .not_valid_after(now + lifetime)
            # path_length=0: the CA signs node certs only, never another CA.
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(ski, critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski),
                critical=False,
            )
            .sign(key, hashes.SHA256())
        )
        return cls(cert, key)

    @classmethod
    def load(cls, cert_pem: str | bytes, key_pem: str | bytes) -> ClusterCA:
        cert = load_cert(cert_pem)
        data = key_pem.encode("ascii") if isinstance(key_pem, str) else key_pem
        try:
            key = serialization.load_pem_private_key(data, password=None)
        except (ValueError, TypeError) as exc:
            raise AuthError(f"not a valid PEM private key for the CA: {exc}") from None
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise AuthError("the CA key must be an EC key")
        if (
            key.public_key().public_numbers()
            != cast(ec.EllipticCurvePublicKey, cert.public_key()).public_numbers()
        ):
            raise AuthError("the CA key does not match the CA certificate")
        return cls(cert, key)

    @property
    def cert_pem(self) -> str:
        return _cert_pem(self.cert)

    @property
    def key_pem(self) -> str:
        return _key_pem(self._key)

    def fingerprint(self) -> str:
        return fingerprint_of(self.cert)

    def sign_csr(
        self,
        csr_pem: str | bytes,
        *,
        node_id: str,
        role: Role,
        san_ips: list[str] | None = None,
        san_dns: list[str] | None = None,
        lifetime: timedelta = DEFAULT_NODE_CERT_LIFETIME,
    ) -> str:
        """Sign a node's CSR. Identity comes from the arguments, never the CSR."""
        data = csr_pem.encode("ascii") if isinstance(csr_pem, str) else csr_pem
        try:
            csr = x509.load_pem_x509_csr(data)
        except ValueError as exc:
            raise AuthError(f"not a valid PEM certificate request: {exc}") from None
        # A valid signature proves the requester holds the key it asks us to certify.
        if not csr.is_signature_valid:
            raise AuthError(f"certificate request for node {node_id!r} has an invalid signature")
        public_key = csr.public_key()
        if not isinstance(public_key, ec.EllipticCurvePublicKey):
            raise AuthError(f"certificate request for node {node_id!r}: only EC keys are accepted")
        return _cert_pem(
            self._build(public_key, node_id, role, san_ips or [], san_dns or [], lifetime)
        )

    def issue(
        self,
        node_id: str,
        role: Role,
        san_ips: list[str] | None = None,
        san_dns: list[str] | None = None,
        lifetime: timedelta = DEFAULT_NODE_CERT_LIFETIME,
    ) -> tuple[str, str]:
        """Key and certificate made here: for the first manager and admin credentials."""
        key = _new_key()
        cert = self._build(key.public_key(), node_id, role, san_ips or [], san_dns or [], lifetime)
        return _cert_pem(cert), _key_pem(key)

    def _build(
        self,
        public_key: ec.EllipticCurvePublicKey,
        node_id: str,
        role: str,
        san_ips: list[str],
        san_dns: list[str],
        lifetime: timedelta,
    ) -> x509.Certificate:
        role = _check_role(role)
        subject = x509.Name(
            [
                x509.NameAttribute(NameOID.COMMON_NAME, _check_node_id(node_id)),
                x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, role),
                # O = cluster id, as in Swarm: says which cluster a cert belongs to.
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, self.cluster_id),
            ]
        )
        now = datetime.now(UTC)
        # Never outlive the CA: a chain with an expired root fails anyway.
        not_after = min(now + lifetime, self.cert.not_valid_after_utc)
        # A negative lifetime (tests of expiry) still needs not_before < not_after.
        not_before = min(now, not_after) - CLOCK_SKEW
        try:
            ips: list[x509.GeneralName] = [x509.IPAddress(ipaddress.ip_address(a)) for a in san_ips]
        except ValueError as exc:
            raise AuthError(f"invalid IP address for node {node_id!r}: {exc}") from None
        if role == "manager" and STORE_ACCESS_NAME not in san_dns:
            san_dns = [*san_dns, STORE_ACCESS_NAME]
        names = ips + [x509.DNSName(d) for d in san_dns]
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(self.cert.subject)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before)
            .not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=True,
                    key_cert_sign=False,
                    crl_sign=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            # Every node is both a server (its API) and a client (of other nodes).
            .add_extension(
                x509.ExtendedKeyUsage(
                    [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
                ),
                critical=False,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(
                    cast(ec.EllipticCurvePublicKey, self.cert.public_key())
                ),
                critical=False,
            )
        )
        if names:
            builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
        return builder.sign(self._key, hashes.SHA256())

    def with_store_access(self, cert_pem: str) -> str:
        """The manager certificate again, same key, identity, names and expiry, now naming
        ``STORE_ACCESS_NAME``: for a certificate made before etcd checked for it."""
        cert = load_cert(cert_pem)
        identity = cert_identity(cert)
        try:
            sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        except x509.ExtensionNotFound:
            sans = x509.SubjectAlternativeName([])
        public_key = cert.public_key()
        if not isinstance(public_key, ec.EllipticCurvePublicKey):
            raise AuthError(f"certificate of node {identity.node_id!r} has no EC key")
        return _cert_pem(
            self._build(
                public_key,
                identity.node_id,
                identity.role,
                [str(ip) for ip in sans.get_values_for_type(x509.IPAddress)],
                sans.get_values_for_type(x509.DNSName),
                cert.not_valid_after_utc - datetime.now(UTC),
            )
        )

    def issued(self, cert_pem: str | bytes) -> bool:
        """True if this CA signed the certificate (signature check only)."""
        try:
            load_cert(cert_pem).verify_directly_issued_by(self.cert)
        except (ValueError, TypeError, InvalidSignature):
            return False
        return True


def _identity_from_dict(peer: Mapping[str, Any]) -> Identity:
    # ssl.getpeercert() gives subject as a tuple of RDNs, each a tuple of (key, value).
    fields: dict[str, str] = {}
    for rdn in peer.get("subject", ()):
        for key, value in rdn:
            fields.setdefault(str(key), str(value))
    not_after_text = peer.get("notAfter")
    if "commonName" not in fields or "organizationalUnitName" not in fields or not not_after_text:
        raise AuthError("peer certificate has no node id (CN) or role (OU)")
    not_after = datetime.fromtimestamp(ssl.cert_time_to_seconds(str(not_after_text)), UTC)
    return Identity(
        node_id=fields["commonName"],
        role=_check_role(fields["organizationalUnitName"]),
        not_after=not_after,
    )


def cert_identity(cert: CertLike) -> Identity:
    """The node id, role and expiry a certificate claims (it must be verified elsewhere)."""
    if isinstance(cert, Mapping):
        return _identity_from_dict(cert)
    if isinstance(cert, str):
        cert = load_cert(cert)
    elif isinstance(cert, bytes):
        if cert.lstrip().startswith(b"-----BEGIN"):
            cert = load_cert(cert)
        else:
            try:
                cert = x509.load_der_x509_certificate(cert)
            except ValueError as exc:
                raise AuthError(f"not a valid DER certificate: {exc}") from None
    cns = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    ous = cert.subject.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)
    if not cns or not ous:
        raise AuthError("certificate has no node id (CN) or role (OU)")
    return Identity(
        node_id=str(cns[0].value),
        role=_check_role(str(ous[0].value)),
        not_after=cert.not_valid_after_utc,
    )


def grants_store_access(cert_pem: str | bytes) -> bool:
    """Whether etcd members accept this certificate (see ``STORE_ACCESS_NAME``)."""
    try:
        sans = load_cert(cert_pem).extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return False
    return STORE_ACCESS_NAME in sans.value.get_values_for_type(x509.DNSName)


def needs_renewal(cert_pem: str | bytes, now: datetime, fraction: float = 2 / 3) -> bool:
    """True once `fraction` of the certificate's lifetime has passed."""
    cert = load_cert(cert_pem)
    start, end = cert.not_valid_before_utc, cert.not_valid_after_utc
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    return now >= start + (end - start) * fraction


_HOSTNAME = re.compile(
    r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*"
)


def cert_dns_names(hostname: str) -> list[str]:
    """DNS names for a node's certificate: its host name only when it is a valid DNS
    name (``my_host`` or a non-ASCII name is not; nodes are reached by address anyway)."""
    if len(hostname) <= 253 and _HOSTNAME.fullmatch(hostname):
        return ["localhost", hostname]
    return ["localhost"]

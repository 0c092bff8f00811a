"""
A throwaway certificate authority for tests: a CA and the server
certificates it issues (DNS-IDs, XmppAddrs, SRV-IDs), as PEM.  For tests
and lab setups only: keys are EC P-256, generated in memory.
"""

from __future__ import annotations

import datetime

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from communigate import certnames


def _key_pem(key) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())


class TestAuthority:
    """
    A CA; L{issue} makes a server certificate (key and certificate in one
    PEM, as C{CertificateFile} wants) and L{pem} is what to trust.
    """

    __test__ = False  # not a pytest class

    def __init__(self, name: str = "communigate test CA") -> None:
        self._now = datetime.datetime.now(datetime.timezone.utc)
        self._key = ec.generate_private_key(ec.SECP256R1())
        self._name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        self.certificate = (
            self._builder(self._name, self._key.public_key())
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(self._key.public_key()), critical=False)
            .sign(self._key, hashes.SHA256())
        )

    def _builder(self, subject: x509.Name, public_key, days: int = 30) -> x509.CertificateBuilder:
        return (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(self._name)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(self._now - datetime.timedelta(days=1))
            .not_valid_after(self._now + datetime.timedelta(days=days))
        )

    @property
    def pem(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.PEM)

    def issue(
        self,
        dns_names=(),
        *,
        xmpp_addrs=(),
        srv_names=(),
        common_name: str | None = None,
        days: int = 30,
    ) -> bytes:
        """
        A PEM private key and certificate for the names given; C{srv_names}
        are C{(service, domain)}; without any SAN none is added (the CN
        alone names the server).
        """
        key = ec.generate_private_key(ec.SECP256R1())
        cn = common_name or (list(dns_names) + list(xmpp_addrs) + ["server"])[0]
        builder = self._builder(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]), key.public_key(), days)
        sans = [x509.DNSName(name) for name in dns_names]
        sans += [certnames.xmpp_addr(name) for name in xmpp_addrs]
        sans += [certnames.srv_id(service, name) for service, name in srv_names]
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        certificate = (
            builder.add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
                critical=False,
            )
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self._key.public_key()), critical=False
            )
            .sign(self._key, hashes.SHA256())
        )
        return _key_pem(key) + certificate.public_bytes(serialization.Encoding.PEM)

    def revocation_list(self, *revoked_pems: bytes, days: int = 7, issued_days_ago: int = 0) -> bytes:
        """
        A PEM certificate revocation list of this CA naming the
        certificates of C{revoked_pems} (what L{issue} returned); it was
        issued C{issued_days_ago} days ago and is due for renewal C{days}
        after that (a negative total: a stale list).
        """
        issued = self._now - datetime.timedelta(days=issued_days_ago)
        builder = (
            x509.CertificateRevocationListBuilder()
            .issuer_name(self._name)
            .last_update(issued)
            .next_update(issued + datetime.timedelta(days=days))
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self._key.public_key()), critical=False)
            .add_extension(x509.CRLNumber(1), critical=False)
        )
        for pem in revoked_pems:
            certificate = x509.load_pem_x509_certificate(pem[pem.index(b"-----BEGIN CERTIFICATE-----"):])
            builder = builder.add_revoked_certificate(
                x509.RevokedCertificateBuilder()
                .serial_number(certificate.serial_number)
                .revocation_date(issued)
                .build()
            )
        return builder.sign(self._key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)

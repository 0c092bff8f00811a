"""
The certificate STARTTLS uses.

An operator names a PEM file (private key and certificate chain) in the
XMPP setting C{CertificateFile}.  Without one, the first start generates a
self-signed certificate for the server's domains into the data directory
(L{GENERATED_NAME}, mode 0600), so that TLS, which XMPP requires by
default, works out of the box; clients must be told to trust it, or the
operator installs a real one.
"""

from __future__ import annotations

import datetime
import os

from twisted.internet import ssl

GENERATED_NAME = "xmpp-cert.pem"

#: How long a generated certificate is valid.
GENERATED_DAYS = 3650


class CertificateError(Exception):
    """
    The certificate file cannot be used; the message says why.
    """


def generate_self_signed(domains: list[str], now: datetime.datetime | None = None) -> bytes:
    """
    A PEM private key (EC P-256) and a self-signed certificate whose
    subject is the first of C{domains} and whose subjectAltNames are all
    of them.
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    if not domains:
        raise ValueError("a certificate needs at least one domain")
    now = now or datetime.datetime.now(datetime.timezone.utc)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, domains[0])])
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=GENERATED_DAYS))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(d) for d in domains]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return key_pem + certificate.public_bytes(serialization.Encoding.PEM)


def ensure_generated(data_dir: str, domains: list[str]) -> str:
    """
    The path of the generated certificate in C{data_dir}, generating it
    when it does not exist yet.
    """
    path = os.path.join(data_dir, GENERATED_NAME)
    if not os.path.exists(path):
        pem = generate_self_signed(domains)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(pem)
    return path


def load_context(path: str) -> ssl.CertificateOptions:
    """
    The TLS context for the key and certificate (chain) in PEM file C{path}.

    @raise CertificateError: the file is missing, unreadable, or holds no
        matching key and certificate.
    """
    try:
        with open(path, "rb") as f:
            pem = f.read()
    except OSError as e:
        raise CertificateError(f"cannot read the certificate file {path!r}: {e.strerror}") from None
    try:
        certificate = ssl.PrivateCertificate.loadPEM(pem)
        chain = [
            ssl.Certificate.loadPEM(block).original
            for block in _pem_blocks(pem, b"CERTIFICATE")[1:]
        ]
        return ssl.CertificateOptions(
            privateKey=certificate.privateKey.original,
            certificate=certificate.original,
            extraCertChain=chain or None,
        )
    except Exception as e:  # OpenSSL raises many kinds for a bad file
        raise CertificateError(
            f"the certificate file {path!r} does not hold a PEM private key and certificate: {e}"
        ) from None


def _pem_blocks(pem: bytes, label: bytes) -> list[bytes]:
    begin = b"-----BEGIN " + label + b"-----"
    end = b"-----END " + label + b"-----"
    blocks = []
    position = 0
    while True:
        start = pem.find(begin, position)
        if start < 0:
            return blocks
        stop = pem.find(end, start)
        if stop < 0:
            return blocks
        blocks.append(pem[start : stop + len(end)])
        position = stop + len(end)

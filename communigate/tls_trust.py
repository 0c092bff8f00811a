"""
The trust store of outgoing (and mutual) TLS: the platform's CAs
(OpenSSL's default paths, as L{twisted.internet.ssl.platformTrust}) and
the CA certificates of a PEM file an operator names in a setting
(C{TLSCAFile} of SIP, C{S2STrustedCAFile} of XMPP).
"""

from __future__ import annotations

from cryptography import x509
from OpenSSL import crypto
from twisted.internet import ssl


def read_file(setting: str, path: str) -> bytes:
    """
    The bytes of C{path}; L{ValueError} names C{setting}.
    """
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise ValueError(f"{setting}: cannot read {path}: {e.strerror or e}") from None


def load_authorities(path: str, setting: str) -> tuple:
    """
    The CA certificates of the PEM file C{path} (a bundle may hold many),
    as pyOpenSSL C{X509} objects; L{ValueError} names C{setting}.
    """
    data = read_file(setting, path)
    try:
        certificates = x509.load_pem_x509_certificates(data)
    except ValueError:
        raise ValueError(f"{setting}: {path} holds no PEM certificate") from None
    return tuple(crypto.X509.from_cryptography(certificate) for certificate in certificates)


class PlatformTrustAnd(ssl.OpenSSLDefaultPaths):
    """
    The platform's trust store and some CA certificates of our own (an
    C{IOpenSSLTrustRoot}).
    """

    def __init__(self, authorities=()) -> None:
        self.authorities = tuple(authorities)

    def _addCACertsToContext(self, context) -> None:
        super()._addCACertsToContext(context)
        store = context.get_cert_store()
        for authority in self.authorities:
            store.add_cert(authority)

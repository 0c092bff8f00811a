"""
The trust store of outgoing (and mutual) TLS: the platform's CAs
(OpenSSL's default paths, as L{twisted.internet.ssl.platformTrust}) and
the CA certificates of a PEM file an operator names in a setting
(C{TLSCAFile} of SIP, C{S2STrustedCAFile} of XMPP), with the certificate
revocation lists of another (C{S2SCRLFile} of XMPP).

With revocation lists the store checks every certificate of a chain
whose issuer has a list here (OpenSSL's C{CRL_CHECK_ALL}); OpenSSL then
also reports "no list for this issuer" for the others, which a verify
callback that knows this (L{REVOCATION_UNKNOWN}) passes over [D]: lists
are for the CAs an operator chose, not for every CA of the platform.
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


#: OpenSSL's verify errors about revocation lists themselves: no list
#: for the issuer (3), a list not valid yet (11) or past its next update
#: (12).  None of them says a certificate was revoked (23 does).
REVOCATION_UNKNOWN = frozenset({3, 11, 12})
_CRL_BLOCK = b"-----BEGIN X509 CRL-----"


def load_revocation_lists(path: str, setting: str) -> tuple:
    """
    The certificate revocation lists of the PEM file C{path} (one or
    several), as C{cryptography} objects; L{ValueError} names C{setting}.
    """
    data = read_file(setting, path)
    blocks = [_CRL_BLOCK + block for block in data.split(_CRL_BLOCK)[1:]]
    if not blocks:
        raise ValueError(f"{setting}: {path} holds no PEM certificate revocation list")
    try:
        return tuple(x509.load_pem_x509_crl(block) for block in blocks)
    except ValueError as e:
        raise ValueError(f"{setting}: {path}: a revocation list does not parse ({e})") from None


class PlatformTrustAnd(ssl.OpenSSLDefaultPaths):
    """
    The platform's trust store, some CA certificates of our own and the
    revocation lists to check chains against (an C{IOpenSSLTrustRoot}).
    """

    def __init__(self, authorities=(), revocation_lists=()) -> None:
        self.authorities = tuple(authorities)
        self.revocation_lists = tuple(revocation_lists)

    def _addCACertsToContext(self, context) -> None:
        super()._addCACertsToContext(context)
        store = context.get_cert_store()
        for authority in self.authorities:
            store.add_cert(authority)
        for revocations in self.revocation_lists:
            store.add_crl(revocations)
        if self.revocation_lists:
            store.set_flags(crypto.X509StoreFlags.CRL_CHECK | crypto.X509StoreFlags.CRL_CHECK_ALL)

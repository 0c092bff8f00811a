"""
TLS of server-to-server streams with the peer's certificate checked
(RFC 6120 13.7.2, RFC 6125, XEP-0178).

Every STARTTLS, in or out, gets a L{PeerCertificateCheck}: the
connection it makes verifies the peer's chain against the trust store
(the platform's CAs and the C{S2STrustedCAFile} XMPP setting) but never
fails the handshake for it -- a peer whose certificate does not verify
is still served, and authenticates with dialback.  What the chain
verification found is kept on the check; after the handshake,
L{PeerCertificateCheck.identity} gives a L{PeerIdentity}: whether the
chain verified, and the names of the peer's certificate
(L{communigate.certnames}), which the streams match against the domain
the peer claims.

  - outgoing: SNI is the remote domain; our certificate (the XMPP one) is
    presented when the peer asks;
  - incoming: the peer is asked for a certificate (C{VERIFY_PEER} without
    C{FAIL_IF_NO_PEER_CERT}): one without is fine.

The options are built once per certificate, CA file and revocation-list
file (and that file's modification time) in force (L{S2SCertificates}); a
CA file that cannot be read is logged and the platform's store alone is
used.  With C{S2SCRLFile} a chain whose certificate a list names as
revoked does not verify ("it has been revoked"); issuers without a list
here, and lists past their next update (logged), do not fail it
(L{communigate.tls_trust.REVOCATION_UNKNOWN}) [D].
"""

from __future__ import annotations

import datetime
import os

import attrs
from cryptography import x509
from OpenSSL import SSL
from twisted.internet import ssl
from twisted.internet.interfaces import IOpenSSLClientConnectionCreator, IOpenSSLServerConnectionCreator
from twisted.logger import Logger
from zope.interface import implementer

from communigate import certnames, tls_trust
from communigate.interfaces import IPeerCertificateCheck, IS2SCertificates


@attrs.frozen
class PeerIdentity:
    """
    What a peer's certificate proves.

    @ivar verified: the chain verified against the trust store.
    @ivar names: the certificate's L{certnames.CertificateNames}, or
        L{None} when the peer presented none.
    @ivar problem: why it proves nothing, for the log ("" when verified).
    """

    verified: bool = False
    names: certnames.CertificateNames | None = None
    problem: str = "no TLS"

    def proves(self, domain: str) -> bool:
        """
        Whether the certificate is trusted and names C{domain}.
        """
        return self.verified and self.names is not None and certnames.names_domain(self.names, domain)

    def why_not(self, domain: str) -> str:
        """
        Why it does not prove C{domain} (for the log).
        """
        if not self.verified:
            return self.problem
        shown = ", ".join(certnames.proved_domains(self.names)[:5]) if self.names is not None else ""
        return f"the certificate names {shown or 'nothing usable'}, not {domain}"


#: The identity of a stream without TLS or before the handshake.
NO_IDENTITY = PeerIdentity()


@implementer(IPeerCertificateCheck, IOpenSSLClientConnectionCreator, IOpenSSLServerConnectionCreator)
class PeerCertificateCheck:
    """
    The connection creator of one STARTTLS: records the chain
    verification instead of failing the handshake.

    @ivar errors: C{(depth, OpenSSL verify error number)} of each problem.
    @ivar presented: whether the peer presented a certificate.
    """

    def __init__(self, options: ssl.CertificateOptions, server_name: str | None = None) -> None:
        self._options = options
        self._server_name = server_name
        self.errors: list[tuple[int, int]] = []
        self.presented = False

    @property
    def creator(self):
        return self

    def _connection(self) -> SSL.Connection:
        connection = SSL.Connection(self._options.getContext(), None)
        connection.set_verify(SSL.VERIFY_PEER, self._verified)
        return connection

    def clientConnectionForTLS(self, tlsProtocol) -> SSL.Connection:
        connection = self._connection()
        if self._server_name:
            ascii_name = certnames.ascii_domain(self._server_name)
            if ascii_name:
                connection.set_tlsext_host_name(ascii_name.encode("ascii"))
        return connection

    def serverConnectionForTLS(self, tlsProtocol) -> SSL.Connection:
        return self._connection()

    def _verified(self, connection, certificate, error_number: int, depth: int, ok: int) -> bool:
        self.presented = True
        if not ok and error_number not in tls_trust.REVOCATION_UNKNOWN:
            self.errors.append((depth, error_number))
        # Never fail the handshake: an unverified peer may still dialback.
        return True

    def identity(self, transport) -> PeerIdentity:
        get = getattr(transport, "getPeerCertificate", None)
        leaf = get() if get is not None else None
        if leaf is None:
            return PeerIdentity(False, None, "the peer presented no certificate")
        try:
            names = certnames.names_of(leaf.to_cryptography())
        except (ValueError, x509.DuplicateExtension, x509.UnsupportedGeneralNameType) as e:
            return PeerIdentity(False, None, f"the peer's certificate does not parse ({e})")
        if self.errors:
            depth, number = self.errors[0]
            return PeerIdentity(False, names, f"the peer's certificate does not verify ({_verify_error(number)} at depth {depth})")
        return PeerIdentity(True, names, "")


#: The OpenSSL verification errors a peer's chain most often has.
_VERIFY_ERRORS = {
    2: "its issuer is unknown",
    10: "it has expired",
    9: "it is not valid yet",
    18: "it is self-signed",
    19: "its chain ends in a CA not trusted here",
    20: "its issuer is not trusted here",
    21: "its chain is incomplete",
    23: "it has been revoked",
    26: "it is not for this purpose",
}


def _modified(path: str) -> int | None:
    """When C{path} last changed (L{None}: no such file, or none named)."""
    try:
        return os.stat(path).st_mtime_ns if path else None
    except OSError:
        return None


def _verify_error(number: int) -> str:
    return _VERIFY_ERRORS.get(number, f"OpenSSL verify error {number}")


@implementer(IS2SCertificates)
class S2SCertificates:
    """
    The checks of one server's streams, over the XMPP certificate in force
    (C{xmpp.tls_context}, a L{ssl.CertificateOptions} or L{None}) and the
    C{S2STrustedCAFile} setting (C{ca_path()} resolves it).
    """

    log = Logger()

    def __init__(self, xmpp, ca_path, crl_path=lambda: "") -> None:
        self._xmpp = xmpp
        self._ca_path = ca_path
        self._crl_path = crl_path
        self._built_for = None
        self._options: ssl.CertificateOptions | None = None

    def _current(self) -> ssl.CertificateOptions:
        ours = self._xmpp.tls_context
        path, crl_path = self._ca_path(), self._crl_path()
        # A revocation list is replaced in place when its CA publishes the
        # next one: its modification time is part of what the options are for.
        wanted = (ours, path, crl_path, _modified(crl_path))
        built_for = self._built_for
        if self._options is None or built_for[0] is not ours or built_for[1:] != wanted[1:]:
            self._built_for = wanted
            self._options = self._build(ours, path, crl_path)
        return self._options

    def _build(self, ours, path: str, crl_path: str = "") -> ssl.CertificateOptions:
        authorities = ()
        if path:
            try:
                authorities = tls_trust.load_authorities(path, "S2STrustedCAFile")
            except ValueError as e:
                self.log.error("XMPP s2s: only the platform's CAs are trusted: {error}", error=e)
        trust = tls_trust.PlatformTrustAnd(authorities, self._revocation_lists(crl_path))
        if isinstance(ours, ssl.CertificateOptions) and ours.certificate is not None:
            return ssl.CertificateOptions(
                privateKey=ours.privateKey,
                certificate=ours.certificate,
                extraCertChain=ours.extraCertChain or None,
                trustRoot=trust,
            )
        return ssl.CertificateOptions(trustRoot=trust)

    def _revocation_lists(self, path: str) -> tuple:
        if not path:
            return ()
        try:
            lists = tls_trust.load_revocation_lists(path, "S2SCRLFile")
        except ValueError as e:
            self.log.error("XMPP s2s: revocation is not checked: {error}", error=e)
            return ()
        now = datetime.datetime.now(datetime.timezone.utc)
        for revocations in lists:
            if revocations.next_update_utc is not None and revocations.next_update_utc < now:
                self.log.warn(
                    "XMPP s2s: the revocation list of {issuer} in {path} was due for renewal on {due};"
                    " the revocations it names still count",
                    issuer=revocations.issuer.rfc4514_string(), path=path, due=revocations.next_update_utc,
                )
        return lists

    def client(self, domain: str) -> PeerCertificateCheck:
        return PeerCertificateCheck(self._current(), server_name=domain)

    def server(self) -> PeerCertificateCheck:
        return PeerCertificateCheck(self._current())

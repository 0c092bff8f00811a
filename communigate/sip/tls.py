"""
TLS for the SIP connections this server opens (RFC 3261 §26.3.1, RFC 5922
§4): the client options each new outgoing TLS connection is made with.

Settings (the SIP settings, L{communigate.sip.commands}):

  - C{TLSVerify} (C{YES}): the server's certificate must chain to a
    trusted CA and name the SIP domain contacted.  C{NO} accepts any
    certificate (for a lab only; it is logged as a warning whenever it is
    put in force, at start too).
  - C{TLSCAFile} (empty): an absolute path to a PEM file of CA
    certificates trusted I{besides} the platform's store (OpenSSL's
    default paths, as L{twisted.internet.ssl.platformTrust}).
  - C{TLSClientCertificate} (empty): an absolute path to one PEM file
    holding our certificate and its private key, presented to servers
    that ask for one (mutual TLS).

The name checked [D] is the one the flow carries (C{Flow.server_name}):
the host of the URI being contacted, which is the domain handed to the
RFC 3263 locator -- not the SRV or NAPTR target, and not the address
(see L{communigate.sip.nexthop}).  A flow without a name (a registered
contact reached at its address) checks the address, which the
certificate must then carry as an IP SAN.  An established connection to
an address is reused for any name that resolves to it.

Files are read when the settings are put in force (at start and by
C{UPDATESIPSETTINGS}), not per connection; L{load_client_tls} raises
L{ValueError} naming the setting and what is wrong with its file, which
C{UPDATESIPSETTINGS} turns into a refusal.  At start, a file that has
gone bad since is logged as an error and outgoing TLS refuses to connect
("outgoing SIP over TLS is off: ...") until the settings are fixed; the
rest of the server runs.
"""

from __future__ import annotations

import os

import attrs
from OpenSSL import crypto
from twisted.internet import ssl
from twisted.internet.error import VerifyError
from twisted.logger import Logger

from communigate import tls_trust

#: The TLS SIP settings and their built-in values.
DEFAULT_TLS_SETTINGS = {
    "TLSVerify": "YES",
    "TLSCAFile": "",
    "TLSClientCertificate": "",
}

#: The most names whose client options are kept built.
MAX_CACHED_NAMES = 256


@attrs.frozen
class ClientTLSSettings:
    """
    The TLS SIP settings, checked but not yet read from their files.
    """

    verify: bool = True
    ca_file: str = ""
    certificate_file: str = ""


def tls_settings(settings: dict) -> ClientTLSSettings:
    """
    C{settings}' TLS part, or L{ValueError} naming the bad value.  Reads no
    file (L{load_client_tls} does).
    """
    verify = settings.get("TLSVerify", "YES")
    if not isinstance(verify, str) or verify.upper() not in ("YES", "NO"):
        raise ValueError(f"TLSVerify must be YES or NO, not {verify!r}")
    paths = []
    for key in ("TLSCAFile", "TLSClientCertificate"):
        path = settings.get(key, "")
        if not isinstance(path, str):
            raise ValueError(f"{key} must be the path of a PEM file, not {path!r}")
        if path and not os.path.isabs(path):
            raise ValueError(f"{key} must be an absolute path, not {path!r}")
        paths.append(path)
    return ClientTLSSettings(verify.upper() == "YES", *paths)


def load_authorities(path: str) -> tuple:
    """
    The CA certificates of the PEM file C{path} (a bundle may hold many),
    as pyOpenSSL C{X509} objects; L{ValueError} names C{TLSCAFile}.
    """
    return tls_trust.load_authorities(path, "TLSCAFile")


def load_client_certificate(path: str) -> ssl.PrivateCertificate:
    """
    Our certificate and its private key from the one PEM file C{path};
    L{ValueError} names C{TLSClientCertificate}.
    """
    data = tls_trust.read_file("TLSClientCertificate", path)
    if b"PRIVATE KEY-----" not in data:
        raise ValueError(f"TLSClientCertificate: {path} holds no PEM private key (certificate and key go in one file)")
    try:
        return ssl.PrivateCertificate.loadPEM(data)
    except (crypto.Error, VerifyError, ValueError) as e:
        raise ValueError(
            f"TLSClientCertificate: {path} does not hold a certificate and its matching private key ({e})"
        ) from None


class ClientTLS:
    """
    Client TLS options for outgoing SIP connections, by the name to verify.

    @param verify: check the server's certificate (chain and name).
    @param authorities: CA certificates (pyOpenSSL C{X509}) trusted besides
        the platform's store.
    @param certificate: a L{ssl.PrivateCertificate} to present, or C{None}.
    """

    def __init__(self, *, verify: bool = True, authorities=(), certificate=None) -> None:
        self.verify = verify
        self.authorities = tuple(authorities)
        self.certificate = certificate
        self._trust = tls_trust.PlatformTrustAnd(self.authorities)
        self._cache: dict[str, object] = {}
        self._unverified = None

    def options_for(self, name: str):
        """
        The connection creator for a TLS connection whose server must prove
        it is C{name} (a domain name or an IP address).
        """
        if not self.verify:
            if self._unverified is None:
                # No verification means no name either; SNI is not sent.
                key = self.certificate.privateKey.original if self.certificate is not None else None
                cert = self.certificate.original if self.certificate is not None else None
                self._unverified = ssl.CertificateOptions(privateKey=key, certificate=cert, verify=False)
            return self._unverified
        name = name.strip("[]").rstrip(".").lower()
        options = self._cache.get(name)
        if options is None:
            if len(self._cache) >= MAX_CACHED_NAMES:
                self._cache.clear()
            options = ssl.optionsForClientTLS(name, trustRoot=self._trust, clientCertificate=self.certificate)
            self._cache[name] = options
        return options


def load_client_tls(settings: dict) -> ClientTLS:
    """
    The L{ClientTLS} the SIP settings C{settings} ask for, its files read
    now; L{ValueError} names the setting at fault.
    """
    checked = tls_settings(settings)
    authorities = load_authorities(checked.ca_file) if checked.ca_file else ()
    certificate = load_client_certificate(checked.certificate_file) if checked.certificate_file else None
    return ClientTLS(verify=checked.verify, authorities=authorities, certificate=certificate)


class OutgoingTLS:
    """
    The client TLS in force for one SIP service: put in force from the
    settings at start and when they change, asked by the transport for
    each new outgoing TLS connection (L{options_for}, which raises
    L{OSError} while outgoing TLS is off).
    """

    log = Logger()

    def __init__(self) -> None:
        self.client: ClientTLS | None = ClientTLS()
        self.problem = ""

    def apply(self, settings: dict) -> None:
        """
        Put C{settings}' TLS part in force; a setting whose file cannot be
        used turns outgoing TLS off, logged as an error.
        """
        try:
            self.client = load_client_tls(settings)
        except ValueError as e:
            self.client, self.problem = None, str(e)
            self.log.error("outgoing SIP over TLS is off: {problem}", problem=self.problem)
            return
        self.problem = ""
        if not self.client.verify:
            self.log.warn(
                "TLSVerify is NO: the certificates of SIP servers are not checked; "
                "anyone on the path can impersonate them (for a lab only)"
            )

    def options_for(self, name: str):
        if self.client is None:
            raise OSError(f"outgoing SIP over TLS is off: {self.problem}")
        return self.client.options_for(name)

"""
The XMPP settings: one server-wide record in the store (kind C{server},
key L{SETTINGS_KEY}), read with C{GETXMPPSETTINGS}, changed with
C{UPDATEXMPPSETTINGS} and in force at once for new streams (and for the
limits of streams already open).
"""

from __future__ import annotations

import os

import attrs

from communigate.core.server_settings import SettingsRecord
from communigate.dnsclient import parse_server_address

SETTINGS_KEY = "xmpp-settings"

#: The settings and their built-in values.
DEFAULT_SETTINGS = {
    # PEM file with the private key and certificate chain for STARTTLS;
    # empty: the self-signed one generated into the data directory.
    "CertificateFile": "",
    # Whether clients must use STARTTLS before anything else.
    "RequireTLS": "YES",
    # The largest stanza a client may send, in bytes.
    "MaxStanzaSize": "65536",
    # How many resources one account may bind at once.
    "MaxResources": "10",
    # Failed SASL attempts on one stream before it is closed.
    "MaxAuthFailures": "3",
    # Seconds a new stream has to authenticate and bind a resource.
    "NegotiationTimeout": "60",
    # Server-to-server streams (with --xmpp-s2s): whether they are used at all.
    "S2S": "YES",
    # Whether server-to-server streams must use STARTTLS.
    "S2SRequireTLS": "YES",
    # PEM file of CA certificates trusted for server-to-server peers
    # besides the platform's (a relative name is in the data directory);
    # a peer whose certificate verifies and names its domain authenticates
    # with SASL EXTERNAL instead of dialback.
    "S2STrustedCAFile": "",
    # A PEM file of certificate revocation lists (a relative name is in the
    # data directory): a peer server whose chain has a certificate a list
    # names as revoked does not authenticate by certificate (it may still
    # dialback); CAs without a list here are not checked.  Read again when
    # the file changes.
    "S2SCRLFile": "",
    # Seconds an outgoing link may take to resolve, connect and authenticate.
    "S2SConnectTimeout": "30",
    # Seconds without a stanza after which a server-to-server stream is closed.
    "S2SIdleTimeout": "600",
    # The secret dialback keys are made with (XEP-0185); empty: one is
    # generated and stored on the first start with server-to-server on.
    "DialbackSecret": "",
    # DNS servers for _xmpp-server._tcp SRV lookups ("ip[:port], ...");
    # empty: the SIP DNSServers setting, else /etc/resolv.conf.
    "DNSServers": "",
    # Messages kept for an account while none of its resources is
    # available (XEP-0160); 0: none are kept.
    "MaxOfflineMessages": "100",
    # Seconds a stream-managed session whose connection was lost waits to
    # be resumed (XEP-0198); 0: sessions are not resumable.
    "ResumeTimeout": "300",
}

RECORD = SettingsRecord(SETTINGS_KEY, DEFAULT_SETTINGS)

_LIMITS = {
    "MaxStanzaSize": (1024, 16 * 1024 * 1024),
    "MaxResources": (1, 10_000),
    "MaxAuthFailures": (1, 10),
    "NegotiationTimeout": (5, 3600),
    "S2SConnectTimeout": (5, 600),
    "S2SIdleTimeout": (10, 86400),
    "MaxOfflineMessages": (0, 10_000),
    "ResumeTimeout": (0, 3600),
}

#: The shortest and longest DialbackSecret accepted.
SECRET_LENGTHS = (16, 256)


@attrs.frozen
class XMPPSettings:
    """
    The settings in force, checked and typed.
    """

    certificate_file: str = ""
    require_tls: bool = True
    max_stanza_size: int = 65536
    max_resources: int = 10
    max_auth_failures: int = 3
    negotiation_timeout: float = 60.0
    s2s: bool = True
    s2s_require_tls: bool = True
    s2s_trusted_ca_file: str = ""
    s2s_crl_file: str = ""
    s2s_connect_timeout: float = 30.0
    s2s_idle_timeout: float = 600.0
    dialback_secret: str = ""
    dns_servers: tuple = ()
    max_offline_messages: int = 100
    resume_timeout: float = 300.0


def stored_settings(store) -> dict:
    """
    The stored settings over the built-in values, as text.
    """
    return RECORD.effective(store)


def checked(settings: dict) -> XMPPSettings:
    """
    The typed settings, or L{ValueError} naming the bad setting and what
    is allowed.
    """
    unknown = set(settings) - set(DEFAULT_SETTINGS)
    if unknown:
        raise ValueError(f"unknown XMPP settings {sorted(unknown)}; known: {sorted(DEFAULT_SETTINGS)}")
    numbers = {}
    for key, (low, high) in _LIMITS.items():
        value = settings[key]
        try:
            number = int(value)
        except (TypeError, ValueError):
            number = None
        if number is None or not low <= number <= high:
            raise ValueError(f"{key} must be a whole number from {low} to {high}, not {value!r}")
        numbers[key] = number
    flags = {}
    for key in ("RequireTLS", "S2S", "S2SRequireTLS"):
        value = settings[key]
        if not isinstance(value, str) or value.upper() not in ("YES", "NO"):
            raise ValueError(f"{key} must be YES or NO, not {value!r}")
        flags[key] = value.upper() == "YES"
    secret = settings["DialbackSecret"]
    low, high = SECRET_LENGTHS
    if not isinstance(secret, str) or (
        secret and not (low <= len(secret) <= high and secret.isascii() and secret.isprintable() and " " not in secret)
    ):
        raise ValueError(f"DialbackSecret must be {low} to {high} printable ASCII characters without spaces")
    servers = settings["DNSServers"]
    if not isinstance(servers, str):
        raise ValueError(f"DNSServers must be text like \"192.0.2.53:53, 192.0.2.54\", not {servers!r}")
    dns_servers = tuple(
        parse_server_address(entry, setting="DNSServers") for entry in servers.split(",") if entry.strip()
    )
    certificate = settings["CertificateFile"]
    if not isinstance(certificate, str):
        raise ValueError(f"CertificateFile must be a file name, not {certificate!r}")
    trusted = settings["S2STrustedCAFile"]
    if not isinstance(trusted, str):
        raise ValueError(f"S2STrustedCAFile must be a file name, not {trusted!r}")
    revocations = settings["S2SCRLFile"]
    if not isinstance(revocations, str):
        raise ValueError(f"S2SCRLFile must be a file name, not {revocations!r}")
    return XMPPSettings(
        certificate_file=certificate,
        s2s_trusted_ca_file=trusted,
        s2s_crl_file=revocations,
        require_tls=flags["RequireTLS"],
        max_stanza_size=numbers["MaxStanzaSize"],
        max_resources=numbers["MaxResources"],
        max_auth_failures=numbers["MaxAuthFailures"],
        negotiation_timeout=float(numbers["NegotiationTimeout"]),
        s2s=flags["S2S"],
        s2s_require_tls=flags["S2SRequireTLS"],
        s2s_connect_timeout=float(numbers["S2SConnectTimeout"]),
        s2s_idle_timeout=float(numbers["S2SIdleTimeout"]),
        dialback_secret=secret,
        dns_servers=dns_servers,
        max_offline_messages=numbers["MaxOfflineMessages"],
        resume_timeout=float(numbers["ResumeTimeout"]),
    )


def ensure_dialback_secret(store) -> str:
    """
    The stored C{DialbackSecret}, generating and storing one (256 random
    bits in hex) when there is none.
    """
    with store.transaction():
        secret = RECORD.explicit(store).get("DialbackSecret")
        if not secret:
            secret = os.urandom(32).hex()
            RECORD.change(store, {"DialbackSecret": secret}, lambda every: None)
    return secret

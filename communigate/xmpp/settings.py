"""
The XMPP settings: one server-wide record in the store (kind C{server},
key L{SETTINGS_KEY}), read with C{GETXMPPSETTINGS}, changed with
C{UPDATEXMPPSETTINGS} and in force at once for new streams (and for the
limits of streams already open).
"""

from __future__ import annotations

import attrs

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
    # Messages kept for an account while none of its resources is
    # available (XEP-0160); 0: none are kept.
    "MaxOfflineMessages": "100",
    # Seconds a stream-managed session whose connection was lost waits to
    # be resumed (XEP-0198); 0: sessions are not resumable.
    "ResumeTimeout": "300",
}

_LIMITS = {
    "MaxStanzaSize": (1024, 16 * 1024 * 1024),
    "MaxResources": (1, 10_000),
    "MaxAuthFailures": (1, 10),
    "NegotiationTimeout": (5, 3600),
    "MaxOfflineMessages": (0, 10_000),
    "ResumeTimeout": (0, 3600),
}


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
    max_offline_messages: int = 100
    resume_timeout: float = 300.0


def stored_settings(store) -> dict:
    """
    The stored settings over the built-in values, as text.
    """
    from communigate.formats.cgdata import loads

    text = store.get("server", SETTINGS_KEY)
    stored = {} if text is None else loads(text)
    return {**DEFAULT_SETTINGS, **stored}


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
    require = settings["RequireTLS"]
    if not isinstance(require, str) or require.upper() not in ("YES", "NO"):
        raise ValueError(f"RequireTLS must be YES or NO, not {require!r}")
    certificate = settings["CertificateFile"]
    if not isinstance(certificate, str):
        raise ValueError(f"CertificateFile must be a file name, not {certificate!r}")
    return XMPPSettings(
        certificate_file=certificate,
        require_tls=require.upper() == "YES",
        max_stanza_size=numbers["MaxStanzaSize"],
        max_resources=numbers["MaxResources"],
        max_auth_failures=numbers["MaxAuthFailures"],
        negotiation_timeout=float(numbers["NegotiationTimeout"]),
        max_offline_messages=numbers["MaxOfflineMessages"],
        resume_timeout=float(numbers["ResumeTimeout"]),
    )

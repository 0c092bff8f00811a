"""
SASL for XMPP clients (RFC 6120 section 6), server side, sans-IO.

A mechanism object runs one exchange: L{SASLMechanism.step} takes what the
client sent (the initial response of C{<auth/>}, then each
C{<response/>}) and returns either a L{Challenge} to send or the
L{Verify} credentials the stream hands to the cred portal.  After the
portal accepted, L{SASLMechanism.success_data} is the additional data of
C{<success/>}.  Failures are L{SASLFailure}s naming the RFC 6120 section
6.5 condition.

Mechanisms: C{SCRAM-SHA-256} and C{SCRAM-SHA-1} (L{communigate.xmpp.scram})
and C{PLAIN} (RFC 4616), which is only offered, and only accepted, over TLS.

Names without a domain part are in the domain the client's stream
addressed (C{to}), not the main domain: the stream hands a C{qualify}
function to the mechanisms.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable

import attrs
from twisted.cred.credentials import UsernamePassword

from communigate.auth.passwords import ScramSecrets
from communigate.xmpp.scram import MECHANISMS, ScramError, ScramServer

#: Every mechanism this server knows, strongest first.
ALL_MECHANISMS = ("SCRAM-SHA-256", "SCRAM-SHA-1", "PLAIN")

#: Mechanisms that send the password itself.
NEEDS_TLS = frozenset({"PLAIN"})

#: RFC 4616: authcid and passwd are at most 255 octets.
_PLAIN_FIELD_LIMIT = 255


class SASLFailure(Exception):
    """
    The exchange failed; the stream answers C{<failure><condition/></failure>}.
    """

    def __init__(self, condition: str, text: str = "") -> None:
        super().__init__(f"{condition}: {text}" if text else condition)
        self.condition = condition
        self.text = text


@attrs.frozen
class Challenge:
    """
    Send C{<challenge/>} with C{data}, then wait for a C{<response/>}.
    """

    data: bytes


@attrs.frozen
class Verify:
    """
    The client has proved what it can; check C{credentials} through the
    portal.  C{authzid} is the identity it asked to act as, or L{None}.
    """

    credentials: object
    username: str
    authzid: str | None


def offered_mechanisms(tls: bool) -> list[str]:
    """
    The mechanisms to advertise on a stream with or without TLS.
    """
    return [name for name in ALL_MECHANISMS if tls or name not in NEEDS_TLS]


def decode_payload(text: str | None) -> bytes | None:
    """
    The bytes of the base64 text of C{<auth/>} or C{<response/>}: L{None}
    for no text (no initial response), C{b""} for C{=} (an empty one).

    @raise SASLFailure: C{incorrect-encoding}.
    """
    if text is None:
        return None
    text = "".join(text.split())
    if not text:
        return None
    if text == "=":
        return b""
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise SASLFailure("incorrect-encoding", "the data is not base64") from None


def encode_payload(data: bytes | None) -> str | None:
    """
    The text of C{<challenge/>} or C{<success/>} for C{data}.
    """
    if data is None:
        return None
    if not data:
        return "="
    return base64.b64encode(data).decode("ascii")


def parse_plain(data: bytes) -> tuple[str | None, str, str]:
    """
    The authzid (or L{None}), authcid and password of a PLAIN message
    (RFC 4616: C{[authzid] NUL authcid NUL passwd}, UTF-8).

    @raise SASLFailure: C{malformed-request}.
    """
    parts = data.split(b"\x00")
    if len(parts) != 3:
        raise SASLFailure("malformed-request", "PLAIN needs authzid NUL authcid NUL password")
    try:
        authzid, authcid, password = (part.decode("utf-8") for part in parts)
    except UnicodeDecodeError:
        raise SASLFailure("malformed-request", "PLAIN fields must be UTF-8") from None
    if not authcid or not password:
        raise SASLFailure("malformed-request", "PLAIN needs a user name and a password")
    if len(parts[1]) > _PLAIN_FIELD_LIMIT or len(parts[2]) > _PLAIN_FIELD_LIMIT:
        raise SASLFailure("malformed-request", "PLAIN fields are limited to 255 bytes")
    return authzid or None, authcid, password


class SASLMechanism:
    """
    What every mechanism offers the stream.
    """

    name = ""

    def step(self, data: bytes | None) -> Challenge | Verify:
        raise NotImplementedError

    def success_data(self) -> bytes | None:
        return None


class PlainMechanism(SASLMechanism):
    """
    RFC 4616 PLAIN: the password itself, checked by the portal's
    C{IUsernamePassword} checker.
    """

    name = "PLAIN"

    def __init__(self, qualify: Callable[[str], str]) -> None:
        self._qualify = qualify
        self._asked = False

    def step(self, data: bytes | None) -> Challenge | Verify:
        if data is None:
            if self._asked:
                raise SASLFailure("malformed-request", "PLAIN needs the credentials")
            self._asked = True
            return Challenge(b"")
        authzid, authcid, password = parse_plain(data)
        username = self._qualify(authcid)
        return Verify(UsernamePassword(username, password), username, authzid)


class ScramMechanism(SASLMechanism):
    """
    SCRAM-SHA-1 and SCRAM-SHA-256 over L{ScramServer}.

    @param lookup: the stored keys of a (qualified) user name, or L{None}.
    """

    def __init__(
        self,
        hash_name: str,
        qualify: Callable[[str], str],
        lookup: Callable[[str, str], ScramSecrets | None],
        decoy_key: bytes,
        random=None,
    ) -> None:
        self.name = MECHANISMS[hash_name]
        self._qualify = qualify
        kwargs = {} if random is None else {"random": random}
        self._server = ScramServer(
            hash_name, lambda username: lookup(qualify(username), hash_name), decoy_key, **kwargs
        )
        self._asked = False

    def step(self, data: bytes | None) -> Challenge | Verify:
        server = self._server
        try:
            if server.client_first is None:
                if data is None and not self._asked:
                    self._asked = True
                    return Challenge(b"")
                if not data:
                    raise SASLFailure("malformed-request", "SCRAM needs the client-first-message")
                return Challenge(server.receive_first(data))
            credentials = server.receive_final(data or b"")
        except ScramError as e:
            raise SASLFailure(e.condition, e.text) from None
        username = self._qualify(credentials.username)
        return Verify(attrs.evolve(credentials, username=username), username, server.client_first.authzid)

    def success_data(self) -> bytes | None:
        return self._server.server_final()


def new_mechanism(
    name: str,
    *,
    tls: bool,
    qualify: Callable[[str], str],
    lookup: Callable[[str, str], ScramSecrets | None],
    decoy_key: bytes,
) -> SASLMechanism:
    """
    A fresh exchange for mechanism C{name}.

    @raise SASLFailure: C{invalid-mechanism} for a name not offered,
        C{encryption-required} for PLAIN without TLS.
    """
    if name not in ALL_MECHANISMS:
        raise SASLFailure("invalid-mechanism", f"{name[:40]!r} is not offered; use one of {', '.join(offered_mechanisms(tls))}")
    if name in NEEDS_TLS and not tls:
        raise SASLFailure("encryption-required", f"{name} needs TLS")
    if name == "PLAIN":
        return PlainMechanism(qualify)
    hash_name = {mechanism: hash_name for hash_name, mechanism in MECHANISMS.items()}[name]
    return ScramMechanism(hash_name, qualify, lookup, decoy_key)

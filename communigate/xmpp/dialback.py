"""
Server Dialback (XEP-0220) with dialback keys as XEP-0185 computes them,
sans-IO: keys, and the C{<db:result/>} and C{<db:verify/>} elements built
and read.  The streams in L{communigate.xmpp.s2s_in} and
L{communigate.xmpp.s2s_out} carry them.

Who is who (XEP-0220 section 1.3): the I{Originating Server} (domain A)
opens a stream to the I{Receiving Server} (domain B) and sends
C{<db:result from=A to=B>key</db:result>}; B connects back to A's
I{Authoritative Server}, found through DNS, and asks
C{<db:verify from=B to=A id=stream-id>key</db:verify>}; A answers
C{type='valid'} only for a key it made itself; B then answers the first
stream C{<db:result type='valid'/>} and accepts stanzas from A there.

The key is C{HMAC-SHA256(SHA256(secret) in hex, "B A stream-id")} in hex
(XEP-0185 section 3), computed by C{wokkel.server.generateKey}.  Only the
server that made a key ever checks it, so the secret never leaves it; two
servers (a cluster) answering for one domain must share it.
"""

from __future__ import annotations

import hmac

import attrs
from twisted.words.protocols.jabber.error import StanzaError
from twisted.words.protocols.jabber.jid import JID, InvalidFormat
from twisted.words.xish import domish

from communigate.xmpp.namespaces import NS_DIALBACK, NS_STANZA_ERRORS

#: The answers a dialback request gets.
VALID = "valid"
INVALID = "invalid"
ERROR = "error"

#: The most characters of a key looked at (a SHA-256 hex digest is 64).
_MAX_KEY = 256


class DialbackFault(Exception):
    """
    A dialback element the stream cannot accept.

    @ivar condition: the stream error condition to close with.
    @ivar text: what was wrong.
    """

    def __init__(self, condition: str, text: str) -> None:
        super().__init__(f"{condition}: {text}")
        self.condition = condition
        self.text = text


@attrs.frozen
class DialbackElement:
    """
    A C{<db:result/>} or C{<db:verify/>}, read.

    @ivar kind: C{result} or C{verify}.
    @ivar sender: the C{from} domain, normalised.
    @ivar recipient: the C{to} domain, normalised.
    @ivar type: C{valid}, C{invalid}, C{error}, or L{None} for a request.
    @ivar stream_id: the C{id} of a C{verify}, else L{None}.
    @ivar key: the key of a request, else L{None}.
    @ivar condition: the error condition of a C{type='error'} answer.
    """

    kind: str
    sender: str
    recipient: str
    type: str | None = None
    stream_id: str | None = None
    key: str | None = None
    condition: str | None = None

    @property
    def is_request(self) -> bool:
        return self.type is None


def dialback_key(secret: str, receiving: str, originating: str, stream_id: str) -> str:
    """
    The XEP-0185 dialback key for a stream from C{originating} to
    C{receiving} whose receiving side called it C{stream_id}.

    Domains are taken in their ASCII (IDNA) form, since only this server
    ever checks its own keys.

    @raise UnicodeError: a domain has no ASCII form or the stream id is not
        ASCII.
    """
    # Imported here: wokkel.server imports the global reactor, which must
    # not be installed as a side effect of importing this module.
    from wokkel.server import generateKey

    stream_id.encode("ascii")
    return generateKey(secret, _ascii(receiving), _ascii(originating), stream_id)


def key_is_valid(secret: str, key: str, receiving: str, originating: str, stream_id: str) -> bool:
    """
    Whether C{key} is the one this server (C{secret}) made for the stream.
    """
    try:
        expected = dialback_key(secret, receiving, originating, stream_id)
    except UnicodeError:
        return False
    return hmac.compare_digest(expected.encode("ascii"), key.strip().encode("utf-8"))


def _ascii(domain: str) -> str:
    return domain.encode("idna").decode("ascii")


def domain_of(text: str | None) -> str | None:
    """
    The normalised domain C{text} names, or L{None} when it is missing or
    not a bare domain.
    """
    if not text or len(text) > 1023:
        return None
    try:
        parsed = JID(text)
    except (InvalidFormat, UnicodeError, ValueError, IndexError):
        # IndexError: twisted's nameprep on an empty label ("a..b").
        return None
    if parsed.user is not None or parsed.resource is not None or not parsed.host:
        return None
    return parsed.host


def read(element: domish.Element) -> DialbackElement:
    """
    The dialback element C{element} (in L{NS_DIALBACK}), checked.

    @raise DialbackFault: C{improper-addressing} for a missing or invalid
        C{from} or C{to}; C{bad-format} for a bad C{type}, a request
        without a key, or a verify without an C{id}.
    """
    kind = element.name
    if element.uri != NS_DIALBACK or kind not in ("result", "verify"):
        raise DialbackFault("unsupported-stanza-type", f"{kind[:40]!r} is not a dialback element")
    sender = domain_of(element.getAttribute("from"))
    recipient = domain_of(element.getAttribute("to"))
    if sender is None or recipient is None:
        raise DialbackFault("improper-addressing", f"db:{kind} needs from and to domains")
    kind_type = element.getAttribute("type")
    if kind_type not in (None, VALID, INVALID, ERROR):
        raise DialbackFault("bad-format", f"db:{kind} type must be valid, invalid or error")
    stream_id = element.getAttribute("id")
    if kind == "verify" and not stream_id:
        raise DialbackFault("bad-format", "db:verify needs the id of the stream it is about")
    key = None
    condition = None
    if kind_type is None:
        key = "".join(child for child in element.children if isinstance(child, str)).strip()
        if not key or len(key) > _MAX_KEY:
            raise DialbackFault("bad-format", f"db:{kind} needs a dialback key")
    elif kind_type == ERROR:
        condition = _error_condition(element) or "undefined-condition"
    return DialbackElement(kind, sender, recipient, kind_type, stream_id if kind == "verify" else None, key, condition)


def _error_condition(element: domish.Element) -> str | None:
    for child in element.elements():
        if child.name == "error":
            for condition in child.elements():
                if condition.uri == NS_STANZA_ERRORS and condition.name != "text":
                    return condition.name
    return None


def _element(kind: str, sender: str, recipient: str) -> domish.Element:
    element = domish.Element((NS_DIALBACK, kind))
    element["from"] = sender
    element["to"] = recipient
    return element


def result_request(sender: str, recipient: str, key: str) -> domish.Element:
    """
    C{<db:result from to>key</db:result>}: the Originating Server asks to
    send as C{sender} to C{recipient}.
    """
    element = _element("result", sender, recipient)
    element.addContent(key)
    return element


def result_answer(sender: str, recipient: str, outcome: str, condition: str | None = None) -> domish.Element:
    """
    The Receiving Server's answer to a C{db:result}: C{sender} is the
    receiving domain, C{recipient} the originating one.
    """
    element = _element("result", sender, recipient)
    element["type"] = outcome
    if outcome == ERROR:
        element.addChild(StanzaError(condition or "undefined-condition", "cancel").getElement())
    return element


def verify_request(sender: str, recipient: str, stream_id: str, key: str) -> domish.Element:
    """
    C{<db:verify from to id>key</db:verify>}: the Receiving Server
    (C{sender}) asks the Authoritative Server of C{recipient}.
    """
    element = _element("verify", sender, recipient)
    element["id"] = stream_id
    element.addContent(key)
    return element


def verify_answer(
    sender: str, recipient: str, stream_id: str, outcome: str, condition: str | None = None
) -> domish.Element:
    """
    The Authoritative Server's answer: C{sender} is the authoritative
    domain, C{recipient} the receiving one.
    """
    element = _element("verify", sender, recipient)
    element["id"] = stream_id
    element["type"] = outcome
    if outcome == ERROR:
        element.addChild(StanzaError(condition or "undefined-condition", "cancel").getElement())
    return element

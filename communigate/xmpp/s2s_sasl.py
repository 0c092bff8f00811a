"""
SASL EXTERNAL between servers (RFC 6120 section 6 and 13.7.2, XEP-0178),
sans-IO: the elements read and built, nothing else.

The initiating server authenticates with the certificate it presented in
TLS: C{<auth mechanism='EXTERNAL'>} whose initial response is the
authorization identity (its domain, base64) or C{=} (empty: "the domain of
my stream header").  An C{<auth/>} without an initial response gets an
empty C{<challenge/>}, answered by a C{<response/>} holding the same.
"""

from __future__ import annotations

import base64
import binascii

import attrs
from twisted.words.xish import domish

from communigate.xmpp.namespaces import NS_SASL

EXTERNAL = "EXTERNAL"

#: The longest authorization identity accepted (a domain is 1023 at most).
MAX_AUTHZID = 1023


class SASLFault(Exception):
    """
    The SASL element is wrong: C{condition} is the RFC 6120 6.5 failure.
    """

    def __init__(self, condition: str, text: str) -> None:
        super().__init__(text)
        self.condition = condition
        self.text = text


@attrs.frozen
class ExternalRequest:
    """
    An EXTERNAL C{<auth/>} or C{<response/>}.

    @ivar authzid: the authorization identity asked for; C{""} when the
        initiator sent C{=} (its stream's C{from}); L{None} when the auth
        had no initial response (a challenge must be sent).
    """

    authzid: str | None


def read_external(element: domish.Element) -> ExternalRequest:
    """
    An C{<auth/>} (or the C{<response/>} to our empty challenge) read.

    @raise SASLFault: C{invalid-mechanism} for another mechanism than
        EXTERNAL, C{incorrect-encoding} for bad base64 or an identity that is
        not UTF-8, C{malformed-request} for anything else amiss.
    """
    if element.name == "auth":
        mechanism = element.getAttribute("mechanism")
        if not mechanism:
            raise SASLFault("invalid-mechanism", "the auth element names no mechanism")
        if mechanism != EXTERNAL:
            raise SASLFault("invalid-mechanism", f"{mechanism[:40]!r} is not offered; EXTERNAL is")
    elif element.name != "response":
        raise SASLFault("malformed-request", f"{element.name[:40]!r} is not a SASL request")
    if any(isinstance(child, domish.Element) for child in element.children):
        raise SASLFault("malformed-request", "a SASL element holds text, not elements")
    text = str(element).strip()
    if not text:
        return ExternalRequest(None if element.name == "auth" else "")
    if text == "=":
        return ExternalRequest("")
    if len(text) > 2 * MAX_AUTHZID:
        raise SASLFault("malformed-request", "the authorization identity is too long")
    try:
        raw = base64.b64decode(text, validate=True)
        authzid = raw.decode("utf-8")
    except (binascii.Error, ValueError):
        raise SASLFault("incorrect-encoding", "the initial response is not base64 of UTF-8 text") from None
    if not authzid or "\x00" in authzid:
        raise SASLFault("malformed-request", "the authorization identity is empty or holds NUL")
    return ExternalRequest(authzid)


def mechanisms(*names: str) -> domish.Element:
    """
    The C{<mechanisms/>} stream feature offering C{names}.
    """
    element = domish.Element((NS_SASL, "mechanisms"))
    for name in names:
        element.addElement("mechanism", content=name)
    return element


def offered(features: domish.Element) -> set[str]:
    """
    The SASL mechanisms a C{<stream:features/>} offers.
    """
    found = set()
    for child in features.elements(NS_SASL, "mechanisms"):
        for mechanism in child.elements(NS_SASL, "mechanism"):
            found.add(str(mechanism).strip())
    return found


def auth_external(authzid: str) -> domish.Element:
    """
    C{<auth mechanism='EXTERNAL'>} for C{authzid} (base64; C{=} when empty).
    """
    element = domish.Element((NS_SASL, "auth"))
    element["mechanism"] = EXTERNAL
    element.addContent(base64.b64encode(authzid.encode("utf-8")).decode("ascii") if authzid else "=")
    return element


def success() -> domish.Element:
    return domish.Element((NS_SASL, "success"))


def challenge() -> domish.Element:
    return domish.Element((NS_SASL, "challenge"))


def failure(condition: str, text: str | None = None) -> domish.Element:
    element = domish.Element((NS_SASL, "failure"))
    element.addElement(condition)
    if text:
        element.addElement("text", content=text[:200])
    return element


def failure_condition(element: domish.Element) -> str:
    """
    The condition of a C{<failure/>} received.
    """
    return next((child.name for child in element.elements() if child.name != "text"), "undefined-condition")

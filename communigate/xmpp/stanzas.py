"""
Small pure helpers the IM parts of the XMPP module share: copying a
stanza with new addresses, reading the parts of a presence or message,
XEP-0203 delay stamps, text made safe for XML, and parsing a stored
stanza back.
"""

from __future__ import annotations

import re
from datetime import datetime, timezone

from twisted.words.protocols.jabber.jid import InvalidFormat
from twisted.words.xish import domish

from communigate.xmpp.namespaces import NS_CLIENT
from communigate.xmpp.parser import ElementReceived, StreamFault, StreamParser

NS_DELAY = "urn:xmpp:delay"
NS_HINTS = "urn:xmpp:hints"

#: Characters XML 1.0 does not allow (a SIP body may hold any of them).
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")

_STORED_HEADER = (
    b"<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>"
)


def copy_stanza(element: domish.Element, **attributes) -> domish.Element:
    """
    A shallow copy of C{element} (the children are shared, not copied)
    with C{attributes} set; an attribute given as L{None} is removed.
    """
    copy = domish.Element((element.uri, element.name), element.defaultUri, localPrefixes=dict(element.localPrefixes))
    copy.attributes = dict(element.attributes)
    for name, value in attributes.items():
        if value is None:
            copy.attributes.pop(name, None)
        else:
            copy.attributes[name] = value
    copy.children = list(element.children)
    return copy


def child(element: domish.Element, name: str, uri: str = NS_CLIENT) -> domish.Element | None:
    """
    The first child element C{name} in C{uri}, or L{None}.
    """
    for found in element.elements():
        if found.name == name and found.uri == uri:
            return found
    return None


def child_text(element: domish.Element, name: str, uri: str = NS_CLIENT) -> str | None:
    """
    The text of the first child C{name}, or L{None} when there is none.
    """
    found = child(element, name, uri)
    return None if found is None else str(found)


def has_child(element: domish.Element, uri: str, name: str | None = None) -> bool:
    """
    Whether C{element} has a child in C{uri} (named C{name}, when given).
    """
    return any(found.uri == uri and (name is None or found.name == name) for found in element.elements())


def xml_text(text: str) -> str:
    """
    C{text} without the characters XML 1.0 cannot carry.
    """
    return _NOT_XML.sub("", text)


def stamp(seconds: float) -> str:
    """
    An XEP-0082 date-time in UTC, to the millisecond.
    """
    moment = datetime.fromtimestamp(seconds, timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def delay(seconds: float, origin: str, reason: str | None = None) -> domish.Element:
    """
    The XEP-0203 C{<delay/>} saying the stanza was held since C{seconds}.
    """
    element = domish.Element((NS_DELAY, "delay"))
    element["from"] = origin
    element["stamp"] = stamp(seconds)
    if reason:
        element.addContent(reason)
    return element


def bare_of(text: str | None) -> str | None:
    """
    The bare JID of C{text}, or L{None} when it is no valid JID.
    """
    if not text:
        return None
    from communigate.xmpp.c2s import parse_jid

    try:
        return parse_jid(text).userhost()
    except InvalidFormat:
        return None


def serialized(element: domish.Element) -> str:
    """
    C{element} as text, in the default namespace of a client stream.
    """
    return element.toXml(defaultUri=NS_CLIENT)


def parse_stored(text: str, max_size: int = 16 * 1024 * 1024) -> domish.Element:
    """
    Parse a stanza that L{serialized} wrote.

    @raise ValueError: it is not one complete element.
    """
    parser = StreamParser(max_size)
    try:
        events = parser.feed(_STORED_HEADER + text.encode("utf-8"))
    except StreamFault as fault:
        raise ValueError(f"a stored stanza does not parse: {fault}") from None
    elements = [event.element for event in events if isinstance(event, ElementReceived)]
    if len(elements) != 1:
        raise ValueError("a stored stanza is not exactly one element")
    return elements[0]

"""
Where a stanza that is not for the server itself goes, at its simplest:

  - L{route}: to a local JID (L{deliver_to_sessions}, through the
    service's C{deliver_local}) or to a remote domain (the service's
    C{route_remote});
  - L{bounce}: the error stanza back to the sender, wherever the sender
    is; an error stanza is never answered with another (RFC 6120
    section 8.3.1), it is counted and dropped;
  - L{deliver_to_sessions}: a minimal delivery to bound resources, what
    stanzas from other servers need until the roster, presence and
    message handling of the XMPP module takes over
    C{XMPPService.deliver_local}: a full JID reaches its session; a
    message to a bare JID (or to a full JID that is not bound, RFC 6121
    section 8.5.3.2.1) reaches the highest-priority available resource;
    presence to a bare JID reaches every available resource (a probe,
    which only a presence service can answer, none); anything else is
    answered C{service-unavailable} (messages, IQ requests) or
    dropped (presence, IQ results), as RFC 6121 section 8.5 says.  There
    is no offline storage here.
"""

from __future__ import annotations

from twisted.words.protocols.jabber.jid import JID, InvalidFormat
from twisted.words.xish import domish

from communigate.xmpp.c2s import parse_jid
from communigate.xmpp.dispatch import error_reply


def _jid(element: domish.Element, attribute: str) -> JID | None:
    text = element.getAttribute(attribute)
    if not text:
        return None
    try:
        return parse_jid(text)
    except InvalidFormat:
        return None


def route(service, element: domish.Element) -> None:
    """
    Send C{element} on to its C{to}: a local JID or a remote domain.
    """
    target = _jid(element, "to")
    if target is None:
        service.metrics.dropped("stanza without a valid to")
        return
    if service.is_local_domain(target.host):
        service.deliver_local(element)
    else:
        service.route_remote(element)


def bounce(service, element: domish.Element, condition: str, text: str | None = None) -> None:
    """
    Answer C{element} to its sender with stanza error C{condition}.
    """
    if element.getAttribute("type") == "error":
        service.metrics.dropped(f"error stanza that could not be delivered ({condition})")
        return
    if element.name == "presence" or (element.name == "iq" and element.getAttribute("type") == "result"):
        # RFC 6121 section 8.5.2: undeliverable presence and IQ results are dropped.
        service.metrics.dropped(f"undeliverable {element.name} ({condition})")
        return
    if _jid(element, "from") is None:
        service.metrics.dropped("undeliverable stanza without a valid from")
        return
    route(service, error_reply(element, condition, text))


def deliver_to_sessions(service, element: domish.Element) -> None:
    """
    Deliver C{element} (C{jabber:client}) to the bound resources of its
    local C{to}, minimally (see the module's docstring).
    """
    target = _jid(element, "to")
    if target is None:
        service.metrics.dropped("stanza without a valid to")
        return
    kind, kind_type = element.name, element.getAttribute("type")
    account = None
    if target.user is not None:
        account = service.resolve_account(f"{target.user}@{target.host}", target.host)
    if account is None:
        bounce(service, element, "service-unavailable")
        return
    sessions = service.sessions
    if target.resource is not None:
        local, _, domain = account.partition("@")
        session = sessions.lookup(JID(tuple=(local, domain, target.resource)))
        if session is not None:
            session.send(element)
            return
        if kind != "message":
            bounce(service, element, "service-unavailable")
            return
    if kind == "message":
        available = sessions.available_resources(account)
        if available and kind_type != "error":
            available[0].send(element)
        elif available:
            service.metrics.dropped("message error to a bare JID")
        else:
            bounce(service, element, "service-unavailable", "the recipient is not online")
    elif kind == "presence" and kind_type == "probe":
        # RFC 6121 section 4.3: the server answers probes, clients never see them.
        service.metrics.dropped("presence probe with no presence service to answer it")
    elif kind == "presence":
        available = sessions.available_resources(account)
        for session in available:
            session.send(element)
        if not available:
            service.metrics.dropped("presence to an account with no available resource")
    else:
        bounce(service, element, "service-unavailable")

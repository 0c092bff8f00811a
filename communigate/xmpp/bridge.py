"""
The XMPP side of unified IM: messages become Signals and Signals become
messages, so one account receives instant messages on every device it
has, whatever protocol sent them (issue 5, point 5).

XMPP to Signal.  A C{chat} or C{normal} message with a body for a local
JID is submitted to the Signal service as a C{MESSAGE} Signal: target,
From and To in e-mail form (C{bob@example.com}; the SIP side writes them
as C{<sip:bob@example.com>}), the body as C{text/plain;charset=utf-8}, a fresh
Call-ID, submitter C{xmpp} with the sending account.  The Signal is
routed, the account's Signal Rules apply (C{CallType} is C{IM}), and the
forking rings every endpoint: XMPP resources (L{ResourceEndpoint}) and
registered SIP phones, which get a SIP MESSAGE.  The stanza itself is
kept by Call-ID while the Signal lives, so an XMPP resource receives the
original stanza with all its extensions (thread, receipts request, chat
state), not a copy rebuilt from the plain text.

The final response decides what the XMPP sender sees: a 2xx, nothing
(delivered); 408, 480, 487 or a 5xx (nobody took it: no endpoint, a
phone that did not answer), the message is kept offline for the account
(XMPP offline storage is for messages from XMPP; a SIP sender keeps
SIP's 480); anything else, or no account to keep it for,
C{service-unavailable}.

Signal to XMPP.  L{XMPPResources} is an L{IEndpointSource}: an account's
endpoints are its available resources of the highest non-negative
priority (where RFC 6121 delivers a message to the bare JID).  A
L{ResourceEndpoint} answers a MESSAGE with 200 once the stanza is handed
to the stream (stream management takes it from there), with 480 when the
resource is gone, 415 for a body that is not C{text/plain}; it answers
every other method 480 (XMPP resources take no calls), which ranks below
a phone's own answer.  A message from SIP becomes a C{chat} message from
the sender's bare JID: C{sip:bob@example.com} is C{bob@example.com}; an
address without a domain (a number) is taken in the recipient's domain.
The first resource to deliver sends the C{<received/>} carbons to the
account's other carbons-enabled resources.
"""

from __future__ import annotations

import os

from twisted.logger import Logger
from twisted.words.protocols.jabber.jid import JID, InvalidFormat
from twisted.words.xish import domish
from zope.interface import implementer

from communigate.interfaces import IDelivery, IEndpoint, IEndpointSource
from communigate.signal.model import Signal, Submitter, response
from communigate.xmpp.namespaces import NS_CLIENT
from communigate.xmpp.stanzas import bare_of, child_text, copy_stanza, xml_text

CONTENT_TYPE = "text/plain;charset=utf-8"
#: Final responses after which a message from XMPP is kept offline.
KEEP_OFFLINE = frozenset({408, 480, 487})
_SCHEMES = ("sip:", "sips:", "xmpp:", "im:", "tel:")


def address_to_jid(address: str, domain: str) -> str:
    """
    The bare JID a Signal's From address stands for: a scheme, URI
    parameters and a display part are dropped; an address without a
    domain is taken in C{domain}; what is still no JID becomes C{domain}.
    """
    text = address.strip()
    if "<" in text and ">" in text:
        text = text[text.index("<") + 1:text.index(">")]
    lowered = text.lower()
    for scheme in _SCHEMES:
        if lowered.startswith(scheme):
            text = text[len(scheme):]
            break
    text = text.split(";", 1)[0].split("?", 1)[0]
    if "@" not in text:
        text = f"{text}@{domain}"
    local, _, host = text.rpartition("@")
    host = host.split(":", 1)[0]
    try:
        return JID(tuple=(local or None, host, None)).userhost()
    except (InvalidFormat, UnicodeError, ValueError):
        return domain


def body_text(signal: Signal) -> str | None:
    """
    The text of a MESSAGE Signal's body, or L{None} when it is not plain
    text.
    """
    media = (signal.content_type or "text/plain").split(";")
    if media[0].strip().lower() != "text/plain":
        return None
    charset = "utf-8"
    for parameter in media[1:]:
        name, _, value = parameter.partition("=")
        if name.strip().lower() == "charset" and value.strip():
            charset = value.strip().strip('"')
    try:
        text = signal.body.decode(charset, "replace")
    except LookupError:
        text = signal.body.decode("utf-8", "replace")
    return xml_text(text)


@implementer(IDelivery)
class _Delivered:
    """
    A delivery that is over as soon as it started: nothing to cancel.
    """

    def cancel(self) -> None:
        pass


class _Siblings:
    """
    The resources one Signal rings for one account: who sends the
    C{<received/>} carbons, once.
    """

    def __init__(self, account: str, jids) -> None:
        self.account = account
        self.jids = frozenset(jids)
        self.copied = False


@implementer(IEndpoint)
class ResourceEndpoint:
    """
    One available XMPP resource as the Signal service rings it.
    """

    def __init__(self, bridge: SignalBridge, jid: JID, siblings: _Siblings) -> None:
        self._bridge = bridge
        self.jid = jid
        self._siblings = siblings
        self.description = f"XMPP {jid.full()}"

    def deliver(self, signal, responder):
        if signal.method.upper() != "MESSAGE":
            responder.final(response(480, "XMPP resources take instant messages only", origin=self.description))
            return _Delivered()
        session = self._bridge.sessions.lookup(self.jid)
        if session is None or not session.available:
            responder.final(response(480, origin=self.description))
            return _Delivered()
        element = self._bridge.stanza_for(signal, session)
        if element is None:
            responder.final(response(415, "Unsupported Media Type", headers=(("Accept", "text/plain"),),
                                     origin=self.description))
            return _Delivered()
        session.send(element)
        self._bridge.delivered(self._siblings, element)
        responder.final(response(200, origin=self.description))
        return _Delivered()

    def __repr__(self) -> str:
        return f"<ResourceEndpoint {self.jid.full()}>"


@implementer(IEndpointSource)
class XMPPResources:
    """
    The endpoints of an account: its available resources of the highest
    non-negative priority.
    """

    def __init__(self, bridge: SignalBridge) -> None:
        self._bridge = bridge

    def endpoints(self, account: str) -> list:
        targets = self._bridge.service.messages.bare_targets(account)
        if not targets:
            return []
        siblings = _Siblings(account, (s.jid.full() for s in targets))
        return [ResourceEndpoint(self._bridge, s.jid, siblings) for s in targets]


class SignalBridge:
    """
    Messages to Signals and back, for one XMPP service.
    """

    log = Logger()

    def __init__(self, service) -> None:
        self.service = service
        self.sessions = service.sessions
        self.source = XMPPResources(self)
        # Call-ID -> the stanza a Signal carries, while the Signal lives.
        self._stanzas: dict[str, domish.Element] = {}
        self._registered = False

    def start(self) -> None:
        signals = self.service.context.signals
        if signals is not None and not self._registered:
            signals.add_endpoint_source(self.source)
            self._registered = True

    # -- XMPP to Signal ------------------------------------------------------------

    def submit(self, element: domish.Element, account: str | None) -> None:
        """
        Submit message C{element} (with a body, for a local JID) as a
        MESSAGE Signal; C{account} is the addressee's account, if any.
        """
        signals = self.service.context.signals
        sender = element.getAttribute("from", "")
        target = bare_of(element.getAttribute("to")) or ""
        if signals is None:
            self._concluded(response(480), element, account, None)
            return
        sender_bare = bare_of(sender) or sender
        domain = target.rpartition("@")[2]
        call_id = f"{os.urandom(10).hex()}@{domain}"
        text = child_text(element, "body") or ""
        signal = Signal(
            method="MESSAGE",
            targets=(account or target,),
            from_address=sender_bare,
            to_address=target,
            call_id=call_id,
            submitter=Submitter("xmpp", self.service.local_account(sender_bare)),
            body=text.encode("utf-8"),
            content_type=CONTENT_TYPE,
        )
        self._stanzas[call_id] = element
        self.service.metrics.message("signal")
        task = signals.submit(signal)
        task.final.addCallback(self._concluded, element, account, call_id)

    def _concluded(self, final, element: domish.Element, account: str | None, call_id: str | None) -> None:
        if call_id is not None:
            self._stanzas.pop(call_id, None)
        if final.success:
            return
        messages = self.service.messages
        if account is not None and (final.code in KEEP_OFFLINE or 500 <= final.code < 600):
            messages.store(element, account)
            return
        self.log.info(
            "XMPP message from {sender} to {recipient} refused: {code} {reason}",
            sender=element.getAttribute("from"), recipient=element.getAttribute("to"),
            code=final.code, reason=final.reason,
        )
        messages._refuse(element)

    # -- Signal to XMPP ------------------------------------------------------------

    def stanza_for(self, signal: Signal, session) -> domish.Element | None:
        """
        The stanza C{session} gets for MESSAGE C{signal}: the original when
        XMPP submitted it, else one made from the plain-text body.
        """
        account = session.account
        original = self._stanzas.get(signal.call_id)
        if original is not None:
            to = original.getAttribute("to")
            if bare_of(to) != account:
                to = account
            return copy_stanza(original, to=to)
        text = body_text(signal)
        if text is None:
            return None
        message = domish.Element((NS_CLIENT, "message"))
        message["type"] = "chat"
        message["id"] = "cg-" + os.urandom(8).hex()
        message["from"] = address_to_jid(signal.from_address, session.jid.host)
        message["to"] = account
        message.addElement("body", content=text)
        return message

    def delivered(self, siblings: _Siblings, element: domish.Element) -> None:
        self.service.metrics.message("delivered")
        if not siblings.copied:
            siblings.copied = True
            self.service.carbons.received(siblings.account, element, siblings.jids)

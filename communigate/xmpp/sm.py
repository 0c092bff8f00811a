"""
XEP-0198 Stream Management: acknowledgements and resumption.

  - The feature C{<sm xmlns='urn:xmpp:sm:3'/>} is offered with resource
    binding.  C{<enable/>} after binding turns it on (C{<enabled/>}, with
    an id and C{max} when C{resume='true'} was asked and the XMPP setting
    C{ResumeTimeout} is not 0); before binding, twice, or C{<r/>}/C{<a/>}
    without it: C{<failed><unexpected-request/></failed>}.
  - Both sides count stanzas (message, presence, iq) from C{<enable/>} on,
    modulo 2^32.  C{<r/>} is answered C{<a h='handled'/>}; the server asks
    with C{<r/>} after every 5 unacknowledged stanzas, and 2 seconds after
    the first of a smaller batch.  An C{<a/>} whose C{h} acknowledges more
    than was sent (also one going backwards, which looks the same modulo
    2^32) ends the stream with C{undefined-condition} and XEP-0198's
    C{<handled-count-too-high/>}; an C{h} that is no number 0..2^32-1 with
    C{undefined-condition}.  More than L{MAX_UNACKED} stanzas waiting for
    an acknowledgement end it with C{policy-violation}.
  - A resumable stream that loses its connection without a closing tag
    keeps its session ("hibernates") for C{ResumeTimeout} seconds: it stays
    bound and available, and stanzas for it wait in its queue.
    C{<resume previd h/>} on a new authenticated stream of the same account,
    before binding, takes the session over: C{<resumed h/>}, then every
    stanza the client did not acknowledge is sent again.  An unknown or
    expired id, or another account's: C{<failed><item-not-found/></failed>}
    (the client binds afresh).  A connection still open when its session is
    resumed elsewhere is closed with C{conflict}.
  - When a managed session ends for good (the timeout, a clean close, an
    error, an administrator's kill), every unacknowledged message with a
    body is kept offline for the account, as if it had never been sent
    (carbon copies and errors are not; they were copies).
"""

from __future__ import annotations

import os
from collections import deque

from twisted.logger import Logger
from twisted.words.xish import domish

from communigate.xmpp.carbons import NS_CARBONS
from communigate.xmpp.im import has_body, message_type
from communigate.xmpp.namespaces import NS_CLIENT, NS_STANZA_ERRORS, STANZA_KINDS
from communigate.xmpp.stanzas import has_child

NS_SM = "urn:xmpp:sm:3"
MODULUS = 2**32
#: Stanzas that may wait for an acknowledgement before the stream ends.
MAX_UNACKED = 1000
#: Ask for an acknowledgement after this many stanzas ...
ACK_EVERY = 5
#: ... or this many seconds after the first unacknowledged one.
ACK_DELAY = 2.0


def _failed(condition: str, h: int | None = None) -> domish.Element:
    failed = domish.Element((NS_SM, "failed"))
    if h is not None:
        failed["h"] = str(h)
    failed.addElement((NS_STANZA_ERRORS, condition))
    return failed


def _counter(text: str | None) -> int | None:
    if text is None or not text.isdigit() or len(text) > 10:
        return None
    value = int(text)
    return value if value < MODULUS else None


class HandledTooHigh(ValueError):
    """An acknowledgement of stanzas that were never sent."""


class ManagedStream:
    """
    The XEP-0198 state of one session: counters, the unacknowledged
    stanzas, and hibernation.  Moves to the new stream on resumption.
    """

    def __init__(self, manager: StreamManagement, stream, resumable: bool) -> None:
        self._manager = manager
        self.stream = stream
        self.id = os.urandom(12).hex() if resumable else None
        self.handled = 0  # stanzas received from the client
        self.sent = 0  # stanzas sent to the client
        self.acked = 0  # of those, acknowledged
        self.queue: deque = deque()
        self.hibernating = False
        self._expiry = None
        self._request = None
        self._requested_at = 0
        self._overflowing = False

    @property
    def resumable(self) -> bool:
        return self.id is not None

    # -- counting --------------------------------------------------------------

    def received(self) -> None:
        self.handled = (self.handled + 1) % MODULUS

    def sending(self, element: domish.Element) -> None:
        self.sent = (self.sent + 1) % MODULUS
        self.queue.append(element)
        if self.hibernating:
            if len(self.queue) > MAX_UNACKED:
                self._manager.log.info("Hibernating XMPP session {jid} has too many stanzas waiting; it ends",
                                       jid=self.stream.jid.full())
                self.end_hibernation()
            return
        if len(self.queue) > MAX_UNACKED:
            if not self._overflowing:
                # Not from inside send(): the stream ends on the next turn.
                self._overflowing = True
                self._manager.clock.callLater(0, self.stream.close, "policy-violation",
                                              f"more than {MAX_UNACKED} stanzas unacknowledged")
            return
        if (self.sent - self._requested_at) % MODULUS >= ACK_EVERY:
            self.request_ack()
        elif self._request is None:
            self._request = self._manager.clock.callLater(ACK_DELAY, self._timed_request)

    def _timed_request(self) -> None:
        self._request = None
        if self.queue and not self.hibernating:
            self.request_ack()

    def request_ack(self) -> None:
        self._cancel_request()
        self._requested_at = self.sent
        self.stream.send(domish.Element((NS_SM, "r")))

    def _cancel_request(self) -> None:
        if self._request is not None and self._request.active():
            self._request.cancel()
        self._request = None

    def acknowledge(self, h: int) -> None:
        """
        The client handled C{h} stanzas in all.

        @raise HandledTooHigh: C{h} counts stanzas never sent.
        """
        newly = (h - self.acked) % MODULUS
        if newly > len(self.queue):
            raise HandledTooHigh(f"h={h} but only {self.sent} stanzas were sent")
        for _ in range(newly):
            self.queue.popleft()
        self.acked = h

    # -- the end and hibernation -------------------------------------------------

    def hibernate(self) -> bool:
        """
        The connection is gone without a closing tag: keep the session for
        resumption, if it may be resumed.  Whether it hibernates.
        """
        timeout = self._manager.resume_timeout()
        if not self.resumable or timeout <= 0:
            return False
        self._cancel_request()
        self.hibernating = True
        self._expiry = self._manager.clock.callLater(timeout, self.end_hibernation)
        self._manager.log.info("XMPP session {jid} hibernates for {timeout} s", jid=self.stream.jid.full(),
                               timeout=timeout)
        return True

    def end_hibernation(self) -> None:
        """
        Nobody resumed in time (or the session was killed): it ends now.
        """
        if not self.hibernating:
            return
        self.hibernating = False
        if self._expiry is not None and self._expiry.active():
            self._expiry.cancel()
        self._expiry = None
        self.stream.finish_session()

    def ended(self) -> None:
        """
        The session is over for good: what was not acknowledged and can be
        kept is kept offline.
        """
        self._cancel_request()
        self._manager.forget(self)
        undelivered, self.queue = list(self.queue), deque()
        account = self.stream.account
        for element in undelivered:
            if _worth_keeping(element):
                self._manager.keep(account, element)

    def resumed_on(self, stream) -> list:
        if self._expiry is not None and self._expiry.active():
            self._expiry.cancel()
        self._expiry = None
        self.hibernating = False
        self.stream = stream
        stream.management = self
        pending, self.queue = list(self.queue), deque()
        self.sent = self.acked
        self._requested_at = self.acked
        return pending


def _worth_keeping(element: domish.Element) -> bool:
    return (
        element.name == "message"
        and element.uri == NS_CLIENT
        and message_type(element) in ("chat", "normal")
        and has_body(element)
        and not has_child(element, NS_CARBONS)
    )


class StreamManagement:
    """
    XEP-0198 for one XMPP service: the nonzas, and the resumable sessions
    by id.
    """

    log = Logger()

    def __init__(self, service) -> None:
        self._service = service
        self.clock = service.clock
        self._resumable: dict[str, ManagedStream] = {}

    def install(self) -> None:
        dispatcher = self._service.dispatcher
        for name in ("enable", "resume", "r", "a"):
            dispatcher.register_nonza(NS_SM, name, self.element)
        self._service.add_stream_feature(lambda stream: domish.Element((NS_SM, "sm")))

    def resume_timeout(self) -> float:
        return self._service.settings.resume_timeout

    def forget(self, managed: ManagedStream) -> None:
        if managed.id is not None and self._resumable.get(managed.id) is managed:
            del self._resumable[managed.id]

    def keep(self, account: str, element: domish.Element) -> None:
        self._service.messages.store(element, account)

    def sessions_waiting(self) -> int:
        """
        How many sessions hibernate now.
        """
        return sum(1 for managed in self._resumable.values() if managed.hibernating)

    # -- the nonzas ---------------------------------------------------------------

    def element(self, stream, element: domish.Element) -> None:
        getattr(self, f"_{element.name}")(stream, element)

    def _enable(self, stream, element: domish.Element) -> None:
        from communigate.xmpp.c2s import StreamState

        if stream.state is not StreamState.ESTABLISHED or stream.management is not None:
            stream.send(_failed("unexpected-request"))
            return
        wanted = element.getAttribute("resume", "false") in ("true", "1")
        timeout = self.resume_timeout()
        managed = ManagedStream(self, stream, resumable=wanted and timeout > 0)
        stream.management = managed
        enabled = domish.Element((NS_SM, "enabled"))
        if managed.resumable:
            self._resumable[managed.id] = managed
            enabled["id"] = managed.id
            enabled["resume"] = "true"
            enabled["max"] = str(int(timeout))
        stream.send(enabled)
        self._service.metrics.stream_management("enabled")

    def _resume(self, stream, element: domish.Element) -> None:
        from communigate.xmpp.c2s import StreamState

        if stream.state is not StreamState.BINDING:
            stream.send(_failed("unexpected-request"))
            return
        h = _counter(element.getAttribute("h"))
        managed = self._resumable.get(element.getAttribute("previd", ""))
        if h is None:
            stream.send(_failed("bad-request"))
            return
        if managed is None or managed.stream.account != stream.account:
            stream.send(_failed("item-not-found"))
            self._service.metrics.stream_management("resume failed")
            return
        try:
            managed.acknowledge(h)
        except HandledTooHigh as e:
            failed = _failed("undefined-condition")
            failed.addChild(_too_high(h, managed.sent))
            stream.send(failed)
            self.log.info("XMPP resumption refused: {error}", error=e)
            return
        old = managed.stream
        connected = not managed.hibernating
        stream.take_over(old)
        pending = managed.resumed_on(stream)
        resumed = domish.Element((NS_SM, "resumed"))
        resumed["previd"] = managed.id
        resumed["h"] = str(managed.handled)
        stream.send(resumed)
        for queued in pending:
            stream.send(queued)
        if connected:
            old.management = None
            old.close("conflict", "the session was resumed on another connection")
        self._service.metrics.stream_management("resumed")
        self.log.info("XMPP session {jid} resumed, {count} stanzas sent again", jid=stream.jid.full(),
                      count=len(pending))

    def _r(self, stream, element: domish.Element) -> None:
        managed = stream.management
        if managed is None:
            stream.send(_failed("unexpected-request"))
            return
        answer = domish.Element((NS_SM, "a"))
        answer["h"] = str(managed.handled)
        stream.send(answer)

    def _a(self, stream, element: domish.Element) -> None:
        managed = stream.management
        if managed is None:
            stream.send(_failed("unexpected-request"))
            return
        h = _counter(element.getAttribute("h"))
        if h is None:
            stream.close("undefined-condition", "the h of an <a/> must be a number from 0 to 2^32-1")
            return
        try:
            managed.acknowledge(h)
        except HandledTooHigh as e:
            stream.close("undefined-condition", str(e), _too_high(h, managed.sent))


def _too_high(h: int, sent: int) -> domish.Element:
    element = domish.Element((NS_SM, "handled-count-too-high"))
    element["h"] = str(h)
    element["send-count"] = str(sent)
    return element


def stanza_counted(element: domish.Element) -> bool:
    """
    Whether XEP-0198 counts C{element}: a stanza, not a nonza.
    """
    return element.uri == NS_CLIENT and element.name in STANZA_KINDS

"""
One outgoing link: everything we send from one of our domains to one
remote domain, over at most one L{OutboundStream} at a time.

  RESOLVING ──addresses──▶ CONNECTING ──connected──▶ NEGOTIATING
      │                      │ (next address on failure)   │ db:result valid
      └──────── failure, or S2SConnectTimeout ────────────┤
                                                           ▼
  CLOSED ◀── failure / idle (S2SIdleTimeout) / closed ── READY

  - Stanzas wait in a queue until READY, then go out in order; when the
    link fails they are bounced to their senders with the stanza error
    of the failure (C{remote-server-not-found}, C{remote-server-timeout};
    C{resource-constraint} when the queue is full).
  - Dialback verifications (we are the Receiving Server checking a key
    the remote domain's server gave us) are sent as soon as the stream is
    open, before or after our own dialback, and answered from the
    C{<db:verify/>} that comes back; each has the connect timeout.
  - A link idle for S2SIdleTimeout seconds closes its stream; the next
    stanza opens a new one.

The link's timers run on the service's clock.  A closed link is out of
the service's table: nothing reuses it.
"""

from __future__ import annotations

import enum

import attrs
from twisted.internet.defer import CancelledError, Deferred, fail
from twisted.logger import Logger
from twisted.words.xish import domish

from communigate.xmpp import dialback
from communigate.xmpp.s2s import S2SFailure, to_server_namespace
from communigate.xmpp.s2s_out import OutboundState, OutboundStream

#: Stanzas one link holds while it connects.
MAX_QUEUED = 1000

#: Dialback verifications one link may have waiting.
MAX_VERIFICATIONS = 100


class LinkState(enum.Enum):
    RESOLVING = "resolving"
    CONNECTING = "connecting"
    NEGOTIATING = "negotiating"
    READY = "ready"
    CLOSED = "closed"


@attrs.define(eq=False)
class Verification:
    """
    A key we asked the remote domain's authoritative server about.
    """

    stream_id: str
    key: str
    deferred: Deferred
    timer: object = None
    sent: bool = False


class OutgoingLink:
    """
    Our domain C{local} talking to C{remote}.

    @ivar stream: the L{OutboundStream} in use, or L{None}.
    @ivar address: the C{(ip, port)} connected to, or L{None}.
    """

    log = Logger()

    def __init__(self, service, local: str, remote: str) -> None:
        self.service = service
        self.local = local
        self.remote = remote
        self.state = LinkState.RESOLVING
        self.started = service.clock.seconds()
        self.stream: OutboundStream | None = None
        self.address: tuple[str, int] | None = None
        self._queue: list[domish.Element] = []
        self._verifications: list[Verification] = []
        self._targets: list[tuple[str, int]] = []
        self._attempt: Deferred | None = None
        self._last_failure: S2SFailure | None = None
        self._deadline = None
        self._idle = None
        self._started = False

    # -- listing -----------------------------------------------------------------

    @property
    def details(self) -> dict:
        stream = self.stream
        return {
            "Direction": "out",
            "Local": [self.local],
            "Remote": [self.remote],
            "Address": f"[{self.address[0]}]:{self.address[1]}" if self.address else "",
            "TLS": "YES" if stream is not None and stream.tls else "NO",
            "State": self.state.value,
            "Auth": (stream.auth_method or "") if stream is not None and self.state is LinkState.READY else "",
            "Queued": str(len(self._queue)),
            "Stanzas": str(stream.stanzas if stream is not None else 0),
        }

    # -- start -------------------------------------------------------------------

    def _start_once(self) -> None:
        """
        Locate and connect, the first time the link has something to do.
        """
        if self._started:
            return
        self._started = True
        timeout = self.service.settings.s2s_connect_timeout
        self._deadline = self.service.clock.callLater(timeout, self._timed_out)
        self._attempt = self.service.locate(self.remote)
        self._attempt.addCallbacks(self._located, self._not_located)

    def _located(self, addresses: list[tuple[str, int]]) -> None:
        self._attempt = None
        if self.state is LinkState.CLOSED:
            return
        self._targets = list(addresses)
        self._next_address()

    def _not_located(self, failure) -> None:
        self._attempt = None
        if failure.check(CancelledError) or self.state is LinkState.CLOSED:
            return
        if failure.check(S2SFailure) is None:
            self.log.failure("XMPP s2s: locating {remote} failed", failure, remote=self.remote)
            self.fail(S2SFailure("remote-server-not-found", f"{self.remote} could not be located"))
            return
        self.fail(failure.value)

    def _next_address(self) -> None:
        if not self._targets:
            self.fail(
                self._last_failure or S2SFailure("remote-server-not-found", f"no server of {self.remote} answered")
            )
            return
        self.state = LinkState.CONNECTING
        address = self._targets.pop(0)
        self.log.info("XMPP s2s: connecting to {remote} at {address}", remote=self.remote, address=address)
        self._attempt = self.service.connect(address[0], address[1], lambda: OutboundStream(self))
        self._attempt.addCallbacks(
            self._connected, self._not_connected, callbackArgs=(address,), errbackArgs=(address,)
        )

    def _connected(self, stream: OutboundStream, address) -> None:
        self._attempt = None
        if self.state is LinkState.CLOSED:
            stream.end()
            return
        self.stream = stream
        self.address = address
        self.state = LinkState.NEGOTIATING

    def _not_connected(self, failure, address) -> None:
        self._attempt = None
        if failure.check(CancelledError) or self.state is LinkState.CLOSED:
            return
        self.log.info(
            "XMPP s2s: cannot connect to {remote} at {address}: {error}",
            remote=self.remote,
            address=address,
            error=failure.getErrorMessage(),
        )
        self._last_failure = S2SFailure(
            "remote-server-not-found", f"cannot connect to {self.remote}: {failure.getErrorMessage()}"
        )
        self._next_address()

    def _timed_out(self) -> None:
        self._deadline = None
        if self.state not in (LinkState.READY, LinkState.CLOSED):
            seconds = self.service.settings.s2s_connect_timeout
            self.fail(
                S2SFailure("remote-server-timeout", f"no authenticated stream to {self.remote} within {seconds:g} s")
            )

    # -- what the stream tells ---------------------------------------------------

    def stream_open(self, stream: OutboundStream) -> None:
        """
        The stream is secured and ready for dialback.
        """
        for verification in self._verifications:
            if not verification.sent:
                self._send_verification(verification)
        try:
            key = self.service.dialback_key(receiving=self.remote, originating=self.local, stream_id=stream.stream_id)
        except UnicodeError:
            stream.fail(S2SFailure("remote-server-not-found", "the remote stream id is not ASCII"), "bad-format")
            return
        stream.authenticate(key)

    def stream_authenticated(self, stream: OutboundStream) -> None:
        """
        The stream is authenticated (C{stream.auth_method}): by dialback,
        or by certificate, in which case no dialback was sent and the
        verifications waiting go out now.
        """
        self.state = LinkState.READY
        if stream.auth_method == "dialback":
            self.service.metrics.dialback("outgoing", dialback.VALID)
            self.log.info(
                "XMPP s2s: {local} authenticated to {remote} by dialback", local=self.local, remote=self.remote
            )
        else:
            for verification in self._verifications:
                if not verification.sent:
                    self._send_verification(verification)
        if self._deadline is not None and self._deadline.active():
            self._deadline.cancel()
        self._deadline = None
        queued, self._queue = self._queue, []
        for element in queued:
            stream.send_stanza(to_server_namespace(element))
        self._touch()

    def verify_answered(self, stream: OutboundStream, answer: dialback.DialbackElement) -> None:
        for verification in self._verifications:
            if verification.sent and verification.stream_id == answer.stream_id:
                break
        else:
            self.service.metrics.dropped("dialback verify answer nobody asked for")
            self.log.info(
                "XMPP s2s: {remote} answered a db:verify nobody asked ({id})", remote=self.remote, id=answer.stream_id
            )
            return
        if (answer.sender, answer.recipient) != (self.remote, self.local):
            self._finish_verification(
                verification, S2SFailure("remote-server-not-found", "the verify answer names other domains")
            )
        elif answer.type == dialback.ERROR:
            self._finish_verification(
                verification,
                S2SFailure("remote-server-not-found", f"{self.remote} answered error ({answer.condition})"),
            )
        else:
            self._finish_verification(verification, answer.type)

    def stream_ended(self, stream: OutboundStream) -> None:
        if stream is not self.stream or self.state is LinkState.CLOSED:
            return
        if self.state is LinkState.READY and not self._queue and not self._verifications:
            self.log.info("XMPP s2s: the stream from {local} to {remote} ended", local=self.local, remote=self.remote)
            self._close()
            return
        self.fail(stream.failure or S2SFailure("remote-server-not-found", f"the connection to {self.remote} ended"))

    # -- what the service asks -----------------------------------------------------

    def send(self, element: domish.Element) -> None:
        """
        Send stanza C{element} (as a local client wrote it, C{jabber:client}).
        """
        if self.state is LinkState.READY:
            self.stream.send_stanza(to_server_namespace(element))
            self._touch()
        elif self.state is LinkState.CLOSED:
            self.service.bounce(element, "remote-server-not-found", f"the link to {self.remote} is closed")
        elif len(self._queue) >= MAX_QUEUED:
            self.service.bounce(element, "resource-constraint", f"{MAX_QUEUED} stanzas already wait for {self.remote}")
        else:
            self._queue.append(element)
            self._start_once()

    def verify(self, stream_id: str, key: str) -> Deferred:
        """
        Ask the remote domain's authoritative server whether C{key} is the
        one it made for our incoming stream C{stream_id}.

        @return: a Deferred firing with C{valid} or C{invalid}, or failing
            with L{S2SFailure}; cancelling it forgets the question.
        """
        if self.state is LinkState.CLOSED:
            return fail(S2SFailure("remote-server-not-found", f"the link to {self.remote} is closed"))
        if len(self._verifications) >= MAX_VERIFICATIONS:
            return fail(
                S2SFailure("resource-constraint", f"{MAX_VERIFICATIONS} verifications already wait for {self.remote}")
            )
        verification = Verification(stream_id, key, Deferred(lambda d: self._forget(d)))
        verification.timer = self.service.clock.callLater(
            self.service.settings.s2s_connect_timeout, self._verification_timed_out, verification
        )
        self._verifications.append(verification)
        if self.stream is not None and self.stream.state in (OutboundState.AUTHENTICATING, OutboundState.ESTABLISHED):
            self._send_verification(verification)
        deferred = verification.deferred
        self._start_once()
        return deferred

    def _send_verification(self, verification: Verification) -> None:
        verification.sent = True
        self.stream.send_element(
            dialback.verify_request(self.local, self.remote, verification.stream_id, verification.key)
        )
        self._touch()

    def _verification_timed_out(self, verification: Verification) -> None:
        verification.timer = None
        self._finish_verification(
            verification, S2SFailure("remote-server-timeout", f"{self.remote} did not answer db:verify in time")
        )

    def _finish_verification(self, verification: Verification, outcome) -> None:
        if verification not in self._verifications:
            return
        self._verifications.remove(verification)
        if verification.timer is not None and verification.timer.active():
            verification.timer.cancel()
        if isinstance(outcome, S2SFailure):
            verification.deferred.errback(outcome)
        else:
            verification.deferred.callback(outcome)

    def _forget(self, deferred: Deferred) -> None:
        for verification in list(self._verifications):
            if verification.deferred is deferred:
                self._verifications.remove(verification)
                if verification.timer is not None and verification.timer.active():
                    verification.timer.cancel()

    # -- endings -------------------------------------------------------------------

    def _touch(self) -> None:
        if self._idle is not None and self._idle.active():
            self._idle.cancel()
        self._idle = self.service.clock.callLater(self.service.settings.s2s_idle_timeout, self._idle_expired)

    def _idle_expired(self) -> None:
        self._idle = None
        if self.state is LinkState.CLOSED:
            return
        if self._verifications:
            self._touch()
            return
        self.log.info(
            "XMPP s2s: the link from {local} to {remote} is idle: closing", local=self.local, remote=self.remote
        )
        self.close()

    def close(self) -> None:
        """
        End the link quietly (idle, shutdown); anything queued is bounced.
        """
        if self.state is LinkState.CLOSED:
            return
        if self._queue or self._verifications:
            self.fail(S2SFailure("remote-server-not-found", "the server is shutting down the link"))
            return
        self._close()

    def fail(self, failure: S2SFailure) -> None:
        """
        Give up: bounce what waits, fail the verifications, close.
        """
        if self.state is LinkState.CLOSED:
            return
        self.log.info(
            "XMPP s2s: the link from {local} to {remote} failed: {error}",
            local=self.local,
            remote=self.remote,
            error=failure.text,
        )
        queued, self._queue = self._queue, []
        verifications = list(self._verifications)
        self._close()
        for element in queued:
            self.service.bounce(element, failure.condition, failure.text)
        for verification in verifications:
            self._finish_verification(verification, failure)

    def _close(self) -> None:
        self.state = LinkState.CLOSED
        for timer in (self._deadline, self._idle):
            if timer is not None and timer.active():
                timer.cancel()
        self._deadline = self._idle = None
        self.service.link_closed(self)
        if self._attempt is not None:
            attempt, self._attempt = self._attempt, None
            attempt.cancel()
        if self.stream is not None and not self.stream.closed:
            self.stream.end()

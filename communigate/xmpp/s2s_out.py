"""
An outgoing server-to-server stream (RFC 6120, XEP-0220): we opened it to
send stanzas from one of our domains to a remote one.

  OPENING ──peer's header──▶ FEATURES ──starttls offered──▶ SECURING
     ▲                          │                              │ <proceed/>
     ├────────── restart ───────┼──────────────────────────────┘
     │                          ├─▶ SASL (auth EXTERNAL sent) ──<failure/>──┐
     └──── restart ◀─<success/>─┘                                          │
                                └─▶ AUTHENTICATING (db:result sent) ◀──────┘
                                       ──type='valid'──▶ ESTABLISHED
  FEATURES after a SASL success ──▶ ESTABLISHED
  any state ──stream error / close / refused──▶ CLOSED

After STARTTLS the peer's certificate decides how we authenticate
(RFC 6120 13.7.2, XEP-0178): when it verified against the trust store,
names the remote domain (L{communigate.certnames}) and the peer offers
SASL C{EXTERNAL}, we authenticate with our certificate and no dialback
is done; otherwise -- no EXTERNAL, a SASL failure, a certificate that
does not verify -- dialback, as before.

The stream only speaks; its L{communigate.xmpp.s2s_link.OutgoingLink}
decides: when the stream is open (secured, features read) the link sends
its pending C{<db:verify/>} requests and has the stream authenticate
with the key for the stream's id; answers come back to the link.
"""

from __future__ import annotations

import enum

from twisted.internet.interfaces import ITLSTransport
from twisted.words.xish import domish

from communigate.xmpp import dialback, s2s_sasl
from communigate.xmpp.namespaces import NS_DIALBACK, NS_SASL, NS_SERVER, NS_STREAMS, NS_TLS, STANZA_KINDS
from communigate.xmpp.parser import StreamOpened
from communigate.xmpp.s2s import S2SFailure, ServerStream, stream_header
from communigate.xmpp.s2s_tls import NO_IDENTITY


class OutboundState(enum.Enum):
    OPENING = "opening"
    FEATURES = "features"
    SECURING = "securing"
    SASL = "sasl"
    AUTHENTICATING = "authenticating"
    ESTABLISHED = "established"
    CLOSED = "closed"


class OutboundStream(ServerStream):
    """
    The originating side of one connection to a remote server.

    @ivar link: the L{OutgoingLink} it serves.
    @ivar stream_id: the id the peer gave the stream (our dialback key is
        made for it).
    """

    direction = "out"

    def __init__(self, link) -> None:
        super().__init__(link.service)
        self.link = link
        self.state = OutboundState.OPENING
        self.stream_id: str | None = None
        self.stanzas = 0
        self.failure: S2SFailure | None = None
        #: How the stream authenticated: C{certificate}, C{dialback} or None.
        self.auth_method: str | None = None
        self.identity = NO_IDENTITY
        self._tls_check = None

    def connectionMade(self) -> None:
        super().connectionMade()
        self._open()

    def _open(self) -> None:
        self.state = OutboundState.OPENING
        self.write(stream_header(self.link.local, self.link.remote))

    # -- what the link asks ----------------------------------------------------

    def authenticate(self, key: str) -> None:
        """
        Ask to send as the link's local domain (C{<db:result/>}).
        """
        self.send_element(dialback.result_request(self.link.local, self.link.remote, key))

    def send_stanza(self, element: domish.Element) -> None:
        """
        Send C{element}, already in the C{jabber:server} namespace.
        """
        self.stanzas += 1
        self.service.metrics.stanza("out", element.name)
        self.send_element(element)

    def fail(self, failure: S2SFailure, condition: str | None = None) -> None:
        """
        Give up on the stream: remember why (the link bounces with it) and
        close, with stream error C{condition} when given.
        """
        if self.failure is None:
            self.failure = failure
        if condition is not None:
            self.close(condition, failure.text)
        else:
            self.end()

    # -- what the peer says ----------------------------------------------------

    def header_received(self, header: StreamOpened) -> None:
        if (header.namespace, header.name) != (NS_STREAMS, "stream") or header.content_namespace != NS_SERVER:
            self.fail(_refused("its stream is not a jabber:server stream"), "invalid-namespace")
            return
        version = header.attributes.get("version", "")
        major, dot, minor = version.partition(".")
        if not (dot and major.isdigit() and minor.isdigit() and int(major) >= 1):
            self.fail(_refused("it does not speak XMPP 1.0 streams"), "unsupported-version")
            return
        stream_id = header.attributes.get("id")
        if not stream_id or len(stream_id) > 256:
            self.fail(_refused("its stream header has no usable id"), "bad-format")
            return
        self.stream_id = stream_id
        self.state = OutboundState.FEATURES

    def element_received(self, element: domish.Element) -> None:
        state = self.state
        if state is OutboundState.FEATURES and (element.uri, element.name) == (NS_STREAMS, "features"):
            self._features(element)
        elif state is OutboundState.SECURING and element.uri == NS_TLS:
            self._tls_answer(element)
        elif state is OutboundState.SASL and element.uri == NS_SASL:
            self._sasl_answer(element)
        elif element.uri == NS_DIALBACK and state in (OutboundState.AUTHENTICATING, OutboundState.ESTABLISHED):
            self._dialback_answer(element)
        elif element.uri == NS_SERVER and element.name in STANZA_KINDS and state is OutboundState.ESTABLISHED:
            # RFC 6120: a server stream carries stanzas one way only.
            self.service.metrics.dropped("stanza received on an outgoing stream")
            self.log.info("XMPP s2s out {remote}: a stanza on our outgoing stream dropped", remote=self.link.remote)
        else:
            self.fail(_refused(f"it sent {element.name[:40]!r} when not expected"), "unsupported-stanza-type")

    def _features(self, features: domish.Element) -> None:
        offered = {(child.uri, child.name) for child in features.elements()}
        if not self.tls and (NS_TLS, "starttls") in offered:
            self.state = OutboundState.SECURING
            self.write(f"<starttls xmlns='{NS_TLS}'/>".encode())
            return
        if not self.tls and self.service.settings.s2s_require_tls:
            self.fail(_refused("it does not offer STARTTLS, which S2SRequireTLS requires"), "policy-violation")
            return
        if self.auth_method == "certificate":
            self.state = OutboundState.ESTABLISHED
            self.link.stream_authenticated(self)
            return
        if self.tls and self._try_external(features):
            return
        self.state = OutboundState.AUTHENTICATING
        self.link.stream_open(self)

    def _try_external(self, features: domish.Element) -> bool:
        """
        Authenticate with our certificate when the peer's proves its
        domain and it offers EXTERNAL; C{False} means dialback.
        """
        remote = self.link.remote
        if self._tls_check is not None:
            self.identity = self._tls_check.identity(self.transport)
        if not self.identity.proves(remote):
            self.log.info(
                "XMPP s2s out {remote}: dialback, its certificate does not prove it ({why})",
                remote=remote,
                why=self.identity.why_not(remote),
            )
            return False
        if s2s_sasl.EXTERNAL not in s2s_sasl.offered(features):
            self.log.info(
                "XMPP s2s out {remote}: dialback, it does not offer SASL EXTERNAL (it may not trust our certificate)",
                remote=remote,
            )
            return False
        self.state = OutboundState.SASL
        self.send_element(s2s_sasl.auth_external(self.link.local))
        return True

    def _sasl_answer(self, element: domish.Element) -> None:
        remote = self.link.remote
        if element.name == "success":
            self.service.metrics.auth("out", "certificate", "ok")
            self.log.info(
                "XMPP s2s: {local} authenticated to {remote} by certificate (SASL EXTERNAL)",
                local=self.link.local,
                remote=remote,
            )
            self.auth_method = "certificate"
            self.restart()
            self._open()
        elif element.name == "failure":
            self.service.metrics.auth("out", "certificate", "failed")
            self.log.info(
                "XMPP s2s out {remote}: SASL EXTERNAL failed ({condition}); trying dialback",
                remote=remote,
                condition=s2s_sasl.failure_condition(element),
            )
            self.state = OutboundState.AUTHENTICATING
            self.link.stream_open(self)
        else:
            self.service.metrics.auth("out", "certificate", "failed")
            self.fail(_refused(f"it answered SASL EXTERNAL with {element.name[:40]!r}"), "policy-violation")

    def _tls_answer(self, element: domish.Element) -> None:
        if element.name != "proceed" or not ITLSTransport.providedBy(self.transport):
            self.fail(_refused("its STARTTLS failed"))
            return
        self._tls_check = self.service.certificates.client(self.link.remote)
        self.transport.startTLS(self._tls_check.creator)
        self.tls = True
        self.restart()
        self._open()

    def _dialback_answer(self, element: domish.Element) -> None:
        try:
            answer = dialback.read(element)
        except dialback.DialbackFault as fault:
            self.fail(_refused(fault.text), fault.condition)
            return
        if answer.is_request:
            self.fail(_refused("it sent a dialback request on our outgoing stream"), "unsupported-stanza-type")
        elif answer.kind == "verify":
            self.link.verify_answered(self, answer)
        elif (answer.sender, answer.recipient) != (self.link.remote, self.link.local):
            self.fail(_refused("its dialback answer names other domains"), "invalid-from")
        elif self.state is not OutboundState.AUTHENTICATING:
            self.service.metrics.dropped("dialback answer for an authenticated stream")
        elif answer.type == dialback.VALID:
            self.state = OutboundState.ESTABLISHED
            self.auth_method = "dialback"
            self.service.metrics.auth("out", "dialback", "ok")
            self.link.stream_authenticated(self)
        elif answer.type == dialback.INVALID:
            self.service.metrics.dialback("outgoing", dialback.INVALID)
            self.service.metrics.auth("out", "dialback", "failed")
            self.fail(_refused("it found our dialback key invalid"))
        else:
            self.service.metrics.dialback("outgoing", dialback.ERROR)
            self.service.metrics.auth("out", "dialback", "failed")
            condition = answer.condition if answer.condition == "remote-server-timeout" else "remote-server-not-found"
            self.fail(
                S2SFailure(condition, f"{self.link.remote} could not check our dialback key ({answer.condition})")
            )

    def remote_error(self, condition: str) -> None:
        if self.failure is None:
            self.failure = _refused(f"it ended the stream with {condition}")

    def stream_ended(self) -> None:
        self.state = OutboundState.CLOSED
        self.link.stream_ended(self)


def _refused(text: str) -> S2SFailure:
    return S2SFailure("remote-server-not-found", f"the remote server refused: {text}")

"""
Server-to-server XMPP (RFC 6120 with Server Dialback, XEP-0220): what the
incoming and the outgoing streams share.

A server-to-server stream is one-way: the server that opened it sends
stanzas, the other only answers negotiation (STARTTLS, dialback).  So
every pair of servers that talk both ways has two TCP connections:

  - L{communigate.xmpp.s2s_out.OutboundStream}: we opened it, secure it
    with STARTTLS and authenticate our domain with dialback; local
    stanzas for the remote domain go out over it (an
    L{communigate.xmpp.s2s_link.OutgoingLink} per domain pair keeps it,
    queues while it connects and bounces on failure);
  - L{communigate.xmpp.s2s_in.InboundStream}: the peer opened it; we
    offer STARTTLS, check its dialback keys by asking its authoritative
    server (over our outgoing link to that domain) and accept stanzas for
    local JIDs from the domains it proved.

Both read the stream with the sans-IO L{StreamParser} (restricted XML,
size limits) and share L{ServerStream}, the thin protocol shell: bytes to
parser events, stream errors, the header, serialisation in the
C{jabber:server} namespace.
"""

from __future__ import annotations

import os
from xml.sax.saxutils import quoteattr

from twisted.internet.protocol import Protocol
from twisted.logger import Logger
from twisted.words.protocols.jabber.error import StreamError
from twisted.words.xish import domish

from communigate.xmpp.namespaces import NS_CLIENT, NS_DIALBACK, NS_SERVER, NS_STREAMS
from communigate.xmpp.parser import ElementReceived, StreamClosed, StreamFault, StreamOpened, StreamParser

#: How a server-to-server stream writes its namespaces.
PREFIXES = {NS_STREAMS: "stream", NS_DIALBACK: "db"}
PREFIXES_IN_SCOPE = ["stream", "db"]

#: The port of RFC 6120 section 3.2 when DNS names none.
DEFAULT_PORT = 5269


class S2SFailure(Exception):
    """
    A remote domain could not be reached or would not let us in.

    @ivar condition: the stanza error condition bounced to senders
        (C{remote-server-not-found}, C{remote-server-timeout}, ...).
    @ivar text: why, for the log and the bounce.
    """

    def __init__(self, condition: str, text: str) -> None:
        super().__init__(f"{condition}: {text}")
        self.condition = condition
        self.text = text


def new_stream_id() -> str:
    """
    A fresh stream id: 128 random bits in hex, so a dialback key made for
    one stream is never good for another.
    """
    return os.urandom(16).hex()


def stream_header(sender: str | None, recipient: str | None, stream_id: str | None = None) -> bytes:
    """
    The opening tag of a server stream from C{sender} to C{recipient},
    declaring the dialback namespace.
    """
    parts = [
        "<?xml version='1.0'?><stream:stream",
        f" xmlns='{NS_SERVER}' xmlns:stream='{NS_STREAMS}' xmlns:db='{NS_DIALBACK}'",
    ]
    if sender:
        parts.append(f" from={quoteattr(sender)}")
    if recipient:
        parts.append(f" to={quoteattr(recipient)}")
    if stream_id:
        parts.append(f" id={quoteattr(stream_id)}")
    parts.append(" version='1.0' xml:lang='en'>")
    return "".join(parts).encode("utf-8")


def renamespaced(element: domish.Element, old: str, new: str) -> domish.Element:
    """
    A copy of C{element} in which what was in namespace C{old} (the stanza
    and the children that inherit its namespace) is in C{new}: stanzas
    are C{jabber:client} on client streams and C{jabber:server} on server
    streams (RFC 6120 section 4.8.3).  Extension payloads keep theirs.
    """
    uri = new if element.uri == old else element.uri
    default = new if element.defaultUri == old else element.defaultUri
    copy = domish.Element((uri, element.name), default, dict(element.attributes), dict(element.localPrefixes))
    for child in element.children:
        if isinstance(child, domish.Element):
            copy.addChild(renamespaced(child, old, new))
        else:
            copy.addContent(child)
    return copy


def to_server_namespace(element: domish.Element) -> domish.Element:
    return renamespaced(element, NS_CLIENT, NS_SERVER)


def to_client_namespace(element: domish.Element) -> domish.Element:
    return renamespaced(element, NS_SERVER, NS_CLIENT)


def serialize(element: domish.Element) -> bytes:
    """
    C{element} as written on a server stream.
    """
    return element.toXml(prefixes=PREFIXES, prefixesInScope=PREFIXES_IN_SCOPE, defaultUri=NS_SERVER).encode("utf-8")


class ServerStream(Protocol):
    """
    What both directions of a server stream do with bytes: feed the
    parser, hand header, elements and the close to the subclass, end with
    a stream error when the parser or the subclass says so.

    Subclasses implement L{header_received}, L{element_received},
    L{peer_closed} and L{stream_ended}, and set L{service}.

    @ivar service: the L{communigate.xmpp.s2s_service.S2SService}.
    @ivar closed: whether the stream is over (no more is read or sent).
    @ivar tls: whether TLS is on.
    """

    log = Logger()
    direction = "?"

    def __init__(self, service) -> None:
        self.service = service
        self.closed = False
        self.tls = False
        self.peer = ("", 0)
        self.started = 0.0
        self._parser: StreamParser | None = None
        self._ending = False

    # -- the transport ---------------------------------------------------------

    def connectionMade(self) -> None:
        peer = self.transport.getPeer()
        self.peer = (getattr(peer, "host", ""), getattr(peer, "port", 0))
        self.started = self.service.clock.seconds()
        self._parser = self._new_parser()

    def _new_parser(self) -> StreamParser:
        return StreamParser(self.service.settings.max_stanza_size)

    def restart(self) -> None:
        """
        Read a new stream from here on (after STARTTLS): a new parser, so
        nothing sent before the restart is acted on.
        """
        self._parser = self._new_parser()

    def write(self, data: bytes) -> None:
        if not self.closed:
            self.transport.write(data)

    def send_element(self, element: domish.Element) -> None:
        self.write(serialize(element))

    def dataReceived(self, data: bytes) -> None:
        if self.closed:
            return
        try:
            events = self._parser.feed(data)
        except StreamFault as fault:
            self.close(fault.condition, fault.text)
            return
        parser = self._parser
        for event in events:
            # A restart or a close drops whatever followed in the same read.
            if self.closed or self._parser is not parser:
                return
            if isinstance(event, StreamOpened):
                self.header_received(event)
            elif isinstance(event, ElementReceived):
                element = event.element
                if element.uri == NS_STREAMS and element.name == "error":
                    self.stream_error_received(element)
                else:
                    self.element_received(element)
            elif isinstance(event, StreamClosed):
                self.peer_closed()

    def close(self, condition: str, text: str) -> None:
        """
        End the stream with stream error C{condition}.
        """
        if self.closed:
            return
        self.before_error()
        self.service.metrics.stream_error(self.direction, condition)
        self.log.info(
            "XMPP s2s {direction} stream {peer} closed with {condition}: {text}",
            direction=self.direction,
            peer=self.peer,
            condition=condition,
            text=text,
        )
        error = StreamError(condition, text=text).getElement()
        self.write(error.toXml(prefixes=PREFIXES, prefixesInScope=PREFIXES_IN_SCOPE).encode("utf-8"))
        self.end()

    def end(self) -> None:
        """
        Close our stream and the connection.
        """
        if self.closed:
            return
        self.write(b"</stream:stream>")
        self.closed = True
        self.transport.loseConnection()
        self.stream_ended()

    def connectionLost(self, reason=None) -> None:
        was_closed, self.closed = self.closed, True
        if not was_closed:
            self.stream_ended()
        self.connection_gone()

    # -- for subclasses --------------------------------------------------------

    def before_error(self) -> None:
        """
        Called before a stream error is written (to send a header first).
        """

    def header_received(self, header: StreamOpened) -> None:
        raise NotImplementedError

    def element_received(self, element: domish.Element) -> None:
        raise NotImplementedError

    def stream_error_received(self, element: domish.Element) -> None:
        condition = next((child.name for child in element.elements() if child.name != "text"), "undefined-condition")
        self.log.info(
            "XMPP s2s {direction} stream {peer}: the peer sent stream error {condition}",
            direction=self.direction,
            peer=self.peer,
            condition=condition,
        )
        self.remote_error(condition)
        self.end()

    def remote_error(self, condition: str) -> None:
        """
        The peer ended the stream with C{condition}.
        """

    def peer_closed(self) -> None:
        self.log.debug(
            "XMPP s2s {direction} stream {peer} closed by the peer", direction=self.direction, peer=self.peer
        )
        self.end()

    def stream_ended(self) -> None:
        """
        The stream is over (once, whichever side ended it).
        """

    def connection_gone(self) -> None:
        """
        The connection is gone.
        """

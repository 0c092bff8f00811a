"""
Message framing for SIP over stream transports (TCP, TLS; RFC 3261 §18.3,
RFC 5626 §4.4.1 keep-alives).  Sans-IO: feed it the octets a connection
delivers, get back events.

    framer = StreamFramer(max_message_size=65536)
    for event in framer.feed(data):
        match event:
            case Message(data=raw):   parse_message(raw) ...
            case KeepAlive(ping=True): answer one CRLF (the "pong")
            case KeepAlive():          the peer is alive (a pong, or half a ping)
            case FramingError():       answer if you can, then close

Keep-alives: between messages every CRLF gives one `KeepAlive`; the CRLF
that completes a double-CRLF ping has ``ping=True`` and wants a single
CRLF in answer.  So ``\\r\\n\\r\\n`` yields ``[KeepAlive(False),
KeepAlive(True)]`` however it is split across reads.  Stray bare LFs
between messages are skipped.

Messages: the header section ends at the first empty line (CRLF CRLF;
bare LF tolerated as in `parse_message`); Content-Length (or ``l``) is
then required and gives the body length.  The framer does not parse
otherwise: a `Message` holds the exact octets of one message.

Errors end the stream: after a `FramingError` the framer discards its
buffer and ignores further input; the transport should send the response
(if any) and close.  ``status`` is 513 for a message over the size limit
(header section alone over it, or headers plus Content-Length over it), 400
for a missing, repeated or malformed Content-Length.  ``head`` carries the
header section when it was complete, so the transport can parse it (the
`SIPParseError.partial` of ``parse_message(head)``) and answer with
`make_response`.

Memory: the buffer never holds more than one message (at most
``max_message_size`` octets) plus what one `feed` call delivered after it.
"""

from __future__ import annotations

import re

import attrs

from communigate.sip.message import find_header_end

__all__ = ["StreamFramer", "Message", "KeepAlive", "FramingError"]


@attrs.frozen
class Message:
    """The octets of one complete message (headers and body)."""

    data: bytes


@attrs.frozen
class KeepAlive:
    """One CRLF between messages; ``ping`` when it completes a CRLFCRLF."""

    ping: bool = False


@attrs.frozen
class FramingError:
    """The stream cannot be framed any more; answer ``status`` and close."""

    reason: str
    status: int
    head: bytes = b""


_CONTENT_LENGTH = re.compile(rb"\n(?:content-length|l)[ \t]*:([^\r\n]*)")


class StreamFramer:
    """Split a SIP byte stream into messages and keep-alives."""

    def __init__(self, max_message_size: int = 65536):
        if max_message_size < 1:
            raise ValueError("max_message_size must be positive")
        self.max_message_size = max_message_size
        self._buffer = bytearray()
        self._scan = 0  # where to resume looking for the end of the headers
        self._need = None  # total length of the message being received
        self._half_ping = False  # the last event was a first CRLF
        self._failed = False

    @property
    def failed(self) -> bool:
        return self._failed

    @property
    def buffered(self) -> int:
        """Octets held, waiting for the rest of a message."""
        return len(self._buffer)

    def feed(self, data: bytes) -> list:
        """Add received octets; return the events they complete."""
        if self._failed:
            return []
        buf = self._buffer
        buf += data
        events = []
        while buf:
            if self._need is not None:
                if len(buf) < self._need:
                    break
                events.append(Message(bytes(buf[: self._need])))
                del buf[: self._need]
                self._need = None
                self._scan = 0
                continue
            first = buf[0]
            if first == 0x0D or first == 0x0A:  # CR or LF between messages
                if first == 0x0A:
                    del buf[:1]
                    continue
                if len(buf) < 2:
                    break  # a lone CR: wait for its LF
                if buf[1] == 0x0A:
                    del buf[:2]
                    events.append(KeepAlive(self._half_ping))
                    self._half_ping = not self._half_ping
                    continue
            self._half_ping = False
            found = find_header_end(buf, max(0, self._scan - 2))
            if found is None or found[1] > self.max_message_size:
                if found is not None or len(buf) > self.max_message_size:
                    # the header section alone is over the limit
                    events.append(self._fail("Message Too Large", 513))
                    break
                self._scan = len(buf)
                break
            head = bytes(buf[: found[0]])
            error = self._frame(head, found[1])
            if error is not None:
                events.append(error)
                break
        return events

    def _frame(self, head: bytes, body_start: int):
        lengths = [v.strip(b" \t") for v in _CONTENT_LENGTH.findall(head.lower())]
        if not lengths:
            return self._fail("Missing Content-Length", 400, head)
        if len(lengths) > 1:
            return self._fail("Multiple Content-Length", 400, head)
        length = lengths[0]
        if not (length.isdigit() and len(length) <= 10):
            return self._fail("Bad Content-Length", 400, head)
        total = body_start + int(length)
        if total > self.max_message_size:
            return self._fail("Message Too Large", 513, head)
        self._need = total
        return None

    def _fail(self, reason: str, status: int, head: bytes = b"") -> FramingError:
        self._failed = True
        self._buffer.clear()
        self._need = None
        return FramingError(reason, status, head)

"""
The SIP log: the most recent SIP messages, searchable.

When a call fails, an operator asks "what did the phone send, and what did
we answer?"  Every message in and out is kept here, bounded by count and by
bytes so a flood cannot grow memory, and found again by Call-ID, method,
status, or any address or number it mentions (Request-URI, From, To,
Contact, source and destination).  The CLI's C{GETSIPLOG} reads it.
"""

import collections
import datetime

import attrs

from communigate.sip.message import SIPParseError, parse_message

IN = "in"
OUT = "out"


@attrs.define(slots=True)
class LogEntry:
    """
    One message as it crossed the wire.

    @ivar time: clock seconds.
    @ivar direction: C{"in"} or C{"out"}.
    @ivar transport: C{"udp"}, C{"tcp"} or C{"tls"}.
    @ivar peer: C{(host, port)} it came from or went to.
    @ivar call_id: the Call-ID, or empty when it could not be parsed.
    @ivar method: the request method, or the CSeq method of a response.
    @ivar status: the response code, or 0 for a request.
    @ivar data: the message's octets, as they crossed the wire: the same
        object the transport received or sent (and a completed
        transaction keeps), not a copy; L{text} decodes it when asked.
    """

    time: float
    direction: str
    transport: str
    peer: tuple[str, int]
    call_id: str
    method: str
    status: int
    data: bytes
    _addresses: tuple[str, ...] | None = attrs.field(default=None, alias="addresses")

    @property
    def text(self) -> str:
        """
        The message as text (undecodable bytes replaced).
        """
        return self.data.decode("utf-8", "replace")

    @property
    def addresses(self) -> tuple[str, ...]:
        """
        The URIs and addresses the message names, lower case, with the
        peer.  Worked out from the text on the first search that asks,
        not for every message recorded: searches are rare, messages many.
        """
        if self._addresses is None:
            self._addresses = _addresses_in(self.text) + (f"{self.peer[0]}:{self.peer[1]}",)
        return self._addresses

    def first_line(self) -> str:
        return self.text.split("\r\n", 1)[0].split("\n", 1)[0]

    def as_data(self) -> dict:
        """
        The entry as a data-format dictionary, for the CLI.
        """
        moment = datetime.datetime.fromtimestamp(self.time, datetime.timezone.utc)
        return {
            "Time": moment.replace(tzinfo=None),
            "Direction": self.direction,
            "Transport": self.transport,
            "Peer": f"{self.peer[0]}:{self.peer[1]}",
            "Call-ID": self.call_id,
            "Method": self.method,
            "Status": str(self.status),
            "Line": self.first_line(),
            "Message": self.text,
        }


class SIPLog:
    """
    A ring of recent messages.

    @param capacity: at most this many messages are kept.
    @param max_bytes: and at most this many octets of messages; the
        oldest go first.
    """

    def __init__(self, clock, capacity: int = 10_000, max_bytes: int = 32 * 1024 * 1024) -> None:
        self._clock = clock
        self.capacity = capacity
        self.max_bytes = max_bytes
        self._entries: collections.deque[LogEntry] = collections.deque()
        self._bytes = 0

    def __len__(self) -> int:
        return len(self._entries)

    def record(
        self,
        direction: str,
        transport: str,
        peer: tuple[str, int],
        data: bytes,
        message=None,
        *,
        call_id: str = "",
        method: str = "",
        status: int = 0,
        addresses=None,
    ) -> None:
        """
        Keep one message.  C{message} is its parsed form, if it parsed:
        the Call-ID, method and status come from it; without it they are
        the keyword arguments.  C{addresses}, when given, replaces what a
        search would find in the text.
        """
        if message is not None:
            call_id, method, status = _summary(message)
        data = bytes(data)
        entry = LogEntry(
            time=self._clock.seconds(),
            direction=direction,
            transport=transport,
            peer=peer,
            call_id=call_id,
            method=method if method.isupper() else method.upper(),
            status=status,
            data=data,
            addresses=None
            if addresses is None
            else tuple(a.lower() for a in addresses if a) + (f"{peer[0]}:{peer[1]}",),
        )
        self._entries.append(entry)
        self._bytes += len(data)
        while self._entries and (len(self._entries) > self.capacity or self._bytes > self.max_bytes):
            self._bytes -= len(self._entries.popleft().data)

    def search(
        self,
        *,
        call_id: str | None = None,
        method: str | None = None,
        status: int | None = None,
        address: str | None = None,
        limit: int = 100,
    ) -> list[LogEntry]:
        """
        The newest C{limit} entries that match every criterion given, oldest
        first.  C{address} matches any part of any address or number the
        message names (so C{5553837461} finds C{sip:+15553837461@...}).
        """
        wanted_method = method.upper() if method else None
        wanted_address = address.lower() if address else None
        found = []
        for entry in reversed(self._entries):
            if call_id is not None and entry.call_id != call_id:
                continue
            if wanted_method is not None and entry.method != wanted_method:
                continue
            if status is not None and entry.status != status:
                continue
            if wanted_address is not None and not any(
                wanted_address in candidate for candidate in entry.addresses
            ):
                continue
            found.append(entry)
            if len(found) >= limit:
                break
        found.reverse()
        return found


def _summary(message) -> tuple[str, str, int]:
    """
    Call-ID, method and status of a parsed message, from what parsing
    already worked out.
    """
    call_id = message.headers.get("Call-ID") or ""
    if message.is_request:
        return call_id, message.method, 0
    try:
        cseq = message.cseq()
    except ValueError:
        return call_id, "", message.status
    return call_id, cseq.method if cseq is not None else "", message.status


def _addresses_in(text: str) -> tuple[str, ...]:
    """
    The Request-URI and the From, To and Contact addresses of a message's
    text, lower case; what cannot be parsed is left out.
    """
    try:
        message = parse_message(text.encode("utf-8", "surrogateescape"))
    except SIPParseError as error:
        message = error.partial
        if message is None:
            return ()
    found = []
    if message.is_request and message.uri is not None:
        found.append(str(message.uri))
    for read in (message.from_, message.to, message.contacts):
        try:
            value = read()
        except ValueError:
            continue
        for name_addr in value if isinstance(value, tuple) else (value,):
            uri = getattr(name_addr, "uri", None)
            if uri is not None:
                found.append(str(uri))
    return tuple(address.lower() for address in found)

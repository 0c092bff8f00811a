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

IN = "in"
OUT = "out"


@attrs.frozen
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
    @ivar addresses: the URIs and addresses the message names, lower case.
    @ivar text: the message as text (undecodable bytes replaced).
    """

    time: float
    direction: str
    transport: str
    peer: tuple[str, int]
    call_id: str
    method: str
    status: int
    addresses: tuple[str, ...]
    text: str

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
    @param max_bytes: and at most this many bytes of message text; the
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
        *,
        call_id: str = "",
        method: str = "",
        status: int = 0,
        addresses=(),
    ) -> None:
        text = data.decode("utf-8", "replace")
        entry = LogEntry(
            time=self._clock.seconds(),
            direction=direction,
            transport=transport,
            peer=peer,
            call_id=call_id,
            method=method.upper(),
            status=status,
            addresses=tuple(a.lower() for a in addresses if a) + (f"{peer[0]}:{peer[1]}",),
            text=text,
        )
        self._entries.append(entry)
        self._bytes += len(text)
        while self._entries and (len(self._entries) > self.capacity or self._bytes > self.max_bytes):
            self._bytes -= len(self._entries.popleft().text)

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

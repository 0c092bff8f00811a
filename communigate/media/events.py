"""
RFC 4733 telephone-events: the payload, a sender and a receiver.

Payload (§2.3): ``event`` (8 bits: 0-9, 10 ``*``, 11 ``#``, 12-15 A-D,
16 flash), ``E`` (end of event), ``R`` (reserved, ignored), ``volume``
(6 bits, -dBm0), ``duration`` (16 bits, timestamp units since the
event's timestamp).

`TelephoneEventSender` turns keys into packets, one per packet time: the
caller calls ``tick(timestamp)`` every packet time with the timestamp its
next audio packet would carry, and sends what it returns (an
`EventPacket`: payload, marker, timestamp) instead of audio, or audio if
it returns None.  Every packet of an event carries the event's start
timestamp (§2.5.1.1); the first has the marker bit (§2.5.1.2) and the
duration of one packet; each further packet time adds one packet's worth;
when the duration is reached the end packet (E bit, final duration) is
sent three times on three packet times (§2.5.1.4).  Keys queue: after an
event's last end packet, ``gap`` samples of audio pass before the next
key's first packet.  Durations beyond 16 bits are refused (an event of
8 s at 8 kHz; RFC 4733 splits longer ones, which nobody needs here).

`TelephoneEventReceiver` reports each event once: the first packet seen
of an event (marker or not, so a lost start packet does not lose the
key) reports it; further packets of the same event — updates, the
redundant end packets, a reordered start packet arriving late — do not.
An event is identified by its RTP timestamp and code; the last 32 are
remembered.
"""

from __future__ import annotations

from collections import OrderedDict, deque

import attrs

__all__ = [
    "TelephoneEvent",
    "TelephoneEventError",
    "parse_telephone_event",
    "event_code",
    "event_key",
    "EventPacket",
    "TelephoneEventSender",
    "ReceivedEvent",
    "TelephoneEventReceiver",
    "KEYS",
    "FLASH",
]

KEYS = "0123456789*#ABCD"
FLASH = 16


class TelephoneEventError(ValueError):
    """The payload is not a telephone-event."""


def event_code(key: str | int) -> int:
    """The event code of a key (``'5'`` → 5, ``'*'`` → 10, ``'A'`` → 12) or
    of an event number given as such."""
    if isinstance(key, int):
        if not 0 <= key <= 255:
            raise ValueError(f"event code {key} is not 0-255")
        return key
    index = KEYS.find(key.upper()) if len(key) == 1 else -1
    if index < 0:
        raise ValueError(f"not a DTMF key: {key!r}")
    return index


def event_key(code: int) -> str | None:
    """The key of a DTMF event code, None for others (flash, tones...)."""
    return KEYS[code] if 0 <= code < 16 else None


@attrs.frozen(slots=True)
class TelephoneEvent:
    event: int
    end: bool = False
    volume: int = 10
    duration: int = 0
    reserved: bool = False

    @property
    def key(self) -> str | None:
        return event_key(self.event)

    def serialize(self) -> bytes:
        if not 0 <= self.event <= 255 or not 0 <= self.volume <= 63 or not 0 <= self.duration <= 0xFFFF:
            raise ValueError(f"telephone-event field out of range: {self!r}")
        flags = (0x80 if self.end else 0) | (0x40 if self.reserved else 0) | self.volume
        return bytes((self.event, flags)) + self.duration.to_bytes(2, "big")


def parse_telephone_event(payload: bytes) -> TelephoneEvent:
    """The event of an RTP payload (its first four octets)."""
    if len(payload) < 4:
        raise TelephoneEventError(f"telephone-event payload of {len(payload)} octets, needs 4")
    flags = payload[1]
    return TelephoneEvent(
        payload[0], bool(flags & 0x80), flags & 0x3F, int.from_bytes(payload[2:4], "big"), bool(flags & 0x40)
    )


# ------------------------------------------------------------------ sender
@attrs.frozen(slots=True)
class EventPacket:
    payload: bytes
    marker: bool
    timestamp: int


class TelephoneEventSender:
    """Packets of queued events, one per packet time."""

    def __init__(
        self,
        packet_samples: int = 160,
        *,
        volume: int = 10,
        end_repeats: int = 3,
        duration: int = 800,
        gap: int = 800,
    ):
        self.packet_samples = packet_samples
        self.volume = volume
        self.end_repeats = end_repeats
        self.duration = duration
        self.gap = gap
        self._queue: deque[tuple[int, int]] = deque()
        self._event: int | None = None
        self._timestamp = 0
        self._length = 0
        self._elapsed = 0
        self._ends_sent = 0
        self._gap_left = 0

    @property
    def active(self) -> bool:
        """Whether an event is being sent or waits in the queue."""
        return self._event is not None or bool(self._queue)

    def send(self, keys, duration: int | None = None) -> None:
        """Queue keys (a string like ``"123#"``, or event codes); each lasts
        ``duration`` samples (default 800, 100 ms at 8 kHz)."""
        duration = self.duration if duration is None else duration
        if not 0 < duration <= 0xFFFF:
            raise ValueError(f"event duration {duration} is not 1-65535 timestamp units")
        codes = [event_code(k) for k in keys] if not isinstance(keys, int) else [event_code(keys)]
        self._queue.extend((code, duration) for code in codes)

    def cancel(self) -> None:
        """Drop the queued keys (an event already started still ends properly)."""
        self._queue.clear()

    def tick(self, timestamp: int) -> EventPacket | None:
        """The packet for this packet time, or None (send audio)."""
        if self._event is None:
            if self._gap_left > 0:
                self._gap_left -= self.packet_samples
                return None
            if not self._queue:
                return None
            self._event, self._length = self._queue.popleft()
            self._timestamp = timestamp & 0xFFFFFFFF
            self._elapsed = min(self.packet_samples, self._length)
            self._ends_sent = 0
            if self._elapsed < self._length:
                return self._packet(False, True)
            return self._end_packet(marker=True)
        if self._elapsed < self._length:
            self._elapsed = min(self._elapsed + self.packet_samples, self._length)
            if self._elapsed < self._length:
                return self._packet(False, False)
        return self._end_packet(marker=False)

    def _packet(self, end: bool, marker: bool) -> EventPacket:
        event = TelephoneEvent(self._event, end, self.volume, self._elapsed)
        return EventPacket(event.serialize(), marker, self._timestamp)

    def _end_packet(self, marker: bool) -> EventPacket:
        packet = self._packet(True, marker)
        self._ends_sent += 1
        if self._ends_sent >= self.end_repeats:
            self._event = None
            self._gap_left = self.gap if self._queue else 0
        return packet


# ---------------------------------------------------------------- receiver
@attrs.frozen(slots=True)
class ReceivedEvent:
    event: int
    timestamp: int

    @property
    def key(self) -> str | None:
        return event_key(self.event)


class TelephoneEventReceiver:
    """Each event reported once, whatever the redundancy, loss or order."""

    def __init__(self, memory: int = 32):
        self.memory = memory
        self._seen: OrderedDict[tuple[int, int], None] = OrderedDict()

    def packet(self, timestamp: int, payload: bytes) -> ReceivedEvent | None:
        """The event this packet starts for us, or None if it was reported
        before.  A malformed payload raises `TelephoneEventError`."""
        event = parse_telephone_event(payload)
        key = (timestamp, event.event)
        if key in self._seen:
            return None
        self._seen[key] = None
        if len(self._seen) > self.memory:
            self._seen.popitem(last=False)
        return ReceivedEvent(event.event, timestamp)

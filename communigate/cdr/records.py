"""
Call detail records: every call leg's start, answer and end, its parties
and how it ended, kept for operators (the CLI) and handed to
L{communigate.interfaces.ICallRecordSink} plugins (billing, RADIUS
accounting, a data warehouse).

Records are written in batches to a sidecar SQLite file beside the
directory (C{call-records.sqlite}): a finished call costs no fsync of its
own, and a crash of the process loses at most the last second of them.
The newest C{capacity} records are kept (oldest dropped first).
"""

from __future__ import annotations

import itertools
import json
from collections import deque

import attrs
from twisted.logger import Logger

KIND = "cdr"
DATABASE = "call-records.sqlite"
DEFAULT_CAPACITY = 100_000


@attrs.frozen
class CallRecord:
    """
    One call leg as it ended.

    @ivar protocol: where the leg was seen (C{sip}, later C{pbx}, C{xmpp}).
    @ivar call_id: the leg's Call-ID.
    @ivar caller: the From address; C{caller_account} the authenticated
        account that placed it, if any.
    @ivar callee: the To address; C{target} what the request was sent to
        (its Request-URI).
    @ivar started, answered, ended: reactor seconds; C{answered} is None
        for a call never answered.
    @ivar status: the final response code (200 for an answered call).
    @ivar cause: how it ended, in words: C{"BYE from caller"}, C{"486 Busy
        Here"}, C{"cancelled"}, C{"expired"}.
    @ivar rtcp_loss: for a leg whose media the server terminated (a PBX
        task's), the percentage of the peer's RTP packets lost on the way
        to us, as our RTCP reports gave it; C{rtcp_peer_loss} the
        percentage of ours lost on the way to the peer, by its RTCP
        reports; C{jitter_ms} the interarrival jitter of the peer's
        stream (RFC 3550 A.8); C{rtt_ms} the last round-trip time from
        the peer's reports.  None when not known (no media, no RTCP from
        the peer, a proxied call).
    """

    protocol: str
    call_id: str
    caller: str
    callee: str
    target: str
    caller_account: str | None
    started: float
    answered: float | None
    ended: float
    status: int
    cause: str
    rtcp_loss: float | None = None
    rtcp_peer_loss: float | None = None
    jitter_ms: float | None = None
    rtt_ms: float | None = None

    @property
    def duration(self) -> float:
        """Seconds from answer to end; 0 for an unanswered call."""
        return 0.0 if self.answered is None else max(0.0, self.ended - self.answered)

    def as_data(self) -> dict:
        data = {
            "Protocol": self.protocol,
            "Call-ID": self.call_id,
            "From": self.caller,
            "To": self.callee,
            "Target": self.target,
            "Started": f"{self.started:.3f}",
            "Ended": f"{self.ended:.3f}",
            "Duration": f"{self.duration:.0f}",
            "Status": str(self.status),
            "Cause": self.cause,
        }
        if self.caller_account:
            data["Account"] = self.caller_account
        if self.answered is not None:
            data["Answered"] = f"{self.answered:.3f}"
        for key, value, text in (
            ("Loss", self.rtcp_loss, "{:.2f}%"), ("PeerLoss", self.rtcp_peer_loss, "{:.2f}%"),
            ("Jitter", self.jitter_ms, "{:.1f}ms"), ("RTT", self.rtt_ms, "{:.1f}ms"),
        ):
            if value is not None:
                data[key] = text.format(value)
        return data


def _encode(record: CallRecord) -> str:
    return json.dumps(attrs.asdict(record), separators=(",", ":"), ensure_ascii=False)


def _decode(text: str) -> CallRecord:
    return CallRecord(**json.loads(text))


class CallRecords:
    """
    The server's call records: kept, listed, and given to the sinks.

    @param sinks: L{ICallRecordSink} providers; each gets every finished
        record (a sink that raises is logged and the others still get it).
    """

    log = Logger()

    def __init__(self, store, clock, *, sinks=(), capacity: int = DEFAULT_CAPACITY, write_delay: float = 1.0):
        self.store = self._store = store
        self._clock = clock
        self.sinks = list(sinks)
        self.capacity = capacity
        self._write_delay = write_delay
        self._pending: list[tuple[str, str]] = []
        self._timer = None
        self._sequence = itertools.count()
        self._keys: deque[str] = deque(store.keys(KIND))

    def __len__(self) -> int:
        return len(self._keys) + len(self._pending)

    def add(self, record: CallRecord) -> None:
        """
        Keep C{record} (written with the next batch) and give it to the
        sinks.
        """
        key = f"{int(record.ended * 1000):015d}-{next(self._sequence) % 10**6:06d}"
        self._pending.append((key, _encode(record)))
        if self._timer is None and self._write_delay:
            self._timer = self._clock.callLater(self._write_delay, self._flush_due)
        elif not self._write_delay:
            self.flush()
        for sink in self.sinks:
            try:
                sink.call_finished(record)
            except Exception:
                self.log.failure("Call record sink {sink!r} failed", sink=sink)

    def _flush_due(self) -> None:
        self._timer = None
        try:
            self.flush()
        except Exception:
            self.log.failure("Could not write {count} call records; trying again", count=len(self._pending))
            self._timer = self._clock.callLater(max(self._write_delay, 5.0), self._flush_due)

    def flush(self) -> int:
        """
        Write the pending records now and drop the oldest beyond the
        capacity; returns how many were written.
        """
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        pending = self._pending
        if not pending:
            return 0
        doomed = max(0, len(self._keys) + len(pending) - self.capacity)
        old = [self._keys[i] for i in range(min(doomed, len(self._keys)))]
        with self._store.transaction():
            for key in old:
                self._store.delete(KIND, key)
            for key, text in pending[max(0, doomed - len(old)):]:
                self._store.put(KIND, key, text)
        for _ in old:
            self._keys.popleft()
        self._keys.extend(key for key, _ in pending[max(0, doomed - len(old)):])
        self._pending = []
        return len(pending)

    def recent(self, *, account: str | None = None, limit: int = 100) -> list[CallRecord]:
        """
        The newest C{limit} records, newest first; with C{account}, those
        it placed or that named it as caller or callee.
        """
        self.flush()
        found = []
        for key in reversed(self._keys):
            text = self._store.get(KIND, key)
            if text is None:
                continue
            try:
                record = _decode(text)
            except (ValueError, TypeError):
                continue
            if account is not None and account not in (record.caller_account, record.caller, record.callee):
                continue
            found.append(record)
            if len(found) >= limit:
                break
        return found

    def stop(self) -> None:
        try:
            self.flush()
        except Exception:
            self.log.failure("Could not write the last call records at shutdown")

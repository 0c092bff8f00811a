"""
A small adaptive jitter buffer, pure and driven by explicit times.

Packets go in with ``push(sequence, timestamp, payload, arrival)``; one
frame comes out per ``tick(now)``, which the owner calls every packet time
(20 ms).  The buffer is payload-agnostic: a packet is one frame of
``frame_samples`` timestamp units (160 for 20 ms at 8 kHz), and packets
whose timestamps are off that grid are refused (``misaligned``).

Timing model
============
Each packet's *transit* is ``arrival - timestamp / clock_rate``.  Over the
last ``window`` packets (default 100, two seconds) the buffer keeps the
smallest transit (the fastest path) and the *spread* (largest minus
smallest: the measured jitter, peak to peak).  The target playout delay is
``spread + one frame`` (the frame covers tick phase and tick lateness),
clamped to ``[min_delay, max_delay]``; before two packets have been seen
it is ``initial_delay``.  At time ``now`` the frame that should be
playing has timestamp ``(now - min_transit - target) × clock_rate``.

Each tick compares the next frame to play with that ideal position:

- more than half a frame *ahead* (the target grew, jitter rose): the
  buffer holds — it plays a concealment frame and does not advance, which
  adds one frame of delay;
- more than 1.5 frames *behind* (the target shrank, or the first packet
  was a slow one) and more than that is buffered: it drops the frame due
  and plays the next, which removes one frame of delay;
- otherwise it plays the frame due.

At most one adjustment per tick, so delay changes by 20 ms steps.

Frames out
==========
`JitterFrame.kind` is `AUDIO` (a received frame), `REPEAT` (the frame
due is missing and the previous output was audio: the last payload again,
once) or `SILENCE` (missing again, not started yet, or holding after a
repeat: ``payload`` is the ``silence`` given to the constructor, None by
default).  So concealment is: repeat the last frame once, then silence.

A packet for a frame already played or dropped is *late* and refused; a
second copy of a buffered frame is a *duplicate* and refused.  A packet
more than ``resync_after`` seconds (default 2) away from the playout point
in either direction means the source restarted (new timestamp base): the
buffer empties and starts again from that packet (``resyncs``).  So does
a run of ``late_resync`` late packets in a row (default 10, 200 ms) whose
sequence numbers are new (past every one seen): a sender whose
timestamps fell behind by less than ``resync_after`` (a phone that
paused its clock while it sent DTMF events) would otherwise have every
packet refused until the gap grew to two seconds.  Packets late because
the network held them, and copies, carry sequence numbers already passed
and never start such a run, so output stays in order.  Call `reset` when
the SSRC changes.
"""

from __future__ import annotations

import enum
from collections import deque

import attrs

__all__ = ["FrameKind", "JitterFrame", "JitterBuffer"]


class FrameKind(enum.Enum):
    AUDIO = "audio"
    REPEAT = "repeat"
    SILENCE = "silence"


@attrs.frozen(slots=True)
class JitterFrame:
    kind: FrameKind
    payload: bytes | None
    timestamp: int | None = None
    sequence: int | None = None


class JitterBuffer:
    """Reorders, drops late and duplicate packets, conceals gaps, adapts."""

    def __init__(
        self,
        *,
        frame_samples: int = 160,
        clock_rate: int = 8000,
        min_delay: float = 0.04,
        max_delay: float = 0.2,
        initial_delay: float = 0.06,
        window: int = 100,
        silence: bytes | None = None,
        resync_after: float = 2.0,
        late_resync: int = 10,
    ):
        if not 0 <= min_delay <= max_delay:
            raise ValueError("jitter buffer delays need 0 <= min_delay <= max_delay")
        self.frame_samples = frame_samples
        self.clock_rate = clock_rate
        self.frame_time = frame_samples / clock_rate
        self.min_delay = min_delay
        self.max_delay = max_delay
        self.initial_delay = min(max(initial_delay, min_delay), max_delay)
        self.window = window
        self.silence = silence
        self.resync_span = round(resync_after * clock_rate)
        self.late_resync = late_resync
        self._late_run = 0
        self.played = self.repeated = self.silent = 0
        self.late = self.duplicates = self.dropped = self.misaligned = self.resyncs = 0
        self.reset()

    def reset(self) -> None:
        """Forget the stream (a new SSRC); the counters stay."""
        self._frames: dict[int, tuple[int, bytes]] = {}
        # The last `window` transit times, kept as two monotonic queues of
        # (arrival count, transit): their heads are the window's least and
        # greatest, found without a pass over the window for every packet.
        self._arrivals = 0
        self._lows: deque[tuple[int, float]] = deque()
        self._highs: deque[tuple[int, float]] = deque()
        self._min_transit = 0.0
        self._spread = 0.0
        self._reference: int | None = None  # last extended timestamp seen
        self._newest_sequence: int | None = None
        self._grid = 0
        self._playout: int | None = None
        self._last_kind = FrameKind.SILENCE
        self._last_payload: bytes | None = None

    # ------------------------------------------------------------ figures
    @property
    def delay(self) -> float:
        """The target playout delay in seconds."""
        if self._arrivals < 2:
            return self.initial_delay
        return min(max(self._spread + self.frame_time, self.min_delay), self.max_delay)

    @property
    def depth(self) -> int:
        """Frames buffered and not yet played."""
        return len(self._frames)

    # --------------------------------------------------------------- input
    def _extend(self, timestamp: int) -> int:
        if self._reference is None:
            return timestamp
        low = self._reference & 0xFFFFFFFF
        return self._reference + (timestamp - low + 2**31) % 2**32 - 2**31

    def push(self, sequence: int, timestamp: int, payload: bytes, arrival: float) -> bool:
        """Buffer a packet; False if it is refused (late, duplicate,
        misaligned)."""
        ts = self._extend(timestamp)
        anchor = self._reference if self._playout is None else self._playout
        if anchor is not None and abs(ts - anchor) > self.resync_span:
            self.resyncs += 1
            self.reset()
        if self._reference is None:
            self._grid = ts % self.frame_samples
        if (ts - self._grid) % self.frame_samples:
            self.misaligned += 1
            return False
        fresh = self._newest_sequence is None or 0 < (sequence - self._newest_sequence) % 65536 < 32768
        if fresh:
            self._newest_sequence = sequence
        if self._playout is not None and ts < self._playout:
            self.late += 1
            if fresh:
                self._late_run += 1
            if self._late_run < self.late_resync:
                return False
            self.resyncs += 1
            self.reset()
            self._grid = ts % self.frame_samples
        self._late_run = 0
        if ts in self._frames:
            self.duplicates += 1
            return False
        self._reference = ts if self._reference is None else max(self._reference, ts)
        self._frames[ts] = (sequence, bytes(payload))
        self._note_transit(arrival - ts / self.clock_rate)
        return True

    def _note_transit(self, transit: float) -> None:
        count = self._arrivals = self._arrivals + 1
        oldest = count - self.window
        lows, highs = self._lows, self._highs
        while lows and lows[-1][1] >= transit:
            lows.pop()
        lows.append((count, transit))
        if lows[0][0] <= oldest:
            lows.popleft()
        while highs and highs[-1][1] <= transit:
            highs.pop()
        highs.append((count, transit))
        if highs[0][0] <= oldest:
            highs.popleft()
        self._min_transit = lows[0][1]
        self._spread = highs[0][1] - self._min_transit

    # -------------------------------------------------------------- output
    def _position(self, now: float) -> float:
        """Timestamp (continuous) that should be playing at ``now``."""
        return (now - self._min_transit - self.delay) * self.clock_rate

    def tick(self, now: float) -> JitterFrame:
        """The frame to play at ``now``."""
        if self._playout is None:
            if not self._frames:
                return self._conceal(None)
            position = self._position(now)
            steps = round((position - self._grid) / self.frame_samples)
            self._playout = self._grid + steps * self.frame_samples
            earliest = min(self._frames)
            if self._playout > earliest:
                # Never start past a frame we hold: its delay would be negative.
                self._playout = earliest
        error = (self._playout - self._position(now)) / self.frame_samples
        if error > 0.5:
            return self._conceal(self._playout)  # hold: one frame more delay
        if error < -1.5 and self._buffered_beyond(self._playout):
            if self._frames.pop(self._playout, None) is not None:
                self.dropped += 1
            self._playout += self.frame_samples
        return self._play()

    def _buffered_beyond(self, timestamp: int) -> bool:
        return any(ts > timestamp for ts in self._frames)

    def _play(self) -> JitterFrame:
        ts = self._playout
        self._playout += self.frame_samples
        entry = self._frames.pop(ts, None)
        if entry is None:
            return self._conceal(ts)
        sequence, payload = entry
        self.played += 1
        self._last_kind = FrameKind.AUDIO
        self._last_payload = payload
        return JitterFrame(FrameKind.AUDIO, payload, ts & 0xFFFFFFFF, sequence)

    def _conceal(self, ts: int | None) -> JitterFrame:
        stamp = None if ts is None else ts & 0xFFFFFFFF
        if self._last_kind is FrameKind.AUDIO and self._last_payload is not None:
            self._last_kind = FrameKind.REPEAT
            self.repeated += 1
            return JitterFrame(FrameKind.REPEAT, self._last_payload, stamp)
        self._last_kind = FrameKind.SILENCE
        if ts is not None:
            self.silent += 1
        return JitterFrame(FrameKind.SILENCE, self.silence, stamp)

"""
The conference mixer: an N-party mix at 20 ms ticks on the core
scheduler, where every party hears the sum of the others and never
itself (mix-minus).

Parties hand the mixer linear frames (L16, 8 kHz, 160 samples) as they
come, already decoded by their channel, and receive one encoded frame per
tick in their own codec (PCMU, PCMA or L16), so parties with different
codecs share a room. Per party:

  - C{talk}: heard and hearing; C{listen}: hearing only (a listen-only
    participant, a recorder); C{muted}: like listen, switched at will.
  - A small input queue (C{max_queue} frames): a party whose frames come
    in bursts is smoothed; beyond the queue the oldest frames go (the
    mixer never lags behind real time); a tick with no frame from a
    party counts as silence from it.

Clipping control: the sum of several loud talkers can exceed 16 bits.
Each tick's sum is scaled down when its peak would clip (never up), so
speech stays intact instead of being squared off; the scaling is applied
to every party's mix of that tick alike.

Everything runs in the scheduler's machine handler: in order, never
re-entrant, and a tick that comes late is one tick, not a burst.
"""

from __future__ import annotations

import array
from collections import deque

import attrs

from communigate.core.scheduler import Machine
from communigate.media import g711

FRAME_SAMPLES = 160
FRAME_SECONDS = 0.02
SILENCE = bytes(FRAME_SAMPLES * 2)
TALK, LISTEN, MUTED = "talk", "listen", "muted"
MODES = (TALK, LISTEN, MUTED)
CODECS = ("PCMU", "PCMA", "L16")
_TICK = "tick"
_LIMIT = 32767


class MixerError(ValueError):
    """A party that cannot be added or changed; the message says why."""


@attrs.define(eq=False)
class Party:
    id: str
    codec: str
    send: object
    mode: str = TALK
    queue: deque = attrs.field(factory=lambda: deque())
    frames_in: int = 0
    frames_out: int = 0
    dropped: int = 0
    silent_ticks: int = 0


def _samples(frame: bytes) -> array.array:
    samples = array.array("h")
    samples.frombytes(frame)
    return samples


def _encode(codec: str, pcm: bytes) -> bytes:
    return pcm if codec == "L16" else g711.encode(codec, pcm)


class Mixer(Machine):
    """
    One room's mix.  Start it on a L{communigate.core.scheduler.Scheduler}
    (C{scheduler.start(mixer)}) and it ticks every 20 ms while it has
    parties.

    @param max_parties: a bound on the room (L{MixerError} beyond it).
    @param max_queue: frames kept per party ahead of the mix (3 = 60 ms).
    """

    def __init__(self, *, max_parties: int = 100, max_queue: int = 3) -> None:
        self.parties: dict[str, Party] = {}
        self.max_parties = max_parties
        self.max_queue = max_queue
        self.ticks = 0
        self.clipped_ticks = 0
        self._timer = None

    # -- parties ----------------------------------------------------------------------

    def add(self, party_id: str, codec: str, send, mode: str = TALK) -> Party:
        """
        Join C{party_id}, who gets each tick's frame as C{send(payload)} in
        C{codec}.
        """
        if codec not in CODECS:
            raise MixerError(f"codec {codec!r} is not one of {CODECS}")
        if mode not in MODES:
            raise MixerError(f"mode {mode!r} is not one of {MODES}")
        if party_id in self.parties:
            raise MixerError(f"{party_id!r} is already in the room")
        if len(self.parties) >= self.max_parties:
            raise MixerError(f"the room is full ({self.max_parties} parties)")
        party = Party(party_id, codec, send, mode)
        self.parties[party_id] = party
        self._ticking()
        return party

    def remove(self, party_id: str) -> None:
        self.parties.pop(party_id, None)
        self._ticking()

    def set_mode(self, party_id: str, mode: str) -> None:
        """Mute, unmute, or make a party listen-only."""
        if mode not in MODES:
            raise MixerError(f"mode {mode!r} is not one of {MODES}")
        party = self.parties.get(party_id)
        if party is None:
            raise MixerError(f"{party_id!r} is not in the room")
        party.mode = mode
        party.queue.clear()

    def feed(self, party_id: str, frame: bytes) -> None:
        """
        A linear frame from C{party_id} (what its channel decoded).  Frames
        of another length are refused; frames of silent modes are ignored.
        """
        party = self.parties.get(party_id)
        if party is None or party.mode != TALK:
            return
        if len(frame) != FRAME_SAMPLES * 2:
            raise MixerError(f"a frame is {FRAME_SAMPLES * 2} octets of L16, not {len(frame)}")
        party.frames_in += 1
        if len(party.queue) >= self.max_queue:
            party.queue.popleft()
            party.dropped += 1
        party.queue.append(frame)

    # -- the tick ---------------------------------------------------------------------

    def _ticking(self) -> None:
        if self.scheduler is None:
            return
        if self.parties and self._timer is None:
            self._timer = self.every(FRAME_SECONDS, _TICK)
        elif not self.parties and self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def handle(self, event) -> None:
        if event == _TICK:
            self.tick()

    def stopped(self) -> None:
        self._timer = None

    def tick(self) -> None:
        """
        Mix one frame: every party gets the others' sum, scaled down if it
        would clip.
        """
        self.ticks += 1
        parties = list(self.parties.values())
        if not parties:
            return
        talking = []
        for party in parties:
            if party.mode == TALK:
                if party.queue:
                    talking.append((party, _samples(party.queue.popleft())))
                else:
                    party.silent_ticks += 1
        if talking:
            total = list(map(sum, zip(*(samples for _, samples in talking))))
        else:
            total = [0] * FRAME_SAMPLES
        own = {id(party): samples for party, samples in talking}
        outputs = []
        peak = 0
        for party in parties:
            mine = own.get(id(party))
            mixed = total if mine is None else list(map(int.__sub__, total, mine))
            if mixed is not total or talking:
                highest = max(mixed, default=0)
                lowest = min(mixed, default=0)
                peak = max(peak, highest, -lowest)
            outputs.append((party, mixed))
        scale = 1.0
        if peak > _LIMIT:
            scale = _LIMIT / peak
            self.clipped_ticks += 1
        for party, mixed in outputs:
            if scale != 1.0:
                mixed = [int(value * scale) for value in mixed]
            pcm = array.array("h", mixed).tobytes()
            party.frames_out += 1
            party.send(_encode(party.codec, pcm))

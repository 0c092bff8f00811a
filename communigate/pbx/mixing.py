"""
Mixer bridging: the verbs that join a task's media channel to a conference
mixer (CG/PL's C{AttachMixer}, C{DetachMixer}, C{MuteMixer},
C{MixerAttached}), and the rooms a server's tasks meet in.

A L{Mixer} (L{communigate.media.mixer}) is one more machine on the core
scheduler, ticking every 20 ms while it has parties.  Attaching a task
takes the place of the other channel of a simple bridge:

  channel ──each frame it hears──▶ MixerParty.bridged_frame ──decode──▶ mixer.feed(task id, L16)
  channel ◀──bridged_frame(codec)── mixer's send, once a tick: the others' sum, encoded in our codec

so the channel sends the mix as it sends a bridged peer's audio (after a
prompt or tone being played, which wins while it plays).

L{ConferenceRooms} keeps the server's rooms by account and name: a room is
created (its mixer started) when the first party joins and stopped when
the last one leaves.

L{MixerVerbs} is a part of L{communigate.pbx.task.Task}, kept in its own
module, like L{communigate.pbx.bridging.BridgeVerbs}; a task is attached
to one mixer at most, and not while it is bridged to another task.  A task
that hangs up, is hung up on or ends is detached.
"""

from __future__ import annotations

from twisted.internet.defer import Deferred, fail, succeed
from twisted.logger import Logger

from communigate.media import g711
from communigate.media.mixer import LISTEN, MUTED, TALK, Mixer, MixerError
from communigate.pbx.events import CallError

__all__ = ["ConferenceRooms", "MixerParty", "MixerVerbs"]


class MixerParty:
    """
    What an attached channel hands its frames to: decodes them for the
    mixer, and sends the mixer's frames back out on the channel.

    @ivar bridge: always L{None}: a party is never bridged back to the
        channel (what L{MediaChannel.unbridge} looks at).
    @ivar refused: frames the mixer refused (not 20 ms of audio).
    """

    log = Logger()
    bridge = None

    def __init__(self, mixer: Mixer, party_id: str, channel, room: tuple[str, str] | None = None) -> None:
        self.mixer = mixer
        self.id = party_id
        self.channel = channel
        self.codec = channel.codec
        self.room = room
        self.refused = 0

    def bridged_frame(self, codec: str, payload: bytes) -> None:
        """
        A frame the channel heard (in C{codec}): to the mixer as L16.
        """
        pcm = payload if codec == "L16" else g711.decode(codec, payload)
        try:
            self.mixer.feed(self.id, pcm)
        except MixerError as error:
            self.refused += 1
            if self.refused == 1:
                self.log.info("Mixer party {id}: a frame refused: {error}", id=self.id, error=error)

    def send(self, payload: bytes) -> None:
        """
        The mixer's frame for this party: sent on the channel's next tick.
        """
        self.channel.bridged_frame(self.codec, payload)


class ConferenceRooms:
    """
    The rooms of one server, by account and name.

    @param scheduler: the core scheduler the rooms' mixers tick on.
    @param max_parties: a bound on each room.
    """

    log = Logger()

    def __init__(self, scheduler, *, max_parties: int = 100) -> None:
        self.scheduler = scheduler
        self.max_parties = max_parties
        self.rooms: dict[tuple[str, str], Mixer] = {}

    def join(self, account: str, name: str) -> Mixer:
        """
        The mixer of room C{name} of C{account}, started now if it was not
        running.
        """
        key = (account, name)
        mixer = self.rooms.get(key)
        if mixer is None:
            mixer = Mixer(max_parties=self.max_parties)
            self.scheduler.start(mixer)
            self.rooms[key] = mixer
            self.log.info("Conference room {name} of {account} opened", name=name, account=account)
        return mixer

    def find(self, account: str, name: str) -> Mixer | None:
        return self.rooms.get((account, name))

    def vacated(self, account: str, name: str) -> None:
        """
        A party left room C{name}: stop its mixer when it is empty.
        """
        key = (account, name)
        mixer = self.rooms.get(key)
        if mixer is not None and not mixer.parties:
            del self.rooms[key]
            mixer.stop()
            self.log.info("Conference room {name} of {account} closed", name=name, account=account)


class MixerVerbs:
    """
    The mixer verbs of a task (see the module docstring).
    """

    _mixer_party: MixerParty | None = None

    def attach_mixer(self, mixer_or_room, listen: bool = False) -> Deferred:
        """
        Join our media to C{mixer_or_room}: a L{Mixer} (started on the core
        scheduler) or the name of a room of our account (created on first
        join).  We hear the other parties' mix; with C{listen}, we are not
        heard.  L{CallError} when not connected, bridged, already attached,
        or the room is full.
        """
        try:
            self._check()
            if self.bridge is not None:
                raise CallError("bridged")
            if self._mixer_party is not None:
                raise CallError("already attached to a mixer")
            channel = self._media()
            if not channel.negotiated:
                raise CallError("no media channel")
        except CallError as error:
            return fail(error)
        room = None
        if isinstance(mixer_or_room, Mixer):
            mixer = mixer_or_room
            if mixer.scheduler is None:
                self.service.scheduler.start(mixer)
        else:
            room = (self.account, str(mixer_or_room))
            mixer = self.service.rooms.join(*room)
        party = MixerParty(mixer, self.id, channel, room)
        try:
            mixer.add(self.id, channel.codec, party.send, LISTEN if listen else TALK)
        except MixerError as error:
            if room is not None:
                self.service.rooms.vacated(*room)
            return fail(CallError(str(error)))
        channel.hand_frames_to(party)
        self._mixer_party = party
        return succeed(None)

    def detach_mixer(self) -> Deferred:
        """
        Leave the mixer: our channel's own media comes back.
        """
        self._check()
        if self._mixer_party is None:
            return fail(CallError("not attached to a mixer"))
        self._release_mixer()
        return succeed(None)

    def mute_mixer(self, flag: bool = True) -> Deferred:
        """
        Stop (C{True}) or start again (C{False}) being heard in the mix;
        we go on hearing the others.  Unmuting a listen-only party makes
        it a talking one.
        """
        self._check()
        party = self._mixer_party
        if party is None:
            return fail(CallError("not attached to a mixer"))
        party.mixer.set_mode(party.id, MUTED if flag else TALK)
        return succeed(None)

    def mixer_attached(self) -> Mixer | None:
        """
        The mixer we are attached to, or L{None}.
        """
        party = self._mixer_party
        return None if party is None else party.mixer

    def mixer_room(self) -> str | None:
        """
        The name of the room we are in, or L{None} (not attached, or
        attached to a mixer given by object).
        """
        party = self._mixer_party
        return None if party is None or party.room is None else party.room[1]

    def _release_mixer(self) -> None:
        """
        Detach without a word (hang-up, end of the task).
        """
        party, self._mixer_party = self._mixer_party, None
        if party is None:
            return
        party.mixer.remove(party.id)
        if party.channel.bridge is party:
            party.channel.unbridge()
        if party.room is not None:
            self.service.rooms.vacated(*party.room)


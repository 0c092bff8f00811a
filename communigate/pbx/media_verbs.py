"""
The media verbs of a task (CG/PL's C{PlayFile}, C{PlayTone}, C{Record},
C{SendDTMF}, C{SetLocalHold}, C{ReleaseMediaChannel}, C{MediaOption},
and the echo the stock application uses): what the program does with its
call's media channel.

Media options (C{media_option}, CG/PL's C{MediaOption}) belong to the task,
not to one channel: a task's call may get a new channel (a transfer, a
new call after the last one ended), and the option holds for it too.
C{inbandDTMF} is the one option so far: whether the channel listens for
DTMF tones in the audio when the peer did not negotiate telephone-event.
Until the task sets it, it is the media server setting C{InBandDTMF}
(C{Auto}: yes; C{No}), read when the channel is made.

L{MediaVerbs} is a part of L{communigate.pbx.task.Task}, kept in its own
module as the bridging, mixing and transfer verbs are; it uses the task's
call, waiter, inputs and service.
"""

from __future__ import annotations

from twisted.internet.defer import Deferred, fail, succeed

from communigate.media.wav import Audio, serialize_wav
from communigate.pbx.call import CallState
from communigate.pbx.channel import ChannelError
from communigate.pbx.events import CallError, TaskMode
from communigate.pbx.prompts import frames, tone_frames

__all__ = ["MediaVerbs"]

_DTMF_KEYS = frozenset("0123456789*#ABCD")
#: The media options a task has (see the module docstring).
MEDIA_OPTIONS = ("inbandDTMF",)


class MediaVerbs:
    """
    The media verbs of a task (see the module docstring).
    """

    #: The media options the task set (unset ones take the server's).
    _media_options: dict | None = None

    def media_option(self, name: str, value=None):
        """
        The value of media option C{name}; with C{value}, set it and return
        the old one (CG/PL's C{MediaOption}).  C{inbandDTMF} (a bool):
        whether the call's channel listens for DTMF tones in the audio when
        telephone-event was not negotiated; the default is the media server
        setting C{InBandDTMF}.  Turning it off saves the detector's CPU on
        calls that read no keys; keys the peer sends as tones are then not
        heard (RFC 4733 events and INFO still are).

        @raise ValueError: an unknown option, naming the known ones, or a
            value that is not a flag.
        """
        if name not in MEDIA_OPTIONS:
            raise ValueError(f"unknown media option {name!r}; known: {', '.join(MEDIA_OPTIONS)}")
        options = self._media_options
        if options is None:
            options = self._media_options = {}
        call = self.call
        channel = None if call is None else call.channel
        old = options.get(name)
        if old is None:
            # What the channel was made with (the setting may have changed
            # since), else what a channel made now would get.
            old = self.service.inband_dtmf if channel is None else channel.inband_dtmf
        if value is None:
            return old
        flag = options[name] = _flag(name, value)
        if channel is not None:
            channel.inband_dtmf = flag
        return old

    def _inband_dtmf(self) -> bool:
        options = self._media_options
        flag = None if options is None else options.get("inbandDTMF")
        return self.service.inband_dtmf if flag is None else flag

    def hold(self, inactive: bool = False) -> Deferred:
        """
        Put the peer on hold: a re-INVITE offering C{sendonly} (we may go on
        sending, e.g. music), or C{inactive} (no media either way).
        """
        return self._reinvite("inactive" if inactive else "sendonly")

    def unhold(self) -> Deferred:
        """
        Take the peer off hold (a re-INVITE offering C{sendrecv}).
        """
        return self._reinvite("sendrecv")

    def set_local_hold(self, flag: bool) -> Deferred:
        return self.hold() if flag else self.unhold()

    def _reinvite(self, direction: str) -> Deferred:
        self._check()
        call = self.call
        if call is None or call.state != CallState.CONNECTED:
            return fail(CallError("not connected"))
        if self.bridge is not None:
            return fail(CallError("bridged"))
        try:
            return call.reinvite(direction)
        except (CallError, ChannelError) as error:
            return fail(error if isinstance(error, CallError) else CallError(str(error)))

    def _make_channel(self):
        return self.service.make_channel(
            name=self.id,
            on_dtmf=lambda key, method: self.later(self._dtmf_received, key, method),
            on_played=lambda token: self.later(self._played, token),
            on_recorded=lambda token, pcm: self.later(self._recorded, token, pcm),
            inband_dtmf=self._inband_dtmf(),
        )

    def _media(self):
        self._check()
        call = self.call
        if call is not None and call.transparent and self.bridge is None:
            # The bridge is gone and our media not back yet: now.
            self._media_back_now(call)
        # A channel whose SDP answer is still to come (an INVITE without
        # SDP: the answer is in the ACK) takes the request and starts when
        # the answer arrives.
        if call is None or call.channel is None or call.channel.closed:
            raise CallError("no media channel")
        if self.mode not in (TaskMode.CONNECTED, TaskMode.PROVISIONED) and call.state != CallState.CONNECTED:
            raise CallError("no media channel")
        return call.channel

    def _play(self, played) -> Deferred:
        try:
            channel = self._media()
        except CallError as error:
            return fail(error)
        if self._inputs or (self.interrupt_on_dtmf and self._dtmf):
            return succeed(False)
        token = object()
        channel.play(played, token)
        return self._wait("play", token=token)

    def _played(self, token) -> None:
        waiter = self._waiter
        if waiter is not None and waiter.kind == "play" and waiter.token is token:
            self._wake(True)

    def play_file(self, name: str, ms: int | None = None) -> Deferred:
        """
        Play prompt C{name} (see L{communigate.pbx.prompts}): whole, for
        C{ms} milliseconds (repeating it when it is shorter), or looping
        until interrupted when C{ms} is negative.  True when it played to
        the end, False when a key, an event or a hang-up stopped it.
        """
        try:
            pcm = self.service.prompts.load(name)
        except LookupError as error:
            return fail(CallError(str(error)))
        if ms is None:
            played = frames(pcm)
        elif ms < 0:
            played = frames(pcm, loop=True)
        else:
            played = frames(pcm, limit=max(1, round(ms / 20)))
        return self._play(played)

    def play_tone(self, frequency: float, ms: int, frequency2: float = 0.0, level: float = -10.0) -> Deferred:
        """
        Play a tone (two with C{frequency2}; silence for frequency 0) for
        C{ms} milliseconds (negative: until interrupted).
        """
        if not 0 <= frequency < 4000 or not 0 <= frequency2 < 4000:
            return fail(ValueError("tone frequencies are 0-3999 Hz"))
        return self._play(tone_frames(frequency, ms, frequency2, level))

    def play(self, pcm: bytes) -> Deferred:
        """
        Play L16 audio (8 kHz, 16-bit little-endian), e.g. a recording.
        """
        return self._play(frames(pcm))

    def record(self, max_seconds: float) -> Deferred:
        """
        Record what the peer says for up to C{max_seconds} (stopped early by
        a key, an event or a hang-up); a WAV file (8 kHz 16-bit) as bytes,
        or L{None} when nothing was heard.
        """
        try:
            channel = self._media()
        except CallError as error:
            return fail(error)
        if max_seconds <= 0:
            return fail(ValueError("record needs a positive number of seconds"))
        token = object()
        channel.record(max_seconds, token)
        return self._wait("record", token=token)

    def _recorded(self, token, pcm: bytes) -> None:
        waiter = self._waiter
        if waiter is not None and waiter.kind == "record" and waiter.token is token:
            self._wake(_as_wav(pcm))

    def _finish_recording(self):
        channel = None if self.call is None else self.call.channel
        pcm = None if channel is None else channel.stop_recording()
        return _as_wav(pcm)

    def send_dtmf(self, keys: str) -> None:
        """
        Send DTMF C{keys} to the peer (RFC 4733 events, or tones).
        """
        channel = self._media()
        bad = [key for key in keys if key.upper() not in _DTMF_KEYS]
        if bad:
            raise ValueError(f"not DTMF keys: {''.join(bad)!r}")
        channel.send_dtmf(keys.upper())

    def start_echo(self) -> None:
        """
        Send the peer's own audio back to it (the C{echo} application).
        """
        self._media().loopback = True

    def stop_echo(self) -> None:
        channel = self._media()
        channel.loopback = False

    def release_media_channel(self) -> None:
        """
        Stop playing, recording and echoing.
        """
        channel = self._media()
        channel.stop_playing()
        channel.stop_recording()
        channel.loopback = False


_TRUE = frozenset({"yes", "true", "on", "1"})
_FALSE = frozenset({"no", "false", "off", "0"})


def _flag(name: str, value) -> bool:
    """
    A media option's flag: a bool, 0 or 1, or the words CG/PL programs and
    event parameters carry (C{"YES"}, C{"no"} ...).  Anything else is
    refused rather than taken for true, so C{"NO"} never switches a thing on.
    """
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        word = value.strip().lower()
        if word in _TRUE:
            return True
        if word in _FALSE:
            return False
    raise ValueError(f"media option {name} is a flag: True or False (yes/no, 1/0), not {value!r}")


def _as_wav(pcm: bytes | None) -> bytes | None:
    if not pcm:
        return None
    return serialize_wav(Audio("L16", pcm))

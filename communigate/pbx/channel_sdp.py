"""
The SDP side of a PBX media channel (RFC 3264): answering an offer,
making one, taking the peer's answer, and what the negotiation chose (the
codec, telephone-event, whether tones are listened for in the audio).
L{ChannelNegotiation} is a part of L{communigate.pbx.channel.MediaChannel}.
"""

from __future__ import annotations

from communigate.media import g711
from communigate.media.inband import DTMFDetector
from communigate.media.jitter import JitterBuffer
from communigate.media.offer_answer import NoCommonCodec, answer, make_offer, streams
from communigate.media.sdp import parse_sdp

__all__ = ["ChannelError", "ChannelNegotiation"]


class ChannelError(Exception):
    """
    The channel cannot do what was asked (no SDP yet, closed ...).
    """


class ChannelNegotiation:
    """The offer/answer part of L{communigate.pbx.channel.MediaChannel}."""

    def answer_offer(self, offer: bytes, direction: str | None = None) -> bytes:
        """
        Our answer to C{offer}; the channel follows it from now on.

        @raise NoCommonCodec: no usable audio stream (488).
        @raise SDPError: the offer does not parse (400 or 488).
        """
        if self.closed:
            raise ChannelError("the media channel is closed")
        offered = parse_sdp(offer)
        if self.port is None:
            infos = streams(offered)
            peer = next((s.address for s in infos if s.media == "audio" and s.address), None)
            self.open(peer)
        if direction is not None:
            self.direction = direction
        self.session_version += 1
        ours = answer(
            offered,
            self.capabilities,
            self.address,
            {index: self.port for index in range(len(offered.media))},
            direction=self.direction,
            session_id=self.session_id,
            session_version=self.session_version,
            rtcp_mux=True,
        )
        mine = next(s for s in streams(ours) if s.accepted)
        theirs = streams(offered)[mine.index]
        self._configure(mine.payload_type, mine.codec.encoding, mine.event_payload_type)
        self._follow(theirs.address, theirs.port, sends=mine.sends and not theirs.old_style_hold,
                     receives=mine.receives)
        self.rtcp.follow(theirs.rtcp_address, theirs.rtcp_port, muxed=mine.rtcp_mux)
        self._offered = False
        return ours.serialize()

    def make_offer(self, direction: str | None = None) -> bytes:
        """
        An offer of one audio stream with every codec we have (C{sendonly}
        to hold the peer, C{inactive} to stop both ways).
        """
        if self.closed:
            raise ChannelError("the media channel is closed")
        if self.port is None:
            self.open(None)
        if direction is not None:
            self.direction = direction
        self.session_version += 1
        self._offered = True
        return make_offer(
            self.capabilities,
            self.address,
            self.port,
            direction=self.direction,
            session_id=self.session_id,
            session_version=self.session_version,
            rtcp_mux=True,
        ).serialize()

    def apply_answer(self, data: bytes) -> None:
        """
        The peer's answer to our last offer.

        @raise NoCommonCodec: it rejected the audio stream.
        @raise SDPError: it does not parse.
        @raise ChannelError: no offer is outstanding.
        """
        if not self._offered:
            raise ChannelError("an SDP answer without an offer")
        described = parse_sdp(data)
        infos = streams(described)
        if not infos or not infos[0].accepted or infos[0].codec is None:
            raise NoCommonCodec("the answer rejected the audio stream")
        stream = infos[0]
        encoding = stream.codec.encoding.upper()
        if encoding not in ("PCMU", "PCMA"):
            raise NoCommonCodec(f"the answer chose {stream.codec.encoding}, which we did not offer")
        self._offered = False
        # The answer's direction is the peer's: it sends when it says
        # sendrecv or sendonly, and we may send when it receives.
        self._configure(stream.payload_type, encoding, stream.event_payload_type)
        ours_send = self.direction in ("sendrecv", "sendonly")
        ours_receive = self.direction in ("sendrecv", "recvonly")
        self._follow(stream.address, stream.port, sends=ours_send and stream.receives,
                     receives=ours_receive and stream.sends)
        # Our offers always ask for rtcp-mux: the answer decides.
        self.rtcp.follow(stream.rtcp_address, stream.rtcp_port, muxed=stream.rtcp_mux)

    @property
    def negotiated(self) -> bool:
        return self.codec is not None

    @property
    def telephone_events(self) -> bool:
        return self.event_payload_type is not None

    def _configure(self, payload_type: int, encoding: str, event_payload_type: int | None) -> None:
        encoding = encoding.upper()
        if encoding != self.codec or self._jitter is None:
            self._jitter = JitterBuffer(silence=g711.silence(encoding))
            self._heard = False
        self.codec = encoding
        self.payload_type = payload_type
        self.event_payload_type = event_payload_type
        self._silence = g711.silence(encoding)
        self._detector = DTMFDetector() if self._inband_dtmf and event_payload_type is None else None

    @property
    def inband_dtmf(self) -> bool:
        """
        Whether tones in the audio are looked for when telephone-event was
        not negotiated (they never are when it was: the keys come as
        events, and a phone sending both would be heard twice).
        """
        return self._inband_dtmf

    @inband_dtmf.setter
    def inband_dtmf(self, flag: bool) -> None:
        self._inband_dtmf = flag = bool(flag)
        if not flag:
            self._detector = None
        elif self._detector is None and self.codec is not None and self.event_payload_type is None:
            # A fresh detector: what it half-heard before it was switched
            # off is gone, so no key is made of two separate tones.
            self._detector = DTMFDetector()

    @property
    def detecting_inband(self) -> bool:
        """Whether the in-band detector runs on what the peer sends now."""
        return self._detector is not None

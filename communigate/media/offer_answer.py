"""
The offer/answer model (RFC 3264) over `communigate.media.sdp`, and the
SDP rewrite of a media relay.

- `answer(offer, capabilities, address, ports)` answers an offer: the
  same m-lines in the same order; the first usable audio stream accepted
  (``max_audio`` of them, default 1) with the *first offered* codec we
  support, plus telephone-event (RFC 4733) when both sides have it at that
  codec's clock rate, its events the intersection of both ``fmtp`` lists
  (RFC 4733 §2.4.1: none given means 0-15), and ``a=rtcp-mux`` when
  ``rtcp_mux=True``, the offer asked for it and neither chosen payload
  type is one RFC 5761 §4 rules out (`mux_compatible`); every other stream rejected
  with port 0 (RFC 3264 §6).  A stream is usable if it is ``audio`` over
  ``RTP/AVP`` with a non-zero port and an address.  With no usable audio
  stream the answer is impossible: `NoCommonCodec` (the caller answers
  488).  The answer's ``t=`` is the offer's (§6), its direction the
  intersection of the offer's and ours (§6.1: sendonly ↔ recvonly,
  inactive stays inactive).  An offer whose stream address is 0.0.0.0
  (the RFC 2543 "old-style" hold, §8.4) means we must send nothing.
- `make_offer(capabilities, address, port)` writes an offer for one
  audio stream: every capability, static payload types as they are,
  dynamic ones numbered from 101; ``direction="sendonly"`` puts the peer
  on hold, ``old_style_hold=True`` also writes ``c=0.0.0.0``;
  ``rtcp_mux=True`` adds ``a=rtcp-mux`` (RFC 5761 §5.1.1: the RTCP port,
  RTP + 1, stays valid for an answerer that does not multiplex).
- `streams(description)` reads what each m-line says about its sender's
  end: where to send RTP and RTCP, the direction, the codec (the first
  format), the telephone-event payload type and events, ptime, and
  whether it asks for (offer) or agrees to (answer) RTCP multiplexing.
- `rewrite(sdp, address, port_map)` turns a description towards a media
  relay: its ``c=`` addresses and the ports of the relayed m-lines (and
  their ``a=rtcp``) are the relay's, every other octet is kept
  (``a=rtcp-mux`` too: the parties agree on multiplexing between
  themselves, and the relay carries either way).
"""

from __future__ import annotations

import re
from typing import Iterable, Mapping, Sequence

import attrs

from communigate.media.sdp import (
    DIRECTIONS,
    Connection,
    Media,
    Origin,
    RtpMap,
    SDPError,
    SessionDescription,
    parse_sdp,
)

__all__ = [
    "Codec",
    "PCMU",
    "PCMA",
    "TELEPHONE_EVENT",
    "DEFAULT_CAPABILITIES",
    "NoCommonCodec",
    "StreamInfo",
    "answer",
    "make_offer",
    "streams",
    "rewrite",
    "parse_events",
    "format_events",
    "mux_compatible",
]

#: Static payload types of RFC 3551 that an offer may use without rtpmap.
STATIC_PAYLOAD_TYPES = {
    "0": RtpMap("PCMU", 8000),
    "3": RtpMap("GSM", 8000),
    "4": RtpMap("G723", 8000),
    "8": RtpMap("PCMA", 8000),
    "9": RtpMap("G722", 8000),
    "13": RtpMap("CN", 8000),
    "18": RtpMap("G729", 8000),
}
AUDIO_PROTOCOL = "RTP/AVP"
EVENT_ENCODING = "telephone-event"
#: RTP payload types RFC 5761 §4 forbids on a multiplexed port: with the
#: marker bit set they make a second octet of 192-223, RTCP's packet types.
MUX_CONFLICTING_PAYLOAD_TYPES = range(64, 96)


def mux_compatible(payload_types: Iterable[int | None]) -> bool:
    """Whether RTP of these payload types can share a port with RTCP
    (RFC 5761 §4): none of them is 64-95."""
    return not any(pt is not None and pt in MUX_CONFLICTING_PAYLOAD_TYPES for pt in payload_types)


class NoCommonCodec(ValueError):
    """No audio stream of the offer can be accepted (answer 488)."""


@attrs.frozen
class Codec:
    """A payload format we can send and receive.

    ``payload_type`` is the static number, or None for a dynamic format
    (numbered by the offerer).  ``fmtp`` is what we write in an ``a=fmtp``
    line; for telephone-event it is the list of events we handle.
    """

    name: str
    clock_rate: int = 8000
    payload_type: int | None = None
    channels: int = 1
    fmtp: str | None = None

    def matches(self, rtpmap: RtpMap) -> bool:
        return (
            rtpmap.encoding.lower() == self.name.lower()
            and rtpmap.clock_rate == self.clock_rate
            and (rtpmap.channels or 1) == self.channels
        )

    @property
    def is_event(self) -> bool:
        return self.name.lower() == EVENT_ENCODING


PCMU = Codec("PCMU", 8000, 0)
PCMA = Codec("PCMA", 8000, 8)
TELEPHONE_EVENT = Codec(EVENT_ENCODING, 8000, None, fmtp="0-15")
DEFAULT_CAPABILITIES = (PCMU, PCMA, TELEPHONE_EVENT)


# --------------------------------------------------------- event lists
def parse_events(fmtp: str | None) -> frozenset[int]:
    """The events of a telephone-event ``fmtp`` (``"0-15,66"``); none or an
    empty value means 0-15 (RFC 4733 §2.4.1).  Malformed items are skipped."""
    if not fmtp:
        return frozenset(range(16))
    events = set()
    for item in fmtp.split(","):
        low, dash, high = item.strip().partition("-")
        try:
            first = int(low)
            last = int(high) if dash else first
        except ValueError:
            continue
        if 0 <= first <= last <= 255:
            events.update(range(first, last + 1))
    return frozenset(events)


def format_events(events: Iterable[int]) -> str:
    """Events as the shortest range list: ``{0,...,15, 66}`` → ``"0-15,66"``."""
    out = []
    run: list[int] = []
    for event in sorted(set(events)):
        if run and event == run[-1] + 1:
            run.append(event)
            continue
        if run:
            out.append(_run(run))
        run = [event]
    if run:
        out.append(_run(run))
    return ",".join(out)


def _run(run: list[int]) -> str:
    return str(run[0]) if len(run) == 1 else f"{run[0]}-{run[-1]}"


# ------------------------------------------------------ reading streams
@attrs.frozen
class StreamInfo:
    """What one m-line says about the end that wrote it."""

    index: int
    media: str
    proto: str
    port: int
    address: str | None
    rtcp_port: int | None
    rtcp_address: str | None
    direction: str
    payload_type: int | None
    codec: RtpMap | None
    event_payload_type: int | None
    events: frozenset[int]
    ptime: int | None
    #: ``a=rtcp-mux``: in an offer, the offerer would multiplex; in an
    #: answer, RTP and RTCP share the RTP port both ways (RFC 5761 §5.1.1).
    rtcp_mux: bool = False

    @property
    def accepted(self) -> bool:
        """Whether the stream is in use (port not 0)."""
        return self.port != 0

    @property
    def old_style_hold(self) -> bool:
        """The RFC 2543 hold: connection address 0.0.0.0 (send it nothing)."""
        return self.address == "0.0.0.0"

    @property
    def sends(self) -> bool:
        return self.accepted and self.direction in ("sendrecv", "sendonly")

    @property
    def receives(self) -> bool:
        return self.accepted and not self.old_style_hold and self.direction in ("sendrecv", "recvonly")


def _rtpmap_of(media: Media, payload_type: str) -> RtpMap | None:
    return media.rtpmap().get(payload_type) or STATIC_PAYLOAD_TYPES.get(payload_type)


def _int_or_none(text: str) -> int | None:
    return int(text) if text.isdigit() else None


def streams(description: SessionDescription) -> list[StreamInfo]:
    """`StreamInfo` for every m-line, in order."""
    out = []
    for index, media in enumerate(description.media):
        codec_pt = codec = event_pt = None
        events: frozenset[int] = frozenset()
        for fmt in media.formats:
            rtpmap = _rtpmap_of(media, fmt)
            if rtpmap is not None and rtpmap.encoding.lower() == EVENT_ENCODING:
                if event_pt is None:
                    event_pt = _int_or_none(fmt)
                    events = parse_events(media.fmtp(fmt))
            elif codec_pt is None:
                codec_pt, codec = _int_or_none(fmt), rtpmap
        connection = description.connection_of(index)
        address = connection.host if connection else None
        rtcp = media.rtcp
        if media.port == 0:
            rtcp_port = rtcp_address = None
        elif rtcp is not None:
            rtcp_port = rtcp[0]
            rtcp_address = rtcp[1].host if rtcp[1] else address
        else:
            rtcp_port, rtcp_address = media.port + 1, address
        out.append(StreamInfo(
            index, media.media, media.proto, media.port, address, rtcp_port, rtcp_address,
            description.direction(index), codec_pt, codec, event_pt, events, media.ptime,
            media.rtcp_mux and media.port != 0,
        ))
    return out


# ------------------------------------------------------------- answering
def _answer_direction(offered: str, old_style_hold: bool, local: str) -> str:
    offer_sends = offered in ("sendrecv", "sendonly")
    offer_receives = offered in ("sendrecv", "recvonly") and not old_style_hold
    we_send = offer_receives and local in ("sendrecv", "sendonly")
    we_receive = offer_sends and local in ("sendrecv", "recvonly")
    return {
        (True, True): "sendrecv", (True, False): "sendonly",
        (False, True): "recvonly", (False, False): "inactive",
    }[(we_send, we_receive)]


def _rejected(media: Media) -> Media:
    return Media(media.media, 0, media.proto, media.formats or ("0",))


def _choose(media: Media, capabilities: Sequence[Codec]):
    """(payload type, codec) of the first offered format we support, and
    (payload type, events) of a usable telephone-event, or None."""
    chosen = None
    offered_events = []
    for fmt in media.formats:
        rtpmap = _rtpmap_of(media, fmt)
        if rtpmap is None or not fmt.isdigit():
            continue
        for codec in capabilities:
            if codec.matches(rtpmap):
                if codec.is_event:
                    offered_events.append((fmt, codec, rtpmap))
                elif chosen is None:
                    chosen = (fmt, codec, rtpmap)
                break
    if chosen is None:
        return None, None
    event = None
    for fmt, codec, rtpmap in offered_events:
        if rtpmap.clock_rate != chosen[1].clock_rate:
            continue
        common = parse_events(media.fmtp(fmt)) & parse_events(codec.fmtp)
        if common:
            event = (fmt, codec, rtpmap, common)
            break
    return chosen, event


def _accepted_media(media, chosen, event, port, direction, ptime, mux=False) -> Media:
    fmt, codec, rtpmap = chosen
    formats = [fmt]
    attributes: list = [("rtpmap", rtpmap.value(fmt))]
    if codec.fmtp:
        attributes.append(("fmtp", f"{fmt} {codec.fmtp}"))
    if event is not None:
        event_fmt, _, event_map, common = event
        formats.append(event_fmt)
        attributes.append(("rtpmap", event_map.value(event_fmt)))
        attributes.append(("fmtp", f"{event_fmt} {format_events(common)}"))
    if ptime:
        attributes.append(("ptime", str(ptime)))
    if mux:
        attributes.append(("rtcp-mux", None))
    attributes.append((direction, None))
    return Media(media.media, port, media.proto, tuple(formats), attributes=tuple(attributes))


def answer(
    offer: SessionDescription,
    capabilities: Sequence[Codec],
    address: str,
    ports: Sequence[int] | Mapping[int, int],
    *,
    direction: str = "sendrecv",
    max_audio: int = 1,
    session_id: int | str = 0,
    session_version: int | str = 0,
    username: str = "-",
    ptime: int | None = 20,
    rtcp_mux: bool = False,
) -> SessionDescription:
    """The answer to ``offer``; ``ports[i]`` is our RTP port for m-line
    ``i`` (looked up only for streams we accept; RTCP is on port + 1).
    ``direction`` is what we want (``"sendonly"`` to hold the peer).
    ``rtcp_mux``: whether we can multiplex RTCP on the RTP port; an
    accepted stream whose offer asked for it is answered ``a=rtcp-mux``
    unless a chosen payload type is 64-95 (`mux_compatible`), in which
    case both ends keep RTCP apart (RFC 5761 §5.1.1 lets us decline).
    Raises `NoCommonCodec` when no audio stream is usable."""
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be one of {', '.join(DIRECTIONS)}, not {direction!r}")
    info = streams(offer)
    out = []
    accepted = 0
    for index, media in enumerate(offer.media):
        stream = info[index]
        usable = (
            accepted < max_audio and media.media == "audio" and media.proto == AUDIO_PROTOCOL
            and media.port != 0 and stream.address is not None
        )
        chosen, event = _choose(media, capabilities) if usable else (None, None)
        if chosen is None:
            out.append(_rejected(media))
            continue
        try:
            port = ports[index]
        except (IndexError, KeyError):
            raise ValueError(f"no local port given for accepted m-line {index}") from None
        accepted += 1
        negotiated = _answer_direction(stream.direction, stream.old_style_hold, direction)
        mux = rtcp_mux and stream.rtcp_mux and mux_compatible(
            (_int_or_none(chosen[0]), None if event is None else _int_or_none(event[0]))
        )
        out.append(_accepted_media(media, chosen, event, port, negotiated, ptime, mux))
    if not accepted:
        raise NoCommonCodec("no audio stream of the offer has a codec we support")
    connection = Connection.for_address(address)
    return SessionDescription(
        origin=Origin(username, str(session_id), str(session_version), "IN", connection.addrtype, address),
        name="-",
        connection=connection,
        timings=offer.timings,
        media=tuple(out),
    )


def make_offer(
    capabilities: Sequence[Codec],
    address: str,
    port: int,
    *,
    direction: str = "sendrecv",
    old_style_hold: bool = False,
    session_id: int | str = 0,
    session_version: int | str = 0,
    username: str = "-",
    ptime: int | None = 20,
    rtcp_mux: bool = False,
) -> SessionDescription:
    """An offer of one audio stream with every capability, in order
    (``rtcp_mux``: asking for RTCP on the RTP port, RFC 5761)."""
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be one of {', '.join(DIRECTIONS)}, not {direction!r}")
    formats = []
    attributes: list = []
    next_dynamic = 101
    for codec in capabilities:
        if codec.payload_type is not None:
            fmt = str(codec.payload_type)
        else:
            fmt = str(next_dynamic)
            next_dynamic += 1
        formats.append(fmt)
        channels = codec.channels if codec.channels != 1 else None
        attributes.append(("rtpmap", RtpMap(codec.name, codec.clock_rate, channels).value(fmt)))
        if codec.fmtp:
            attributes.append(("fmtp", f"{fmt} {codec.fmtp}"))
    if ptime:
        attributes.append(("ptime", str(ptime)))
    if rtcp_mux:
        attributes.append(("rtcp-mux", None))
    attributes.append((direction, None))
    connection = Connection.for_address("0.0.0.0" if old_style_hold else address)
    origin_type = Connection.for_address(address).addrtype
    return SessionDescription(
        origin=Origin(username, str(session_id), str(session_version), "IN", origin_type, address),
        connection=connection,
        media=(Media("audio", port, AUDIO_PROTOCOL, tuple(formats), attributes=tuple(attributes)),),
    )


# ------------------------------------------------------------ relay side
_LINE_END = re.compile(r"\r?\n")


def rewrite(sdp: bytes | str, address: str, port_map: Mapping[int, int]):
    """``sdp`` with the relay's ``address`` and ports: ``port_map[i]`` is the
    relay's RTP port for m-line ``i`` (RTCP on port + 1).

    Changed: every ``c=`` line that a relayed stream uses (the address and
    its type; a ``c=`` of 0.0.0.0, the old-style hold, is kept so the hold
    still means hold), the port of every relayed m-line whose port is not
    0 (a rejected stream stays rejected), and the port (and address, if
    given) of a relayed m-line's ``a=rtcp`` (the relay's RTP port itself
    when the party's ``a=rtcp`` named its own RTP port, as a party that
    multiplexes may, RFC 5761 §5.1.3; else the relay's RTCP port).  When the session-level
    ``c=`` changes and an m-line that is not relayed relied on it, that
    m-line gets its own ``c=`` with the old address.

    Removed: the ICE attributes (RFC 8839) of relayed streams, and those of
    the session when no stream left unrelayed has candidates.  The relay
    answers no connectivity checks, and an ICE agent that saw the peer's
    own candidates would send around it; without them both ends use the
    m=/c= address, which is the relay's.

    Every other octet, line ends included, is kept.  Returns the type it
    was given.
    """
    is_bytes = not isinstance(sdp, str)
    text = bytes(sdp).decode("utf-8", "surrogateescape") if is_bytes else sdp
    description = parse_sdp(text)  # validates; SDPError for a broken body
    new_type = Connection.for_address(address).addrtype
    relayed = {
        i for i, media in enumerate(description.media) if i in port_map and media.port != 0
    }
    own_c = {i for i, media in enumerate(description.media) if media.connections}
    rewrite_session_c = any(i not in own_c for i in relayed)
    keep_old = {
        i for i, media in enumerate(description.media)
        if i not in relayed and i not in own_c and media.port != 0
    } if rewrite_session_c else set()

    strip_session_ice = not any(
        name == "candidate"
        for i, media in enumerate(description.media)
        if i not in relayed and media.port != 0
        for name, _ in media.attributes
    )

    pieces = _LINE_END.split(text)
    ends = _LINE_END.findall(text) + [""]
    eol = ends[0] or "\r\n"
    out = []
    index = -1  # current m-section, -1 for the session part
    pending_c = None  # a c= line to insert after the m= (and i=) line
    for line, end in zip(pieces, ends):
        kind = line[:2]
        if pending_c is not None and kind != "i=":
            out.append(pending_c + eol)
            pending_c = None
        if kind == "m=":
            index += 1
            if index in relayed:
                line = _replace_port(line, port_map[index])
            if index in keep_old and description.connection is not None:
                pending_c = description.connection.line()
        elif kind == "c=":
            applies = index in relayed if index >= 0 else rewrite_session_c
            if applies and not line.split()[-1].startswith("0.0.0.0"):
                line = f"c={line[2:].split()[0]} {new_type} {address}"
        elif line.startswith("a=rtcp:") and index in relayed:
            same = (description.media[index].rtcp or (None,))[0] == description.media[index].port
            line = _replace_rtcp(line, port_map[index] + (0 if same else 1), address, new_type)
        elif kind == "a=" and _is_ice_attribute(line) and (index in relayed if index >= 0 else strip_session_ice):
            continue
        out.append(line + end)
    if pending_c is not None:
        out.append(eol + pending_c + eol)
    result = "".join(out)
    return result.encode("utf-8", "surrogateescape") if is_bytes else result


_ICE_ATTRIBUTES = frozenset({
    "candidate", "remote-candidates", "end-of-candidates", "ice-ufrag", "ice-pwd",
    "ice-options", "ice-lite", "ice-mismatch", "ice-pacing",
})


def _is_ice_attribute(line: str) -> bool:
    return line[2:].partition(":")[0].strip() in _ICE_ATTRIBUTES


def _replace_port(line: str, port: int) -> str:
    fields = line.split(" ")
    _, slash, count = fields[1].partition("/")
    fields[1] = f"{port}{slash}{count}"
    return " ".join(fields)


def _replace_rtcp(line: str, port: int, address: str, addrtype: str) -> str:
    fields = line[len("a=rtcp:"):].split()
    if not fields:
        raise SDPError("a=rtcp without a port")
    fields[0] = str(port)
    if len(fields) >= 4:
        fields[2], fields[3] = addrtype, address
    return "a=rtcp:" + " ".join(fields)

"""
SDP session descriptions (RFC 4566) as immutable values.

`parse_sdp(data)` takes the octets of a SIP body (or text) and returns a
`SessionDescription`; ``serialize()`` writes it back with CRLF line ends
in RFC 4566's order (v o s i u e p c b t r z k a, then each m-section: m i
c b k a).  Lines of a known type are kept in order within their type, so
a description written in the RFC's order survives a round trip exactly.

What is checked: every line is ``<letter>=<value>``; the first is
``v=0``; ``o=`` (six fields) and ``s=`` are present once; ``c=`` has
three fields; ``m=`` has a media type, a port (with an optional
``/count``), a protocol and formats; ``t=`` two numbers; ``r=`` only
after a ``t=``.  A line of a type letter RFC 4566 does not define makes
the whole description invalid (RFC 4566 §5: a parser must ignore such a
description), as does anything else malformed: `SDPError`.  Empty lines
(a trailing CRLF pair) and bare LF line ends are tolerated.

Text is UTF-8; octets that are not survive as lone surrogates
(``surrogateescape``) and are written back unchanged.

Accessors answer the usual questions without re-parsing: `Media.rtpmap`,
`Media.fmtp`, `Media.ptime`, `Media.rtcp`, and
`SessionDescription.direction` / `connection` (a media-level value, else
the session-level one).
"""

from __future__ import annotations

import attrs

__all__ = [
    "SDPError",
    "Origin",
    "Connection",
    "Timing",
    "RtpMap",
    "Media",
    "SessionDescription",
    "parse_sdp",
    "DIRECTIONS",
]

DIRECTIONS = ("sendrecv", "sendonly", "recvonly", "inactive")


class SDPError(ValueError):
    """The body is not a valid session description."""


Attribute = tuple[str, "str | None"]


@attrs.frozen
class Origin:
    username: str = "-"
    session_id: str = "0"
    session_version: str = "0"
    nettype: str = "IN"
    addrtype: str = "IP4"
    address: str = "0.0.0.0"

    def line(self) -> str:
        return (
            f"o={self.username} {self.session_id} {self.session_version} "
            f"{self.nettype} {self.addrtype} {self.address}"
        )


@attrs.frozen
class Connection:
    """A ``c=`` line; ``address`` keeps any multicast ``/ttl/count``."""

    address: str
    addrtype: str = "IP4"
    nettype: str = "IN"

    @property
    def host(self) -> str:
        """The address without a multicast ``/ttl`` or ``/count`` suffix."""
        return self.address.split("/", 1)[0]

    def line(self) -> str:
        return f"c={self.nettype} {self.addrtype} {self.address}"

    @classmethod
    def for_address(cls, address: str) -> "Connection":
        """``IN IP6`` for an address with a colon, ``IN IP4`` otherwise."""
        return cls(address, "IP6" if ":" in address else "IP4")


@attrs.frozen
class Timing:
    start: int = 0
    stop: int = 0
    repeats: tuple[str, ...] = ()


@attrs.frozen
class RtpMap:
    encoding: str
    clock_rate: int
    channels: int | None = None

    def value(self, payload_type: str) -> str:
        text = f"{payload_type} {self.encoding}/{self.clock_rate}"
        return text if self.channels is None else f"{text}/{self.channels}"


def _lookup(attributes: tuple[Attribute, ...], name: str) -> str | None:
    for key, value in attributes:
        if key == name:
            return "" if value is None else value
    return None


def _direction(attributes: tuple[Attribute, ...]) -> str | None:
    for key, value in attributes:
        if value is None and key in DIRECTIONS:
            return key
    return None


@attrs.frozen
class Media:
    media: str
    port: int
    proto: str
    formats: tuple[str, ...]
    port_count: int | None = None
    info: str | None = None
    connections: tuple[Connection, ...] = ()
    bandwidths: tuple[str, ...] = ()
    key: str | None = None
    attributes: tuple[Attribute, ...] = ()

    def lines(self) -> list[str]:
        port = str(self.port) if self.port_count is None else f"{self.port}/{self.port_count}"
        out = [" ".join(["m=" + self.media, port, self.proto, *self.formats])]
        if self.info is not None:
            out.append("i=" + self.info)
        out.extend(c.line() for c in self.connections)
        out.extend("b=" + b for b in self.bandwidths)
        if self.key is not None:
            out.append("k=" + self.key)
        out.extend(_attribute_line(a) for a in self.attributes)
        return out

    def attribute(self, name: str) -> str | None:
        """The first ``a=name:value``'s value, ``''`` for a flag, else None."""
        return _lookup(self.attributes, name)

    def attribute_values(self, name: str) -> list[str]:
        return ["" if v is None else v for k, v in self.attributes if k == name]

    def rtpmap(self) -> dict[str, RtpMap]:
        """``a=rtpmap`` entries by payload type (malformed ones skipped)."""
        out = {}
        for value in self.attribute_values("rtpmap"):
            payload_type, _, rest = value.partition(" ")
            parts = rest.strip().split("/")
            try:
                channels = int(parts[2]) if len(parts) > 2 else None
                out[payload_type] = RtpMap(parts[0], int(parts[1]), channels)
            except (IndexError, ValueError):
                continue
        return out

    def fmtp(self, payload_type: str) -> str | None:
        for value in self.attribute_values("fmtp"):
            pt, _, params = value.partition(" ")
            if pt == payload_type:
                return params.strip()
        return None

    @property
    def ptime(self) -> int | None:
        value = self.attribute("ptime")
        try:
            return int(float(value)) if value else None
        except ValueError:
            return None

    @property
    def rtcp_mux(self) -> bool:
        """Whether the m-line carries ``a=rtcp-mux`` (RFC 5761 §5.1.1)."""
        return _lookup(self.attributes, "rtcp-mux") is not None

    @property
    def rtcp(self) -> tuple[int, Connection | None] | None:
        """``a=rtcp:port [IN IP4 addr]`` (RFC 3605), or None."""
        value = self.attribute("rtcp")
        if not value:
            return None
        fields = value.split()
        try:
            port = int(fields[0])
        except ValueError:
            return None
        connection = Connection(fields[3], fields[2], fields[1]) if len(fields) >= 4 else None
        return port, connection


def _attribute_line(attribute: Attribute) -> str:
    name, value = attribute
    return f"a={name}" if value is None else f"a={name}:{value}"


@attrs.frozen
class SessionDescription:
    origin: Origin = attrs.field(factory=Origin)
    name: str = "-"
    version: int = 0
    info: str | None = None
    uri: str | None = None
    emails: tuple[str, ...] = ()
    phones: tuple[str, ...] = ()
    connection: Connection | None = None
    bandwidths: tuple[str, ...] = ()
    timings: tuple[Timing, ...] = (Timing(),)
    zone: str | None = None
    key: str | None = None
    attributes: tuple[Attribute, ...] = ()
    media: tuple[Media, ...] = ()

    def lines(self) -> list[str]:
        out = [f"v={self.version}", self.origin.line(), "s=" + self.name]
        if self.info is not None:
            out.append("i=" + self.info)
        if self.uri is not None:
            out.append("u=" + self.uri)
        out.extend("e=" + e for e in self.emails)
        out.extend("p=" + p for p in self.phones)
        if self.connection is not None:
            out.append(self.connection.line())
        out.extend("b=" + b for b in self.bandwidths)
        for timing in self.timings:
            out.append(f"t={timing.start} {timing.stop}")
            out.extend("r=" + r for r in timing.repeats)
        if self.zone is not None:
            out.append("z=" + self.zone)
        if self.key is not None:
            out.append("k=" + self.key)
        out.extend(_attribute_line(a) for a in self.attributes)
        for media in self.media:
            out.extend(media.lines())
        return out

    def __str__(self) -> str:
        return "".join(line + "\r\n" for line in self.lines())

    def serialize(self) -> bytes:
        return str(self).encode("utf-8", "surrogateescape")

    def attribute(self, name: str) -> str | None:
        return _lookup(self.attributes, name)

    def direction(self, index: int) -> str:
        """Stream ``index``'s direction: media level, session level, sendrecv."""
        return _direction(self.media[index].attributes) or _direction(self.attributes) or "sendrecv"

    def connection_of(self, index: int) -> Connection | None:
        """Stream ``index``'s connection: its first ``c=``, else the session's."""
        media = self.media[index]
        return media.connections[0] if media.connections else self.connection


# ------------------------------------------------------------------ parsing
_SESSION_TYPES = set("vosiuepcbtrzka")
_MEDIA_TYPES = set("icbka")


def _split_lines(data: bytes | str) -> list[str]:
    text = data if isinstance(data, str) else bytes(data).decode("utf-8", "surrogateescape")
    lines = []
    for raw in text.split("\n"):
        line = raw[:-1] if raw.endswith("\r") else raw
        if not line:
            continue
        if len(line) < 2 or line[1] != "=" or not line[0].isalpha():
            raise SDPError(f"not an SDP line: {line[:40]!r}")
        lines.append(line)
    return lines


def _connection(value: str) -> Connection:
    fields = value.split()
    if len(fields) != 3:
        raise SDPError(f"c= needs network type, address type and address: {value!r}")
    return Connection(fields[2], fields[1], fields[0])


def _media(value: str) -> Media:
    fields = value.split()
    if len(fields) < 3:
        raise SDPError(f"m= needs media, port, protocol and formats: {value!r}")
    port_text, _, count_text = fields[1].partition("/")
    try:
        port = int(port_text)
        count = int(count_text) if count_text else None
    except ValueError:
        raise SDPError(f"m= port is not a number: {fields[1]!r}") from None
    if not 0 <= port <= 65535 or (count is not None and count < 1):
        raise SDPError(f"m= port out of range: {fields[1]!r}")
    return Media(fields[0], port, fields[2], tuple(fields[3:]), count)


def _attribute(value: str) -> Attribute:
    name, colon, rest = value.partition(":")
    if not name:
        raise SDPError(f"a= without a name: {value!r}")
    return (name, rest if colon else None)


def parse_sdp(data: bytes | str) -> SessionDescription:
    """A session description from a body; `SDPError` if it is not one."""
    lines = _split_lines(data)
    if not lines or lines[0] != "v=0":
        raise SDPError("an SDP body starts with v=0")
    session: dict = {
        "emails": [], "phones": [], "bandwidths": [], "timings": [], "attributes": [],
    }
    media: list[dict] = []
    for line in lines[1:]:
        kind, value = line[0], line[2:]
        if media:
            if kind == "m":
                media.append(_media_fields(value))
                continue
            if kind not in _MEDIA_TYPES:
                raise SDPError(f"{kind}= line not allowed in a media section")
            _media_line(media[-1], kind, value)
            continue
        if kind not in _SESSION_TYPES and kind != "m":
            raise SDPError(f"unknown SDP line type {kind!r}")
        if kind == "m":
            media.append(_media_fields(value))
        elif kind == "v":
            raise SDPError("more than one v= line")
        elif kind == "o":
            fields = value.split()
            if len(fields) != 6:
                raise SDPError(f"o= needs six fields: {value!r}")
            _once(session, "origin", Origin(*fields))
        elif kind in "siuzk":
            _once(session, {"s": "name", "i": "info", "u": "uri", "z": "zone", "k": "key"}[kind], value)
        elif kind == "e":
            session["emails"].append(value)
        elif kind == "p":
            session["phones"].append(value)
        elif kind == "c":
            _once(session, "connection", _connection(value))
        elif kind == "b":
            session["bandwidths"].append(value)
        elif kind == "t":
            fields = value.split()
            try:
                start, stop = (int(f) for f in fields)
            except ValueError:
                raise SDPError(f"t= needs a start and a stop time: {value!r}") from None
            session["timings"].append([start, stop, []])
        elif kind == "r":
            if not session["timings"]:
                raise SDPError("r= before any t= line")
            session["timings"][-1][2].append(value)
        else:  # a
            session["attributes"].append(_attribute(value))
    if "origin" not in session:
        raise SDPError("no o= line")
    if "name" not in session:
        raise SDPError("no s= line")
    timings = tuple(Timing(s, e, tuple(r)) for s, e, r in session.pop("timings")) or (Timing(),)
    for key in ("emails", "phones", "bandwidths", "attributes"):
        session[key] = tuple(session[key])
    return SessionDescription(
        timings=timings,
        media=tuple(attrs.evolve(m.pop("media"), **_tuples(m)) for m in media),
        **session,
    )


def _once(fields: dict, key: str, value) -> None:
    if key in fields:
        raise SDPError(f"more than one session-level line for {key}")
    fields[key] = value


def _media_fields(value: str) -> dict:
    return {"media": _media(value), "connections": [], "bandwidths": [], "attributes": []}


def _media_line(fields: dict, kind: str, value: str) -> None:
    if kind == "c":
        fields["connections"].append(_connection(value))
    elif kind == "b":
        fields["bandwidths"].append(value)
    elif kind == "a":
        fields["attributes"].append(_attribute(value))
    else:
        key = {"i": "info", "k": "key"}[kind]
        if key in fields:
            raise SDPError(f"more than one {kind}= line in a media section")
        fields[key] = value


def _tuples(fields: dict) -> dict:
    return {k: tuple(v) if isinstance(v, list) else v for k, v in fields.items()}

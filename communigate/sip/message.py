"""
SIP messages (RFC 3261 §7): parse bytes into a `Request` or `Response`,
serialize them back, build responses.  Pure: no I/O, no reactor, no logging.

Parsing (`parse_message`) treats its input as one datagram or one framed
stream message (see `communigate.sip.framing`):

- Line ends: CRLF, as RFC 3261 requires; bare LF is tolerated in the start
  line and header section (the body is opaque octets).  CRLFs before the
  start line are skipped (§7.5).  Header folding (LWS continuation lines)
  is unfolded to one SP; LWS around ``:`` is allowed.
- Header names are stored canonically (``v`` -> ``Via``, ``cseq`` ->
  ``CSeq``); values are kept as opaque text until a typed accessor parses
  them, so unknown headers (and odd ones such as ``;;,,;;,;``) pass
  through untouched.
- Content-Length is framing, not data: it is checked and consumed by the
  parser and written by `serialize` from ``len(body)``; `Headers` never
  holds it.  Octets after the body are ignored (only the first message of
  a datagram counts); a Content-Length beyond the data, a negative or
  non-numeric one, or two of them is an error; without one the body is the
  rest of the datagram (RFC 2543 peers).  A header section that ends with
  the datagram instead of an empty line is tolerated.

Validation at parse time is limited to what every element needs before it
can answer at all: the start line, and Via, From, To, Call-ID, CSeq (each
present once, well formed, CSeq method equal to the request method) and
Max-Forwards (0-255) when present.  Those values are kept parsed, so their
accessors cost nothing later; every other typed header (Contact, Route,
Record-Route, Expires, ...) is parsed on first access and cached, and a
malformed one raises `HeaderError` from its accessor for the application
to answer 400.  Decisions left to the application: 416 for a Request-URI
that is not a `SIPURI`/`TelURI` (the parser accepts any absoluteURI), 420
for Require/Proxy-Require, 483 for Max-Forwards 0, 501 for unknown
methods, 415/406 for bodies.

A message that fails raises `SIPParseError` with ``.status`` (400, or 505
for a SIP version other than 2.0), ``.reason`` (a phrase naming the fault,
fit for the response line), ``.is_request`` and ``.partial`` (the message
as far as it parsed, with its raw headers, so a transport can still build
the error response with `make_response`; None when not even the header
lines could be read).  Callers drop responses that fail.
"""

from __future__ import annotations

import re

import attrs

from communigate.sip.headers import (
    _NAMES,
    _TOKEN,
    LIST_HEADERS,
    CSeq,
    HeaderError,
    NameAddr,
    Via,
    Wildcard,
    canonical_name,
    parse_contact_values,
    parse_cseq,
    parse_delta_seconds,
    parse_max_forwards,
    parse_name_addr,
    parse_name_addr_values,
    parse_via_values,
    split_list,
)
from communigate.sip.uri import URI, SIPURI, URIError, parse_uri

__all__ = [
    "SIPParseError",
    "Headers",
    "Request",
    "Response",
    "parse_message",
    "serialize",
    "make_response",
    "REASON_PHRASES",
]


class SIPParseError(ValueError):
    """A message that cannot be accepted; see the module docstring."""

    def __init__(self, reason: str, status: int = 400, *, is_request=None, partial=None):
        super().__init__(reason)
        self.reason = reason
        self.status = status
        self.is_request = is_request
        self.partial = partial


# ------------------------------------------------------------------ Headers
_NAME_KEYS = {spelling: (canonical, canonical.lower()) for spelling, canonical in _NAMES.items()}
_TOKEN_NAME = re.compile(f"[{_TOKEN}]+")
_set = object.__setattr__


def _key(name: str) -> str:
    key = _KEYS_SEEN.get(name)
    if key is None:
        lname = name.lower()
        known = _NAME_KEYS.get(lname)
        key = lname if known is None else known[1]
        if len(_KEYS_SEEN) < 1024:  # the names code asks for, not every name on the wire
            _KEYS_SEEN[name] = key
    return key


_KEYS_SEEN: dict[str, str] = {}


class Headers:
    """An immutable, ordered multi-map of header fields.

    Holds ``(name, value)`` pairs as they appeared (names canonical, values
    raw text without the line end).  Lookups are case-insensitive and accept
    compact forms.  Modifiers return new objects.
    """

    __slots__ = ("_items", "_index", "_cache")

    def __init__(self, items=()):
        checked = []
        for name, value in items:
            name = canonical_name(name)
            value = str(value).strip(" \t")
            if not _TOKEN_NAME.fullmatch(name):
                raise HeaderError(f"invalid header name {name!r}")
            if name == "Content-Length":
                raise HeaderError("Content-Length is written from the body, not set", name)
            if "\r" in value or "\n" in value:
                raise HeaderError(f"CR or LF in the {name} value", name)
            checked.append((name, value))
        _set(self, "_items", tuple(checked))
        _set(self, "_index", None)
        _set(self, "_cache", {})

    @classmethod
    def _trusted(cls, items, index=None, cache=None) -> Headers:
        self = object.__new__(cls)
        _set(self, "_items", tuple(items))
        _set(self, "_index", index)
        _set(self, "_cache", {} if cache is None else cache)
        return self

    def _cache_without(self, key: str) -> dict:
        """
        The parsed values that stay true when the C{key} header changes:
        a proxy adds a Via or a Record-Route and should not parse From,
        To and CSeq again for it.
        """
        stale = _TYPED_BY_HEADER.get(key)
        return {what: value for what, value in self._cache.items() if what != stale}

    def __setattr__(self, name, value):
        raise AttributeError("Headers are immutable")

    def compact(self) -> None:
        """
        Let go of the lookup index and the parsed values (rebuilt when next
        asked for): for a message kept only to be sent again, like the
        last response of a completed transaction.
        """
        _set(self, "_index", None)
        _set(self, "_cache", {})

    def _values(self, name: str) -> list[str]:
        index = self._index
        if index is None:
            index = {}
            for hname, value in self._items:
                index.setdefault(hname.lower(), []).append(value)
            _set(self, "_index", index)
        return index.get(_key(name), [])

    # -- reading
    def __iter__(self):
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, name: str) -> bool:
        return bool(self._values(name))

    def __eq__(self, other) -> bool:
        return isinstance(other, Headers) and self._items == other._items

    def __hash__(self) -> int:
        return hash(self._items)

    def __repr__(self) -> str:
        return f"Headers({list(self._items)!r})"

    def items(self) -> tuple[tuple[str, str], ...]:
        return self._items

    def get(self, name: str, default: str | None = None) -> str | None:
        """The value of the first ``name`` header line (raw, unsplit)."""
        values = self._values(name)
        return values[0] if values else default

    def raw_values(self, name: str) -> list[str]:
        """Every ``name`` header line's value, unsplit, in order."""
        return list(self._values(name))

    def get_all(self, name: str) -> list[str]:
        """Every value of ``name``: list headers (Via, Contact, Route,
        Allow, Supported, Require, ...) split at their commas, empty
        elements dropped; other headers one value per line."""
        values = self._values(name)
        if _key(name) not in LIST_HEADERS:
            return list(values)
        out = []
        for value in values:
            if "," in value:
                out.extend(item for item in split_list(value) if item)
            elif value:
                out.append(value)
        return out

    # -- modifying
    def with_added(self, name: str, value, *, first: bool = False) -> Headers:
        """A copy with one more ``name`` line, last (or first of all)."""
        (item,) = Headers([(name, value)])._items
        items = (item,) + self._items if first else self._items + (item,)
        return Headers._trusted(items, cache=self._cache_without(_key(name)))

    def with_replaced(self, name: str, value) -> Headers:
        """A copy where ``name`` has the single value ``value``, at the place
        of its first line (or appended)."""
        (item,) = Headers([(name, value)])._items
        key, out, done = _key(name), [], False
        for entry in self._items:
            if entry[0].lower() == key:
                if not done:
                    out.append(item)
                    done = True
            else:
                out.append(entry)
        if not done:
            out.append(item)
        return Headers._trusted(out, cache=self._cache_without(key))

    def without(self, name: str) -> Headers:
        key = _key(name)
        return Headers._trusted((e for e in self._items if e[0].lower() != key), cache=self._cache_without(key))

    def without_first(self, name: str) -> Headers:
        """A copy without the first *value* of a list header (the top Via or
        Route), splitting a comma-separated line when needed."""
        key, out, done = _key(name), [], False
        for entry in self._items:
            if not done and entry[0].lower() == key:
                done = True
                rest = split_list(entry[1])[1:] if "," in entry[1] else []
                if rest:
                    out.append((entry[0], ", ".join(rest)))
                continue
            out.append(entry)
        return Headers._trusted(out, cache=self._cache_without(key))


def _as_headers(value) -> Headers:
    return value if type(value) is Headers else Headers(value)


# ----------------------------------------------------------- typed access
def _single(headers: Headers, name: str) -> str | None:
    values = headers._values(name)
    if not values:
        return None
    if len(values) > 1:
        raise HeaderError(f"more than one {name} header", name)
    return values[0]


_PARSERS = {
    "vias": lambda h: parse_via_values(h._values("Via")),
    "from": lambda h: _one(h, "From", lambda v: parse_name_addr(v, "From")),
    "to": lambda h: _one(h, "To", lambda v: parse_name_addr(v, "To")),
    "cseq": lambda h: _one(h, "CSeq", parse_cseq),
    "contacts": lambda h: parse_contact_values(h._values("Contact")),
    "routes": lambda h: parse_name_addr_values(h._values("Route"), "Route"),
    "record_routes": lambda h: parse_name_addr_values(h._values("Record-Route"), "Record-Route"),
    "paths": lambda h: parse_name_addr_values(h._values("Path"), "Path"),
    "max_forwards": lambda h: _one(h, "Max-Forwards", parse_max_forwards),
    "expires": lambda h: _one(h, "Expires", parse_delta_seconds),
}


# Which typed value each header's text is parsed into.
_TYPED_BY_HEADER = {
    "via": "vias",
    "from": "from",
    "to": "to",
    "cseq": "cseq",
    "contact": "contacts",
    "route": "routes",
    "record-route": "record_routes",
    "path": "paths",
    "max-forwards": "max_forwards",
    "expires": "expires",
}


def _one(headers: Headers, name: str, parser):
    value = _single(headers, name)
    return None if value is None else parser(value)


class _Message:
    """Typed accessors shared by Request and Response.

    Each parses its header on first use and caches the result; absent
    headers give None (or an empty tuple for lists); malformed or repeated
    single-value headers raise HeaderError.
    """

    __slots__ = ()

    def _typed(self, what):
        cache = self.headers._cache
        try:
            return cache[what]
        except KeyError:
            value = cache[what] = _PARSERS[what](self.headers)
            return value

    def vias(self) -> tuple[Via, ...]:
        return self._typed("vias")

    def top_via(self) -> Via | None:
        vias = self._typed("vias")
        return vias[0] if vias else None

    def from_(self) -> NameAddr | None:
        return self._typed("from")

    def to(self) -> NameAddr | None:
        return self._typed("to")

    def cseq(self) -> CSeq | None:
        return self._typed("cseq")

    def contacts(self) -> tuple[NameAddr, ...] | tuple[Wildcard]:
        """Contact values; ``(WILDCARD,)`` for ``Contact: *``."""
        return self._typed("contacts")

    def routes(self) -> tuple[NameAddr, ...]:
        return self._typed("routes")

    def record_routes(self) -> tuple[NameAddr, ...]:
        return self._typed("record_routes")

    def paths(self) -> tuple[NameAddr, ...]:
        return self._typed("paths")

    def max_forwards(self) -> int | None:
        return self._typed("max_forwards")

    def expires(self) -> int | None:
        """The Expires header in seconds; values over 2**32-1 are clamped."""
        return self._typed("expires")

    @property
    def call_id(self) -> str | None:
        return _single(self.headers, "Call-ID")

    @property
    def content_length(self) -> int:
        return len(self.body)

    @property
    def content_type(self) -> str | None:
        return self.headers.get("Content-Type")

    def with_top_via(self, via: Via):
        """
        A copy whose top Via is C{via} (a server stamping C{received} and
        C{rport}), with the other Vias as parsed already.

        The top Via goes first of all the header lines, as
        C{headers.without_first("Via").with_added("Via", via, first=True)}
        puts it; a server does this to every request, so when the top Via
        has a line of its own the new header list is made in one step.
        """
        vias = self.vias()
        headers = self.headers
        items = headers._items
        text = str(via).strip(" \t")
        for i, (name, value) in enumerate(items):
            if name == "Via" or name.lower() == "via":
                if "," in value or "\r" in text or "\n" in text:
                    break
                cache = headers._cache_without("via")
                cache["vias"] = (via,) + vias[1:]
                stamped = Headers._trusted((("Via", text),) + items[:i] + items[i + 1:], cache=cache)
                return self.with_headers(stamped)
        headers = headers.without_first("Via").with_added("Via", via, first=True)
        headers._cache["vias"] = (via,) + vias[1:]
        return self.with_headers(headers)

    def with_headers(self, headers):
        # The fields were checked when this message was made; a copy with
        # other headers need not check them again (attrs.evolve would).
        copy = object.__new__(type(self))
        for field in type(self).__attrs_attrs__:
            _set(copy, field.name, getattr(self, field.name))
        _set(copy, "headers", _as_headers(headers))
        return copy

    def with_body(self, body: bytes, content_type: str | None = None):
        headers = self.headers
        if content_type is not None:
            headers = headers.with_replaced("Content-Type", content_type)
        elif not body:
            headers = headers.without("Content-Type")
        return attrs.evolve(self, headers=headers, body=body)

    def __bytes__(self) -> bytes:
        return serialize(self)


@attrs.frozen
class Request(_Message):
    """A SIP request.  ``uri`` is None only in a `SIPParseError.partial`."""

    method: str
    uri: URI | None
    headers: Headers = attrs.field(factory=Headers, converter=_as_headers)
    body: bytes = b""
    version: str = "SIP/2.0"

    is_request = True

    def __attrs_post_init__(self) -> None:
        if self.method and not _METHOD.fullmatch(self.method):  # '' only in a partial
            raise ValueError(f"invalid method {self.method!r}")

    def with_uri(self, uri: URI) -> Request:
        return attrs.evolve(self, uri=uri)


@attrs.frozen
class Response(_Message):
    status: int
    reason: str
    headers: Headers = attrs.field(factory=Headers, converter=_as_headers)
    body: bytes = b""
    version: str = "SIP/2.0"

    is_request = False

    def __attrs_post_init__(self) -> None:
        if "\r" in self.reason or "\n" in self.reason:
            raise ValueError("CR or LF in the reason phrase")

    @property
    def status_class(self) -> int:
        """1 for provisional, 2 for success, ... 6 for global failure."""
        return self.status // 100


# ------------------------------------------------------------------ parsing
_FOLD = re.compile(r"[ \t]*\n[ \t]+")
_HEADER_LINE = re.compile(rf"^([{_TOKEN}]+)[ \t]*:(.*)$", re.M)
_VERSION = re.compile(r"SIP/(\d{1,9})\.(\d{1,9})", re.I)
_METHOD = re.compile(f"[{_TOKEN}]+")
_WORD = r"[A-Za-z0-9\-.!%*_+`'~()<>:\\\"/\[\]?{}]+"
_CALL_ID = re.compile(rf"{_WORD}(?:@{_WORD})?")
_REQUIRED = tuple((n.lower(), n) for n in ("Via", "From", "To", "Call-ID", "CSeq"))
_SINGLE = tuple((n.lower(), n) for n in ("From", "To", "Call-ID", "CSeq", "Max-Forwards"))


def find_header_end(data, start: int = 0) -> tuple[int, int] | None:
    """Where the first empty line after ``start`` begins and ends: CRLF CRLF,
    or the same with bare LFs (LF LF, CRLF LF, LF CRLF); None if none."""
    a = data.find(b"\n\n", start)
    b = data.find(b"\n\r\n", start)
    if a < 0 and b < 0:
        return None
    if b < 0 or 0 <= a < b:
        i, end = a, a + 2
    else:
        i, end = b, b + 3
    return (i - 1 if i > 0 and data[i - 1] == 0x0D else i), end


def _split_head(data: bytes) -> tuple[bytes, bytes]:
    i = data.find(b"\r\n\r\n")
    if i >= 0 and data.count(b"\n", 0, i) == data.count(b"\r\n", 0, i):
        return data[:i], data[i + 4:]
    found = find_header_end(data)
    if found is None:  # no empty line: the header section ends with the datagram
        return data.rstrip(b"\r\n"), b""
    return data[: found[0]], data[found[1]:]


def _version(text: str) -> str | None:
    """'SIP/2.0' for any spelling of it, the text for another version, None
    when not a SIP-Version at all."""
    m = _VERSION.fullmatch(text)
    if m is None:
        return None
    if int(m.group(1)) == 2 and int(m.group(2)) == 0:
        return "SIP/2.0"
    return text


def parse_message(data: bytes) -> Request | Response:
    """Parse one SIP message; raise `SIPParseError` if it is not one."""
    if data[:1] in (b"\r", b"\n"):
        data = data.lstrip(b"\r\n")
    head, rest = _split_head(data)
    text = head.decode("utf-8", "surrogateescape")
    if "\r" in text:
        text = text.replace("\r\n", "\n")
    if "\n " in text or "\n\t" in text:
        text = _FOLD.sub(" ", text)
    start, _, fields = text.partition("\n")
    is_request = start[:4].upper() != "SIP/"

    # header lines first, so that a bad start line still leaves a partial
    pairs = _HEADER_LINE.findall(fields)
    header_error = None
    if len(pairs) != fields.count("\n") + 1 and fields:
        bad = next((ln for ln in fields.split("\n") if not _HEADER_LINE.fullmatch(ln)), "")
        header_error = f"Malformed header line {bad[:40]!r}"
        pairs = [p for ln in fields.split("\n") for p in _HEADER_LINE.findall(ln)]
    elif "\r" in fields:
        header_error = "Bare CR in header section"
    items, index, lengths = [], {}, []
    for name, value in pairs:
        value = value.strip(" \t")
        lname = name.lower()
        known = _NAME_KEYS.get(lname)
        if known is None:
            name, key = name, lname
        else:
            name, key = known
            if key == "content-length":
                lengths.append(value)
                continue
        items.append((name, value))
        values = index.get(key)
        if values is None:
            index[key] = [value]
        else:
            values.append(value)
    headers = Headers._trusted(items, index)

    def fail(reason, status=400, partial=None):
        raise SIPParseError(reason, status, is_request=is_request, partial=partial)

    # start line
    if is_request:
        parts = start.split(" ")
        method = parts[0] if _METHOD.fullmatch(parts[0]) else ""
        version = _version(parts[2]) if len(parts) == 3 and method else None
        if version != "SIP/2.0":
            fail(
                "Malformed Request-Line" if version is None else "Version Not Supported",
                400 if version is None else 505,
                Request(method, None, headers),
            )
        try:
            uri = parse_uri(parts[1])
            if isinstance(uri, SIPURI) and uri.headers:
                raise URIError("headers not allowed")
        except URIError as e:
            reason = "Bad Request-URI" + (" (headers not allowed)" if "headers" in str(e) else "")
            fail(reason, partial=Request(method, None, headers))
    else:
        parts = start.split(" ", 2)
        version = _version(parts[0])
        if len(parts) < 2 or version is None:
            fail("Malformed Status-Line")
        if version != "SIP/2.0":
            fail("Version Not Supported", 505)
        code = parts[1]
        if not (len(code) == 3 and code.isdigit() and code.isascii() and "1" <= code[0] <= "6"):
            fail("Bad Status-Code")
        status, reason = int(code), parts[2] if len(parts) == 3 else ""

    def make(body=b""):
        if is_request:
            return Request(method, uri, headers, body)
        return Response(status, reason, headers, body)

    if header_error:
        fail(header_error, partial=make())

    # body framing
    if lengths:
        if len(lengths) > 1:
            fail("Multiple Content-Length", partial=make())
        length = lengths[0]
        if not (length.isdigit() and length.isascii() and len(length) <= 10):
            fail("Bad Content-Length", partial=make())
        length = int(length)
        if length > len(rest):
            fail("Content-Length exceeds message", partial=make())
        body = rest[:length] if length != len(rest) else rest
    else:
        body = rest
    message = make(body)
    _validate(message, fail)
    return message


def _validate(message, fail) -> None:
    h = message.headers
    h._values("Via")  # builds the index
    index = h._index
    missing = [name for key, name in _REQUIRED if key not in index]
    if missing:
        fail("Missing " + ", ".join(missing), partial=message)
    repeated = [name for key, name in _SINGLE if len(index.get(key, ())) > 1]
    if repeated:
        fail("Multiple " + ", ".join(repeated), partial=message)
    cache = h._cache
    try:
        cache["vias"] = parse_via_values(index["via"])
    except HeaderError:
        fail("Malformed Via", partial=message)
    try:
        cache["from"] = parse_name_addr(index["from"][0], "From")
    except HeaderError:
        fail("Malformed From", partial=message)
    try:
        cache["to"] = parse_name_addr(index["to"][0], "To")
    except HeaderError:
        fail("Malformed To", partial=message)
    if not _CALL_ID.fullmatch(index["call-id"][0]):
        fail("Bad Call-ID", partial=message)
    try:
        cseq = cache["cseq"] = parse_cseq(index["cseq"][0])
    except HeaderError:
        fail("Bad CSeq", partial=message)
    if message.is_request:
        if cseq.method != message.method:
            fail("CSeq method mismatch", partial=message)
        max_forwards = index.get("max-forwards")
        if max_forwards:
            try:
                cache["max_forwards"] = parse_max_forwards(max_forwards[0])
            except HeaderError:
                fail("Bad Max-Forwards", partial=message)


# -------------------------------------------------------------- serializing
def serialize(message: Request | Response) -> bytes:
    """Canonical wire form: CRLF line ends, long header names, one line per
    stored header, ``Content-Length`` last and always right."""
    if message.is_request:
        lines = [f"{message.method} {message.uri} {message.version}"]
    else:
        lines = [f"{message.version} {message.status} {message.reason}"]
    lines += [f"{name}: {value}" for name, value in message.headers._items]
    body = message.body
    lines.append(f"Content-Length: {len(body)}\r\n\r\n")
    return "\r\n".join(lines).encode("utf-8", "surrogateescape") + body


REASON_PHRASES = {
    100: "Trying", 180: "Ringing", 181: "Call Is Being Forwarded", 182: "Queued",
    183: "Session Progress", 199: "Early Dialog Terminated", 200: "OK",
    202: "Accepted", 204: "No Notification", 300: "Multiple Choices",
    301: "Moved Permanently", 302: "Moved Temporarily", 305: "Use Proxy",
    380: "Alternative Service", 400: "Bad Request", 401: "Unauthorized",
    402: "Payment Required", 403: "Forbidden", 404: "Not Found",
    405: "Method Not Allowed", 406: "Not Acceptable",
    407: "Proxy Authentication Required", 408: "Request Timeout", 410: "Gone",
    412: "Conditional Request Failed", 413: "Request Entity Too Large",
    414: "Request-URI Too Long", 415: "Unsupported Media Type",
    416: "Unsupported URI Scheme", 420: "Bad Extension",
    421: "Extension Required", 423: "Interval Too Brief",
    429: "Provide Referrer Identity", 430: "Flow Failed",
    439: "First Hop Lacks Outbound Support",
    480: "Temporarily Unavailable", 481: "Call/Transaction Does Not Exist",
    482: "Loop Detected", 483: "Too Many Hops", 484: "Address Incomplete",
    485: "Ambiguous", 486: "Busy Here", 487: "Request Terminated",
    488: "Not Acceptable Here", 489: "Bad Event", 491: "Request Pending",
    493: "Undecipherable", 500: "Server Internal Error", 501: "Not Implemented",
    502: "Bad Gateway", 503: "Service Unavailable", 504: "Server Time-out",
    505: "Version Not Supported", 513: "Message Too Large",
    600: "Busy Everywhere", 603: "Decline", 604: "Does Not Exist Anywhere",
    606: "Not Acceptable",
}


def make_response(
    request: Request, status: int, reason: str | None = None, *, to_tag: str | None = None, headers=()
) -> Response:
    """A response to ``request`` as RFC 3261 §8.2.6 builds it.

    Copies every Via (in order), From, To, Call-ID and CSeq as the request
    carried them (raw text, so this works on a `SIPParseError.partial`
    whose other headers are bad), adds ``;tag=to_tag`` to To when it has
    no tag yet, copies Timestamp into a 100, and appends ``headers`` (name,
    value) pairs; values may be typed header objects.
    """
    if not 100 <= status <= 699:
        raise ValueError(f"status {status} is not 100-699")
    if reason is None:
        reason = REASON_PHRASES.get(status, "")
    h = request.headers
    items = [("Via", v) for v in h._values("Via")]
    tagged = False
    for name in ("From", "To", "Call-ID", "CSeq"):
        values = h._values(name)
        if values:
            value = values[0]
            if name == "To" and to_tag is not None and not _has_tag(request):
                value = f"{value};tag={to_tag}"
                tagged = True
            items.append((name, value))
    if status == 100 and h._values("Timestamp"):
        items.append(("Timestamp", h._values("Timestamp")[0]))
    # What the request already parsed of the copied headers holds for the
    # response too, unless an extra header adds to one of them.
    cache = {what: value for what, value in h._cache.items() if what in _COPIED_TYPED}
    if tagged:
        cache.pop("to", None)
    if headers:
        extra = Headers(headers)._items
        for name, _ in extra:
            cache.pop(_TYPED_BY_HEADER.get(name.lower()), None)
        items += extra
    return Response(status, reason, Headers._trusted(items, cache=cache))


_COPIED_TYPED = frozenset(("vias", "from", "to", "cseq"))


def _has_tag(request: Request) -> bool:
    try:
        to = request.to()
    except HeaderError:
        return True  # leave a To we cannot read as it is
    return to is not None and to.tag is not None

"""
SIP header field values (RFC 3261 §20, §25.1): names and their compact
forms, comma-separated lists, and the typed values the transaction layer,
registrar, proxy and digest code need.

- `NameAddr` for From, To, Contact, Route, Record-Route, Path, ... ;
  `parse_name_addr`, `parse_name_addr_list`, `parse_contact_list` (which
  also knows ``Contact: *``, returned as `WILDCARD`).
- `Via` with ``branch``, ``received``, ``rport``; `parse_via_list`.
- `CSeq`; `parse_cseq`.
- `parse_auth_params` / `format_auth_params` for Authorization,
  Proxy-Authorization, WWW-Authenticate, Proxy-Authenticate.
- `canonical_name` maps any spelling (``v``, ``VIA``, ``call-id``) to the
  canonical name (``Via``, ``Call-ID``); unknown names are kept as written.

Header parameters are kept as written: ``(name, value)`` pairs in order,
the value ``None`` for a valueless parameter and a quoted-string value
*with* its quotes (``('+sip.instance', '"<urn:uuid:1>"')``); `unquote`
removes them.  Lookups by name are case-insensitive.

All values are immutable (attrs, frozen) with ``with_...`` modifiers;
``str(value)`` is the canonical text (display names always quoted, URIs
always in angle brackets).  Malformed text raises `HeaderError`.
"""

from __future__ import annotations

import re

import attrs

from communigate.sip.uri import URI, URIError, _Parameters, parse_uri

__all__ = [
    "HeaderError",
    "canonical_name",
    "is_list_header",
    "split_list",
    "quote",
    "unquote",
    "parse_params",
    "format_params",
    "NameAddr",
    "Wildcard",
    "WILDCARD",
    "parse_name_addr",
    "parse_name_addr_list",
    "parse_contact_list",
    "parse_contact_values",
    "parse_name_addr_values",
    "parse_via_values",
    "parse_max_forwards",
    "parse_delta_seconds",
    "Via",
    "MAGIC_COOKIE",
    "parse_via",
    "parse_via_list",
    "CSeq",
    "parse_cseq",
    "parse_auth_params",
    "format_auth_params",
    "MAX_CSEQ",
]


class HeaderError(ValueError):
    """A header field value does not follow its grammar."""

    def __init__(self, message: str, header: str | None = None):
        super().__init__(message)
        self.header = header


# ------------------------------------------------------------------ names
_CANONICAL = [
    "Accept", "Accept-Contact", "Accept-Encoding", "Accept-Language",
    "Accept-Resource-Priority", "Alert-Info", "Allow", "Allow-Events",
    "Authentication-Info", "Authorization", "Call-ID", "Call-Info", "Contact",
    "Content-Disposition", "Content-Encoding", "Content-Language",
    "Content-Length", "Content-Type", "CSeq", "Date", "Error-Info", "Event",
    "Expires", "Flow-Timer", "From", "History-Info", "Identity",
    "Identity-Info", "In-Reply-To", "Max-Forwards", "MIME-Version",
    "Min-Expires", "Min-SE", "Organization", "P-Asserted-Identity",
    "P-Preferred-Identity", "Path", "Priority", "Privacy",
    "Proxy-Authenticate", "Proxy-Authorization", "Proxy-Require", "RAck",
    "Reason", "Record-Route", "Refer-To", "Referred-By", "Reject-Contact",
    "Replaces", "Reply-To", "Request-Disposition", "Require",
    "Resource-Priority", "Retry-After", "Route", "RSeq", "Security-Client",
    "Security-Server", "Security-Verify", "Server", "Service-Route",
    "Session-Expires", "SIP-ETag", "SIP-If-Match", "Subject",
    "Subscription-State", "Supported", "Target-Dialog", "Timestamp", "To",
    "Unsupported", "User-Agent", "Via", "Warning", "WWW-Authenticate",
]
COMPACT_FORMS = {
    "a": "Accept-Contact", "b": "Referred-By", "c": "Content-Type",
    "d": "Request-Disposition", "e": "Content-Encoding", "f": "From",
    "i": "Call-ID", "j": "Reject-Contact", "k": "Supported",
    "l": "Content-Length", "m": "Contact", "n": "Identity-Info", "o": "Event",
    "r": "Refer-To", "s": "Subject", "t": "To", "u": "Allow-Events",
    "v": "Via", "x": "Session-Expires", "y": "Identity",
}
_NAMES = {name.lower(): name for name in _CANONICAL}
_NAMES.update(COMPACT_FORMS)

# Headers whose grammar is a comma-separated list (RFC 3261 §25.1 and the
# extensions above).  WWW-Authenticate, Authorization, Date, ... are not.
LIST_HEADERS = frozenset(
    n.lower()
    for n in (
        "Accept", "Accept-Contact", "Accept-Encoding", "Accept-Language",
        "Accept-Resource-Priority", "Alert-Info", "Allow", "Allow-Events",
        "Call-Info", "Contact", "Content-Encoding", "Content-Language",
        "Error-Info", "History-Info", "In-Reply-To", "P-Asserted-Identity",
        "P-Preferred-Identity", "Path", "Proxy-Require", "Reason",
        "Record-Route", "Reject-Contact", "Request-Disposition", "Require",
        "Resource-Priority", "Route", "Security-Client", "Security-Server",
        "Security-Verify", "Service-Route", "Supported", "Unsupported", "Via",
        "Warning",
    )
)


def canonical_name(name: str) -> str:
    """``'v'`` -> ``'Via'``, ``'CALL-ID'`` -> ``'Call-ID'``; unknown names as given."""
    return _NAMES.get(name.lower(), name)


def is_list_header(name: str) -> bool:
    return canonical_name(name).lower() in LIST_HEADERS


MAX_CSEQ = 2**32 - 1  # also the largest delta-seconds

# ------------------------------------------------------- lexical helpers
_TOKEN = r"A-Za-z0-9\-.!%*_+`'~"
_TOKEN_RE = re.compile(f"[{_TOKEN}]+")
_QSTRING = r'"[^"\\]*(?:\\.[^"\\]*)*"'
_LIST_ITEM = re.compile(rf'(?:{_QSTRING}|<[^>]*>|[^,"<]+)*', re.S)
_QUOTED_PAIR = re.compile(r"\\(.)", re.S)
_MUST_ESCAPE = re.compile(r'["\\\x00-\x08\x0b\x0c\x0e-\x1f\x7f]')
_PARAM = re.compile(
    rf"\s*;\s*([{_TOKEN}]+)(?:\s*=\s*({_QSTRING}|[{_TOKEN}:\[\]]+))?\s*", re.S
)
_WS = re.compile(r"\s+")


def split_list(value: str) -> list[str]:
    """Split a list header value at commas outside quotes and ``<>``.

    Elements are stripped; empty elements are kept (callers decide whether
    the grammar allows them).  Unbalanced quotes or ``<`` raise HeaderError.
    """
    if '"' not in value and "<" not in value:
        return [item.strip() for item in value.split(",")]
    items, pos, end = [], 0, len(value)
    while True:
        m = _LIST_ITEM.match(value, pos)
        items.append(m.group().strip())
        pos = m.end()
        if pos == end:
            return items
        if value[pos] != ",":
            raise HeaderError(f"unbalanced quote or '<' in {value!r}")
        pos += 1


def unquote(value: str) -> str:
    """The contents of a quoted-string (quoted-pairs resolved); other text as is."""
    if len(value) >= 2 and value[0] == '"' and value[-1] == '"':
        value = value[1:-1]
        if "\\" in value:
            value = _QUOTED_PAIR.sub(r"\1", value)
    return value


def quote(value: str) -> str:
    """``value`` as a quoted-string.  CR and LF cannot be quoted (HeaderError)."""
    if "\r" in value or "\n" in value:
        raise HeaderError(f"CR or LF cannot be quoted: {value!r}")
    return '"' + _MUST_ESCAPE.sub(lambda m: "\\" + m.group(), value) + '"'


def parse_params(text: str, pos: int = 0) -> tuple[tuple[str, str | None], ...]:
    """Parse ``;name=value;name`` from ``text[pos:]`` to its end.

    Values are token, host (with ``:`` and brackets) or quoted-string (kept
    with its quotes).  Anything else, including empty parameters, raises.
    """
    params = []
    end = len(text)
    while pos < end:
        m = _PARAM.match(text, pos)
        if m is None:
            if text[pos:].strip():
                raise HeaderError(f"malformed parameters in {text!r}")
            break
        params.append(m.groups())
        pos = m.end()
    return tuple(params)


def format_params(parameters) -> str:
    return "".join(
        f";{n}" if v is None else f";{n}={v}" for n, v in parameters
    )


def _uint(value: str, name: str, maximum: int, clamp: bool = False) -> int:
    if not (value.isdigit() and value.isascii()):
        raise HeaderError(f"{name} is not a number: {value!r}", name)
    if len(value) > 10 or int(value) > maximum:
        if clamp:
            return maximum
        raise HeaderError(f"{name} out of range: {value[:20]!r}", name)
    return int(value)


def parse_max_forwards(text: str) -> int:
    """Max-Forwards: 0-255 (leading zeros allowed)."""
    return _uint(text, "Max-Forwards", 255)


def parse_delta_seconds(text: str, header: str = "Expires") -> int:
    """delta-seconds (Expires, the Contact expires parameter); values over
    2**32-1 are clamped to it, as a registrar clamps to its maximum anyway."""
    return _uint(text, header, MAX_CSEQ, clamp=True)


def _parameter_int(owner, name: str, maximum: int) -> int | None:
    value = owner.parameter(name)
    return None if value is None else _uint(value, name, maximum)


# ---------------------------------------------------------------- name-addr
def _check_display_name(instance, attribute, value) -> None:
    if value is not None and ("\r" in value or "\n" in value):
        raise HeaderError("a display name cannot hold CR or LF")


@attrs.frozen
class NameAddr(_Parameters):
    """``"Display" <uri>;param=value`` — From, To, Contact, Route, ...

    ``display_name`` is unquoted and unescaped (None when absent);
    ``parameters`` are the *header* parameters (tag, expires, q, ...);
    parameters inside ``<>`` belong to the URI.
    """

    display_name: str | None = attrs.field(validator=_check_display_name)
    uri: URI
    parameters: tuple[tuple[str, str | None], ...] = ()

    def __str__(self) -> str:
        uri = f"<{self.uri}>"
        if self.display_name is not None:
            uri = f"{quote(self.display_name)} {uri}"
        if self.parameters:
            uri += format_params(self.parameters)
        return uri

    serialize = __str__

    @property
    def tag(self) -> str | None:
        return self.parameter("tag")

    def with_tag(self, tag: str) -> NameAddr:
        return self.with_parameter("tag", tag)

    @property
    def expires(self) -> int | None:
        """The Contact ``expires`` parameter (clamped to 2**32-1)."""
        value = self.parameter("expires")
        return None if value is None else parse_delta_seconds(value, "expires")

    @property
    def q(self) -> float | None:
        """The Contact ``q`` parameter, 0.0-1.0."""
        value = self.parameter("q")
        if value is None:
            return None
        if not re.fullmatch(r"0(\.\d{0,3})?|1(\.0{0,3})?", value):
            raise HeaderError(f"invalid q value {value!r}")
        return float(value)

    def with_uri(self, uri: URI) -> NameAddr:
        return attrs.evolve(self, uri=uri)


@attrs.frozen
class Wildcard:
    """``Contact: *`` (RFC 3261 §10.2.2: remove all bindings)."""

    def __str__(self) -> str:
        return "*"


WILDCARD = Wildcard()

_QUOTED_DISPLAY = re.compile(rf"\s*({_QSTRING})\s*<", re.S)
_TOKEN_DISPLAY = re.compile(rf"\s*((?:[{_TOKEN}]+(?:\s+[{_TOKEN}]+)*)?)\s*<")
_ADDR_SPEC = re.compile(r"\s*([^\s;]+)")


def parse_name_addr(text: str, header: str | None = None) -> NameAddr:
    """Parse ``name-addr *(;param)`` or ``addr-spec *(;param)``.

    Without ``<>`` the URI ends at the first ``;`` or whitespace and the
    parameters that follow are header parameters (RFC 3261 §20.10).
    Tolerated: LWS inside the angle brackets (``< sip:a@b >``) and a URI
    with headers outside them; both are written canonically on output.
    """
    try:
        m = None
        if "<" in text:
            if text.lstrip()[:1] == '"':
                m = _QUOTED_DISPLAY.match(text)
                if m is None:
                    raise HeaderError(f"malformed quoted display name in {text!r}", header)
            else:
                m = _TOKEN_DISPLAY.match(text)  # None: an addr-spec with '<' in a param
        if m is not None:
            display = m.group(1)
            if display[:1] == '"':
                display = unquote(display)
            else:
                display = " ".join(display.split()) if display else None
            close = text.find(">", m.end())
            if close < 0:
                raise HeaderError(f"missing '>' in {text!r}", header)
            uri = parse_uri(text[m.end():close].strip())
            params = parse_params(text, close + 1)
        else:
            m = _ADDR_SPEC.match(text)
            if m is None:
                raise HeaderError(f"empty address in {text!r}", header)
            display = None
            uri = parse_uri(m.group(1))
            params = parse_params(text, m.end())
    except URIError as e:
        raise HeaderError(str(e), header) from None
    except HeaderError as e:
        if e.header is None:
            e.header = header
        raise
    return NameAddr(display, uri, params)


def parse_name_addr_list(text: str, header: str | None = None) -> tuple[NameAddr, ...]:
    """Comma-separated name-addrs (Route, Record-Route, Path, Contact)."""
    items = split_list(text)
    if "" in items:
        raise HeaderError(f"empty element in {text!r}", header)
    return tuple(parse_name_addr(item, header) for item in items)


def parse_contact_list(text: str) -> tuple[NameAddr, ...] | tuple[Wildcard]:
    """Contact values; ``*`` alone gives ``(WILDCARD,)``."""
    if text.strip() == "*":
        return (WILDCARD,)
    return parse_name_addr_list(text, "Contact")


def parse_name_addr_values(lines, header: str | None = None) -> tuple[NameAddr, ...]:
    """All name-addrs of several header lines (Route, Record-Route, Path)."""
    out = []
    for line in lines:
        out.extend(parse_name_addr_list(line, header))
    return tuple(out)


def parse_contact_values(lines) -> tuple[NameAddr, ...] | tuple[Wildcard]:
    """All Contact values of several lines; ``*`` must stand alone."""
    out = []
    for line in lines:
        out.extend(parse_contact_list(line))
    if len(out) > 1 and WILDCARD in out:
        raise HeaderError("Contact '*' mixed with other contacts", "Contact")
    return tuple(out)


# -------------------------------------------------------------------- Via
MAGIC_COOKIE = "z9hG4bK"

_VIA = re.compile(
    rf"\s*([{_TOKEN}]+)\s*/\s*([{_TOKEN}]+)\s*/\s*([{_TOKEN}]+)\s+"
    r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-_.]+)(?:\s*:\s*([0-9]{1,5}))?"
)


@attrs.frozen
class Via(_Parameters):
    """One Via value: ``SIP/2.0/UDP host:port;branch=...``.

    ``transport`` is upper-cased; ``host`` is bare (no IPv6 brackets);
    ``protocol`` is ``'SIP/2.0'`` unless the peer wrote another.
    """

    transport: str
    host: str
    port: int | None = None
    parameters: tuple[tuple[str, str | None], ...] = ()
    protocol: str = "SIP/2.0"

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        port = "" if self.port is None else f":{self.port}"
        params = format_params(self.parameters) if self.parameters else ""
        return f"{self.protocol}/{self.transport} {host}{port}{params}"

    serialize = __str__

    @property
    def branch(self) -> str | None:
        return self.parameter("branch")

    @property
    def is_rfc3261_branch(self) -> bool:
        """The branch starts with the magic cookie and has a unique part."""
        branch = self.branch
        return branch is not None and branch.startswith(MAGIC_COOKIE) and len(branch) > 7

    @property
    def received(self) -> str | None:
        return self.parameter("received")

    @property
    def has_rport(self) -> bool:
        """True when the sender asked for ``rport`` (RFC 3581), valued or not."""
        return self.has_parameter("rport")

    @property
    def rport(self) -> int | None:
        """The numeric ``rport`` value; None when absent *or* valueless."""
        return _parameter_int(self, "rport", 65535)

    @property
    def maddr(self) -> str | None:
        return self.parameter("maddr")

    @property
    def ttl(self) -> int | None:
        return _parameter_int(self, "ttl", 255)

    @property
    def sent_by(self) -> tuple[str, int | None]:
        return (self.host, self.port)

    def with_branch(self, branch: str) -> Via:
        return self.with_parameter("branch", branch)

    def with_received(self, host: str) -> Via:
        return self.with_parameter("received", host)

    def with_rport(self, port: int | None = None) -> Via:
        return self.with_parameter("rport", None if port is None else str(port))


def parse_via(text: str) -> Via:
    m = _VIA.match(text)
    if m is None:
        raise HeaderError(f"malformed Via {text!r}", "Via")
    name, version, transport, host, port = m.groups()
    if host[0] == "[":
        host = host[1:-1]
    if port is not None:
        port = int(port)
        if port > 65535:
            raise HeaderError(f"Via port out of range in {text!r}", "Via")
    try:
        params = parse_params(text, m.end())
    except HeaderError as e:
        raise HeaderError(str(e), "Via") from None
    protocol = f"{name}/{version}"
    if protocol != "SIP/2.0":
        protocol = f"{name.upper()}/{version}"
    return Via(transport.upper(), host, port, params, protocol)


def parse_via_list(text: str) -> tuple[Via, ...]:
    items = text.split(",") if '"' not in text else split_list(text)
    return tuple(parse_via(item) for item in items)


def parse_via_values(lines) -> tuple[Via, ...]:
    """All Via values of several header lines, top first."""
    if len(lines) == 1:
        return parse_via_list(lines[0])
    out = []
    for line in lines:
        out.extend(parse_via_list(line))
    return tuple(out)


# ------------------------------------------------------------------- CSeq
MAX_CSEQ = 2**32 - 1
_CSEQ = re.compile(rf"\s*([0-9]{{1,10}})\s+([{_TOKEN}]+)\s*")


@attrs.frozen
class CSeq:
    number: int
    method: str

    def __str__(self) -> str:
        return f"{self.number} {self.method}"

    serialize = __str__


def parse_cseq(text: str) -> CSeq:
    m = _CSEQ.fullmatch(text)
    if m is None:
        raise HeaderError(f"malformed CSeq {text!r}", "CSeq")
    number = int(m.group(1))
    if number > MAX_CSEQ:
        raise HeaderError(f"CSeq number over 2**32-1: {number}", "CSeq")
    return CSeq(number, m.group(2))


# ------------------------------------------------------------ auth params
_AUTH_SCHEME = re.compile(rf"\s*([{_TOKEN}]+)(?:\s+|$)")
_AUTH_PARAM = re.compile(rf"\s*([{_TOKEN}]+)\s*=\s*({_QSTRING}|[{_TOKEN}]+)\s*(,|$)", re.S)


def parse_auth_params(text: str) -> tuple[str, dict[str, str]]:
    """``Digest username="bob", nc=00000001`` -> ``('Digest', {...})``.

    Parameter names are lower-cased; quoted values are unquoted (escapes
    resolved).  A repeated parameter, an empty element or any text outside
    the grammar raises HeaderError.  Unknown schemes parse the same way.
    """
    m = _AUTH_SCHEME.match(text)
    if m is None:
        raise HeaderError(f"missing auth scheme in {text!r}")
    scheme, pos, end = m.group(1), m.end(), len(text.rstrip())
    params: dict[str, str] = {}
    while pos < end:
        m = _AUTH_PARAM.match(text, pos)
        if m is None:
            raise HeaderError(f"malformed auth parameters in {text!r}")
        name = m.group(1).lower()
        if name in params:
            raise HeaderError(f"duplicate auth parameter {name!r}")
        params[name] = unquote(m.group(2))
        pos = m.end()
        if m.group(3) == "," and pos >= end:
            raise HeaderError(f"trailing comma in {text!r}")
    return scheme, params


def format_auth_params(scheme: str, params, *, tokens=frozenset()) -> str:
    """``scheme name="value", ...`` from (name, value) pairs; names in
    ``tokens`` are written bare (``algorithm=MD5``, ``stale=true``)."""
    items = params.items() if hasattr(params, "items") else params
    parts = []
    for name, value in items:
        if name in tokens:
            if not _TOKEN_RE.fullmatch(value):
                raise HeaderError(f"{name} value is not a token: {value!r}")
            parts.append(f"{name}={value}")
        else:
            parts.append(f"{name}={quote(value)}")
    return f"{scheme} " + ", ".join(parts)

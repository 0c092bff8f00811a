"""
The server side of SIP digest authentication: RFC 3261 section 22, with
the RFC 7616 algorithms as RFC 8760 brings them to SIP (MD5 and SHA-256,
C{qop=auth}).

Three pieces, each usable alone:

  - L{NonceManager} issues nonces and judges them later: fresh, stale
    (expired, so the client may retry without asking its user for the
    password again), invalid (not ours), or a replay (a nonce-count that
    did not grow).
  - L{parse_authorization} turns an C{Authorization} or
    C{Proxy-Authorization} header value into
    L{communigate.auth.credentials.SIPDigestCredentials}, raising
    L{DigestError} (a reason usable as a 400 reason phrase) for anything
    malformed; L{challenge} writes the C{WWW-Authenticate} or
    C{Proxy-Authenticate} headers.
  - L{DigestVerifier} puts them together: one call per request, logging in
    through the portal so that L{communigate.auth.checkers.SIPDigestChecker}
    does the HA1 work and this module never sees a password or a hash.

Everything here takes and returns plain values (header text, method,
Request-URI text, body bytes), so it does not depend on the SIP message
classes.

Nonce format (64 lower-case hex digits)::

    8 bytes   issue time, milliseconds of clock.seconds(), big-endian
    8 bytes   random, so two nonces issued in one millisecond differ
    16 bytes  HMAC-SHA256(secret, time | random | realm | address), truncated

The nonce is verifiable without server state (any process holding the
secret can check it, and nothing is stored for nonces that are never
answered), which keeps a flood of unauthenticated requests from costing
memory.  Only nonces that have been used successfully are tracked, for the
nonce-count check.  Hex rather than base64 because some phones mishandle
C{/}, C{+} and C{=} in quoted strings.
"""

from __future__ import annotations

import enum
import hmac
import os
import re
import struct
import urllib.parse
from collections import OrderedDict
from collections.abc import Callable, Iterable

import attrs
from twisted.cred.error import UnauthorizedLogin, UnhandledCredentials
from twisted.internet import defer
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from communigate.auth.credentials import DIGEST_ALGORITHMS, SIPDigestCredentials
from communigate.interfaces import IAccount

__all__ = [
    "DigestError",
    "DigestVerifier",
    "NonceManager",
    "Outcome",
    "OutcomeKind",
    "challenge",
    "parse_auth_params",
    "parse_authorization",
]

#: The algorithms a challenge offers by default, most preferred first
#: (RFC 8760 section 2.4: a server lists the one it prefers first).
DEFAULT_ALGORITHMS = ("SHA-256", "MD5")

#: Hex digits of a response, by base algorithm.
_RESPONSE_LENGTHS = {"MD5": 32, "SHA-256": 64}

_CANONICAL_ALGORITHMS = {name.upper(): name for name in DIGEST_ALGORITHMS}

# RFC 3261 token characters.
_TOKEN = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-.!%*_+`'~")
_WHITESPACE = " \t\r\n"
# What may be named in a reason phrase: RFC 3261 Reason-Phrase forbids
# quotes and some token characters (the backquote), and a reason must never
# carry text an attacker chose beyond a plain parameter name.
_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]{0,31}\Z")
_NC = re.compile(r"[0-9A-Fa-f]{8}\Z")
_HEXDIGITS = re.compile(r"[0-9A-Fa-f]+\Z")
_NONCE = re.compile(r"[0-9a-f]{64}\Z")

_NONCE_MAC_BYTES = 16
_MIN_SECRET_BYTES = 16
# How far in the future a nonce's time may lie before it is not one of
# ours: processes sharing a secret may disagree a little about the time.
_FUTURE_SKEW_MS = 60_000


class DigestError(ValueError):
    """
    A malformed digest header.  C{reason} is short, ASCII, free of quotes
    and of anything the client wrote except plain parameter names, so the
    caller can send it as the reason phrase of a 400.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _name_for_reason(name: str) -> str:
    return name if _SAFE_NAME.match(name) else "parameter"


# -- nonces -------------------------------------------------------------------


class NonceManager:
    """
    Issues and checks nonces, and remembers the highest nonce-count used
    with each.

    Judging a nonce is two steps, L{check} and L{record}, because the
    nonce-count must only move once the response has been verified:
    recording on L{check} would let anyone who saw a nonce send one bogus
    request with C{nc=ffffffff} and lock the real client out of it.
    L{record} re-checks, so two requests racing with the same count cannot
    both succeed.

    Memory is bounded by C{max_tracked} used nonces.  Tracked nonces are
    forgotten once expired (oldest first; an expired nonce is stale
    whatever its count) and, when the table is full, the oldest live ones
    too.  A nonce that was forgotten while still live must not start again
    at C{nc=1}, which would allow a replay, so every untracked nonce issued
    before the newest one evicted so far is answered I{stale}: its client
    retries once with a fresh nonce, without a password prompt.  For the
    same reason nonces issued before this manager was created (by an
    earlier run holding the same secret) are stale.

    A response without C{qop} (the RFC 2069 form) carries no count; such a
    nonce is good for one request and its reuse is stale, since the client
    cannot do better than retry with a fresh one.

    Several processes sharing the secret accept each other's nonces but
    track counts apart; a client that moves between processes (it should
    not: UDP flows hash to one socket) could replay once per process.
    """

    log = Logger()

    def __init__(
        self,
        clock: IReactorTime,
        secret: bytes,
        lifetime: float = 300.0,
        max_tracked: int = 100_000,
        *,
        random_bytes: Callable[[int], bytes] = os.urandom,
    ) -> None:
        """
        @param secret: at least 16 random bytes; every process that should
            accept this process's nonces must have the same.
        @param lifetime: seconds a nonce stays fresh.
        @param max_tracked: how many used nonces are remembered at most.
        """
        if not isinstance(secret, bytes) or len(secret) < _MIN_SECRET_BYTES:
            raise ValueError(f"the nonce secret must be at least {_MIN_SECRET_BYTES} random bytes")
        if not lifetime > 0:
            raise ValueError(f"the nonce lifetime must be positive, not {lifetime!r}")
        if max_tracked < 1:
            raise ValueError(f"max_tracked must be at least 1, not {max_tracked!r}")
        self._clock = clock
        self._secret = secret
        self._lifetime_ms = int(lifetime * 1000)
        self._max_tracked = max_tracked
        self._random_bytes = random_bytes
        # nonce -> issued_ms << 32 | highest nc, in order of first use, which
        # is close to issue order, so expired entries gather at the front.
        # A server under load tracks up to max_tracked of them, so each is
        # kept small: the nonce by its payload (issue time and random part,
        # unique to the nonce once its MAC is checked) as a number, and
        # both values packed in one.
        self._tracked: OrderedDict[int, int] = OrderedDict()
        self._untracked_before = self._now_ms()
        self.evictions = 0

    @property
    def lifetime(self) -> float:
        return self._lifetime_ms / 1000

    def tracked_count(self) -> int:
        """
        How many used nonces are remembered now.
        """
        return len(self._tracked)

    def _now_ms(self) -> int:
        return int(self._clock.seconds() * 1000)

    def _mac(self, payload: bytes, realm: str, address: str | None) -> bytes:
        message = b"\0".join(
            (
                payload,
                realm.lower().encode("utf-8", "surrogatepass"),
                (address or "").encode("utf-8", "surrogatepass"),
            )
        )
        return hmac.digest(self._secret, message, "sha256")[:_NONCE_MAC_BYTES]

    def new_nonce(self, realm: str, address: str | None = None) -> str:
        """
        A fresh nonce for C{realm}, bound to the client C{address} if one is
        given (then L{check} must be given the same).
        """
        payload = struct.pack(">Q", self._now_ms()) + self._random_bytes(8)
        return (payload + self._mac(payload, realm, address)).hex()

    def _issued_ms(self, nonce: str, realm: str, address: str | None) -> int | None:
        """
        When C{nonce} was issued, or L{None} if it is not one of ours for
        C{realm} and C{address}.
        """
        if not isinstance(nonce, str) or not _NONCE.match(nonce):
            return None
        raw = bytes.fromhex(nonce)
        payload, mac = raw[:-_NONCE_MAC_BYTES], raw[-_NONCE_MAC_BYTES:]
        if not hmac.compare_digest(mac, self._mac(payload, realm, address)):
            return None
        (issued,) = struct.unpack(">Q", payload[:8])
        if issued > self._now_ms() + _FUTURE_SKEW_MS:
            return None
        return issued

    def check(self, nonce: str, realm: str, nc: int | None, address: str | None = None) -> str:
        """
        Judge C{nonce} as answered with nonce-count C{nc} (L{None} when the
        response had no C{qop}), without recording anything.

        @return: C{'ok'}, C{'stale'} (expired, or forgotten as the class
            docstring says), C{'invalid'} (not issued by us for this realm
            and address) or C{'replay'} (the count did not grow).
        """
        issued = self._issued_ms(nonce, realm, address)
        if issued is None:
            return "invalid"
        return self._judge(nonce, issued, nc)

    def _judge(self, nonce: str, issued: int, nc: int | None) -> str:
        if issued + self._lifetime_ms <= self._now_ms():
            return "stale"
        entry = self._tracked.get(_tracking_key(nonce))
        if entry is None:
            return "stale" if issued < self._untracked_before else "ok"
        count = entry & _COUNT_MASK
        if nc is None or count == 0:
            # Single-use RFC 2069 nonces, and a no-qop nonce answered again
            # with a count: the client should start over.
            return "stale"
        return "ok" if nc > count else "replay"

    def record(self, nonce: str, realm: str, nc: int | None, address: str | None = None) -> str:
        """
        Remember that C{nonce} was used with C{nc} by a verified response,
        if L{check} still says C{'ok'}; returns what L{check} says now.
        """
        if nc is not None and not 0 < nc <= _COUNT_MASK:
            raise ValueError(f"a nonce-count is 8 hex digits, 00000001 or more, not {nc!r}")
        issued = self._issued_ms(nonce, realm, address)
        if issued is None:
            return "invalid"
        verdict = self._judge(nonce, issued, nc)
        if verdict != "ok":
            return verdict
        key = _tracking_key(nonce)
        entry = self._tracked.get(key)
        if entry is None:
            self._forget_expired()
            while len(self._tracked) >= self._max_tracked:
                self._evict_oldest()
            self._tracked[key] = issued << 32 | (0 if nc is None else nc)
        else:
            self._tracked[key] = entry & ~_COUNT_MASK | nc
        return "ok"

    def _forget_expired(self) -> None:
        horizon = self._now_ms() - self._lifetime_ms
        while self._tracked:
            key, entry = next(iter(self._tracked.items()))
            if entry >> 32 > horizon:
                break
            del self._tracked[key]

    def _evict_oldest(self) -> None:
        _, entry = self._tracked.popitem(last=False)
        issued = entry >> 32
        self._untracked_before = max(self._untracked_before, issued + 1)
        self.evictions += 1
        if self.evictions == 1 or self.evictions % 10_000 == 0:
            self.log.warn(
                "Nonce table full ({size} tracked): {evictions} live nonces forgotten so far;"
                " their clients are asked to retry with stale=true",
                size=self._max_tracked,
                evictions=self.evictions,
            )


# A nonce-count is 8 hex digits: it fits below the issue time in one number.
_COUNT_MASK = 0xFFFFFFFF


def _tracking_key(nonce: str) -> int:
    """
    What a checked nonce is tracked by: its payload (the hex before the
    MAC), as a number.
    """
    return int(nonce[: -2 * _NONCE_MAC_BYTES], 16)


# -- header syntax -----------------------------------------------------------


def _skip_space(text: str, pos: int) -> int:
    n = len(text)
    while pos < n and text[pos] in _WHITESPACE:
        pos += 1
    return pos


def _quoted(text: str, pos: int) -> tuple[str, int]:
    """
    The quoted string starting at C{text[pos] == '"'} and the position after
    its closing quote; RFC 3261 quoted-pair escapes any character but CR
    and LF.
    """
    out = []
    pos += 1
    n = len(text)
    while pos < n:
        char = text[pos]
        if char == '"':
            return "".join(out), pos + 1
        if char == "\\":
            if pos + 1 >= n:
                break
            escaped = text[pos + 1]
            if escaped in "\r\n":
                raise DigestError("Line break escaped in a digest parameter")
            out.append(escaped)
            pos += 2
            continue
        if (char < " " and char != "\t") or char == "\x7f":
            raise DigestError("Control character in a digest parameter")
        out.append(char)
        pos += 1
    raise DigestError("Unterminated quoted string in digest parameters")


_TOKEN_PATTERN = r"[A-Za-z0-9.!%*_+`'~-]+"
# One list element: leading separators, name, '=', a quoted string (any
# character but CR and LF escaped; no other control character but TAB) or
# a token, then a comma or the end.  It accepts exactly what the careful
# parser below accepts, element by element.  The possessive quantifiers
# keep an unterminated quoted string from backtracking.
_PARAM = re.compile(
    r"[ \t\r\n,]*(" + _TOKEN_PATTERN + r")[ \t\r\n]*=[ \t\r\n]*"
    r'(?:"((?:[^"\\\x00-\x08\x0a-\x1f\x7f]++|\\[^\r\n])*+)"|(' + _TOKEN_PATTERN + r"))"
    r"[ \t\r\n]*(?:,|\Z)"
)
_PARAMS_END = re.compile(r"[ \t\r\n,]*\Z")
_ESCAPED = re.compile(r"\\(.)", re.DOTALL)


def parse_auth_params(text: str) -> dict[str, str]:
    """
    The comma-separated C{name=value} list of a credentials or challenge
    header (after the scheme) as a dictionary with lower-case names and
    unquoted values.

    Values may be tokens or quoted strings whatever the parameter (phones
    quote C{qop} and C{algorithm} though the grammar says token).  Empty
    list elements are skipped, as RFC 7230's list rule allows.

    @raise DigestError: for a duplicate parameter, a name without a value,
        an unterminated or malformed quoted string, or stray characters.
    """
    # Registrations arrive by the thousand per second: a regular expression
    # per element is several times faster than the character loop, which
    # runs only to say precisely what is wrong with a header it rejects.
    params: dict[str, str] = {}
    pos = 0
    while not _PARAMS_END.match(text, pos):
        match = _PARAM.match(text, pos)
        if match is None:
            return _parse_auth_params_carefully(text)
        name, quoted, token = match.groups()
        name = name.lower()
        if name in params:
            raise DigestError(f"Duplicate digest {_name_for_reason(name)}")
        if quoted is None:
            params[name] = token
        else:
            params[name] = _ESCAPED.sub(r"\1", quoted) if "\\" in quoted else quoted
        pos = match.end()
    return params


def _parse_auth_params_carefully(text: str) -> dict[str, str]:
    params: dict[str, str] = {}
    pos = 0
    n = len(text)
    while True:
        pos = _skip_space(text, pos)
        if pos >= n:
            return params
        if text[pos] == ",":
            pos += 1
            continue
        start = pos
        while pos < n and text[pos] in _TOKEN:
            pos += 1
        if pos == start:
            raise DigestError("Malformed digest parameter list")
        name = text[start:pos].lower()
        pos = _skip_space(text, pos)
        if pos >= n or text[pos] != "=":
            raise DigestError(f"Digest {_name_for_reason(name)} has no value")
        pos = _skip_space(text, pos + 1)
        if pos < n and text[pos] == '"':
            value, pos = _quoted(text, pos)
        else:
            start = pos
            while pos < n and text[pos] in _TOKEN:
                pos += 1
            if pos == start:
                raise DigestError(f"Digest {_name_for_reason(name)} has no value")
            value = text[start:pos]
        if name in params:
            raise DigestError(f"Duplicate digest {_name_for_reason(name)}")
        params[name] = value
        pos = _skip_space(text, pos)
        if pos < n:
            if text[pos] != ",":
                raise DigestError("Digest parameters must be separated by commas")
            pos += 1


def _split_scheme(value: str) -> tuple[str, str]:
    pos = _skip_space(value, 0)
    start = pos
    while pos < len(value) and value[pos] in _TOKEN:
        pos += 1
    if pos == start:
        raise DigestError("No authentication scheme")
    if pos < len(value) and value[pos] not in _WHITESPACE:
        raise DigestError("Malformed authentication scheme")
    return value[start:pos], value[pos:]


def _ext_value(text: str) -> str:
    """
    An RFC 8187 ext-value (C{UTF-8''Alice%20B}), as RFC 7616 C{username*}
    carries a name that is not plain ASCII.
    """
    charset, quote1, rest = text.partition("'")
    _language, quote2, encoded = rest.partition("'")
    if not (quote1 and quote2) or charset.lower() != "utf-8":
        raise DigestError("username* must be in the UTF-8 ext-value form")
    try:
        return urllib.parse.unquote(encoded, encoding="utf-8", errors="strict")
    except UnicodeDecodeError:
        raise DigestError("username* is not valid UTF-8") from None


def _required(params: dict[str, str], name: str) -> str:
    value = params.get(name)
    if value is None:
        raise DigestError(f"Digest credentials without {name}")
    if not value:
        raise DigestError(f"Digest {name} is empty")
    return value


def parse_authorization(value: str, method: str, body: bytes = b"") -> SIPDigestCredentials | None:
    """
    The digest credentials in an C{Authorization} or C{Proxy-Authorization}
    header value, for a request with C{method} and C{body} (hashed only for
    C{qop=auth-int}).

    @return: the credentials, or L{None} when the header uses another
        scheme (C{Basic}, ...), which the caller answers with a challenge.
    @raise DigestError: when the header is malformed, lacks a parameter
        the algorithm and qop need, or names an algorithm, qop or
        nonce-count we cannot verify.
    """
    if not isinstance(value, str):
        raise DigestError("Authorization header is not text")
    scheme, rest = _split_scheme(value)
    if scheme.lower() != "digest":
        return None
    params = parse_auth_params(rest)
    if not params:
        raise DigestError("Digest credentials without parameters")
    for text in params.values():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise DigestError("Digest parameters are not valid UTF-8") from None

    if params.get("userhash", "false").lower() != "false":
        raise DigestError("Hashed usernames (userhash) are not supported")
    if "username*" in params:
        if "username" in params:
            raise DigestError("Digest credentials with both username and username*")
        username = _ext_value(params["username*"])
        if not username:
            raise DigestError("Digest username is empty")
    else:
        username = _required(params, "username")
    realm = params.get("realm")
    if realm is None:
        raise DigestError("Digest credentials without realm")
    nonce = _required(params, "nonce")
    uri = _required(params, "uri")
    response = _required(params, "response")

    algorithm = _CANONICAL_ALGORITHMS.get(params.get("algorithm", "MD5").upper())
    if algorithm is None:
        raise DigestError("Unsupported digest algorithm")
    base = algorithm.removesuffix("-sess")
    length = _RESPONSE_LENGTHS[base]
    if len(response) != length or not _HEXDIGITS.match(response):
        raise DigestError(f"Digest response is not {length} hex digits")

    qop = params.get("qop")
    nc = cnonce = None
    if qop is not None:
        qop = qop.lower()
        if qop not in ("auth", "auth-int"):
            raise DigestError("Unsupported digest qop")
        nc = _required(params, "nc")
        if not _NC.match(nc):
            raise DigestError("Digest nc is not 8 hex digits")
        if int(nc, 16) == 0:
            raise DigestError("Digest nc must start at 00000001")
        cnonce = _required(params, "cnonce")
    elif "cnonce" in params:
        cnonce = _required(params, "cnonce")
    if algorithm.endswith("-sess") and cnonce is None:
        raise DigestError("Digest session algorithm without cnonce")

    return SIPDigestCredentials(
        username=username,
        realm=realm,
        nonce=nonce,
        method=method,
        uri=uri,
        response=response,
        algorithm=algorithm,
        qop=qop,
        nc=nc,
        cnonce=cnonce,
        body=body,
    )


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def challenge(
    realm: str,
    nonce: str,
    *,
    algorithms: Iterable[str] = DEFAULT_ALGORITHMS,
    stale: bool = False,
    opaque: str | None = None,
    proxy: bool = False,
) -> list[tuple[str, str]]:
    """
    The challenge headers of a 401 (C{WWW-Authenticate}) or, with
    C{proxy}, a 407 (C{Proxy-Authenticate}): one per algorithm, in the
    order given (RFC 8760 section 2.4: the preferred one first, so the
    default puts SHA-256 before MD5 for phones that take the first they
    know), all with the same nonce and C{qop="auth"}.

    @raise ValueError: for an algorithm we cannot verify, none at all, or
        a realm, nonce or opaque with a line break.
    """
    algorithms = tuple(algorithms)
    if not algorithms:
        raise ValueError("a digest challenge needs at least one algorithm")
    for text in (realm, nonce, opaque or ""):
        if "\r" in text or "\n" in text:
            raise ValueError("digest challenge parameters must not contain line breaks")
    name = "Proxy-Authenticate" if proxy else "WWW-Authenticate"
    headers = []
    for algorithm in algorithms:
        canonical = _CANONICAL_ALGORITHMS.get(algorithm.upper())
        if canonical is None:
            raise ValueError(f"unknown digest algorithm {algorithm!r}, expected one of {DIGEST_ALGORITHMS}")
        parts = [f"Digest realm={_quote(realm)}", f"nonce={_quote(nonce)}"]
        if opaque is not None:
            parts.append(f"opaque={_quote(opaque)}")
        if stale:
            parts.append("stale=true")
        parts.append(f"algorithm={canonical}")
        parts.append('qop="auth"')
        headers.append((name, ", ".join(parts)))
    return headers


# -- the verifier --------------------------------------------------------------


class OutcomeKind(enum.Enum):
    """
    What a request's credentials came to, and so what the caller answers.
    """

    #: Authenticated; go on with C{Outcome.account}.
    ACCEPTED = "accepted"
    #: No usable credentials (none, another scheme, another realm, an
    #: algorithm not offered): 401/407 with C{Outcome.headers}.
    CHALLENGE = "challenge"
    #: The response was right but the nonce expired or is not current:
    #: 401/407 with C{Outcome.headers}, which say C{stale=true}.
    STALE = "stale"
    #: Wrong password, unknown user, replayed nonce-count: 403, or 401/407
    #: with C{Outcome.headers} to let the user try again.  Count it against
    #: the source (L{communigate.sip.guard.AuthFailureGuard}).
    REFUSED = "refused"
    #: The header is malformed, or its C{uri} is not the Request-URI:
    #: 400 with C{Outcome.reason} as the reason phrase.
    MALFORMED = "malformed"


@attrs.frozen
class Outcome:
    """
    The verdict of L{DigestVerifier.verify}.

    @ivar reason: why, for logs (and, for MALFORMED, the 400 reason phrase).
    @ivar account: the canonical account name when ACCEPTED.
    @ivar avatar: the L{IAccount} the portal returned when ACCEPTED; the
        login is over (logged out) by the time the outcome is seen, but the
        avatar still answers C{effective_settings()}.
    @ivar username: the username the client sent, if it sent one.
    @ivar headers: fresh challenge headers for CHALLENGE, STALE, REFUSED.
    """

    kind: OutcomeKind
    reason: str = ""
    account: str | None = None
    avatar: object = None
    username: str | None = None
    headers: tuple[tuple[str, str], ...] = ()

    @property
    def accepted(self) -> bool:
        return self.kind is OutcomeKind.ACCEPTED


def comparable_uri(uri: str) -> str:
    """
    C{uri} with the case of its scheme and host part folded, for comparing
    the digest C{uri} parameter with the Request-URI.

    Clients copy the Request-URI into the parameter, so this forgives only
    what a proxy or a client library might change without meaning to (the
    case of C{SIP:} and of the host); parameters, user part and port must
    match as sent.  Not full RFC 3261 section 19.1.4 comparison, which
    would accept differences no honest client makes.
    """
    uri = uri.strip()
    scheme, colon, rest = uri.partition(":")
    if not colon:
        return uri
    cut = len(rest)
    for mark in ";?":
        found = rest.find(mark)
        if found != -1:
            cut = min(cut, found)
    address, tail = rest[:cut], rest[cut:]
    user, at, hostport = address.rpartition("@")
    return f"{scheme.lower()}:{user}{at}{hostport.lower()}{tail}"


def _source_host(source) -> str | None:
    """
    The host of a C{(transport, host, port)} source, which is what a nonce
    is bound to: the port of a NATed phone may change between requests.
    """
    if source is None:
        return None
    if isinstance(source, str):
        return source
    if isinstance(source, tuple) and len(source) == 3:
        return str(source[1])
    raise TypeError(f"a source is (transport, host, port) or a host, not {source!r}")


class DigestVerifier:
    """
    Checks the digest credentials of requests, logging in through a
    portal, so that SIP shares the account model (and the checkers) of
    every other front end.

    @ivar algorithms: the algorithms challenged with, in order, and the
        only ones accepted (with their C{-sess} forms).
    """

    log = Logger()

    def __init__(
        self,
        portal,
        nonces: NonceManager,
        *,
        algorithms: Iterable[str] = DEFAULT_ALGORITHMS,
        algorithms_for=None,
        also_accept_uri=None,
        bind_to_source: bool = False,
    ) -> None:
        """
        @param portal: a L{twisted.cred.portal.Portal} with a checker for
            L{communigate.interfaces.ISIPDigestCredentials}.
        @param nonces: anything with L{NonceManager}'s C{new_nonce},
            C{check} and C{record}.
        @param algorithms_for: C{(realm) -> names or None}: the algorithms
            one realm challenges with, in order (a domain setting, for
            phones that only understand the first challenge); L{None} or
            an empty answer means C{algorithms}.
        @param also_accept_uri: C{(digest_uri) -> bool}: digest C{uri}
            values accepted although they are not the Request-URI.  [D] The
            SIP service accepts a URI naming this server itself (sipp and
            some phones put the address they sent to there); RFC 7616's
            point, that a response cannot be replayed for another
            resource, still holds for every other URI.
        @param bind_to_source: tie each nonce to the host that was
            challenged.  Off by default: a phone behind a carrier NAT may
            come back from another address, and the nonce-count check
            already stops replays of responses with C{qop}.
        """
        self.algorithms = tuple(_canonical(name) for name in algorithms)
        if not self.algorithms:
            raise ValueError("a digest verifier needs at least one algorithm")
        self._algorithms_for = algorithms_for
        self._also_accept_uri = also_accept_uri
        self._portal = portal
        self._nonces = nonces
        self._bind = bind_to_source

    def challenge_headers(self, realm: str, source=None, *, stale: bool = False, proxy: bool = False):
        """
        A fresh nonce for C{realm} (bound to C{source} if so configured),
        as challenge headers.
        """
        nonce = self._nonces.new_nonce(realm, self._address(source))
        return tuple(challenge(realm, nonce, algorithms=self.algorithms_of(realm), stale=stale, proxy=proxy))

    def algorithms_of(self, realm: str) -> tuple[str, ...]:
        """
        The algorithms C{realm} challenges with, most preferred first.
        """
        chosen = self._algorithms_for(realm) if self._algorithms_for is not None else None
        if not chosen:
            return self.algorithms
        return tuple(_canonical(name) for name in chosen)

    def _address(self, source) -> str | None:
        return _source_host(source) if self._bind else None

    def verify(
        self,
        header_value: str | None,
        method: str,
        request_uri: str,
        body: bytes,
        realm: str,
        source=None,
        *,
        proxy: bool = False,
    ) -> defer.Deferred:
        """
        Judge the credentials C{header_value} (the C{Authorization} or
        C{Proxy-Authorization} value for C{realm}, or L{None} if the
        request had none) of a request.

        @param source: C{(transport, host, port)} the request came from.
        @param proxy: challenge with C{Proxy-Authenticate} (a 407).
        @return: a Deferred firing with an L{Outcome}; it fails only when
            the portal fails for another reason than a refused login (a
            store error), which the caller answers with 500.
        """
        try:
            return self._verify(header_value, method, request_uri, body, realm, source, proxy)
        except DigestError as error:
            return defer.succeed(Outcome(OutcomeKind.MALFORMED, reason=error.reason))

    def _outcome(self, kind, reason, realm, source, proxy, *, username=None, stale=False):
        headers = ()
        if kind in (OutcomeKind.CHALLENGE, OutcomeKind.STALE, OutcomeKind.REFUSED):
            headers = self.challenge_headers(realm, source, stale=stale, proxy=proxy)
        if kind is OutcomeKind.REFUSED:
            self.log.info(
                "SIP digest login of {username!r} from {source} refused: {reason}",
                username=username,
                source=source,
                reason=reason,
            )
        return Outcome(kind, reason=reason, username=username, headers=headers)

    def _verify(self, header_value, method, request_uri, body, realm, source, proxy):
        if not header_value or not header_value.strip():
            return defer.succeed(self._outcome(OutcomeKind.CHALLENGE, "no credentials", realm, source, proxy))
        credentials = parse_authorization(header_value, method, body)
        if credentials is None:
            return defer.succeed(
                self._outcome(OutcomeKind.CHALLENGE, "not digest credentials", realm, source, proxy)
            )
        username = credentials.username
        if credentials.realm.lower() != realm.lower():
            return defer.succeed(
                self._outcome(
                    OutcomeKind.CHALLENGE, "credentials for another realm", realm, source, proxy, username=username
                )
            )
        bases = {name.removesuffix("-sess") for name in self.algorithms_of(realm)}
        if credentials.algorithm.removesuffix("-sess") not in bases:
            return defer.succeed(
                self._outcome(OutcomeKind.CHALLENGE, "algorithm not offered", realm, source, proxy, username=username)
            )
        # RFC 7616 section 3.4.6: a digest computed over another URI is a
        # bad request, not a wrong password.
        if comparable_uri(credentials.uri) != comparable_uri(request_uri) and not (
            self._also_accept_uri is not None and self._also_accept_uri(credentials.uri)
        ):
            raise DigestError("Digest uri does not match the Request-URI")

        address = self._address(source)
        nc = None if credentials.nc is None else int(credentials.nc, 16)
        verdict = self._nonces.check(credentials.nonce, realm, nc, address)
        if verdict == "replay":
            return defer.succeed(
                self._outcome(OutcomeKind.REFUSED, "nonce count replayed", realm, source, proxy, username=username)
            )

        def logged_in(result):
            _interface, avatar, logout = result
            logout()
            if verdict != "ok":
                # RFC 7616 section 3.3: stale only for a right response, so
                # that a wrong password still reaches the user.
                return self._outcome(
                    OutcomeKind.STALE, f"nonce {verdict}", realm, source, proxy, username=username, stale=True
                )
            now = self._nonces.record(credentials.nonce, realm, nc, address)
            if now == "replay":
                return self._outcome(
                    OutcomeKind.REFUSED, "nonce count replayed", realm, source, proxy, username=username
                )
            if now != "ok":
                return self._outcome(
                    OutcomeKind.STALE, f"nonce {now}", realm, source, proxy, username=username, stale=True
                )
            return Outcome(
                OutcomeKind.ACCEPTED,
                reason="authenticated",
                account=avatar.name,
                avatar=avatar,
                username=username,
            )

        def refused(failure):
            failure.trap(UnauthorizedLogin, UnhandledCredentials)
            reason = "wrong credentials" if verdict == "ok" else f"wrong credentials with a nonce {verdict}"
            return self._outcome(OutcomeKind.REFUSED, reason, realm, source, proxy, username=username)

        deferred = defer.maybeDeferred(self._portal.login, credentials, None, IAccount)
        deferred.addCallbacks(logged_in, refused)
        return deferred


def _canonical(algorithm: str) -> str:
    canonical = _CANONICAL_ALGORITHMS.get(algorithm.upper())
    if canonical is None:
        raise ValueError(f"unknown digest algorithm {algorithm!r}, expected one of {DIGEST_ALGORITHMS}")
    return canonical

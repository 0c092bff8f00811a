"""
Server-wide network settings: the WAN address and the address lists
(LAN IPs, Client IPs, NATed IPs, Debug IPs, Blacklisted IPs) that every
protocol module consults.

An address list is CommuniGate's: one string of lines, each an address
(C{192.0.2.1}, C{2001:db8::1}), a range (C{10.0.0.1-10.0.0.99}) or a network
(C{10.0.0.0/8}, C{fc00::/7}), optionally followed by a C{;} comment; blank
lines and comment-only lines are allowed.  L{AddressList.parse} checks the
whole text and names the first bad line; L{AddressList.contains} answers in
a binary search over merged integer ranges, fast enough to ask for every
SIP request.

The settings live in the store as one record (C{server/network-settings},
a data-format dictionary of the explicit values); L{NetworkConfiguration}
parses them once per change: at once when this process changes them, and
within a second (a store generation check, at most once a second) when the
admin tool does.

[D] An empty C{LANIPs} means the private ranges: RFC 1918 (10/8,
172.16/12, 192.168/16), loopback (127/8, ::1) and RFC 4193 (fc00::/7).
These ranges also always count as NATed (not routable) addresses; the
C{NATedIPs} and C{LANIPs} lists add to them.
"""

from __future__ import annotations

import bisect
import ipaddress
import socket

import attrs
from twisted.logger import Logger

from communigate.core.server_settings import CachedSettings, SettingsRecord

__all__ = [
    "AddressList",
    "AddressListError",
    "AddressRange",
    "DebugPeers",
    "LIST_KEYS",
    "NetworkConfiguration",
    "NetworkSettings",
    "NetworkSettingsError",
    "PRIVATE_RANGES",
    "OncePerInterval",
]

_V4_BITS = 32
_V6_BITS = 128
_MAPPED_PREFIX = 0xFFFF  # ::ffff:a.b.c.d, as a dual-stack socket reports IPv4 peers


class AddressListError(ValueError):
    """
    A line of an address list that is no address, range or network.

    @ivar line_number: 1-based.
    @ivar line: the line as given.
    """

    def __init__(self, line_number: int, line: str, reason: str) -> None:
        super().__init__(f"line {line_number} ({line.strip()[:80]!r}): {reason}")
        self.line_number = line_number
        self.line = line
        self.reason = reason


@attrs.frozen
class AddressRange:
    """
    One entry of an address list: the addresses C{low} to C{high} (as
    integers) of IP C{version} 4 or 6, and the entry's comment.
    """

    version: int
    low: int
    high: int
    comment: str = ""

    @property
    def first(self) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
        return ipaddress.IPv4Address(self.low) if self.version == 4 else ipaddress.IPv6Address(self.low)

    @property
    def last(self) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
        return ipaddress.IPv4Address(self.high) if self.version == 4 else ipaddress.IPv6Address(self.high)

    def __str__(self) -> str:
        """
        The entry as a line: an address, a network when the range is one,
        else C{first-last}; then C{; comment}.
        """
        if self.low == self.high:
            text = str(self.first)
        else:
            size = self.high - self.low + 1
            bits = _V4_BITS if self.version == 4 else _V6_BITS
            prefix = bits - (size.bit_length() - 1)
            if size & (size - 1) == 0 and self.low % size == 0:
                text = f"{self.first}/{prefix}"
            else:
                text = f"{self.first}-{self.last}"
        return f"{text} ; {self.comment}" if self.comment else text


def _parse_address(text: str, line_number: int, line: str):
    try:
        return ipaddress.ip_address(text.strip().strip("[]"))
    except ValueError:
        raise AddressListError(line_number, line, f"{text.strip()!r} is not an IPv4 or IPv6 address") from None


def _parse_entry(entry: str, comment: str, line_number: int, line: str) -> AddressRange:
    if "/" in entry:
        try:
            network = ipaddress.ip_network(entry.replace("[", "").replace("]", ""), strict=False)
        except ValueError as e:
            raise AddressListError(
                line_number, line, f"{entry!r} is not a network like 10.0.0.0/8 or fc00::/7 ({e})"
            ) from None
        return AddressRange(
            network.version, int(network.network_address), int(network.broadcast_address), comment
        )
    if "-" in entry:
        first_text, _, last_text = entry.partition("-")
        first = _parse_address(first_text, line_number, line)
        last = _parse_address(last_text, line_number, line)
        if first.version != last.version:
            raise AddressListError(line_number, line, "a range cannot mix IPv4 and IPv6")
        if int(first) > int(last):
            raise AddressListError(line_number, line, f"the range starts after it ends ({first} > {last})")
        return AddressRange(first.version, int(first), int(last), comment)
    address = _parse_address(entry, line_number, line)
    return AddressRange(address.version, int(address), int(address), comment)


def _lines(text: str) -> list[str]:
    return text.replace("\r\n", "\n").replace("\r", "\n").split("\n")


def _merged(ranges) -> tuple[list[int], list[int]]:
    """
    The sorted starts and ends of C{ranges} with overlapping and adjacent
    ones joined, for a binary search.
    """
    starts: list[int] = []
    ends: list[int] = []
    for low, high in sorted(ranges):
        if ends and low <= ends[-1] + 1:
            if high > ends[-1]:
                ends[-1] = high
        else:
            starts.append(low)
            ends.append(high)
    return starts, ends


def _inside(starts: list[int], ends: list[int], value: int) -> bool:
    i = bisect.bisect_right(starts, value) - 1
    return i >= 0 and value <= ends[i]


_pton = socket.inet_pton
_AF_INET = socket.AF_INET
_AF_INET6 = socket.AF_INET6


class AddressList:
    """
    A parsed address list (see the module docstring).

    @ivar text: the text it was parsed from, kept as given (comments,
        order and spelling), which is what the CLI shows back.
    @ivar entries: the L{AddressRange}s, in the order given.
    """

    __slots__ = ("text", "entries", "_v4", "_v6", "_empty")

    def __init__(self, entries=(), text: str | None = None) -> None:
        self.entries = tuple(entries)
        self.text = self.serialize() if text is None else text
        self._v4 = _merged((e.low, e.high) for e in self.entries if e.version == 4)
        self._v6 = _merged((e.low, e.high) for e in self.entries if e.version == 6)
        self._empty = not self.entries

    @classmethod
    def parse(cls, text: str) -> AddressList:
        """
        Parse a whole list; the first bad line raises L{AddressListError}.
        """
        if not isinstance(text, str):
            raise AddressListError(1, repr(text), "an address list is a string of lines")
        entries = []
        for number, line in enumerate(_lines(text), 1):
            entry, _, comment = line.partition(";")
            entry = entry.strip()
            if not entry:
                continue
            if any(c.isspace() for c in entry):
                raise AddressListError(
                    number, line, "one address, range (a-b) or network (a/n) per line; use ; before a comment"
                )
            entries.append(_parse_entry(entry, comment.strip(), number, line))
        return cls(entries, text)

    def serialize(self) -> str:
        """
        The entries as canonical lines (what L{parse} reads back as the
        same entries).
        """
        return "\n".join(str(entry) for entry in self.entries)

    def __bool__(self) -> bool:
        return not self._empty

    def __len__(self) -> int:
        return len(self.entries)

    def __eq__(self, other) -> bool:
        return isinstance(other, AddressList) and (self._v4, self._v6) == (other._v4, other._v6)

    def __hash__(self) -> int:
        return hash((tuple(self._v4[0]), tuple(self._v6[0])))

    def __repr__(self) -> str:
        return f"AddressList.parse({self.text!r})"

    def union(self, *others: AddressList) -> AddressList:
        """
        A list of every entry of this list and C{others}.
        """
        entries = list(self.entries)
        for other in others:
            entries.extend(other.entries)
        return AddressList(entries)

    def __contains__(self, address: str) -> bool:
        return self.contains(address)

    def contains(self, address: str) -> bool:
        """
        Whether the address C{address} (text, as a socket reports it;
        C{[v6]}, a zone and IPv4-mapped IPv6 are understood) is in the
        list; text that is no address is not.
        """
        if self._empty:
            return False
        try:
            value = int.from_bytes(_pton(_AF_INET, address), "big")
        except (OSError, TypeError, ValueError):
            pass
        else:
            return _inside(*self._v4, value)
        try:
            host = address.strip("[]").partition("%")[0]
            value = int.from_bytes(_pton(_AF_INET6, host), "big")
        except (OSError, TypeError, ValueError, AttributeError):
            return False
        if _inside(*self._v6, value):
            return True
        return value >> 32 == _MAPPED_PREFIX and _inside(*self._v4, value & 0xFFFFFFFF)


#: The private ranges: what an empty LAN IPs list means, and what always
#: counts as a NATed address.
PRIVATE_RANGES = AddressList.parse(
    "10.0.0.0/8 ; RFC 1918\n"
    "172.16.0.0/12 ; RFC 1918\n"
    "192.168.0.0/16 ; RFC 1918\n"
    "127.0.0.0/8 ; loopback\n"
    "::1 ; loopback\n"
    "fc00::/7 ; RFC 4193 unique local"
)

SETTINGS_KEY = "network-settings"

#: The address-list settings, by the name of their CLI commands.
LIST_KEYS = {
    "LANIPS": "LANIPs",
    "CLIENTIPS": "ClientIPs",
    "NATEDIPS": "NATedIPs",
    "DEBUGIPS": "DebugIPs",
    "BLACKLISTEDIPS": "BlacklistedIPs",
}

#: Every network setting and its built-in value.
DEFAULT_SETTINGS = {
    "WANAddress": "",
    "WANIPv6Address": "",
    **{key: "" for key in LIST_KEYS.values()},
}


RECORD = SettingsRecord(SETTINGS_KEY, DEFAULT_SETTINGS)


class NetworkSettingsError(ValueError):
    """
    A network setting that is not valid; the message names it.
    """


def address_setting(settings: dict, key: str, version: int, error=ValueError) -> str:
    """
    The one IPv4 or IPv6 (C{version}) address of setting C{key}, written
    canonically, or C{""} when it is empty; C{error} (a L{ValueError}
    class) naming the setting otherwise.  Shared by every settings record
    that names an address of this server (WAN, media relay).
    """
    text = settings.get(key, "")
    if not isinstance(text, str):
        raise error(f"{key} must be one IPv{version} address or empty, not {text!r}")
    text = text.strip().strip("[]")
    if not text:
        return ""
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        address = None
    if address is None or address.version != version:
        raise error(f"{key} must be one IPv{version} address or empty, not {text!r}")
    return str(address)


@attrs.frozen
class NetworkSettings:
    """
    The network settings in force, parsed.

    @ivar wan_address: the IPv4 address the server is reached at from
        outside (its NAT's public address), or empty.
    @ivar wan_ipv6_address: the same for IPv6.
    @ivar lan: C{LANIPs} as configured (maybe empty).
    @ivar effective_lan: C{LANIPs}, or L{PRIVATE_RANGES} when that is empty.
    @ivar not_routable: the private ranges, C{LANIPs} and C{NATedIPs}:
        addresses that mean "behind a NAT" when a packet from elsewhere
        names them.
    """

    wan_address: str = ""
    wan_ipv6_address: str = ""
    lan: AddressList = AddressList()
    clients: AddressList = AddressList()
    nated: AddressList = AddressList()
    debug: AddressList = AddressList()
    blacklisted: AddressList = AddressList()
    effective_lan: AddressList = attrs.field(init=False, eq=False, repr=False)
    not_routable: AddressList = attrs.field(init=False, eq=False, repr=False)

    @effective_lan.default
    def _effective_lan(self):
        return self.lan if self.lan else PRIVATE_RANGES

    @not_routable.default
    def _not_routable(self):
        return PRIVATE_RANGES.union(self.lan, self.nated)

    @classmethod
    def from_data(cls, settings: dict) -> NetworkSettings:
        """
        Parse the settings dictionary (missing keys take their built-in
        value); a bad value raises L{NetworkSettingsError} naming the key
        and, for a list, the line.
        """
        if not isinstance(settings, dict):
            raise NetworkSettingsError(f"the network settings are a dictionary, not {settings!r}")
        unknown = set(settings) - set(DEFAULT_SETTINGS)
        if unknown:
            raise NetworkSettingsError(
                f"unknown network settings {sorted(unknown)}; known: {sorted(DEFAULT_SETTINGS)}"
            )
        lists = {}
        for key in LIST_KEYS.values():
            try:
                lists[key] = AddressList.parse(settings.get(key, ""))
            except AddressListError as e:
                raise NetworkSettingsError(f"{key}: {e}") from e
        return cls(
            wan_address=address_setting(settings, "WANAddress", 4, NetworkSettingsError),
            wan_ipv6_address=address_setting(settings, "WANIPv6Address", 6, NetworkSettingsError),
            lan=lists["LANIPs"],
            clients=lists["ClientIPs"],
            nated=lists["NATedIPs"],
            debug=lists["DebugIPs"],
            blacklisted=lists["BlacklistedIPs"],
        )

    def as_data(self) -> dict:
        """
        Every setting, as the CLI shows them (lists as their text).
        """
        return {
            "WANAddress": self.wan_address,
            "WANIPv6Address": self.wan_ipv6_address,
            "LANIPs": self.lan.text,
            "ClientIPs": self.clients.text,
            "NATedIPs": self.nated.text,
            "DebugIPs": self.debug.text,
            "BlacklistedIPs": self.blacklisted.text,
        }

    def is_lan(self, address: str) -> bool:
        return self.effective_lan.contains(address)

    def is_not_routable(self, address: str) -> bool:
        return self.not_routable.contains(address)

    def wan_address_for(self, peer: str) -> str | None:
        """
        The WAN address to name ourselves by to C{peer}: none for a LAN
        peer or when no WAN address of the peer's IP version is set.
        """
        if not (self.wan_address or self.wan_ipv6_address):
            return None
        wan = self.wan_ipv6_address if ":" in peer else self.wan_address
        if not wan or self.is_lan(peer):
            return None
        return wan


class NetworkConfiguration(CachedSettings):
    """
    The network settings of one store, parsed once per change
    (L{CachedSettings}: at once when this process changes them, within
    C{recheck} seconds when the admin tool does).
    """

    def __init__(self, store, clock=None, recheck: float = 1.0) -> None:
        super().__init__(store, RECORD, NetworkSettings.from_data, NetworkSettings(),
                         what="network settings", clock=clock, recheck=recheck)

    def settings(self) -> dict:
        """
        Every setting, explicit or built-in, as data.
        """
        return self.current.as_data()

    def update(self, changes: dict) -> NetworkSettings:
        """
        Merge C{changes} (a C{default} value restores the built-in) into the
        stored settings, in one transaction; a bad value raises
        L{NetworkSettingsError} and stores nothing.  In force at once.
        """
        return self.change(changes)


class OncePerInterval:
    """
    Says yes to the first question about a key and then no until
    C{interval} seconds have passed on C{clock}: one log line per address
    per minute, however many packets it sends.  At most C{limit} keys are
    remembered; beyond that the oldest half are forgotten.
    """

    def __init__(self, clock, interval: float = 60.0, limit: int = 10_000) -> None:
        self._clock = clock
        self._interval = interval
        self._limit = limit
        self._last: dict = {}

    def __call__(self, key) -> bool:
        now = self._clock.seconds()
        last = self._last.get(key)
        if last is not None and now - last < self._interval:
            return False
        if last is None and len(self._last) >= self._limit:
            for old in list(self._last)[: self._limit // 2]:
                del self._last[old]
        self._last.pop(key, None)
        self._last[key] = now
        return True


class DebugPeers:
    """
    A message recorder (C{record(direction, transport, peer, data,
    **fields)}, as a protocol's transport calls its message log) that writes
    every message to or from a Debug IP address in full to the server log
    at info level, then hands it on to C{inner}.
    """

    log = Logger()

    def __init__(self, inner, settings, protocol: str = "SIP") -> None:
        """
        @param settings: a callable giving the L{NetworkSettings} in force.
        """
        self._inner = inner
        self._settings = settings
        self._protocol = protocol

    def record(self, direction, transport, peer, data, *parsed, **fields) -> None:
        debug = self._settings().debug
        if debug and debug.contains(peer[0]):
            self.log.info(
                "{protocol} {direction} {transport} {peer_host}:{peer_port} (Debug IP)\n{text}",
                protocol=self._protocol,
                direction=direction,
                transport=transport,
                peer_host=peer[0],
                peer_port=peer[1],
                text=data.decode("utf-8", "replace") if isinstance(data, bytes) else str(data),
                debug_ip=True,
            )
        if self._inner is not None:
            self._inner.record(direction, transport, peer, data, *parsed, **fields)

    def __getattr__(self, name):
        return getattr(self._inner, name)

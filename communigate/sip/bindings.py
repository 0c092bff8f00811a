"""
The registrar's location store: which contacts each account has
registered (RFC 3261 section 10.3), with the RFC 5626 outbound flows and
RFC 3327 Path the proxy needs to reach them, and what NAT traversal needs
to know about where a REGISTER really came from.

Why it looks the way it does:

  - Lookups happen on every call to an account, so they are served from an
    in-memory index; the store is written on every change and read only by
    L{Bindings.load} at start, so registrations survive a restart.
  - A REGISTER is applied all or nothing (RFC 3261 section 10.3 step 7):
    the new list is computed, checked (order, cap), written to the store in
    one transaction, and only then made visible.
  - Expiry runs on the injected clock: one timer, set for the earliest
    expiry, and L{Bindings.purge} for anyone who wants to sweep sooner.
    Expired bindings are never returned, even before the timer fires.
  - Over the C{MaxSignalContacts} cap, a REGISTER that would add a binding
    is refused (L{TooManyContacts}, answered 403) rather than evicting the
    oldest: CommuniGate caps the count, and silently dropping the phone on
    a user's desk because a softphone registered elsewhere is the worse
    surprise.  A request that does not increase the count (refreshes,
    removals, an RFC 5626 flow replacing its predecessor) always succeeds,
    so lowering the cap never locks out phones already registered.

Everything is plain values: the caller (the registrar) parses the REGISTER
and hands over a L{RegisterChanges}; nothing here depends on the SIP
message classes.  Contacts are compared as given (the text inside the
angle brackets), or with a C{contact_key} function the caller supplies,
e.g. one applying RFC 3261 section 19.1.4 URI comparison.

Records are kind C{sip-binding}, key C{<aor>/<hash of the contact key>},
value a JSON object (older records, CommuniGate data-format dictionaries
with the same keys, are still read): a registrar writes thousands a second,
and JSON is written by C code.

With a C{write_delay}, changes reach the store in batches, one transaction
every C{write_delay} seconds, instead of one per REGISTER: the bindings in
memory are the truth the proxy uses, and what a crash of the process can
lose is the last fraction of a second of registrations, which phones
repeat at their next refresh.  L{Bindings.flush} writes what is pending
(the service calls it when it stops).
"""

from __future__ import annotations

import hashlib
import heapq
import itertools
import json
import math
from collections.abc import Callable

import attrs
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from zope.interface import implementer

from communigate.formats import cgdata
from communigate.interfaces import IAccountWatcher, IStore

__all__ = [
    "Binding",
    "BindingError",
    "Bindings",
    "ContactChange",
    "InvalidRegistration",
    "OutOfOrder",
    "RegisterChanges",
    "TooManyContacts",
]

KIND = "sip-binding"

#: The account setting that caps the contacts of one AOR.
CAP_SETTING = "MaxSignalContacts"


# -- values ----------------------------------------------------------------------


# The transports' names, so that every binding shares one copy of each.
_TRANSPORTS = {name: name for name in ("udp", "tcp", "tls", "ws", "wss", "sctp")}


def _address(value) -> tuple[str, str, int] | None:
    """
    A C{(transport, host, port)} triple, transport in lower case: C{value}
    itself when it is one already, so a binding shares its REGISTER's.
    """
    if value is None:
        return None
    transport, host, port = value
    if not (isinstance(transport, str) and isinstance(host, str)):
        raise TypeError(f"an address is (transport, host, port), not {value!r}")
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise ValueError(f"a port is a number 0-65535, not {port!r}")
    lowered = transport.lower()
    lowered = _TRANSPORTS.get(lowered, lowered)
    if type(value) is tuple and transport is lowered:
        return value
    return (lowered, host, port)


def _check_q(instance, attribute, value):
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"q must be between 0 and 1, not {value!r}")


def _check_expires(instance, attribute, value):
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"expires must be a non-negative integer, not {value!r}")


def _params(value) -> tuple[tuple[str, str | None], ...]:
    return tuple((name, param) for name, param in value)


@attrs.frozen
class Binding:
    """
    One registered contact of an address-of-record.

    @ivar aor: the account name (C{user@domain}) it is registered for.
    @ivar contact: the contact URI exactly as the client sent it (the text
        inside the angle brackets), URI parameters and all.
    @ivar expires_at: when it expires, in C{clock.seconds()}.
    @ivar q: the client's preference, 0 to 1.
    @ivar call_id: the Call-ID of the REGISTER that last set it.
    @ivar cseq: the CSeq number of that REGISTER.
    @ivar instance: the C{+sip.instance} value (RFC 5626), as sent.
    @ivar reg_id: the C{reg-id} (RFC 5626); only with an instance.
    @ivar path: the Path header values (RFC 3327), first first; requests
        to this contact are routed through them.
    @ivar source: C{(transport, host, port)} the REGISTER really came from;
        the address to send to when the client is behind a NAT.
    @ivar local: C{(transport, host, port)} it arrived on, so requests leave
        over the same flow (and the same listener) the NAT has open.
    @ivar nat: whether the registrar judged the client to be behind a NAT.
    @ivar user_agent: the User-Agent header, for the administrator.
    @ivar params: the Contact header parameters other than C{q},
        C{expires}, C{+sip.instance} and C{reg-id} (feature tags such as
        C{methods} or C{+sip.ice}), as C{(name, value-or-None)} pairs in the
        order sent, to echo and to match caller preferences against.
    @ivar updated_at: when the REGISTER that last set it was applied.
    """

    aor: str
    contact: str
    expires_at: float
    q: float = attrs.field(default=1.0, converter=float, validator=_check_q)
    call_id: str = ""
    cseq: int = 0
    instance: str | None = None
    reg_id: int | None = None
    path: tuple[str, ...] = attrs.field(default=(), converter=tuple)
    source: tuple[str, str, int] | None = attrs.field(default=None, converter=_address)
    local: tuple[str, str, int] | None = attrs.field(default=None, converter=_address)
    nat: bool = False
    user_agent: str | None = None
    params: tuple[tuple[str, str | None], ...] = attrs.field(default=(), converter=_params)
    updated_at: float = 0.0

    def expires_in(self, now: float) -> int:
        """
        Whole seconds left at C{now}, for the C{expires} parameter of the
        200 response.
        """
        return max(0, int(self.expires_at - now + 0.5))

    @property
    def flow(self) -> tuple[str, int] | None:
        """
        The RFC 5626 flow identity C{(instance, reg_id)}, if it has one.
        """
        if self.instance is None or self.reg_id is None:
            return None
        return (self.instance, self.reg_id)


@attrs.frozen
class ContactChange:
    """
    One Contact of a REGISTER, as the registrar resolved it.

    @ivar contact: the URI as sent, or C{*} (alone, with C{expires} 0) to
        remove every binding.
    @ivar expires: seconds, already taken from the Contact's C{expires}
        parameter or the Expires header and clamped to the registrar's
        limits; 0 removes the binding.
    """

    contact: str
    expires: int = attrs.field(validator=_check_expires)
    q: float = attrs.field(default=1.0, converter=float, validator=_check_q)
    instance: str | None = None
    reg_id: int | None = None
    params: tuple[tuple[str, str | None], ...] = attrs.field(default=(), converter=_params)



@attrs.frozen
class RegisterChanges:
    """
    What one REGISTER asks for: its contacts (none to fetch the bindings)
    and what every binding it makes records.
    """

    call_id: str
    cseq: int
    contacts: tuple[ContactChange, ...] = attrs.field(default=(), converter=tuple)
    path: tuple[str, ...] = attrs.field(default=(), converter=tuple)
    source: tuple[str, str, int] | None = attrs.field(default=None, converter=_address)
    local: tuple[str, str, int] | None = attrs.field(default=None, converter=_address)
    nat: bool = False
    user_agent: str | None = None


class BindingError(ValueError):
    """
    A REGISTER that cannot be applied; nothing was changed.

    @ivar status: the SIP status code to answer with.
    @ivar reason: the reason phrase.
    """

    status = 500

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class InvalidRegistration(BindingError):
    """
    The request breaks RFC 3261 rules (C{*} with other contacts or a
    non-zero expiry, text that cannot be stored): 400.
    """

    status = 400


class OutOfOrder(BindingError):
    """
    A binding would be changed by a REGISTER with its Call-ID and a CSeq
    not above the one that set it (RFC 3261 section 10.3 step 7: the
    request fails): 500.
    """

    status = 500


class TooManyContacts(BindingError):
    """
    The request would leave more bindings than C{MaxSignalContacts}: 403.
    """

    status = 403


# -- the store ------------------------------------------------------------------------


def _cap_value(aor: str, value) -> int | None:
    """
    The cap C{max_per_aor_setting} returned, as a number or L{None}
    (unlimited); settings hold numbers as text.
    """
    if value is None:
        return None
    if isinstance(value, str):
        if value.lower() == "unlimited":
            return None
        if value.isdigit():
            return int(value)
    elif isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    raise ValueError(f"{CAP_SETTING} of {aor} must be a non-negative number or 'unlimited', not {value!r}")


def _check_text(*values) -> None:
    for value in values:
        if value is None:
            continue
        if not isinstance(value, str):
            raise InvalidRegistration("Registration data is not text")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise InvalidRegistration("Registration data is not valid UTF-8") from None


def _encode(binding: Binding) -> str:
    record: dict = {
        "AOR": binding.aor,
        "Contact": binding.contact,
        "Expires": repr(binding.expires_at),
        "Q": repr(binding.q),
        "CallID": binding.call_id,
        "CSeq": binding.cseq,
        "Updated": repr(binding.updated_at),
    }
    if binding.instance is not None:
        record["Instance"] = binding.instance
    if binding.reg_id is not None:
        record["RegID"] = binding.reg_id
    if binding.path:
        record["Path"] = list(binding.path)
    if binding.source is not None:
        record["Source"] = list(binding.source)
    if binding.local is not None:
        record["Local"] = list(binding.local)
    if binding.nat:
        record["NAT"] = True
    if binding.user_agent is not None:
        record["UserAgent"] = binding.user_agent
    if binding.params:
        record["Params"] = [[name] if value is None else [name, value] for name, value in binding.params]
    return json.dumps(record, ensure_ascii=False, separators=(",", ":"))


def _decode(text: str) -> Binding:
    """
    @raise ValueError: naming what is wrong with a damaged record.
    """
    record = json.loads(text) if text.startswith('{"') else cgdata.loads(text)
    if not isinstance(record, dict):
        raise ValueError("the record is not a dictionary")

    def text_of(key, default=attrs.NOTHING):
        value = record.get(key, default)
        if value is attrs.NOTHING:
            raise ValueError(f"it has no {key}")
        if value is not None and not isinstance(value, str):
            raise ValueError(f"{key} is not text")
        return value

    def number_of(key, default=attrs.NOTHING):
        value = record.get(key, default)
        if value is attrs.NOTHING:
            raise ValueError(f"it has no {key}")
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            raise ValueError(f"{key} is not a number")
        return value

    def time_of(key, default=attrs.NOTHING):
        text = text_of(key, default)
        try:
            value = float(text)
        except ValueError:
            raise ValueError(f"{key} is not a number") from None
        if not math.isfinite(value):
            raise ValueError(f"{key} is not a finite number")
        return value

    def address_of(key):
        value = record.get(key)
        if value is None:
            return None
        if not (isinstance(value, list) and len(value) == 3):
            raise ValueError(f"{key} is not (transport, host, port)")
        return (value[0], value[1], value[2])

    params = []
    for item in record.get("Params", []):
        if not (isinstance(item, list) and 1 <= len(item) <= 2 and all(isinstance(part, str) for part in item)):
            raise ValueError("Params holds something other than (name, value) pairs")
        params.append((item[0], item[1] if len(item) == 2 else None))
    path = record.get("Path", [])
    if not (isinstance(path, list) and all(isinstance(hop, str) for hop in path)):
        raise ValueError("Path is not a list of text")
    try:
        return Binding(
            aor=text_of("AOR"),
            contact=text_of("Contact"),
            expires_at=time_of("Expires"),
            q=time_of("Q", "1.0"),
            call_id=text_of("CallID", ""),
            cseq=number_of("CSeq", 0),
            instance=text_of("Instance", None),
            reg_id=number_of("RegID", None),
            path=path,
            source=address_of("Source"),
            local=address_of("Local"),
            nat=record.get("NAT", False) is True,
            user_agent=text_of("UserAgent", None),
            params=params,
            updated_at=time_of("Updated", "0"),
        )
    except TypeError as error:
        raise ValueError(str(error)) from None


def _rank(binding: Binding):
    # Highest q first; among equals the most recently registered, the one
    # most likely to be the phone in use.
    return (-binding.q, -binding.updated_at, binding.contact)


@implementer(IAccountWatcher)
class Bindings:
    """
    The bindings of every account: an in-memory index in front of the
    store.

    Memory is bounded by the bindings alive: expired ones are dropped by
    the expiry timer (or L{purge}), the expiry queue is rebuilt whenever
    refreshes have left it more than twice as long as the bindings it
    covers, and the per-flow index holds only flows that have bindings.
    Registration itself needs digest authentication and is capped per
    account, so the number alive is bounded by the accounts.

    Use it from the reactor thread only.
    """

    log = Logger()

    def __init__(
        self,
        store: IStore,
        clock: IReactorTime,
        *,
        max_per_aor_setting: Callable[[str], int | str | None] = lambda aor: 10,
        contact_key: Callable[[str], str] = lambda contact: contact,
        write_delay: float = 0.0,
    ) -> None:
        """
        @param write_delay: seconds a change may wait to be written with
            others in one transaction; 0 writes each change at once.
        @param max_per_aor_setting: C{aor -> cap}, reading the account's
            effective C{MaxSignalContacts}: a number (or a decimal string, as
            settings hold it), or L{None} / C{'unlimited'}.
        @param contact_key: C{contact -> key}; two contacts with the same
            key are the same binding.
        """
        self._store = store
        self._clock = clock
        self._cap = max_per_aor_setting
        self._contact_key = contact_key
        self._by_aor: dict[str, dict[str, Binding]] = {}
        self._by_source: dict[tuple, set[tuple[str, str]]] = {}
        self._total = 0
        self._queue: list[tuple[float, int, str, str]] = []
        self._sequence = itertools.count()
        self._timer: IDelayedCall | None = None
        self._write_delay = write_delay
        self._pending: dict[str, str | None] = {}
        self._flush_timer: IDelayedCall | None = None
        self._aor_listeners: tuple = ()
        # The local addresses bindings arrive on are the listeners': a
        # handful, one copy each for all the bindings.
        self._locals: dict[tuple, tuple] = {}

    def add_aor_listener(self, listener: Callable[[str, bool], None]) -> None:
        """
        Call C{listener(aor, True)} when an account gets its first binding
        and C{listener(aor, False)} when it loses its last one (presence
        shows registered phones).  Within one change an account may lose
        and regain its bindings; listeners that care re-check later.
        """
        self._aor_listeners = self._aor_listeners + (listener,)

    def _tell_aor(self, aor: str, live: bool) -> None:
        for listener in self._aor_listeners:
            try:
                listener(aor, live)
            except Exception:
                self.log.failure("A bindings listener failed for {aor}", aor=aor)

    # -- reading ----------------------------------------------------------------------

    def lookup(self, aor: str) -> list[Binding]:
        """
        The live bindings of C{aor}, highest q first.
        """
        now = self._clock.seconds()
        found = [binding for binding in self._by_aor.get(aor, {}).values() if binding.expires_at > now]
        found.sort(key=_rank)
        return found

    def count(self, aor: str) -> int:
        now = self._clock.seconds()
        return sum(1 for binding in self._by_aor.get(aor, {}).values() if binding.expires_at > now)

    def all_count(self) -> int:
        """
        How many live bindings all accounts have.
        """
        self.purge()
        return self._total

    def aors(self) -> list[str]:
        """
        The accounts that have live bindings, sorted.
        """
        self.purge()
        return sorted(self._by_aor)

    def memory_stats(self) -> dict[str, int]:
        """
        The sizes of the in-memory structures, for monitoring (and for the
        tests that show they stay bounded).
        """
        return {
            "bindings": self._total,
            "aors": len(self._by_aor),
            "flows": len(self._by_source),
            "expiry_queue": len(self._queue),
        }

    # -- changing ---------------------------------------------------------------------

    def _key(self, contact: str) -> str:
        key = self._contact_key(contact)
        return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()[:32]

    def _cap_for(self, aor: str) -> int | None:
        return _cap_value(aor, self._cap(aor))

    def update(self, aor: str, changes: RegisterChanges) -> list[Binding]:
        """
        Apply a REGISTER's contacts to C{aor}'s bindings, all or nothing, and
        return the bindings now in force, for the 200 response.

        @raise InvalidRegistration: C{*} with other contacts or a non-zero
            expiry, or text that is not UTF-8 (400).
        @raise OutOfOrder: a binding this request would change was set by a
            REGISTER with the same Call-ID and a CSeq not below this one's
            (500).
        @raise TooManyContacts: the result would exceed the cap and has
            more bindings than before (403).
        """
        now = self._clock.seconds()
        _check_text(aor, changes.call_id, changes.user_agent, *changes.path)
        for change in changes.contacts:
            _check_text(change.contact, change.instance, *(part for pair in change.params for part in pair))
        stored = self._by_aor.get(aor, {})
        current = {key: binding for key, binding in stored.items() if binding.expires_at > now}

        def check_order(binding: Binding) -> None:
            if binding.call_id == changes.call_id and binding.cseq >= changes.cseq:
                raise OutOfOrder("Out of order REGISTER: CSeq not above the one that set the binding")

        local = self._shared_local(changes.local)
        contacts = changes.contacts
        if any(change.contact == "*" for change in contacts):
            if len(contacts) != 1:
                raise InvalidRegistration("Contact * must be the only contact")
            if contacts[0].expires != 0:
                raise InvalidRegistration("Contact * needs expires 0")
            for binding in current.values():
                check_order(binding)
            result: dict[str, Binding] = {}
        else:
            result = dict(current)
            made_here: set[str] = set()
            for change in contacts:
                key = self._key(change.contact)
                reg_id = change.reg_id if change.instance is not None else None
                matched = {key} & result.keys()
                if reg_id is not None:
                    # RFC 5626 section 6: a new flow of the same instance and
                    # reg-id replaces the old one whatever its contact URI.
                    matched |= {
                        other
                        for other, binding in result.items()
                        if binding.instance == change.instance and binding.reg_id == reg_id
                    }
                for other in matched:
                    if other not in made_here:
                        check_order(result[other])
                    del result[other]
                if change.expires > 0:
                    result[key] = Binding(
                        aor=aor,
                        contact=change.contact,
                        expires_at=now + change.expires,
                        q=change.q,
                        call_id=changes.call_id,
                        cseq=changes.cseq,
                        instance=change.instance,
                        reg_id=reg_id,
                        path=changes.path,
                        source=changes.source,
                        local=local,
                        nat=changes.nat,
                        user_agent=changes.user_agent,
                        params=change.params,
                        updated_at=now,
                    )
                    made_here.add(key)
            if len(result) > len(current):
                cap = self._cap_for(aor)
                if cap is not None and len(result) > cap:
                    raise TooManyContacts(f"Too many registered contacts ({CAP_SETTING} is {cap})")

        removed = [key for key in stored if key not in result]
        written = {key: binding for key, binding in result.items() if stored.get(key) != binding}
        if removed or written:
            self._write(
                [(f"{aor}/{key}", None) for key in removed]
                + [(f"{aor}/{key}", _encode(binding)) for key, binding in written.items()]
            )
            for key in removed:
                self._forget(aor, key)
            for key, binding in written.items():
                self._remember(aor, key, binding)
            self._schedule()
        return self.lookup(aor)

    def _shared_local(self, local):
        if local is None:
            return None
        shared = self._locals.get(local)
        if shared is None:
            if len(self._locals) >= 1024:  # not listeners: do not keep them all
                self._locals.clear()
            shared = self._locals[local] = local
        return shared

    def remove(self, aor: str) -> list[Binding]:
        """
        Remove every binding of C{aor} (an administrator's request, or the
        account is gone); returns the live ones removed.
        """
        now = self._clock.seconds()
        stored = dict(self._by_aor.get(aor, {}))
        if stored:
            self._write([(f"{aor}/{key}", None) for key in stored])
            for key in stored:
                self._forget(aor, key)
            self.log.info("Removed the {count} bindings of {aor}", count=len(stored), aor=aor)
        return sorted((binding for binding in stored.values() if binding.expires_at > now), key=_rank)

    # IAccountWatcher: a deleted account's phones are no longer reachable
    # through it; a renamed one's must register under the new name (their
    # credentials name the account), so their bindings go as well.
    def account_removed(self, aor: str) -> None:
        self.remove(aor)

    def account_renamed(self, old: str, new: str) -> None:
        self.remove(old)

    def remove_flow(self, source, local=None) -> list[Binding]:
        """
        Remove the bindings reached through a flow that has died: the NAT
        keep-alive got no answer, or the TCP/TLS connection closed under an
        RFC 5626 registration.  C{source} is the C{(transport, host, port)}
        the REGISTERs came from; with C{local}, only bindings that arrived
        on that local address.

        @return: the bindings removed.
        """
        source = _address(source)
        local = _address(local)
        entries = self._by_source.get(source, set())
        doomed = []
        for aor, key in entries:
            binding = self._by_aor[aor][key]
            if local is None or binding.local == local:
                doomed.append((aor, key, binding))
        if not doomed:
            return []
        self._write([(f"{aor}/{key}", None) for aor, key, _ in doomed])
        for aor, key, _ in doomed:
            self._forget(aor, key)
        self.log.info(
            "Flow {source} is gone: removed {count} bindings", source=source, count=len(doomed)
        )
        return sorted((binding for _, _, binding in doomed), key=_rank)

    # -- expiry -----------------------------------------------------------------------

    def purge(self) -> int:
        """
        Drop the bindings that have expired, from memory and the store;
        returns how many.  The expiry timer calls this; a store failure is
        logged and the bindings dropped from memory anyway (L{load} drops
        expired records it finds).
        """
        now = self._clock.seconds()
        expired = []
        while self._queue and self._queue[0][0] <= now:
            _, _, aor, key = heapq.heappop(self._queue)
            binding = self._by_aor.get(aor, {}).get(key)
            if binding is not None and binding.expires_at <= now:
                expired.append((aor, key))
        if not expired:
            return 0
        try:
            self._write([(f"{aor}/{key}", None) for aor, key in expired])
        except Exception:
            self.log.failure("Could not delete {count} expired bindings from the store", count=len(expired))
        for aor, key in expired:
            self._forget(aor, key)
        self.log.debug("{count} bindings expired", count=len(expired))
        return len(expired)

    # -- writing ----------------------------------------------------------------------

    def _write(self, changes: list[tuple[str, str | None]]) -> None:
        """
        Put records (text) or delete them (L{None}): now, in one
        transaction, or with the next batch.
        """
        if not self._write_delay:
            self._commit(changes)
            return
        self._pending.update(changes)
        if self._flush_timer is None:
            self._flush_timer = self._clock.callLater(self._write_delay, self._flush_due)

    def _commit(self, changes) -> None:
        with self._store.transaction():
            for record_key, text in changes:
                if text is None:
                    self._store.delete(KIND, record_key)
                else:
                    self._store.put(KIND, record_key, text)

    def _flush_due(self) -> None:
        self._flush_timer = None
        try:
            self.flush()
        except Exception:
            self.log.failure(
                "Could not write {count} binding changes to the store; trying again", count=len(self._pending)
            )
            self._flush_timer = self._clock.callLater(max(self._write_delay, 1.0), self._flush_due)

    def flush(self) -> int:
        """
        Write every pending change now; returns how many.  On a store
        failure they stay pending and the error is raised.
        """
        if self._flush_timer is not None and self._flush_timer.active():
            self._flush_timer.cancel()
        self._flush_timer = None
        pending = list(self._pending.items())
        if pending:
            self._commit(pending)
            self._pending.clear()
        return len(pending)

    def _expire_due(self) -> None:
        self._timer = None
        self.purge()
        self._schedule()

    def _schedule(self) -> None:
        """
        Keep one timer set for the earliest expiry.
        """
        if not self._queue:
            self.stop()
            return
        due = self._queue[0][0]
        if self._timer is not None:
            if self._timer.getTime() <= due:
                return
            self._timer.cancel()
        self._timer = self._clock.callLater(max(0.0, due - self._clock.seconds()), self._expire_due)

    def stop(self) -> None:
        """
        Cancel the expiry timer (at service shutdown).  Lookups still hide
        expired bindings; the next change sets the timer again.
        """
        if self._timer is not None:
            if self._timer.active():
                self._timer.cancel()
            self._timer = None

    # -- the indexes ------------------------------------------------------------------

    def _remember(self, aor: str, key: str, binding: Binding) -> None:
        by_key = self._by_aor.get(aor)
        if by_key is None:
            by_key = self._by_aor[aor] = {}
            if self._aor_listeners:
                self._tell_aor(aor, True)
        old = by_key.get(key)
        if old is not None:
            self._unindex_source(aor, key, old)
        else:
            self._total += 1
        by_key[key] = binding
        if binding.source is not None:
            self._by_source.setdefault(binding.source, set()).add((aor, key))
        heapq.heappush(self._queue, (binding.expires_at, next(self._sequence), aor, key))
        if len(self._queue) > 2 * self._total + 64:
            self._rebuild_queue()

    def _forget(self, aor: str, key: str) -> None:
        by_key = self._by_aor.get(aor)
        if by_key is None or key not in by_key:
            return
        binding = by_key.pop(key)
        self._total -= 1
        if not by_key:
            del self._by_aor[aor]
            if self._aor_listeners:
                self._tell_aor(aor, False)
        self._unindex_source(aor, key, binding)

    def _unindex_source(self, aor: str, key: str, binding: Binding) -> None:
        if binding.source is None:
            return
        entries = self._by_source.get(binding.source)
        if entries is not None:
            entries.discard((aor, key))
            if not entries:
                del self._by_source[binding.source]

    def _rebuild_queue(self) -> None:
        # Refreshes leave the old expiry behind in the heap (removing from
        # the middle of a heap is linear); rebuilding when the stale entries
        # outnumber the live ones keeps it within twice the bindings.
        self._queue = [
            (binding.expires_at, next(self._sequence), aor, key)
            for aor, by_key in self._by_aor.items()
            for key, binding in by_key.items()
        ]
        heapq.heapify(self._queue)

    # -- start ------------------------------------------------------------------------

    def load(self) -> int:
        """
        Read the bindings back from the store at start, dropping (and
        deleting) expired and damaged records; returns how many are live.
        """
        now = self._clock.seconds()
        self.stop()
        self.flush()
        self._by_aor.clear()
        self._by_source.clear()
        self._queue = []
        self._total = 0
        doomed: list[str] = []
        rekeyed: list[tuple[str, str, Binding]] = []
        damaged = 0
        for record_key, text in self._store.scan(KIND):
            try:
                binding = _decode(text)
            except ValueError as error:
                self.log.warn("Damaged binding record {key} dropped: {error}", key=record_key, error=str(error))
                damaged += 1
                doomed.append(record_key)
                continue
            if binding.expires_at <= now:
                doomed.append(record_key)
                continue
            key = self._key(binding.contact)
            if record_key != f"{binding.aor}/{key}":
                # Stored under another key: written with another contact
                # key function.  File it under today's.
                doomed.append(record_key)
                rekeyed.append((binding.aor, key, binding))
            self._remember(binding.aor, key, binding)
        if doomed or rekeyed:
            self._commit(
                [(record_key, None) for record_key in doomed]
                + [(f"{aor}/{key}", _encode(binding)) for aor, key, binding in rekeyed]
            )
        self._schedule()
        self.log.info(
            "Loaded {count} SIP bindings ({dropped} expired or damaged dropped)",
            count=self._total,
            dropped=len(doomed) - len(rekeyed),
        )
        return self._total


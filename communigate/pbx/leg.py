"""
One call of a PBX task, as a dialog in SIP terms (RFC 3261 section 12).

The Signal service speaks SIP's model whatever the protocol, so a task's
call is kept the way a SIP user agent keeps a dialog: Call-ID, local and
remote tags, the peer's target (its Contact) and the route set, the local
and remote CSeq.  L{CallLeg} is pure: it reads the INVITE or the answer
that made the dialog and writes the Signals (in-dialog requests) and
responses the task sends; the task and the dialog table move them.

  - An incoming leg is made from the caller's INVITE
    (L{CallLeg.from_invite}): the remote party is its From (tag
    included), our end its To plus our new tag, the target its Contact,
    the route set its Record-Route values in order (section 12.1.1).
  - An outgoing leg (L{CallLeg.placing}) writes the INVITE
    (L{CallLeg.invite_signal}); the 2xx that answers it
    (L{CallLeg.established}) gives the remote tag, the target (Contact)
    and the route set (Record-Route, reversed: section 12.1.2).
  - In-dialog requests (L{CallLeg.request}) carry From/To with both tags,
    the next local CSeq, the route set as Route; an ACK
    (L{CallLeg.ack}) repeats the CSeq number of the INVITE it
    acknowledges (section 13.2.2.4).
  - A request from the peer whose CSeq is lower than the last one is out
    of order (section 12.2.2: 500); L{CallLeg.accept_remote_cseq} says so.
"""

from __future__ import annotations

import copy
import os

from communigate.routing.addresses import (
    Address,
    AddressError,
    ApplicationAddress,
    parse_address,
    sip_uri,
)
from communigate.signal.model import DEFAULT_LIFETIME, Response, Signal, Submitter
from communigate.sip.headers import (
    HeaderError,
    parse_cseq,
    parse_name_addr,
    parse_name_addr_values,
)

__all__ = ["CallLeg", "LegError", "SUPPORTED", "SUPPORTED_WITHOUT_100REL", "new_tag", "new_call_id",
           "address_header", "email_of"]

#: The requests a task's leg answers; sent in Allow.
ALLOW = "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, NOTIFY, REFER, UPDATE, PRACK"
#: The extensions a task's leg supports (RFC 3891: an INVITE with Replaces
#: may take its place, communigate.pbx.replaces; RFC 3262: reliable
#: provisional responses, communigate.pbx.reliable); sent in Supported.
SUPPORTED = "replaces, 100rel"
#: What a call placed with start_call(no_100rel=True) supports.
SUPPORTED_WITHOUT_100REL = "replaces"


class LegError(ValueError):
    """
    The INVITE or the answer cannot make a dialog (no From tag, a bad
    Contact ...); the message says what is wrong.
    """


def new_tag() -> str:
    return os.urandom(8).hex()


def new_call_id(host: str) -> str:
    return f"{os.urandom(12).hex()}@{host}"


def email_of(header_value: str | None) -> str:
    """
    The e-mail form of a From/To/Contact value's URI (C{user@domain}), or
    the URI text when it is no address.
    """
    if not header_value:
        return ""
    try:
        uri = str(parse_name_addr(header_value).uri)
    except HeaderError:
        return header_value
    try:
        address = parse_address(uri)
    except AddressError:
        return uri
    return address.email() if isinstance(address, Address) else uri


def address_header(destination: str, default_domain: str) -> str:
    """
    A From/To value (C{<sip:...>}) for an address as the Router reads it:
    e-mail form, a URI, a bare name (in C{default_domain}), or an
    application (shown as C{program@default_domain}).
    """
    text = destination.strip()
    if text.lower().startswith(("sip:", "sips:", "tel:")):
        return f"<{text}>"
    try:
        address = parse_address(text)
    except AddressError as error:
        raise LegError(str(error)) from None
    if isinstance(address, ApplicationAddress):
        domain = address.domain or default_domain
        return f"<sip:{address.program}@{domain}>"
    if address.domain is None:
        address = Address(address.local, default_domain)
    return f"<{sip_uri(address)}>"


class CallLeg:
    """
    The dialog state of one call.

    @ivar incoming: whether the peer called us.
    @ivar local: our From (outgoing) or To (incoming) value, with our tag.
    @ivar remote: the peer's value; with its tag once known.
    @ivar remote_target: the peer's Contact URI once known.
    @ivar route_set: Route values for requests we send, in order.
    @ivar invite: the INVITE Signal that made the leg (ours or the peer's).
    @ivar protocol: the protocol carrying the dialog (the INVITE's
        submitter protocol for an incoming leg, C{sip} for one we place).
    """

    def __init__(
        self,
        *,
        incoming: bool,
        call_id: str,
        local_tag: str,
        local: str,
        remote: str,
        remote_tag: str | None,
        remote_target: str | None,
        route_set: tuple[str, ...],
        invite: Signal | None,
        protocol: str,
        remote_cseq: int | None = None,
        local_cseq: int = 0,
    ) -> None:
        self.incoming = incoming
        self.call_id = call_id
        self.local_tag = local_tag
        self.local = local
        self.remote = remote
        self.remote_tag = remote_tag
        self.remote_target = remote_target
        self.route_set = route_set
        self.invite = invite
        self.protocol = protocol
        self.remote_cseq = remote_cseq
        self.local_cseq = local_cseq
        self.invite_cseq = local_cseq  # the CSeq our ACKs repeat
        self.supported = SUPPORTED  # the extensions our INVITE and 2xx name

    def __repr__(self) -> str:
        kind = "incoming" if self.incoming else "outgoing"
        return f"<CallLeg {kind} {self.call_id} {self.local_tag}>"

    # -- making the leg ------------------------------------------------------

    @classmethod
    def from_invite(cls, signal: Signal, local_tag: str | None = None) -> CallLeg:
        """
        Our end of a dialog the caller's INVITE asks for.

        @raise LegError: no From tag, no Call-ID, a bad Contact, CSeq or
            Record-Route.
        """
        from_value = signal.header("From")
        to_value = signal.header("To")
        if not from_value or not to_value or not signal.call_id:
            raise LegError("the INVITE lacks From, To or Call-ID")
        try:
            caller = parse_name_addr(from_value, "From")
            parse_name_addr(to_value, "To")
            cseq = parse_cseq(signal.header("CSeq") or "").number
            routes = parse_name_addr_values(
                [value for name, value in signal.headers if name.lower() == "record-route"],
                "Record-Route",
            )
            contacts = parse_name_addr_values(
                [value for name, value in signal.headers if name.lower() in ("contact", "m")],
                "Contact",
            )
        except HeaderError as error:
            raise LegError(str(error)) from None
        if caller.tag is None:
            raise LegError("the INVITE's From has no tag")
        tag = local_tag or new_tag()
        return cls(
            incoming=True,
            call_id=signal.call_id,
            local_tag=tag,
            local=f"{to_value};tag={tag}",
            remote=from_value,
            remote_tag=caller.tag,
            # Without a Contact (a call from another task) the peer's
            # address stands in: the dialog table finds a local peer by tags.
            remote_target=str(contacts[0].uri) if contacts else str(caller.uri),
            route_set=tuple(str(route) for route in routes),
            invite=signal,
            protocol=signal.submitter.protocol,
            remote_cseq=cseq,
        )

    @classmethod
    def placing(cls, *, call_id: str, local: str, remote: str, local_tag: str | None = None) -> CallLeg:
        """
        A call we are about to place from C{local} (a From value without
        tag) to C{remote} (a To value).
        """
        tag = local_tag or new_tag()
        return cls(
            incoming=False,
            call_id=call_id,
            local_tag=tag,
            local=f"{local};tag={tag}",
            remote=remote,
            remote_tag=None,
            remote_target=None,
            route_set=(),
            invite=None,
            protocol="sip",
        )

    # -- the INVITE we send and its answer ----------------------------------

    def invite_signal(
        self,
        target: str,
        submitter: Submitter,
        *,
        body: bytes = b"",
        content_type: str | None = None,
        contact: str | None = None,
        headers=(),
        lifetime: float = DEFAULT_LIFETIME,
        ring_limit: float | None = None,
    ) -> Signal:
        """
        The INVITE placing this call to C{target} (an address the Router
        reads).
        """
        self.local_cseq += 1
        self.invite_cseq = self.local_cseq
        items = self._initial_headers("INVITE")
        if contact:
            items.append(("Contact", f"<{contact}>"))
        items.append(("Allow", ALLOW))
        items.append(("Supported", self.supported))
        items.extend(headers)
        signal = Signal(
            method="INVITE",
            targets=(target,),
            from_address=email_of(self.local),
            to_address=email_of(self.remote),
            call_id=self.call_id,
            submitter=submitter,
            headers=tuple(items),
            body=body,
            content_type=content_type if body else None,
            lifetime=lifetime,
            ring_limit=ring_limit,
        )
        self.invite = signal
        return signal

    def options_signal(self, target: str, submitter: Submitter) -> Signal:
        """
        An OPTIONS to C{target} outside any dialog (CG/PL's
        C{SendCallOptions}), from this leg's From to its To.
        """
        self.local_cseq += 1
        items = self._initial_headers("OPTIONS")
        items += [("Allow", ALLOW), ("Supported", self.supported), ("Accept", "application/sdp")]
        return Signal(
            method="OPTIONS",
            targets=(target,),
            from_address=email_of(self.local),
            to_address=email_of(self.remote),
            call_id=self.call_id,
            submitter=submitter,
            headers=tuple(items),
        )

    def _initial_headers(self, method: str) -> list:
        return [
            ("From", self.local),
            ("To", self.remote),
            ("Call-ID", self.call_id),
            ("CSeq", f"{self.local_cseq} {method}"),
            ("Max-Forwards", "70"),
        ]

    def established(self, answer: Response) -> None:
        """
        The peer's 2xx (or a 1xx with a To tag) to our INVITE: its tag,
        Contact and Record-Route make the dialog.

        @raise LegError: the answer has no To tag or a bad header.
        """
        to_value = next((v for n, v in answer.headers if n.lower() in ("to", "t")), None)
        try:
            to = parse_name_addr(to_value or "", "To")
            routes = parse_name_addr_values(
                [v for n, v in answer.headers if n.lower() == "record-route"], "Record-Route"
            )
            contacts = parse_name_addr_values(
                [v for n, v in answer.headers if n.lower() in ("contact", "m")], "Contact"
            )
        except HeaderError as error:
            raise LegError(str(error)) from None
        if to.tag is None:
            raise LegError("the answer's To has no tag")
        self.remote = to_value
        self.remote_tag = to.tag
        self.remote_target = str(contacts[0].uri) if contacts else str(to.uri)
        self.route_set = tuple(str(route) for route in reversed(routes))

    def early(self, answer: Response) -> CallLeg:
        """
        The early dialog a provisional C{answer} to our INVITE makes (its To
        tag, Contact and Record-Route), to send a PRACK in (RFC 3262); this
        leg is unchanged.

        @raise LegError: as L{established}.
        """
        leg = copy.copy(self)
        leg.established(answer)
        return leg

    # -- answering the peer's INVITE ----------------------------------------

    def answer(
        self,
        code: int,
        reason: str = "",
        *,
        body: bytes = b"",
        content_type: str | None = None,
        contact: str | None = None,
        headers=(),
        contacts: tuple[str, ...] = (),
    ) -> Response:
        """
        A response to the peer's INVITE: To with our tag (every response but
        a 100), Contact for those that make the dialog.
        """
        items = [("To", self.local)]
        if contact and (code < 300):
            items.append(("Contact", f"<{contact}>"))
        if 200 <= code < 300:
            items.append(("Allow", ALLOW))
            items.append(("Supported", self.supported))
        items.extend(headers)
        return Response(
            code=code,
            reason=reason,
            headers=tuple(items),
            body=body,
            content_type=content_type if body else None,
            contacts=contacts,
        )

    # -- requests inside the dialog -------------------------------------------

    def _signal(self, method: str, cseq: int, submitter, body, content_type, headers, contact) -> Signal:
        if self.remote_target is None:
            raise LegError("the peer gave no Contact to send requests to")
        items = [
            ("From", self.local),
            ("To", self.remote),
            ("Call-ID", self.call_id),
            ("CSeq", f"{cseq} {method}"),
            ("Max-Forwards", "70"),
        ]
        items += [("Route", route) for route in self.route_set]
        if contact:
            items.append(("Contact", f"<{contact}>"))
        items.extend(headers)
        return Signal(
            method=method,
            targets=(self.remote_target,),
            from_address=email_of(self.local),
            to_address=email_of(self.remote),
            call_id=self.call_id,
            submitter=submitter,
            headers=tuple(items),
            body=body,
            content_type=content_type if body else None,
            in_dialog=True,
        )

    def request(
        self,
        method: str,
        submitter: Submitter,
        *,
        body: bytes = b"",
        content_type: str | None = None,
        headers=(),
        contact: str | None = None,
    ) -> Signal:
        """
        The next in-dialog request (BYE, a re-INVITE, INFO, REFER ...).
        """
        self.local_cseq += 1
        if method == "INVITE":
            self.invite_cseq = self.local_cseq
        return self._signal(method, self.local_cseq, submitter, body, content_type, headers, contact)

    def ack(self, submitter: Submitter, *, body: bytes = b"", content_type: str | None = None) -> Signal:
        """
        The ACK of our last INVITE's 2xx.
        """
        return self._signal("ACK", self.invite_cseq, submitter, body, content_type, (), None)

    def accept_remote_cseq(self, signal: Signal) -> bool:
        """
        Whether the peer's in-dialog request C{signal} is in order (its
        CSeq not lower than the last one); remembers it.  An ACK or a
        CANCEL repeats its INVITE's number and is always in order.
        """
        try:
            cseq = parse_cseq(signal.header("CSeq") or "")
        except HeaderError:
            return False
        if cseq.method in ("ACK", "CANCEL"):
            return True
        if self.remote_cseq is not None and cseq.number < self.remote_cseq:
            return False
        self.remote_cseq = cseq.number
        return True

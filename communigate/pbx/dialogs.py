"""
The dialogs this server holds as a user agent.

A PBX task's call is a dialog whose one end is the server itself: the
task answered an INVITE or placed one.  The SIP proxy forwards other
dialogs' requests along their Record-Route; requests of these dialogs
must reach the task instead.  L{DialogTable} is where the two meet:

  - a task's call leg registers itself (an L{IDialogOwner}) under its
    Call-ID and local tag once it answers or places a call;
  - a protocol that carries such dialogs (SIP) registers an
    L{IDialogCarrier}, asks L{DialogTable.deliver} whether an in-dialog
    request it received belongs to a local owner, and sends what owners
    hand to L{DialogTable.send};
  - a new INVITE with C{Replaces} naming a local dialog goes to its owner
    (L{DialogTable.replace}), which takes the new call in the old one's
    place (L{communigate.pbx.replaces});
  - a call between two tasks (one placed a call the Router gave to an
    application) never leaves the process: each leg's in-dialog requests
    go straight to the other leg, found by the tags.

The table is protocol-neutral: it reads only the Signal's Call-ID and the
tags of its From and To, which every carrier fills in SIP terms.
"""

from __future__ import annotations

from twisted.logger import Logger
from zope.interface import implementer

from communigate.interfaces import IDelivery, ILocalDialogs
from communigate.signal.model import response
from communigate.sip.headers import HeaderError, parse_name_addr

__all__ = ["DialogTable", "tag_of"]


def tag_of(signal, header: str) -> str | None:
    """
    The tag of C{signal}'s C{From} or C{To}, or L{None} (absent or
    unreadable).
    """
    value = signal.header(header)
    if value is None:
        return None
    try:
        return parse_name_addr(value, header).tag
    except HeaderError:
        return None


@implementer(IDelivery)
class _Delivered:
    """
    A delivery that has nothing left to cancel (handed to a local owner,
    or answered at once).
    """

    def cancel(self) -> None:
        pass


@implementer(ILocalDialogs)
class DialogTable:
    """
    Local dialogs by C{(Call-ID, local tag)}, and the carriers by protocol.
    """

    log = Logger()

    #: How many ended dialogs the table remembers (for Replaces: 603).
    ENDED_KEPT = 1024

    def __init__(self) -> None:
        self._owners: dict[tuple[str, str], object] = {}
        self._carriers: dict[str, object] = {}
        self._ended: dict[tuple[str, str], None] = {}  # oldest first

    def __len__(self) -> int:
        return len(self._owners)

    # -- the table ---------------------------------------------------------

    def add(self, call_id: str, local_tag: str, owner) -> None:
        key = (call_id, local_tag)
        if key in self._owners:
            raise ValueError(f"dialog {call_id} with local tag {local_tag} is registered already")
        self._owners[key] = owner

    def remove(self, call_id: str, local_tag: str) -> None:
        key = (call_id, local_tag)
        if self._owners.pop(key, None) is not None:
            self._ended[key] = None
            if len(self._ended) > self.ENDED_KEPT:
                del self._ended[next(iter(self._ended))]

    def ended(self, call_id: str, local_tag: str) -> bool:
        """
        Whether the dialog was a local owner's and has ended (among the
        last L{ENDED_KEPT}).
        """
        return (call_id, local_tag) in self._ended

    def owner(self, call_id: str, local_tag: str | None):
        if local_tag is None:
            return None
        return self._owners.get((call_id, local_tag))

    # -- carriers -----------------------------------------------------------

    def add_carrier(self, carrier) -> None:
        self._carriers[carrier.protocol] = carrier

    def remove_carrier(self, carrier) -> None:
        if self._carriers.get(carrier.protocol) is carrier:
            del self._carriers[carrier.protocol]

    def carrier(self, protocol: str):
        return self._carriers.get(protocol)

    # -- requests -----------------------------------------------------------

    def deliver(self, signal, responder) -> bool:
        owner = self.owner(signal.call_id, tag_of(signal, "To"))
        if owner is None:
            return False
        self._hand_over(owner, signal, responder)
        return True

    def send(self, signal, responder, protocol: str):
        peer = self.owner(signal.call_id, tag_of(signal, "To"))
        if peer is not None:
            self._hand_over(peer, signal, responder)
            return _Delivered()
        carrier = self._carriers.get(protocol)
        if carrier is None:
            self.log.info(
                "No {protocol} carrier for {method} in dialog {call_id}",
                protocol=protocol, method=signal.method, call_id=signal.call_id,
            )
            if signal.method != "ACK":
                responder.final(response(503, f"No {protocol} service to carry the dialog"))
            return _Delivered()
        return carrier.send(signal, responder)

    def replace(self, signal, replaces, responder) -> bool:
        """
        A new INVITE C{signal} with C{Replaces} (RFC 3891; C{replaces} a
        L{communigate.pbx.replaces.Replaces}): when the dialog it names is a
        local owner's (by Call-ID and C{to-tag}, our tag), hand it over
        (the owner answers through C{responder}) and say so.
        """
        owner = self.owner(replaces.call_id, replaces.to_tag)
        take = getattr(owner, "replace", None)
        if take is None:
            return False
        try:
            take(signal, replaces, responder)
        except Exception:
            self.log.failure("The owner of dialog {call_id} failed on Replaces", call_id=replaces.call_id)
            responder.final(response(500, "Dialog owner failed"))
        return True

    def contact(self, signal, protocol: str) -> str | None:
        """
        The Contact for a local owner's end of a dialog carried by
        C{protocol}: answering C{signal}, or placing a call when it is
        L{None}.  L{None} without such a carrier (a call between tasks).
        """
        carrier = self._carriers.get(protocol)
        return None if carrier is None else carrier.contact(signal)

    def answered(self, signal, local_tag: str) -> None:
        """
        A local owner answered INVITE C{signal} with a 2xx: its carrier
        retransmits it until the ACK (RFC 3261 13.3.1.4).
        """
        carrier = self._carriers.get(signal.submitter.protocol)
        if carrier is not None:
            carrier.answered(signal, local_tag)

    def _hand_over(self, owner, signal, responder) -> None:
        try:
            owner.request(signal, responder)
        except Exception:
            self.log.failure(
                "The owner of dialog {call_id} failed on {method}",
                call_id=signal.call_id, method=signal.method,
            )
            if signal.method != "ACK":
                responder.final(response(500, "Dialog owner failed"))

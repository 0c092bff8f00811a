"""
The presence subscription state machine of RFC 6121 (section 3 and the
state tables of its Appendix A), as a pure object.

A roster item's subscription state, from its owner's side, is four
facts: the owner receives the contact's presence (C{to}), the contact
receives the owner's (C{from}), the owner asked for the contact's
presence and waits (C{pending_out}, XMPP's C{ask="subscribe"}), the
contact asked for the owner's and waits (C{pending_in}).  Four stanza
kinds move it, each either outbound (the owner sends it to the contact)
or inbound (the contact sends it to the owner).

Besides the new state, a L{Transition} says what the server does with
the stanza:

  - outbound C{subscribe} and C{unsubscribe} are always routed to the
    contact (RFC 6121 3.1.2, 3.3.2), so that the contact's server can
    answer; outbound C{subscribed} and C{unsubscribed} only when they
    change the state (3.1.5, 3.2.2: no pre-approval);
  - inbound stanzas are delivered to the owner only when they change
    the state [D] (an inbound C{subscribe} already pending is kept, not
    delivered again; pending requests are re-presented at login anyway);
  - an inbound C{subscribe} from a contact that already has C{from} is
    answered C{subscribed} by the server at once (3.1.3);
  - the owner's presence goes to the contact after the owner approves
    (C{available}) and C{unavailable} after the contact loses C{from}
    (3.1.5, 3.2.2, 3.3.3).
"""

from __future__ import annotations

import enum

import attrs


class Kind(str, enum.Enum):
    """The subscription-related presence stanza types."""

    SUBSCRIBE = "subscribe"
    SUBSCRIBED = "subscribed"
    UNSUBSCRIBE = "unsubscribe"
    UNSUBSCRIBED = "unsubscribed"


def kind_of(value) -> Kind:
    """
    C{value} (a L{Kind} or its text) as a L{Kind}.

    @raise ValueError: naming the kinds allowed.
    """
    try:
        return Kind(value.lower() if isinstance(value, str) else value)
    except ValueError:
        raise ValueError(
            f"unknown subscription stanza {value!r}; use subscribe, subscribed, unsubscribe or unsubscribed"
        ) from None


SUBSCRIPTIONS = ("none", "to", "from", "both")


@attrs.frozen
class SubscriptionState:
    """
    The state of one (owner, contact) pair, from the owner's side.
    """

    to: bool = False
    from_: bool = False
    pending_out: bool = False
    pending_in: bool = False

    def __attrs_post_init__(self) -> None:
        if self.to and self.pending_out:
            raise ValueError("a subscription cannot be both granted and pending (to + pending out)")
        if self.from_ and self.pending_in:
            raise ValueError("a subscription cannot be both granted and pending (from + pending in)")

    @property
    def subscription(self) -> str:
        """C{none}, C{to}, C{from} or C{both}, as a roster item says it."""
        return SUBSCRIPTIONS[self.to + 2 * self.from_]

    @classmethod
    def of(cls, subscription: str, *, pending_out: bool = False, pending_in: bool = False) -> SubscriptionState:
        """
        The state of a roster item's C{subscription} attribute with the
        pending flags.
        """
        if subscription not in SUBSCRIPTIONS:
            raise ValueError(f"subscription must be one of {', '.join(SUBSCRIPTIONS)}, not {subscription!r}")
        index = SUBSCRIPTIONS.index(subscription)
        return cls(to=bool(index & 1), from_=bool(index & 2), pending_out=pending_out, pending_in=pending_in)

    @classmethod
    def named(cls, name: str) -> SubscriptionState:
        """
        A state by its RFC 6121 Appendix A name: C{None}, C{None + Pending
        Out}, C{None + Pending In}, C{None + Pending Out/In}, C{To}, C{To +
        Pending In}, C{From}, C{From + Pending Out}, C{Both}.
        """
        base, _, pending = (part.strip() for part in name.partition("+"))
        pending = pending.removeprefix("Pending").strip()
        return cls.of(
            base.lower(),
            pending_out=pending in ("Out", "Out/In"),
            pending_in=pending in ("In", "Out/In"),
        )

    @property
    def name(self) -> str:
        """The RFC 6121 Appendix A name of this state."""
        base = self.subscription.capitalize()
        pending = "Out/In" if self.pending_out and self.pending_in else (
            "Out" if self.pending_out else "In" if self.pending_in else ""
        )
        return f"{base} + Pending {pending}" if pending else base


NONE = SubscriptionState()


@attrs.frozen
class Transition:
    """
    What one stanza does to a state.

    @ivar forward: outbound: route the stanza to the contact; inbound:
        deliver it to the owner's resources.
    @ivar reply: a stanza the server sends back to the contact on the
        owner's behalf, or L{None}.
    @ivar send_presence: C{available} or C{unavailable}: send the owner's
        presence to the contact now; or L{None}.
    """

    before: SubscriptionState
    after: SubscriptionState
    forward: bool
    reply: Kind | None = None
    send_presence: str | None = None

    @property
    def changed(self) -> bool:
        return self.before != self.after


def outbound(state: SubscriptionState, kind) -> Transition:
    """
    The owner sends a C{kind} stanza to the contact (RFC 6121 A.2).
    """
    kind = kind_of(kind)
    if kind is Kind.SUBSCRIBE:
        after = state if state.to else attrs.evolve(state, pending_out=True)
        return Transition(state, after, forward=True)
    if kind is Kind.UNSUBSCRIBE:
        return Transition(state, attrs.evolve(state, to=False, pending_out=False), forward=True)
    if kind is Kind.SUBSCRIBED:
        if not state.pending_in:
            return Transition(state, state, forward=False)
        after = attrs.evolve(state, from_=True, pending_in=False)
        return Transition(state, after, forward=True, send_presence="available")
    after = attrs.evolve(state, from_=False, pending_in=False)
    return Transition(
        state, after, forward=after != state, send_presence="unavailable" if state.from_ else None
    )


def inbound(state: SubscriptionState, kind) -> Transition:
    """
    The contact sends a C{kind} stanza to the owner (RFC 6121 A.3).
    """
    kind = kind_of(kind)
    if kind is Kind.SUBSCRIBE:
        if state.from_:
            return Transition(state, state, forward=False, reply=Kind.SUBSCRIBED)
        after = attrs.evolve(state, pending_in=True)
        return Transition(state, after, forward=after != state)
    if kind is Kind.UNSUBSCRIBE:
        after = attrs.evolve(state, from_=False, pending_in=False)
        return Transition(
            state, after, forward=after != state, send_presence="unavailable" if state.from_ else None
        )
    if kind is Kind.SUBSCRIBED:
        if not state.pending_out:
            return Transition(state, state, forward=False)
        return Transition(state, attrs.evolve(state, to=True, pending_out=False), forward=True)
    after = attrs.evolve(state, to=False, pending_out=False)
    return Transition(state, after, forward=after != state)


def apply(state: SubscriptionState, direction: str, kind) -> Transition:
    """
    L{outbound} or L{inbound} by name (C{"outbound"}, C{"inbound"}).
    """
    if direction == "outbound":
        return outbound(state, kind)
    if direction == "inbound":
        return inbound(state, kind)
    raise ValueError(f"direction must be outbound or inbound, not {direction!r}")

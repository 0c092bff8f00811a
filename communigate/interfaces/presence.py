"""
Rosters, presence and message-waiting counts, shared by every protocol.
"""

from zope.interface import Attribute, Interface


class IRoster(Interface):
    """
    The one roster of every account, shared by XMPP, SIP, XIMSS and the
    CLI (L{communigate.presence.roster.Roster}).

    Owners are canonical account names (C{user@domain}); contacts are bare
    addresses (a URI scheme or an XMPP resource is dropped, case folded).
    Subscription stanzas follow RFC 6121 (its Appendix A state tables).
    Every change, whoever made it, is reported to the listeners as a
    L{communigate.presence.roster.RosterEvent}: roster pushes and
    delivering inbound requests to an owner's sessions are done from
    there.  Changes beyond the account's C{MaxRosterItems} raise
    L{communigate.presence.roster.RosterFull}; a contact that is no
    address raises L{communigate.presence.roster.InvalidContact} (both
    L{ValueError}s).
    """

    def items(owner):
        """
        The owner's items (L{communigate.presence.roster.RosterItem}:
        contact, name, groups, subscription, ask), sorted by contact.
        """

    def item(owner, contact):
        """
        The owner's item for C{contact}, or L{None}.
        """

    def set_item(owner, contact, name=None, groups=None):
        """
        Add or change an item's name and groups (RFC 6121 2.4; keyword
        arguments; L{None} keeps the current value).  Returns the item.
        """

    def remove_item(owner, contact):
        """
        Remove an item, cancelling the subscriptions both ways (RFC 6121
        2.5).  Returns a L{communigate.presence.roster.Removal}: the
        stanzas due to the contact, already applied when the contact is a
        local account, else to be routed (C{remote}).
        """

    def outbound(owner, contact, kind):
        """
        The owner sends C{kind} (C{subscribe}, C{subscribed},
        C{unsubscribe}, C{unsubscribed}) to C{contact}: the owner's side
        only.  Returns a L{communigate.presence.roster.SubscriptionOutcome}
        (C{forward}: route it to the contact; C{send_presence}).
        """

    def inbound(owner, contact, kind, status=None):
        """
        C{kind} from C{contact} arrives for the owner: the owner's side
        only.  Returns a SubscriptionOutcome (C{forward}: deliver it to the
        owner's sessions; C{reply}: answer the contact with it).
        """

    def exchange(sender, recipient, kind, status=None):
        """
        Carry one stanza from C{sender} to C{recipient}: outbound on a
        local sender, inbound on a local recipient, the automatic answer
        back.  Returns a L{communigate.presence.roster.Exchange}; its
        C{remote} says the stanza must still be routed to another server.
        """

    def is_authorized(owner, watcher):
        """
        Whether C{watcher} may see the owner's presence: the owner itself,
        or a contact whose subscription is C{from} or C{both}.
        """

    def pending(owner):
        """
        The inbound requests waiting for the owner's answer
        (L{communigate.presence.roster.PendingRequest}), kept across
        logins and restarts.
        """

    def set_subscription(owner, contact, subscription):
        """
        The administrator sets a subscription outright (C{none}, C{to},
        C{from}, C{both}); a local contact gets the mirror one.
        """

    def add_listener(listener):
        """
        Call C{listener(event)} with every
        L{communigate.presence.roster.RosterEvent} from now on.
        """

    def remove_listener(listener):
        """
        Stop calling C{listener}.
        """


class IPresenceWatch(Interface):
    """
    One watcher of one account's presence, as L{IPresenceService.watch}
    returns it.
    """

    account = Attribute("The account watched.")
    watcher = Attribute("The bare address of whoever watches.")
    status = Attribute(
        "A L{communigate.presence.service.WatchStatus}: C{pending}, C{active}, C{terminated}."
    )

    def cancel():
        """
        Stop watching; the callback is not called again.  Idempotent.
        """


class IPresenceService(Interface):
    """
    One aggregated presence per account, fed by every source the account
    has, and its watchers (L{communigate.presence.service.PresenceService}).

    A source is C{(kind, id)}: C{("xmpp", full-jid)}, C{("sip-publish",
    id)}, C{("sip-registration", account)}, C{("ximss", session)}.  Its
    state is a L{communigate.presence.state.PresenceState}.  Accounts are
    canonical account names.
    """

    def publish(account, source, state, expires=None):
        """
        Set what C{source} says for C{account}.  With C{expires} (seconds on
        the service's clock) the source is withdrawn then unless published
        again.  Raises L{communigate.presence.service.TooManySources} past
        the per-account limit.
        """

    def withdraw(account, source):
        """
        Forget C{source} (a session ended, a publication expired).  Returns
        whether it was there.
        """

    def state(account):
        """
        The account's aggregated PresenceState (C{OFFLINE} with no source).
        """

    def status(account):
        """
        CommuniGate's view for C{GETACCOUNTPRESENCE}: L{None} with no
        source, else C{(status string, status text or None)}.
        """

    def sources(account):
        """
        C{{source: PresenceState}} of the account's sources now.
        """

    def watch(account, watcher, callback, ask=True):
        """
        Watch C{account} on behalf of C{watcher} (an address).
        C{callback(event)} gets a L{communigate.presence.service.WatchEvent}
        at once and on every change: C{active} with the aggregated state
        when the owner's roster authorises the watcher (or it is the owner),
        C{pending} while it does not, C{terminated} (reason C{rejected})
        when the owner refuses or revokes.  With C{ask} (a SIP SUBSCRIBE),
        an unauthorised watcher files a subscription request in the owner's
        roster, which the owner answers from any protocol.  Returns an
        L{IPresenceWatch}.  Raises
        L{communigate.presence.service.TooManyWatchers} past the limit.
        """


class IMessageWaiting(Interface):
    """
    Message-waiting counts per account (RFC 3842 C{message-summary}), set
    by the CLI now and by the voicemail application later
    (L{communigate.presence.mwi.MessageWaiting}).
    """

    def counts(account):
        """
        The account's L{communigate.presence.mwi.MessageCounts}.
        """

    def set_counts(account, counts):
        """
        Store new counts (committed before it returns) and tell the
        watchers when they changed.
        """

    def watch(account, callback):
        """
        Call C{callback(counts)} at once and whenever C{account}'s counts
        change; returns a handle with C{cancel()}.
        """

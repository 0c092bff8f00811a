"""
Calls and media: call records, the media relay, PBX applications and the dialogs the server holds.
"""

from zope.interface import Attribute, Interface


class ICallRecordSink(Interface):
    """
    A plugin (in C{communigate.plugins}) given every finished call leg:
    billing, RADIUS accounting, a data warehouse.
    """

    def call_finished(record):
        """
        L{communigate.cdr.records.CallRecord} C{record} has ended.  Called
        on the reactor thread: anything slow must be handed off, and an
        exception is logged, not propagated.
        """


class IMediaRelay(Interface):
    """
    A media relay (L{communigate.media.relay.MediaRelay}): UDP port pairs
    on the server that forward a call's RTP and RTCP between its two
    parties without decoding, latching to the sources they really send
    from (symmetric RTP), for parties behind NAT, on another network or
    another IP version, or on request.  Sessions are named by an opaque
    key the user chooses (the SIP proxy uses the Call-ID and the caller's
    tag).
    """

    def open(key, caller, callee, reason="", description=""):
        """
        The session for C{key}, opened now unless it is open already.
        C{caller} and C{callee} are L{communigate.media.relay.LegAddress}es:
        where each party's leg binds and the address it is told to send
        to.  C{reason} says why the call is relayed (for the operator).
        Raises L{communigate.media.relay.RelayRefused} (with a message for
        the operator) when C{MaxRelays} sessions are open.  Returns an
        L{IRelaySession}.
        """

    def get(key):
        """
        The open L{IRelaySession} for C{key}, or L{None}.
        """

    def sessions():
        """
        Every open L{IRelaySession}.
        """

    def release(key, reason):
        """
        Release C{key}'s session, if open: its ports close.  C{reason}
        (C{bye}, C{cancel}, C{failure}, C{idle} ...) is counted.
        """


class IRelaySession(Interface):
    """
    One relayed call: per stream (SDP m-line), one port pair for each
    party's leg.  Sides are L{communigate.media.relay.Side} values.
    """

    key = Attribute("The key the session was opened with.")
    reason = Attribute("Why the call is relayed: C{nat}, C{lan-wan}, C{ipv4-ipv6}, C{requested}.")
    closed = Attribute("Whether the session has been released.")
    notes = Attribute("Whatever the module that opened the session keeps with it; L{None} at first.")

    def ports(side, index):
        """
        The RTP port of C{side}'s leg for m-line C{index} (RTCP is the next
        one); the first question about an index opens both legs' pairs.
        Raises L{communigate.media.relay.RelayRefused} when the port range
        is exhausted or the session has its maximum of streams.
        """

    def address(side):
        """
        The address C{side}'s party is told to send to.
        """

    def expect(side, index, rtp, rtcp, latch_any):
        """
        C{side}'s party said (in its SDP) that it receives m-line C{index}
        at C{rtp} and C{rtcp} (C{(host, port)} or L{None}); with
        C{latch_any} it is behind NAT and is latched from wherever it sends.
        """

    def established():
        """
        The call was answered: from now on the idle timeout applies.
        """

    def release(reason):
        """
        Close every port of the session (see L{IMediaRelay.release}).
        """

    def summary():
        """
        The session as data for the CLI (C{LISTMEDIARELAYS}).
        """


class ICallApplication(Interface):
    """
    A real-time application (a PBX program), found as a Twisted plugin:
    C{getPlugins(ICallApplication, communigate.plugins)}.

    A Signal routed to C{program{params}#account} (or C{STARTPBXTASK})
    starts a new task running the application named C{program}; the task
    (L{communigate.pbx.task.Task}) is the API: the CG/PL call-control,
    media and event verbs as methods.  See C{docs/pbx.md}.
    """

    name = Attribute(
        "The program name routes and C{STARTPBXTASK} use: letters, digits, C{-_.}."
    )
    description = Attribute("One line saying what the application does.")

    def run(task):
        """
        Run as C{task}: a coroutine (C{async def}) or a function returning
        a Deferred or nothing.  The task ends when it returns; an
        exception ends it too, is logged, and releases its call (500 for an
        unanswered one, BYE for a connected one).
        """


class IKeepsAccountData(Interface):
    """
    A L{ICallApplication} that stores data per account (a voice mailbox)
    and so must follow accounts that are deleted or renamed.
    """

    def account_data(service):
        """
        An L{communigate.interfaces.IAccountWatcher} for what the
        application keeps under the PBX C{service}, or L{None} when it
        keeps nothing there (no data directory).
        """


class IDialogOwner(Interface):
    """
    The local end of a dialog: a PBX task's call leg, which this server
    answered or placed as a user agent (not as a proxy).
    """

    def request(signal, responder):
        """
        An in-dialog request for this dialog (BYE, re-INVITE, ACK, INFO,
        NOTIFY, REFER, UPDATE ...) as a L{communigate.signal.model.Signal};
        answer through C{responder} (an L{IResponder}), exactly one final
        response, none for an ACK.
        """

    def answer_repeated(response):
        """
        A 2xx answering one of our INVITEs was seen by the carrier (every
        one is shown): when we acknowledged that INVITE already, our ACK was
        lost; send it again.
        """

    def unacknowledged():
        """
        Our 2xx to the peer's INVITE was never acknowledged (RFC 3261
        13.3.1.4): the dialog must end (BYE).
        """

    def replace(signal, replaces, responder):
        """
        A new INVITE C{signal} whose C{Replaces} header (C{replaces}, a
        L{communigate.pbx.replaces.Replaces}) names this dialog (RFC 3891):
        take it in this dialog's place, or refuse it (481, 486, 403 ...),
        answering through C{responder}.
        """


class IDialogCarrier(Interface):
    """
    A protocol that carries dialogs whose one end is a local
    L{IDialogOwner} (SIP): it delivers the peer's in-dialog requests to the
    owner through L{ILocalDialogs.deliver} and sends the owner's.
    """

    protocol = Attribute(
        "The submitter protocol of the Signals it carries, e.g. C{'sip'}."
    )

    def contact(signal):
        """
        The Contact URI text naming this server for a dialog a local owner
        makes: answering C{signal} (an INVITE this protocol submitted) or,
        with C{signal} L{None}, placing a call of its own.  L{None} when
        the protocol cannot be reached now.
        """

    def send(signal, responder):
        """
        Send C{signal}, a request inside a dialog a local owner holds, along
        the dialog (its Route set, else its target).  Responses go to
        C{responder}; an ACK gets none.  Returns an L{IDelivery}.
        """

    def answered(signal, local_tag):
        """
        A local owner answered INVITE C{signal} with a 2xx carrying To tag
        C{local_tag}: retransmit it until the ACK comes, and tell the owner
        (L{IDialogOwner.unacknowledged}) if it never does.
        """


class ILocalDialogs(Interface):
    """
    The dialogs this server holds as a user agent, by Call-ID and local
    tag, and the protocols that carry them.  PBX tasks register their call
    legs here; SIP asks it whether an in-dialog request is for one of them.
    """

    def add(call_id, local_tag, owner):
        """
        Register L{IDialogOwner} C{owner} for the dialog; a pair already
        taken raises L{ValueError}.
        """

    def remove(call_id, local_tag):
        """
        Forget the dialog; unknown ones are ignored.
        """

    def owner(call_id, local_tag):
        """
        The L{IDialogOwner} of the dialog, or L{None}.
        """

    def add_carrier(carrier):
        """
        Carry dialogs of C{carrier.protocol} through L{IDialogCarrier}
        C{carrier}.
        """

    def carrier(protocol):
        """
        The L{IDialogCarrier} of C{protocol}, or L{None}.
        """

    def deliver(signal, responder):
        """
        An in-dialog request that arrived for a local dialog: hand it to
        its owner (the To tag is the local tag).  Returns whether a local
        owner took it.
        """

    def replace(signal, replaces, responder):
        """
        A new INVITE C{signal} with C{Replaces} (RFC 3891, C{replaces} a
        L{communigate.pbx.replaces.Replaces}): when the dialog it names
        (Call-ID, C{to-tag} our local tag) has a local owner, hand it to
        L{IDialogOwner.replace} and return L{True}; else L{False}.
        """

    def send(signal, responder, protocol):
        """
        Send an owner's in-dialog C{signal}: to the local owner of the
        other end when there is one (a call between two tasks), else
        through the carrier of C{protocol}.  Returns an L{IDelivery}.
        """

"""
Every seam of the server, as a zope.interface Interface.

Components find each other through these interfaces, never by importing a
concrete class from a sibling package.  Later issues add the real-time seams
(ISignalService, IRouter, ILocationService, ...) here as they are built.
"""

from twisted.cred.credentials import ICredentials
from zope.interface import Attribute, Interface


class IStore(Interface):
    """
    Durable storage of opaque text records, grouped into kinds.

    The directory (and later the other components) encode their objects as
    CommuniGate data-format text and keep them here.  A store guarantees that
    a change is committed to stable storage before the call that made it
    returns, so nothing acknowledged is lost in a crash.
    """

    schema_version = Attribute("The schema version of the opened store.")

    def transaction():
        """
        A context manager grouping reads and writes into one atomic unit.

        Leaving the block normally commits; an exception rolls back and
        propagates.  Nested calls join the outermost transaction.  Writers
        are serialised, also across processes sharing the same data
        directory, so a read-check-write inside one transaction is atomic.
        """

    def get(kind, key):
        """
        The text stored under C{(kind, key)}, or L{None}.
        """

    def put(kind, key, value):
        """
        Store C{value} (a L{str}) under C{(kind, key)}, replacing any
        previous value.  Outside a transaction this commits at once.
        """

    def delete(kind, key):
        """
        Remove C{(kind, key)}.  Returns L{True} if something was removed.
        """

    def scan(kind, prefix=""):
        """
        The C{(key, value)} pairs of C{kind} whose key starts with
        C{prefix}, ordered by key, as a list.
        """

    def count(kind):
        """
        How many records C{kind} holds.
        """

    def generation():
        """
        A number that changes whenever any connection, in this process or
        another, commits a change.  Caches compare it to know when to drop
        what they hold.
        """

    def close():
        """
        Release the underlying resources.  The store is unusable afterwards.
        """


class IPasswordSecretsSource(Interface):
    """
    Where the credential checkers find accounts and their stored secrets.
    """

    def resolve_account(address):
        """
        The canonical C{user@domain} of the account that C{address} names,
        following domain aliases and account aliases, or L{None}.  A name
        without a domain part belongs to the main domain.
        """

    def password_secrets(account):
        """
        The L{communigate.auth.passwords.PasswordSecrets} of C{account}
        (canonical name), or L{None} if it has no password.
        """

    def refresh_secrets(account, password):
        """
        Derive and store C{account}'s secrets again from C{password}, which
        a checker has just verified.  Called when the stored secrets are
        incomplete (the SIP digest hashes after a rename) or weaker than
        the current parameters.
        """


class ISIPDigestCredentials(ICredentials):
    """
    An answer to an RFC 7616 (RFC 2617, RFC 2069) digest challenge, as SIP
    sends it in an C{Authorization} or C{Proxy-Authorization} header.
    """

    username = Attribute("The username parameter, C{alice} or C{alice@example.com}.")
    realm = Attribute("The realm parameter.")
    nonce = Attribute("The nonce the server issued.")
    method = Attribute("The request method, e.g. C{REGISTER}.")
    uri = Attribute("The digest-uri parameter, as sent.")
    response = Attribute("The response parameter, hex.")
    algorithm = Attribute("C{MD5}, C{MD5-sess}, C{SHA-256} or C{SHA-256-sess}.")
    qop = Attribute("L{None} (RFC 2069 form), C{auth} or C{auth-int}.")
    nc = Attribute("The nonce-count, eight hex digits as sent, or L{None}.")
    cnonce = Attribute("The client nonce, or L{None}.")
    body = Attribute("The message body, L{bytes}, hashed for C{auth-int}.")

    def check_ha1(ha1_hex):
        """
        Whether C{response} is right for the base HA1 C{ha1_hex}.
        """


class IScramCredentials(ICredentials):
    """
    The outcome of a SCRAM exchange (RFC 5802) up to the client proof.
    """

    username = Attribute("The authentication identity, already unescaped.")
    hash_name = Attribute("C{sha1} or C{sha256}.")
    auth_message = Attribute("The AuthMessage, L{bytes}, as RFC 5802 section 3 builds it.")
    client_proof = Attribute("The decoded ClientProof, L{bytes}.")

    def check_scram(scram_secrets):
        """
        Whether C{client_proof} proves knowledge of the password the
        L{communigate.auth.passwords.ScramSecrets} were derived from.
        """


class IDirectory(IPasswordSecretsSource):
    """
    Domains, accounts, aliases, forwarders, groups and telephone numbers,
    with CommuniGate's settings inheritance.

    Names are case-insensitive and kept in lower case.  Every mutating call
    either completes and is committed, or raises a
    L{communigate.directory.errors.DirectoryError} and changes nothing.
    """

    def main_domain():
        """
        The name of the main domain, or L{None} before the first domain.
        """


class IAccount(Interface):
    """
    The avatar a protocol receives when it logs in through the portal: the
    account as that protocol may use it.
    """

    name = Attribute("The canonical account address, C{user@domain}.")
    domain = Attribute("The account's domain name.")

    def effective_settings():
        """
        The account's settings with every inherited level merged in.
        """

    def logout():
        """
        Called once when the protocol session that logged in ends.
        """


class ICommandContext(Interface):
    """
    Who runs a CLI command, and on behalf of which domain.
    """

    account = Attribute("The canonical name of the authenticated account.")
    domain = Attribute(
        "The administrator domain: names without a domain part refer to it."
    )


class ICommandInterpreter(Interface):
    """
    The CLI command language, shared by the CLI/PWD protocol, the admin
    tool and the web admin.
    """

    def execute(context, line):
        """
        Run one command line for C{context} (an L{ICommandContext}).

        Returns a L{twisted.internet.defer.Deferred} firing with a
        L{communigate.cli.result.CommandResult}; a user error (bad
        arguments, unknown names) is a result with an error text, not a
        failure.
        """

    def command_names():
        """
        The sorted names of every command this interpreter knows.
        """


class IProtocolModule(Interface):
    """
    A network front end, found as a Twisted plugin.

    Each module names its listen option: C{twistd communigate --NAME
    DESCRIPTION} is repeatable, and C{--NAME none} disables the module.  The
    option set of C{twistd communigate} grows from the installed modules,
    not from a table in the server.
    """

    name = Attribute("The option name, e.g. C{'cli'} for C{--cli}.")
    description = Attribute("One line of help for the option.")
    default_listen = Attribute(
        "The listen descriptions used when the option is not given, as a "
        "tuple of strings, e.g. C{('tcp:106',)}."
    )

    def check_listen(description):
        """
        Raise L{ValueError} with a message naming the allowed forms if
        C{description} cannot be listened on by this module.
        """

    def build_service(context, descriptions):
        """
        An L{twisted.application.service.IService} listening on
        C{descriptions} (already checked) and serving the core objects
        in C{context} (a L{communigate.context.ServerContext}).
        """


class IRouter(Interface):
    """
    Turns an address into a L{communigate.routing.route.Route}: the Router
    table, the directory, telephone numbers, E.164 and ENUM.
    """

    def route(address, kind, on_behalf_of=None):
        """
        Route C{address} (text: e-mail form, URI or number) for C{kind}
        (a L{communigate.routing.route.AddressKind}).

        @param on_behalf_of: the account an application address without an
            account (C{#program}) runs for, or L{None}.
        @return: a L{twisted.internet.defer.Deferred} firing with a
            L{communigate.routing.route.Route}, or failing with
            L{communigate.routing.route.RoutingError}.
        """


class IResponder(Interface):
    """
    Receives the responses of one delivery of a Signal.
    """

    def provisional(response):
        """
        A 1xx L{communigate.signal.model.Response}; any number of them.
        """

    def final(response):
        """
        The final L{communigate.signal.model.Response}; exactly once.
        """


class IForkingResponder(IResponder):
    """
    A responder that also takes more targets for its Signal: what an
    application's C{fork_call} (CG/PL C{ForkCall}) needs.  The Signal
    service's branches provide it; an endpoint checks with
    C{IForkingResponder.providedBy} before relying on it.
    """

    def fork(addresses):
        """
        Deliver the Signal to C{addresses} too (routed as the Signal's own
        targets are), while this delivery goes on: the first 2xx of any
        branch wins, and this one is cancelled if another wins.
        """


class IDelivery(Interface):
    """
    A Signal on its way to one endpoint.
    """

    def cancel():
        """
        The answer is no longer wanted (another branch won, the caller gave
        up).  The endpoint should stop ringing and answer 487; responses
        after a cancel are ignored by the service.
        """


class IEndpoint(Interface):
    """
    Something that can receive a Signal: a SIP contact, an XMPP resource, a
    XIMSS session, a PBX task, a remote SIP server.
    """

    description = Attribute("Says what this endpoint is, for logs.")

    def deliver(signal, responder):
        """
        Start delivering C{signal}; report to C{responder} (an
        L{IResponder}); return an L{IDelivery}.
        """


class IEndpointSource(Interface):
    """
    A kind of endpoint that accounts register (SIP registrations, XMPP
    resources, XIMSS sessions): the Signal service asks every source for
    an account's endpoints and rings them all.
    """

    def endpoints(account):
        """
        The L{IEndpoint}s C{account} (C{user@domain}) has now, as a list.
        """


class IRouteHandler(Interface):
    """
    Delivers Signals whose route ends in a module other than a local
    account: C{PBX} (start an application task), C{SIP} (a remote server).
    """

    module = Attribute("The L{communigate.routing.route.Module} name handled.")

    def endpoint(route, signal):
        """
        The L{IEndpoint} that delivers C{signal} along C{route}.
        """


class ISignalHook(Interface):
    """
    A plugin's view of every Signal, to observe it or to impose policy
    without patching the core.  Hooks run in the order they were added.
    """

    def submitted(signal):
        """
        A Signal arrived.  Return L{None} to let it go on, a replacement
        L{communigate.signal.model.Signal}, or a final
        L{communigate.signal.model.Response} to end it here.
        """

    def routed(signal, routes):
        """
        The targets were routed to C{routes} (a list of
        L{communigate.routing.route.Route}).  Return L{None} or a
        replacement list.
        """

    def responded(signal, response):
        """
        The final response was decided; for observation.
        """


class ISignalRules(Interface):
    """
    The Signal Rules in force (server, domain, account levels), as the
    Signal service consults them for an out-of-dialog Signal.
    """

    def plan(signal, account, facts):
        """
        The rule plan for C{signal} sent to local C{account}, or, with
        C{account} L{None}, for the server's immediate rules that run
        before routing.  C{facts} is a
        L{communigate.signal.model.SignalFacts}.  Returns a
        L{communigate.signal.rules.RulePlan}.
        """


class ISignalTask(Interface):
    """
    A submitted Signal, from the submitter's side.
    """

    signal = Attribute("The L{communigate.signal.model.Signal}.")
    state = Attribute("The L{communigate.signal.model.SignalState}.")
    final = Attribute(
        "A Deferred that fires once, with the final Response (never fails)."
    )

    def on_provisional(callback):
        """
        Call C{callback(response)} for each provisional response from now on.
        """

    def cancel():
        """
        Give up: every branch is cancelled and the final response is 487
        unless one was already decided.
        """


class ISignalService(Interface):
    """
    Routes Signals, applies Signal Rules, forks them to endpoints and
    brings back the responses.
    """

    def submit(signal):
        """
        Process C{signal}; returns an L{ISignalTask}.
        """

    def add_endpoint_source(source):
        """
        Ring the endpoints of L{IEndpointSource} C{source} for local accounts.
        """

    def add_route_handler(handler):
        """
        Deliver routes of C{handler.module} through L{IRouteHandler} C{handler}.
        """

    def add_hook(hook):
        """
        Show every Signal to L{ISignalHook} C{hook}.
        """


class IXMPPSession(Interface):
    """
    One bound XMPP resource: an authenticated client stream with a full JID.

    Later parts of the XMPP module (presence, messages, the Signal bridge)
    deliver to a session with L{send} and never touch its stream.
    """

    jid = Attribute("The full JID, a L{twisted.words.protocols.jabber.jid.JID}.")
    account = Attribute("The canonical account name, C{user@domain}.")
    priority = Attribute("The presence priority, -128 to 127; 0 until presence is sent.")
    available = Attribute("Whether the client has sent available presence.")
    peer = Attribute("The client's C{(host, port)}.")
    started = Attribute("When the resource was bound, in the reactor's seconds.")
    details = Attribute(
        "A dict of text facts for operators (C{TLS}, C{Mechanism}, ...), "
        "as C{LISTXMPPSESSIONS} shows them."
    )

    def send(element):
        """
        Send stanza C{element} (a L{twisted.words.xish.domish.Element}) to
        the client.  Counted as outgoing; does nothing once the stream ended.
        """

    def close(condition, text):
        """
        End the stream with stream error C{condition} (RFC 6120 section
        4.9.3) and C{text}; the session unbinds itself when the connection
        is gone.
        """


class IXMPPSessionObserver(Interface):
    """
    Told about resources coming and going (presence broadcast, the Signal
    bridge's endpoint list, ...).
    """

    def session_bound(session):
        """
        L{IXMPPSession} C{session} has a full JID now.
        """

    def session_unbound(session):
        """
        C{session} is gone (closed, replaced or killed).
        """

    def presence_changed(session):
        """
        C{session}'s C{available} or C{priority} changed.
        """


class IXMPPSessions(Interface):
    """
    The registry of bound XMPP resources: bare JID (account) → resources.

    It enforces the resource policy of RFC 6120 section 7: a resource name
    the client did not choose is generated; binding a full JID that is
    already bound replaces the old session, which is closed with a
    C{conflict} stream error; an account may bind at most a configured
    number of resources.
    """

    def bind(session, account, resource):
        """
        Bind C{session} (an L{IXMPPSession} not yet bound) for C{account}
        with C{resource} (already resourceprep'ed) or L{None} for a
        generated one; returns the full JID as a
        L{twisted.words.protocols.jabber.jid.JID}.

        @raise communigate.xmpp.sessions.ResourceLimitReached: the account
            has its maximum of resources bound.
        """

    def unbind(session):
        """
        Forget C{session}; nothing happens if it is not (or no longer) bound.
        """

    def lookup(full_jid):
        """
        The session bound to C{full_jid} (text or JID), or L{None}.
        """

    def resources(account):
        """
        The sessions of C{account} (canonical name), oldest first.
        """

    def available_resources(account):
        """
        The sessions of C{account} that sent available presence with a
        non-negative priority, highest priority first: where RFC 6121
        section 8.5.2 delivers a message sent to the bare JID.
        """

    def all_sessions():
        """
        Every bound session, oldest first.
        """

    def set_presence(session, available, priority):
        """
        Record the availability and priority C{session} announced.
        """

    def add_observer(observer):
        """
        Tell L{IXMPPSessionObserver} C{observer} about every change.
        """


class IXMPPRemoteDomains(Interface):
    """
    The server-to-server side of XMPP as the client side sees it: where
    stanzas for domains served elsewhere go (RFC 6120 section 10.4).
    """

    def route(element):
        """
        Send stanza C{element} (a L{twisted.words.xish.domish.Element} in
        C{jabber:client}, C{from} a local JID, C{to} a JID of a remote
        domain) to that domain's server, queued while the link to it is
        being set up.  When it cannot be delivered there the sender gets
        the error stanza (C{remote-server-not-found},
        C{remote-server-timeout}, ...); an error stanza is never answered
        with another.
        """

    def streams():
        """
        The server-to-server streams, out (links, also while they connect)
        and in, as dicts of text facts for operators (C{LISTXMPPS2S}).
        """


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

    def send(signal, responder, protocol):
        """
        Send an owner's in-dialog C{signal}: to the local owner of the
        other end when there is one (a call between two tasks), else
        through the carrier of C{protocol}.  Returns an L{IDelivery}.
        """

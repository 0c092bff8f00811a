"""
The XMPP module's seams: sessions, their registry and observers, remote domains.
"""

from zope.interface import Attribute, Interface


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


class IS2SCertificates(Interface):
    """
    The TLS of server-to-server streams with the peer's certificate
    checked (RFC 6120 13.7.2, RFC 6125): each STARTTLS gets a new check,
    whose C{creator} is handed to C{startTLS} and whose C{identity} says,
    once the handshake is over, what the peer's certificate proves.
    """

    def client(domain):
        """
        A check for our outgoing STARTTLS to C{domain}'s server (SNI
        C{domain}; our certificate presented when we have one).
        """

    def server():
        """
        A check for an incoming STARTTLS: the peer is asked for its
        certificate, and may have none.
        """


class IPeerCertificateCheck(Interface):
    """
    One TLS connection's peer certificate check.
    """

    creator = Attribute("What C{ITLSTransport.startTLS} is given.")

    def identity(transport):
        """
        What the peer's certificate proves, after the handshake: a
        L{communigate.xmpp.s2s_tls.PeerIdentity}.
        """

"""
XEP-0199 XMPP Ping, server side: a C{<ping/>} IQ addressed to the server
(or to the client's own account) gets an empty result.
"""

from communigate.xmpp.dispatch import ACCOUNT, SERVER
from communigate.xmpp.namespaces import NS_PING


def answer_ping(session, stanza):
    """
    The empty result; C{set} is the only type XEP-0199 defines.
    """
    from twisted.words.protocols.jabber.error import StanzaError

    if stanza.type != "get":
        raise StanzaError("bad-request", text="a ping is an IQ of type get")
    return None


def install(dispatcher) -> None:
    """
    Answer pings for the server and for accounts.
    """
    dispatcher.register_iq(NS_PING, "ping", answer_ping, scopes=(SERVER, ACCOUNT))

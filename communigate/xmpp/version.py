"""
XEP-0092 Software Version, server side: the server's name and version.
The operating system is not told (the XEP makes it optional, and it only
helps an attacker).
"""

from importlib import metadata

from twisted.words.protocols.jabber.error import StanzaError
from twisted.words.xish import domish

from communigate.xmpp.dispatch import SERVER
from communigate.xmpp.namespaces import NS_VERSION

NAME = "communigate"


def software_version() -> str:
    """
    The installed version of the communigate distribution.
    """
    try:
        return metadata.version("communigate")
    except metadata.PackageNotFoundError:
        return "unknown"


def answer_version(session, stanza):
    if stanza.type != "get":
        raise StanzaError("bad-request", text="a version query is an IQ of type get")
    query = domish.Element((NS_VERSION, "query"))
    query.addElement("name", content=NAME)
    query.addElement("version", content=software_version())
    return query


def install(dispatcher) -> None:
    """
    Answer version queries addressed to the server.
    """
    dispatcher.register_iq(NS_VERSION, "query", answer_version, scopes=(SERVER,))

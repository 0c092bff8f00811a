"""
Checking and opening the stream listen descriptions of protocol modules.

A listen option takes a Twisted endpoint string (C{tcp:106},
C{tcp:106:interface=127.0.0.1}, C{tls:...}); it is checked when the options
are parsed, so a typo is a usage error naming the option, not a traceback
once the server runs.
"""

from twisted.application.internet import StreamServerEndpointService
from twisted.application.service import MultiService
from twisted.internet.endpoints import serverFromString
from twisted.internet.protocol import Factory
from twisted.internet.testing import MemoryReactor
from twisted.python.failure import Failure

STREAM_FORMS = (
    "tcp:PORT[:interface=ADDRESS], tcp6:PORT[:interface=ADDRESS], "
    "ssl:PORT:privateKey=KEY.pem[:certKey=CERT.pem], "
    "tls:PEM_DIRECTORY[:port=PORT], unix:PATH"
)
_STREAM_KINDS = frozenset({"tcp", "tcp6", "ssl", "tls", "unix"})


def check_stream_description(description: str) -> None:
    """
    Raise L{ValueError} naming the allowed forms unless C{description} is
    a stream server endpoint with a valid port.

    The endpoint is parsed and "listened" on a L{MemoryReactor}, which
    records the port and opens nothing; an C{ssl:} description reads its
    key and certificate here, so a missing file shows at start-up.
    """
    if not isinstance(description, str):
        raise ValueError(f"{description!r} is not text; allowed forms: {STREAM_FORMS}")
    kind = description.partition(":")[0].strip().lower()
    if kind not in _STREAM_KINDS:
        raise ValueError(
            f"{kind!r} is not a stream endpoint type; allowed forms: {STREAM_FORMS}"
        )
    reactor = MemoryReactor()
    failures = []
    try:
        endpoint = serverFromString(reactor, description)
        endpoint.listen(Factory()).addErrback(failures.append)
    except Exception as error:  # any parse failure becomes a usage error
        failures.append(error)
    if failures:
        reason = failures[0]
        if isinstance(reason, Failure):
            reason = reason.value
        raise ValueError(f"cannot be parsed ({reason}); allowed forms: {STREAM_FORMS}")
    for listening in reactor.tcpServers + reactor.sslServers:
        port = listening[0]
        if not 0 <= port <= 65535:
            raise ValueError(f"port {port} is outside 0-65535; allowed forms: {STREAM_FORMS}")


def stream_listeners(reactor, name: str, descriptions, factory) -> MultiService:
    """
    A service named C{name} listening with C{factory} on every description;
    the ports open when it starts.
    """
    service = MultiService()
    service.setName(name)
    for description in descriptions:
        endpoint = serverFromString(reactor, description)
        StreamServerEndpointService(endpoint, factory).setServiceParent(service)
    return service

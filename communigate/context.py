"""
The core objects every protocol module is handed.
"""

import attrs
from prometheus_client import CollectorRegistry


@attrs.define
class ServerContext:
    """
    What a L{communigate.interfaces.IProtocolModule} builds its service from.

    @ivar reactor: the reactor, which provides at least C{IReactorTime},
        C{IReactorTCP} and C{IReactorUDP}; modules use the narrowest part.
    @ivar config: the L{communigate.config.Config} the server was built from.
    @ivar store: the L{communigate.interfaces.IStore}.
    @ivar directory: the L{communigate.interfaces.IDirectory}.
    @ivar portal: a L{twisted.cred.portal.Portal} whose avatars provide
        L{communigate.interfaces.IAccount}.
    @ivar interpreter: the L{communigate.interfaces.ICommandInterpreter}.
    @ivar metrics: the Prometheus registry of this server (not the
        process-wide default, so two servers can share a process).
    @ivar hostname: the name the server greets clients with.
    @ivar router: the L{communigate.interfaces.IRouter}.
    @ivar signals: the L{communigate.interfaces.ISignalService}; L{None}
        in a core built without a reactor (the admin tool), which submits
        no Signals.
    @ivar network: the L{communigate.network.NetworkConfiguration}: WAN
        address, LAN, Client, NATed, Debug and Blacklisted IPs.
    @ivar roster: the L{communigate.interfaces.IRoster} every protocol
        shares.
    @ivar presence: the L{communigate.interfaces.IPresenceService}; L{None}
        in a core built without a reactor (presence lives in the running
        server).
    @ivar message_waiting: the L{communigate.interfaces.IMessageWaiting}.
    @ivar call_records: the L{communigate.cdr.records.CallRecords} every
        protocol reports finished calls to; L{None} without a reactor.
    @ivar media_relay: the L{communigate.interfaces.IMediaRelay}; L{None}
        in a core built without a reactor (relays live in the running
        server).
    @ivar media_settings: the media server settings
        (L{communigate.media.relay_settings.RelayConfiguration}; its
        C{current} is the parsed L{RelaySettings} in force): the relay's
        ports and limits, and defaults the PBX's media channels take.
    @ivar scheduler: the one L{communigate.core.scheduler.Scheduler} every
        state machine runs on (NAT pingers, PBX tasks, media channels);
        L{None} in a core built without a reactor.
    @ivar dialogs: the L{communigate.interfaces.ILocalDialogs}: dialogs
        this server holds as a user agent (PBX tasks' calls) and the
        protocols that carry them; L{None} without a reactor.
    """

    reactor: object
    config: object
    store: object
    directory: object
    portal: object
    interpreter: object
    metrics: CollectorRegistry
    hostname: str
    router: object = None
    signals: object = None
    network: object = None
    roster: object = None
    presence: object = None
    message_waiting: object = None
    call_records: object = None
    media_relay: object = None
    media_settings: object = None
    scheduler: object = None
    dialogs: object = None

"""
Every seam of the server, as a zope.interface Interface.

Components find each other through these interfaces, never by importing a
concrete class from a sibling package.  They are kept in modules by
concern (core, signals, xmpp, presence, calls) and all importable from
here, which is where code should import them from.
"""

from communigate.interfaces.core import (
    IStore,
    IPasswordSecretsSource,
    ISIPDigestCredentials,
    IScramCredentials,
    IDirectory,
    IAccountWatcher,
    IAccount,
    ICommandContext,
    ICommandInterpreter,
    IProtocolModule,
)
from communigate.interfaces.signals import (
    IRouter,
    IResponder,
    IForkingResponder,
    IDelivery,
    IEndpoint,
    IEndpointSource,
    IRouteHandler,
    ISignalHook,
    ISignalRules,
    ISignalTask,
    ISignalService,
)
from communigate.interfaces.xmpp import (
    IXMPPSession,
    IXMPPSessionObserver,
    IXMPPSessions,
    IXMPPRemoteDomains,
    IS2SCertificates,
    IPeerCertificateCheck,
)
from communigate.interfaces.presence import (
    IRoster,
    IPresenceWatch,
    IPresenceService,
    IMessageWaiting,
)
from communigate.interfaces.calls import (
    ICallRecordSink,
    IMediaRelay,
    IRelaySession,
    ICallApplication,
    IKeepsAccountData,
    IDialogOwner,
    IDialogCarrier,
    ILocalDialogs,
)

__all__ = [
    "IStore",
    "IPasswordSecretsSource",
    "ISIPDigestCredentials",
    "IScramCredentials",
    "IDirectory",
    "IAccountWatcher",
    "IAccount",
    "ICommandContext",
    "ICommandInterpreter",
    "IProtocolModule",
    "IRouter",
    "IResponder",
    "IForkingResponder",
    "IDelivery",
    "IEndpoint",
    "IEndpointSource",
    "IRouteHandler",
    "ISignalHook",
    "ISignalRules",
    "ISignalTask",
    "ISignalService",
    "IXMPPSession",
    "IXMPPSessionObserver",
    "IXMPPSessions",
    "IXMPPRemoteDomains",
    "IS2SCertificates",
    "IPeerCertificateCheck",
    "IRoster",
    "IPresenceWatch",
    "IPresenceService",
    "IMessageWaiting",
    "ICallRecordSink",
    "IMediaRelay",
    "IRelaySession",
    "ICallApplication",
    "IKeepsAccountData",
    "IDialogOwner",
    "IDialogCarrier",
    "ILocalDialogs",
]

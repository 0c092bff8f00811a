"""
The whole server as one L{MultiService}, built from a L{Config}.

This is the embedding API: C{twistd communigate} calls L{build_server}, and
so does any Twisted application that wants the server inside it, next to
its own services.  The front ends come from the installed
L{IProtocolModule} plugins; each gets the same L{ServerContext}.

[D] The SQLite store is opened here rather than in C{startService}: it is
a local file, opening it takes milliseconds, and a data directory that is
unusable (not writable, written by a newer release) is reported before the
server claims to be running.
"""

from twisted.application.service import MultiService
from twisted.logger import Logger
from twisted.plugin import getPlugins

import communigate.plugins
from communigate.admin.http import new_registry
from communigate.auth.realm import build_portal
from communigate.cli.access import administrator_check
from communigate.cli.directory_commands import DirectoryCommands
from communigate.cli.interpreter import BuiltinCommands, Interpreter
from communigate.cli.network_commands import NetworkCommands
from communigate.cli.routing_commands import RoutingCommands
from communigate.cli.rules_commands import SignalRulesCommands
from communigate.config import Config
from communigate.context import ServerContext
from communigate.core.scheduler import Scheduler
from communigate.directory import Directory
from communigate.directory.metrics import DirectoryCollector
from communigate.first_start import (
    POSTMASTER,
    create_initial_objects,
    open_data_directory,
    write_password_file,
)
from communigate.interfaces import ICallRecordSink, IProtocolModule, ISignalHook, IStore
from communigate.cdr.commands import CallRecordCommands
from communigate.cdr.records import DATABASE as CALL_RECORDS_DATABASE
from communigate.cdr.records import CallRecords
from communigate.media.relay import MediaRelay
from communigate.media.relay_commands import MediaServerCommands
from communigate.media.relay_settings import RelayConfiguration
from communigate.network import NetworkConfiguration
from communigate.storage import sidecar_store
from communigate.pbx.dialogs import DialogTable
from communigate.presence.commands import PresenceCommands
from communigate.presence.mwi import MessageWaiting
from communigate.presence.roster import MAX_ITEMS_SETTING, Roster
from communigate.presence.service import PresenceService
from communigate.routing.configuration import EnumRouting, RouterConfiguration
from communigate.routing.router import Router
from communigate.signal.rules import SignalRules, StoredRules
from communigate.signal.service import SignalService


def protocol_modules() -> list:
    """
    The installed front ends, sorted by name.
    """
    modules = list(getPlugins(IProtocolModule, communigate.plugins))
    return sorted(modules, key=lambda module: module.name)


def call_record_sinks() -> list:
    """
    The installed call record sinks (billing, accounting).
    """
    return list(getPlugins(ICallRecordSink, communigate.plugins))


def signal_hooks() -> list:
    """
    The installed Signal hooks: third-party policy on every Signal.
    """
    return list(getPlugins(ISignalHook, communigate.plugins))


class CommunigateServer(MultiService):
    """
    The server: its core objects in L{context}, its front ends as child
    services.

    @ivar created_passwords: the generated password of every account this
        start created (the postmaster on first start), by account name.
    """

    log = Logger()

    def __init__(self, context: ServerContext, created_passwords: dict[str, str]):
        super().__init__()
        self.context = context
        self.created_passwords = created_passwords

    def startService(self) -> None:
        super().startService()
        self.log.info(
            "communigate serving domain {domain} from {data_dir}",
            domain=self.context.directory.main_domain(),
            data_dir=self.context.config.data_dir,
        )

    def stopService(self):
        d = super().stopService()
        if self.context.presence is not None:
            self.context.presence.stop()
        if self.context.media_relay is not None:
            self.context.media_relay.stop()
        if self.context.scheduler is not None:
            self.context.scheduler.stop_all()

        def close_store(result):
            records = self.context.call_records
            if records is not None:
                records.stop()
                if records.store is not self.context.store:
                    records.store.close()
            self.context.store.close()
            return result

        return d.addBoth(close_store)


#: Seconds a running server trusts the store's generation it last saw.
STORE_RECHECK = 0.02


def build_core(config: Config, store: IStore, reactor) -> ServerContext:
    """
    The core objects, without any front end: what protocol modules, the
    admin tool and tests share.
    """
    registry = new_registry()
    # A running server may see the admin tool's commits up to 20 ms late;
    # in exchange, most SIP requests and Signals cost no query for the
    # store's version (the directory's and the Router's caches).
    recheck_after = STORE_RECHECK if reactor is not None else 0.0
    directory = Directory(store, recheck_after=recheck_after)
    registry.register(DirectoryCollector(store))
    portal = build_portal(directory)
    router_configuration = RouterConfiguration(store, recheck_after=recheck_after)
    # Without a reactor (the admin tool on a data directory) nothing may
    # touch the network, so ENUM is left out there.
    enum = None if reactor is None else EnumRouting(reactor, router_configuration, registry)
    router = Router(directory, router_configuration, enum and enum.lookup)
    interpreter = Interpreter(administrator_check(directory), registry)
    interpreter.add_commands(BuiltinCommands(interpreter))
    interpreter.add_commands(DirectoryCommands(directory, portal))
    interpreter.add_commands(RoutingCommands(router, router_configuration))
    interpreter.add_commands(SignalRulesCommands(directory))
    network = NetworkConfiguration(store, clock=reactor)
    interpreter.add_commands(NetworkCommands(network))
    roster = Roster(
        store,
        is_local=directory.resolve_account,
        max_items=lambda owner: _account_setting(directory, owner, MAX_ITEMS_SETTING),
        clock=reactor,
    )
    message_waiting = MessageWaiting(store)
    directory.watch_accounts(roster)
    directory.watch_accounts(message_waiting)
    signals = presence = call_records = scheduler = dialogs = None
    if reactor is not None:
        scheduler = Scheduler(reactor, registry=registry)
        dialogs = DialogTable()
        presence = PresenceService(roster, reactor, registry=registry)
        signals = SignalService(
            router,
            SignalRules(StoredRules(directory)),
            reactor,
            group_members=directory.group_members,
            registry=registry,
            presence_of=lambda account: presence.state(account).status_string,
        )
    interpreter.add_commands(PresenceCommands(directory, roster, presence, message_waiting))
    if reactor is not None:
        call_records = CallRecords(sidecar_store(store, CALL_RECORDS_DATABASE), reactor, sinks=call_record_sinks())
        interpreter.add_commands(CallRecordCommands(call_records, directory))
    # The media relay opens ports only for relayed calls, so it costs
    # nothing until the SIP proxy (or a later module) asks for one.
    media_configuration = RelayConfiguration(store, clock=reactor)
    media_relay = None if reactor is None else MediaRelay(reactor, media_configuration, registry=registry)
    interpreter.add_commands(MediaServerCommands(media_configuration, media_relay))
    return ServerContext(
        reactor=reactor,
        config=config,
        store=store,
        directory=directory,
        portal=portal,
        interpreter=interpreter,
        metrics=registry,
        hostname=config.hostname,
        router=router,
        signals=signals,
        network=network,
        roster=roster,
        presence=presence,
        message_waiting=message_waiting,
        call_records=call_records,
        media_relay=media_relay,
        media_settings=media_configuration,
        scheduler=scheduler,
        dialogs=dialogs,
    )


def _account_setting(directory, account: str, name: str):
    """
    C{account}'s effective setting C{name}, or L{None} when the account is
    gone (a roster may outlive its account for a moment).
    """
    from communigate.directory.errors import DirectoryError

    try:
        return directory.account_effective_settings(account).get(name)
    except DirectoryError:
        return None


def build_server(
    config: Config,
    reactor=None,
    *,
    store: IStore | None = None,
    modules: list | None = None,
    hooks: list | None = None,
) -> CommunigateServer:
    """
    Build the server; start it with C{startService} or by giving it a
    parent.

    @param reactor: defaults to the global reactor.
    @param store: defaults to the SQLite store in C{config.data_dir}.
    @param modules: defaults to every installed protocol module.
    @param hooks: L{ISignalHook}s; defaults to every installed one.
    @raise communigate.storage.StoreError: the data directory is unusable.
    """
    if reactor is None:
        from twisted.internet import reactor
    if store is None:
        store = open_data_directory(config.data_dir)
    context = build_core(config, store, reactor)
    for hook in signal_hooks() if hooks is None else hooks:
        context.signals.add_hook(hook)
    created = create_initial_objects(
        context.directory, config.main_domain, config.demo_accounts
    )
    postmaster = f"{POSTMASTER}@{context.directory.main_domain()}"
    if postmaster in created and config.data_dir:
        write_password_file(config.data_dir, postmaster, created[postmaster])
    server = CommunigateServer(context, created)
    for module in protocol_modules() if modules is None else modules:
        listen = config.listen_for(module)
        if listen:
            module.build_service(context, listen).setServiceParent(server)
    return server

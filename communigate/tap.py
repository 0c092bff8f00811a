"""
C{twistd communigate}: command-line options in, a server out.

The options only parse and check; L{communigate.server.build_server} does
the assembling.  The listen options come from the installed protocol
modules, so a plugin that adds a front end adds its option too.
"""

import gc
import os

from twisted.application.service import MultiService
from twisted.logger import ILogObserver
from twisted.python import usage

from communigate.config import Config
from communigate.logs import LOG_FORMATS, LOG_LEVELS, observer_factory
from communigate.server import build_server, protocol_modules
from communigate.storage import StoreError

NONE = "none"


class BaseOptions(usage.Options):
    """
    The options every server has; L{options_for} adds one listen option
    per protocol module.
    """

    modules: tuple = ()

    optParameters = [
        ["data", "d", "communigate-data", "The data directory (created on first start)."],
        ["domain", None, None, "The main domain created on first start [default: host name]."],
        ["log-format", None, "text", "Log format: " + " or ".join(LOG_FORMATS) + "."],
        ["log-level", None, "info", "Least important events logged: " + ", ".join(LOG_LEVELS) + "."],
        ["hostname", None, None, "The name to greet clients with [default: host name]."],
    ]

    def __init__(self) -> None:
        super().__init__()
        self.listen: dict[str, list[str]] = {}
        self.demo_accounts: tuple[str, ...] = ()

    def opt_demo(self) -> None:
        """
        On first start, also create accounts alice and bob with generated
        passwords (printed), for trying the server out.
        """
        self.demo_accounts = ("alice", "bob")

    def add_listen(self, module, description: str) -> None:
        self.listen.setdefault(module.name, []).append(description)

    def postOptions(self) -> None:
        if self["log-format"] not in LOG_FORMATS:
            raise usage.UsageError(
                f"--log-format {self['log-format']!r}: use one of " + ", ".join(LOG_FORMATS)
            )
        if self["log-level"] not in LOG_LEVELS:
            raise usage.UsageError(
                f"--log-level {self['log-level']!r}: use one of " + ", ".join(LOG_LEVELS)
            )
        data = self["data"]
        if os.path.exists(data) and not os.path.isdir(data):
            raise usage.UsageError(f"--data {data!r}: exists and is not a directory")
        for module in self.modules:
            self._check_listen(module, self.listen.get(module.name, []))

    def _check_listen(self, module, descriptions: list[str]) -> None:
        option = f"--{module.name}"
        if NONE in descriptions and len(descriptions) > 1:
            raise usage.UsageError(f"{option} none cannot be combined with listen addresses")
        for description in descriptions:
            if description == NONE:
                continue
            try:
                module.check_listen(description)
            except ValueError as e:
                raise usage.UsageError(f"{option} {description!r}: {e}") from e

    def log_observer_factory(self):
        """
        The factory of twistd's log observer: our format and level.

        twistd ignores C{--logfile} once an application names its observer,
        so the file twistd would have used is chosen here: standard output
        with C{--nodaemon}, else C{--logfile} or C{twistd.log}.
        """
        parent = self.parent or {}
        logfile = parent.get("logfile")
        if not logfile:
            logfile = "-" if parent.get("nodaemon", True) else "twistd.log"
        return observer_factory(self["log-format"], logfile, self["log-level"])

    def config(self) -> Config:
        listen = {
            name: tuple(d for d in descriptions if d != NONE)
            for name, descriptions in self.listen.items()
        }
        optional = {key: self[key] for key in ("hostname",) if self[key]}
        return Config(
            data_dir=self["data"],
            domain=self["domain"],
            listen=listen,
            demo_accounts=self.demo_accounts,
            **optional,
        )


def _listen_option(module):
    def opt(self, description: str) -> None:
        self.add_listen(module, description)

    defaults = ", ".join(module.default_listen) or NONE
    opt.__doc__ = (
        f"{module.description} Repeatable; 'none' disables it [default: {defaults}]."
    )
    return opt


def options_for(modules) -> type:
    """
    An options class with a listen option for each of C{modules}.
    """
    namespace = {f"opt_{module.name}": _listen_option(module) for module in modules}
    namespace["modules"] = tuple(modules)
    return type("Options", (BaseOptions,), namespace)


def Options() -> BaseOptions:
    """
    The option parser twistd asks for, with the installed modules' options.
    """
    return options_for(protocol_modules())()


class TwistdRoot(MultiService):
    """
    What twistd runs: the server, and the log observer twistd should use.

    twistd asks its application for an L{ILogObserver} component before it
    falls back to its own text log; joining the application is the moment
    to set it.
    """

    def __init__(self, server, log_observer_factory=None) -> None:
        super().__init__()
        self.server = server
        self._log_observer_factory = log_observer_factory
        server.setServiceParent(self)

    def startService(self) -> None:
        tune_garbage_collector()
        super().startService()

    def setServiceParent(self, parent) -> None:
        if self._log_observer_factory is not None and hasattr(parent, "setComponent"):
            parent.setComponent(ILogObserver, self._log_observer_factory())
        super().setServiceParent(parent)


# Allocations between two young-generation collections.  Python's 700 suits
# programs that make few objects; a server parsing thousands of messages a
# second made a collection every few messages, and promoted enough of them
# to run full collections over every registration and cached record: 30% of
# the CPU of a REGISTER.  Cycles are rare in the request path, so waiting
# longer costs little memory.
YOUNG_COLLECTION_THRESHOLD = 10_000


def tune_garbage_collector() -> None:
    """
    Done by the server process (twistd), not by L{build_server}: an
    application embedding the server chooses its own collector settings.
    """
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG_COLLECTION_THRESHOLD, middle, old)


def makeService(options: BaseOptions) -> TwistdRoot:
    try:
        server = build_server(options.config())
    except StoreError as e:
        raise SystemExit(f"communigate: {e}") from e
    for account, password in sorted(server.created_passwords.items()):
        print(f"communigate: created {account} with password {password}", flush=True)
    return TwistdRoot(server, options.log_observer_factory())

"""
The configuration a server is built from.

Only what must be known before the store is open lives here: where the
data directory is and what to listen on.  Everything else is in
the store and changed through the CLI while the server runs.
"""

import socket
from collections.abc import Mapping

import attrs


@attrs.frozen
class Config:
    """
    @ivar data_dir: the data directory; created (mode 0700) on first start.
    @ivar domain: the main domain created on first start; the host name
        when not given.  Ignored once the store has a main domain.
    @ivar listen: listen descriptions by protocol-module name.  A module
        missing here listens on its defaults; an empty tuple disables it.
    @ivar demo_accounts: account names created with generated passwords on
        first start, for a demonstration server.
    @ivar hostname: the name the server greets clients with.
    """

    data_dir: str
    domain: str | None = None
    listen: Mapping[str, tuple[str, ...]] = attrs.field(factory=dict)
    demo_accounts: tuple[str, ...] = ()
    hostname: str = attrs.field(factory=socket.gethostname)

    @property
    def main_domain(self) -> str:
        return self.domain or self.hostname

    def listen_for(self, module) -> tuple[str, ...]:
        """
        What C{module} listens on under this configuration.
        """
        return tuple(self.listen.get(module.name, module.default_listen))

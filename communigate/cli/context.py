"""
Who is running a CLI command.
"""

import attrs
from zope.interface import implementer

from communigate.interfaces import ICommandContext


@implementer(ICommandContext)
@attrs.frozen
class CommandContext:
    """
    The authenticated account and its administrator domain.

    Account and object names given without a domain part refer to
    C{domain}, as on CommuniGate Pro.  A C{trusted} context has every
    right: it is the admin tool working on the data directory, and whoever
    can write that directory owns the server anyway.
    """

    account: str
    domain: str
    trusted: bool = False

    @classmethod
    def for_account(cls, account: str) -> "CommandContext":
        return cls(account=account, domain=account.partition("@")[2])

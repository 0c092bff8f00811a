"""
What routing an address ends in.

CommuniGate's C{ROUTE} answers a triple C{(module, host, address)}: the
module that handles it, the object inside that module (an account, a
domain), and the address inside that object.  The same triple is what the
Signal service acts on.
"""

import enum

import attrs


class AddressKind(enum.Enum):
    """
    The three purposes an address is routed for; Router records may be
    limited to one of them.
    """

    MAIL = "mail"
    ACCESS = "access"
    SIGNAL = "signal"

    @classmethod
    def named(cls, text: str) -> "AddressKind":
        try:
            return cls(text.lower())
        except ValueError:
            raise ValueError(
                f"{text!r} is not an address type; use mail, access or signal"
            ) from None


class Module:
    """
    The module names a route can end in.
    """

    LOCAL = "LOCAL"
    PBX = "PBX"
    SIP = "SIP"
    SMTP = "SMTP"
    SYSTEM = "SYSTEM"
    GROUP = "GROUP"


@attrs.frozen
class Route:
    """
    @ivar module: one of L{Module}'s names.
    @ivar host: the account (LOCAL, PBX), domain (SIP, SMTP), group
        (GROUP) or C{NULL} (SYSTEM).
    @ivar address: the address inside the host: a SIP URI, an application
        call C{program{params}}, or empty.
    """

    module: str
    host: str
    address: str = ""

    def as_data(self) -> list[str]:
        """
        The triple as C{ROUTE} prints it.
        """
        return [self.module, self.host, self.address]


class RoutingError(Exception):
    """
    The address cannot be routed: unknown, rejected by a C{error} record or
    the domain's settings, or caught in a loop.  C{str()} says which.
    """


class RoutingLoop(RoutingError):
    """
    The address was rewritten more times than the Router allows: a loop in
    the Router table, forwarders or reroute settings.
    """

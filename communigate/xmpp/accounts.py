"""
What the XMPP module does when an account is deleted or renamed: its
streams end (their JID names an account that is gone), and its offline
messages go with it or follow it.
"""

from __future__ import annotations

from zope.interface import implementer

from communigate.interfaces import IAccountWatcher

__all__ = ["XMPPAccountEnds"]


@implementer(IAccountWatcher)
class XMPPAccountEnds:
    """
    @param service: the L{communigate.xmpp.service.XMPPService}.
    """

    def __init__(self, service) -> None:
        self._service = service

    def _close_sessions(self, account: str, text: str) -> None:
        # not-authorized, as a server does for an account whose
        # credentials no longer stand (RFC 6120 4.9.3.12).
        for session in list(self._service.sessions.resources(account)):
            session.close("not-authorized", text)

    def account_removed(self, address: str) -> None:
        self._close_sessions(address, "the account was deleted")
        self._service.offline.account_removed(address)

    def account_renamed(self, old: str, new: str) -> None:
        self._close_sessions(old, f"the account was renamed to {new}")
        self._service.offline.account_renamed(old, new)

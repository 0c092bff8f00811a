"""
The one realm every protocol logs in to.

A front end turns its own authentication exchange into cred credentials
and asks the portal for an L{IAccount}; the avatar is the same account
whichever protocol asked, which is what lets one identity span SIP, XMPP,
XIMSS and the CLI.  The mind is the endpoint that receives Signals for the
session; logging out unbinds it.
"""

from twisted.cred.portal import IRealm, Portal
from twisted.internet import defer
from zope.interface import implementer

from communigate.auth.checkers import (
    PlainPasswordChecker,
    ScramChecker,
    SIPDigestChecker,
)
from communigate.interfaces import IAccount, IDirectory


@implementer(IAccount)
class Account:
    """
    An account as a logged-in protocol session sees it.
    """

    def __init__(self, name: str, directory: IDirectory, mind: object) -> None:
        self.name = name
        self.domain = name.partition("@")[2]
        self.mind = mind
        self._directory = directory
        self.logged_out = False

    def effective_settings(self) -> dict:
        return self._directory.account_effective_settings(self.name)

    def logout(self) -> None:
        self.logged_out = True


@implementer(IRealm)
class AccountRealm:
    """
    Hands out L{Account} avatars for the canonical names the checkers
    return.
    """

    def __init__(self, directory: IDirectory) -> None:
        self._directory = directory

    def requestAvatar(self, avatarId, mind, *interfaces):
        if IAccount not in interfaces:
            raise NotImplementedError("this realm only provides IAccount avatars")
        name = avatarId.decode() if isinstance(avatarId, bytes) else avatarId
        account = Account(name, self._directory, mind)
        return defer.succeed((IAccount, account, account.logout))


def build_portal(directory: IDirectory) -> Portal:
    """
    The portal of a server: its realm and a checker for each credential
    type the front ends use.
    """
    checkers = [
        PlainPasswordChecker(directory),
        SIPDigestChecker(directory),
        ScramChecker(directory),
    ]
    return Portal(AccountRealm(directory), checkers)

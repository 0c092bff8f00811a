"""
The C{twisted.cred} checkers every front end's portal uses.

Each checker answers with the canonical account name (C{user@domain}) as the
avatar ID, whatever alias or username form the client used, so the realm
and everything after it see one name per account.  Every refusal is the
same L{UnauthorizedLogin}, whether the account is unknown or the proof is
wrong, so a client cannot probe which accounts exist; the reason goes to
the log only.
"""

from __future__ import annotations

import os

from twisted.cred.checkers import ICredentialsChecker
from twisted.cred.credentials import IUsernamePassword
from twisted.cred.error import UnauthorizedLogin
from twisted.internet import defer
from twisted.logger import Logger
from zope.interface import implementer

from communigate.interfaces import IScramCredentials, ISIPDigestCredentials
from communigate.auth.passwords import check_plain, derive_secrets

# Checked against when the account is unknown, so that answering "no such
# account" costs as much time as "wrong password".
_DECOY_SECRETS = derive_secrets("decoy@decoy.invalid", os.urandom(16).hex())


def _text(value) -> str:
    """
    Twisted's L{UsernamePassword} carries whatever the protocol decoded,
    often UTF-8 bytes.
    """
    if isinstance(value, bytes):
        return value.decode("utf-8")
    return value


class _SecretsChecker:
    """
    What the three checkers share: resolve the name, fetch the secrets, and
    turn every refusal into the same failure.
    """

    log = Logger()

    def __init__(self, source):
        self._source = source

    def requestAvatarId(self, credentials):
        return defer.maybeDeferred(self._avatar_id, credentials)

    def _refuse(self, username, reason):
        self.log.info("Login refused for {username!r}: {reason}", username=username, reason=reason)
        raise UnauthorizedLogin()

    def _account_and_secrets(self, address):
        """
        The canonical account C{address} names and its secrets; either may be
        L{None}.
        """
        account = self._source.resolve_account(address)
        if account is None:
            return None, None
        try:
            return account, self._source.password_secrets(account)
        except ValueError:
            # A damaged record must not lock the front end into an internal
            # error path; it is an account nobody can log in to until an
            # administrator sets the password again.
            self.log.failure("The password record of {account} is damaged", account=account)
            return account, None


@implementer(ICredentialsChecker)
class PlainPasswordChecker(_SecretsChecker):
    """
    Checks passwords sent in the clear (over TLS) against the PBKDF2 hash,
    and takes the chance to derive the secrets again when they are stale or
    weaker than today's parameters, since only now is the password known.
    """

    credentialInterfaces = (IUsernamePassword,)

    def _avatar_id(self, credentials):
        try:
            username = _text(credentials.username)
            password = _text(credentials.password)
        except UnicodeDecodeError:
            self._refuse(credentials.username, "not UTF-8")
        account, secrets = self._account_and_secrets(username)
        if secrets is None:
            check_plain(_DECOY_SECRETS, password)
            self._refuse(username, "no such account or no password")
        if not check_plain(secrets, password):
            self._refuse(username, "wrong password")
        if secrets.needs_refresh(account):
            try:
                self._source.refresh_secrets(account, password)
            except Exception:
                self.log.failure("Could not refresh the password secrets of {account}", account=account)
        return account


@implementer(ICredentialsChecker)
class SIPDigestChecker(_SecretsChecker):
    """
    Checks SIP digest responses against the HA1 stored for the username form
    the phone used.  After a rename the stored HA1 values hash the old name,
    so the phone is refused until the password is set or used in the clear
    again (which refreshes them).
    """

    credentialInterfaces = (ISIPDigestCredentials,)

    def _avatar_id(self, credentials):
        username = credentials.username
        address = username if "@" in username else f"{username}@{credentials.realm}"
        account, secrets = self._account_and_secrets(address)
        if secrets is None:
            self._refuse(username, "no such account or no password")
        if not secrets.digest_is_current(account):
            self._refuse(username, "digest hashes predate a rename")
        ha1 = secrets.ha1_for(username, credentials.realm, credentials.algorithm)
        if ha1 is None:
            self._refuse(username, f"no {credentials.algorithm} hash for this username and realm")
        if not credentials.check_ha1(ha1):
            self._refuse(username, "wrong digest response")
        return account


@implementer(ICredentialsChecker)
class ScramChecker(_SecretsChecker):
    """
    Checks a SCRAM client proof against the stored keys of its hash.
    """

    credentialInterfaces = (IScramCredentials,)

    def _avatar_id(self, credentials):
        username = credentials.username
        account, secrets = self._account_and_secrets(username)
        if secrets is None:
            self._refuse(username, "no such account or no password")
        scram = secrets.scram.get(credentials.hash_name)
        if scram is None:
            self._refuse(username, f"no SCRAM-{credentials.hash_name} keys")
        if not credentials.check_scram(scram):
            self._refuse(username, "wrong client proof")
        return account

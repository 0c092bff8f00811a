"""
The core's seams: storage, the directory and its accounts, credentials, the CLI, protocol modules.
"""

from twisted.cred.credentials import ICredentials
from zope.interface import Attribute, Interface


class IStore(Interface):
    """
    Durable storage of opaque text records, grouped into kinds.

    The directory (and later the other components) encode their objects as
    CommuniGate data-format text and keep them here.  A store guarantees that
    a change is committed to stable storage before the call that made it
    returns, so nothing acknowledged is lost in a crash.
    """

    schema_version = Attribute("The schema version of the opened store.")

    def transaction():
        """
        A context manager grouping reads and writes into one atomic unit.

        Leaving the block normally commits; an exception rolls back and
        propagates.  Nested calls join the outermost transaction.  Writers
        are serialised, also across processes sharing the same data
        directory, so a read-check-write inside one transaction is atomic.
        """

    def get(kind, key):
        """
        The text stored under C{(kind, key)}, or L{None}.
        """

    def put(kind, key, value):
        """
        Store C{value} (a L{str}) under C{(kind, key)}, replacing any
        previous value.  Outside a transaction this commits at once.
        """

    def delete(kind, key):
        """
        Remove C{(kind, key)}.  Returns L{True} if something was removed.
        """

    def scan(kind, prefix=""):
        """
        The C{(key, value)} pairs of C{kind} whose key starts with
        C{prefix}, ordered by key, as a list.
        """

    def keys(kind, prefix=""):
        """
        The keys of C{kind} starting with C{prefix}, ordered by key, as a
        list: what L{scan} would give without reading the values, for the
        callers that only index or count (call records, offline queues).
        """

    def count(kind):
        """
        How many records C{kind} holds.
        """

    def generation():
        """
        A number that changes whenever any connection, in this process or
        another, commits a change.  Caches compare it to know when to drop
        what they hold.
        """

    def close():
        """
        Release the underlying resources.  The store is unusable afterwards.
        """


class IPasswordSecretsSource(Interface):
    """
    Where the credential checkers find accounts and their stored secrets.
    """

    def resolve_account(address):
        """
        The canonical C{user@domain} of the account that C{address} names,
        following domain aliases and account aliases, or L{None}.  A name
        without a domain part belongs to the main domain.
        """

    def password_secrets(account):
        """
        The L{communigate.auth.passwords.PasswordSecrets} of C{account}
        (canonical name), or L{None} if it has no password.
        """

    def refresh_secrets(account, password):
        """
        Derive and store C{account}'s secrets again from C{password}, which
        a checker has just verified.  Called when the stored secrets are
        incomplete (the SIP digest hashes after a rename) or weaker than
        the current parameters.
        """


class ISIPDigestCredentials(ICredentials):
    """
    An answer to an RFC 7616 (RFC 2617, RFC 2069) digest challenge, as SIP
    sends it in an C{Authorization} or C{Proxy-Authorization} header.
    """

    username = Attribute("The username parameter, C{alice} or C{alice@example.com}.")
    realm = Attribute("The realm parameter.")
    nonce = Attribute("The nonce the server issued.")
    method = Attribute("The request method, e.g. C{REGISTER}.")
    uri = Attribute("The digest-uri parameter, as sent.")
    response = Attribute("The response parameter, hex.")
    algorithm = Attribute("C{MD5}, C{MD5-sess}, C{SHA-256} or C{SHA-256-sess}.")
    qop = Attribute("L{None} (RFC 2069 form), C{auth} or C{auth-int}.")
    nc = Attribute("The nonce-count, eight hex digits as sent, or L{None}.")
    cnonce = Attribute("The client nonce, or L{None}.")
    body = Attribute("The message body, L{bytes}, hashed for C{auth-int}.")

    def check_ha1(ha1_hex):
        """
        Whether C{response} is right for the base HA1 C{ha1_hex}.
        """


class IScramCredentials(ICredentials):
    """
    The outcome of a SCRAM exchange (RFC 5802) up to the client proof.
    """

    username = Attribute("The authentication identity, already unescaped.")
    hash_name = Attribute("C{sha1} or C{sha256}.")
    auth_message = Attribute("The AuthMessage, L{bytes}, as RFC 5802 section 3 builds it.")
    client_proof = Attribute("The decoded ClientProof, L{bytes}.")

    def check_scram(scram_secrets):
        """
        Whether C{client_proof} proves knowledge of the password the
        L{communigate.auth.passwords.ScramSecrets} were derived from.
        """


class IDirectory(IPasswordSecretsSource):
    """
    Domains, accounts, aliases, forwarders, groups and telephone numbers,
    with CommuniGate's settings inheritance.

    Names are case-insensitive and kept in lower case.  Every mutating call
    either completes and is committed, or raises a
    L{communigate.directory.errors.DirectoryError} and changes nothing.
    """

    def main_domain():
        """
        The name of the main domain, or L{None} before the first domain.
        """

    def watch_accounts(watcher):
        """
        Tell C{watcher} (an L{IAccountWatcher}) of every account this
        directory deletes or renames from now on, after the change is
        committed.
        """


class IAccountWatcher(Interface):
    """
    A keeper of data by account name (a roster, offline messages, phone
    registrations, a mailbox) that must not outlive or lose the account.

    The directory calls it after the change is committed; a watcher that
    raises is logged and the others are still told.  Accounts deleted or
    renamed by another process sharing the data directory (the admin tool)
    are told only to that process's watchers.
    """

    def account_removed(address):
        """
        The account C{address} (C{user@domain}) is gone: drop what is
        kept for it, so a new account of the same name starts empty.
        """

    def account_renamed(old, new):
        """
        The account C{old} is now C{new}: what was kept for it moves.
        """


class IAccount(Interface):
    """
    The avatar a protocol receives when it logs in through the portal: the
    account as that protocol may use it.
    """

    name = Attribute("The canonical account address, C{user@domain}.")
    domain = Attribute("The account's domain name.")

    def effective_settings():
        """
        The account's settings with every inherited level merged in.
        """

    def logout():
        """
        Called once when the protocol session that logged in ends.
        """


class ICommandContext(Interface):
    """
    Who runs a CLI command, and on behalf of which domain.
    """

    account = Attribute("The canonical name of the authenticated account.")
    domain = Attribute(
        "The administrator domain: names without a domain part refer to it."
    )


class ICommandInterpreter(Interface):
    """
    The CLI command language, shared by the CLI/PWD protocol, the admin
    tool and the web admin.
    """

    def execute(context, line):
        """
        Run one command line for C{context} (an L{ICommandContext}).

        Returns a L{twisted.internet.defer.Deferred} firing with a
        L{communigate.cli.result.CommandResult}; a user error (bad
        arguments, unknown names) is a result with an error text, not a
        failure.
        """

    def command_names():
        """
        The sorted names of every command this interpreter knows.
        """


class IProtocolModule(Interface):
    """
    A network front end, found as a Twisted plugin.

    Each module names its listen option: C{twistd communigate --NAME
    DESCRIPTION} is repeatable, and C{--NAME none} disables the module.  The
    option set of C{twistd communigate} grows from the installed modules,
    not from a table in the server.
    """

    name = Attribute("The option name, e.g. C{'cli'} for C{--cli}.")
    description = Attribute("One line of help for the option.")
    default_listen = Attribute(
        "The listen descriptions used when the option is not given, as a "
        "tuple of strings, e.g. C{('tcp:106',)}."
    )

    def check_listen(description):
        """
        Raise L{ValueError} with a message naming the allowed forms if
        C{description} cannot be listened on by this module.
        """

    def build_service(context, descriptions):
        """
        An L{twisted.application.service.IService} listening on
        C{descriptions} (already checked) and serving the core objects
        in C{context} (a L{communigate.context.ServerContext}).
        """

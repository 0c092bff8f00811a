"""
The CLI/PWD wire protocol: CommuniGate's administration port, TCP 106.

A client reads a banner, logs in with C{USER}/C{PASS} (or C{AUTH WEBUSER}),
usually switches to C{INLINE} mode and then sends one command per line.
Every line gets exactly one reply, in the order the lines arrived::

    S: 200 communigate PWD server at host ready <1234.1700000000@host>
    C: USER postmaster            S: 300 please send the PASS
    C: PASS secret                S: 200 login OK
    C: INLINE                     S: 200 OK
    C: ListDomains                S: 201 (example.com)
    C: DeleteAccount nobody       S: 501 unknown account
    C: QUIT                       S: 200 communigate PWD connection closed

Without C{INLINE}, data comes on its own line after C{200 data follow}.

The protocol logs in through the portal like every other front end and
hands each command line to the shared L{ICommandInterpreter}; it only
frames, orders and guards.  Replies end in CRLF, which the CGPCLI client
needs; requests may end in LF or CRLF.

C{APOP} cannot be verified, because the directory keeps no plain-text
password to hash with the banner's challenge, so it is refused with a reply
that names C{USER}/C{PASS}.  The vendor's Perl CGP::CLI uses APOP by
default whenever the banner carries a C{<...@...>} challenge; a factory
made with C{banner_challenge=False} leaves it out, and that client then
falls back to C{USER}/C{PASS}.
"""

import secrets
from collections import deque

from prometheus_client import CollectorRegistry, Counter, Gauge
from twisted.cred.credentials import UsernamePassword
from twisted.cred.error import UnauthorizedLogin
from twisted.internet.defer import CancelledError, Deferred, maybeDeferred
from twisted.internet.interfaces import IReactorTime
from twisted.internet.protocol import Factory
from twisted.internet.task import deferLater
from twisted.logger import Logger
from twisted.protocols.basic import LineReceiver
from twisted.protocols.policies import TimeoutMixin
from twisted.python.failure import Failure

from communigate.admin.throttle import LoginThrottle
from communigate.cli.context import CommandContext
from communigate.cli.result import CommandResult
from communigate.interfaces import IAccount

DEFAULT_MAX_LINE_LENGTH = 1024 * 1024
DEFAULT_IDLE_TIMEOUT = 600.0

#: How many unanswered lines a connection may queue before it stops reading.
QUEUE_HIGH_WATER = 64

#: How many lines other than log-in commands a client may send before login.
MAX_BAD_LINES_BEFORE_LOGIN = 3

NOT_TEXT = "line is not valid UTF-8 text"


# ---------------------------------------------------------------------------
# The wire format: pure functions, no transport.


def decode_line(line: bytes) -> str | None:
    """
    The text of one request line (its LF already removed), or L{None} if
    it is not UTF-8 text.  A trailing CR is dropped; a NUL byte anywhere
    makes the line invalid, since no command can contain one.
    """
    if line.endswith(b"\r"):
        line = line[:-1]
    if b"\x00" in line:
        return None
    try:
        return line.decode("utf-8")
    except UnicodeDecodeError:
        return None


def split_command(text: str) -> tuple[str, str]:
    """
    The upper-cased first word of a line and everything after the single
    space that follows it (kept exactly, as a password may contain spaces).
    """
    verb, _, argument = text.lstrip(" \t").partition(" ")
    return verb.upper(), argument


def one_line(text: str) -> str:
    """
    C{text} with every CR and LF replaced by a space, so a reply stays on
    one line whatever a message contains.
    """
    return text.replace("\r\n", " ").replace("\r", " ").replace("\n", " ")


def format_reply(code: int, text: str) -> bytes:
    """
    One C{NNN text} reply line.
    """
    return f"{code} {one_line(text)}\r\n".encode("utf-8")


def format_result(result: CommandResult, inline: bool) -> bytes:
    """
    The reply to a command that ran: C{200 OK}, C{201 data} in inline
    mode, C{200 data follow} and a data line otherwise, or C{501 error}.
    """
    if not result.ok:
        return format_reply(501, result.error or "command failed")
    if not result.has_data:
        return format_reply(200, "OK")
    rendered = result.render()
    if inline:
        return f"201 {rendered}\r\n".encode("utf-8")
    return f"200 data follow\r\n{rendered}\r\n".encode("utf-8")


# ---------------------------------------------------------------------------
# Metrics


class PWDMetrics:
    """
    The counters of one CLI/PWD listener, registered on the server's own
    registry.
    """

    def __init__(self, registry: CollectorRegistry):
        self.connections = Counter(
            "communigate_cli_connections",
            "CLI/PWD connections accepted.",
            registry=registry,
        )
        self.open_connections = Gauge(
            "communigate_cli_open_connections",
            "CLI/PWD connections currently open.",
            registry=registry,
        )
        self.commands = Counter(
            "communigate_cli_commands",
            "CLI commands run after login, by outcome.",
            ["outcome"],
            registry=registry,
        )
        self.login_failures = Counter(
            "communigate_cli_login_failures",
            "CLI/PWD logins refused for a wrong user name or password.",
            registry=registry,
        )
        self.lines_rejected = Counter(
            "communigate_cli_lines_rejected",
            "CLI/PWD request lines refused, by reason.",
            ["reason"],
            registry=registry,
        )
        self.idle_timeouts = Counter(
            "communigate_cli_idle_timeouts",
            "CLI/PWD connections closed for being idle.",
            registry=registry,
        )


# ---------------------------------------------------------------------------
# The protocol

_INVALID_LINE = object()


class PWDProtocol(LineReceiver, TimeoutMixin):
    """
    One CLI/PWD session.

    Lines are queued and handled one at a time: the next line is looked at
    only when the previous reply has been written, so replies keep the
    order of the requests even when a command answers late.  Log-in
    commands before login and C{INLINE}/C{QUIT} after it are methods named
    C{pwd_VERB}; every other line after login goes to the interpreter.
    """

    delimiter = b"\n"
    _log = Logger()

    _PRE_LOGIN_VERBS = frozenset({"USER", "PASS", "AUTH", "APOP", "INLINE", "QUIT"})

    def __init__(self):
        self._queue: deque = deque()
        self._busy = False
        self._draining = False
        self._accepting = True
        self._closing = False
        self._lost = False
        self._inline = False
        self._user: str | None = None
        self._context: CommandContext | None = None
        self._logout = None
        self._bad_lines = 0
        self._throttle_wait: Deferred | None = None
        self._address = "unknown"

    # -- connection -----------------------------------------------------

    def callLater(self, period, func):
        """
        Idle time-outs run on the factory's clock, not the global reactor.
        """
        return self.factory.clock.callLater(period, func)

    def connectionMade(self):
        # LineReceiver counts a CR before the LF as part of the line; allow
        # for it here and check the exact length in lineReceived.
        self.MAX_LENGTH = self.factory.max_line_length + 1
        peer = self.transport.getPeer()
        self._address = getattr(peer, "host", None) or str(peer)
        self.factory.metrics.connections.inc()
        self.factory.metrics.open_connections.inc()
        self.setTimeout(self.factory.idle_timeout)
        self._write(format_reply(200, self.factory.banner()))

    def connectionLost(self, reason):
        self._lost = True
        self._closing = True
        self._queue.clear()
        self.setTimeout(None)
        self.factory.metrics.open_connections.dec()
        if self._throttle_wait is not None:
            wait, self._throttle_wait = self._throttle_wait, None
            wait.cancel()
        logout, self._logout = self._logout, None
        if logout is not None:
            self._call_logout(logout)

    def _call_logout(self, logout):
        try:
            logout()
        except Exception:
            self._log.failure(
                "Logout of {account} after a CLI session failed",
                account=self._context.account if self._context else None,
            )

    def timeoutConnection(self):
        self._log.info(
            "Closing CLI connection from {address}: idle for {seconds}s",
            address=self._address,
            seconds=self.factory.idle_timeout,
        )
        self.factory.metrics.idle_timeouts.inc()
        self._close()

    def _close(self):
        self._closing = True
        self._queue.clear()
        self.transport.loseConnection()

    def _write(self, data: bytes):
        if self._lost or self.transport.disconnecting:
            return
        self.resetTimeout()
        self.transport.write(data)

    def _reply(self, code: int, text: str):
        self._write(format_reply(code, text))

    # -- framing --------------------------------------------------------

    def dataReceived(self, data):
        if self._closing:
            # Never buffer input of a connection that is being closed: an
            # oversized line must not be collected after all.
            return
        self.resetTimeout()
        super().dataReceived(data)

    def lineLengthExceeded(self, line):
        self._log.warn(
            "Closing CLI connection from {address}: a line is longer than "
            "{limit} bytes",
            address=self._address,
            limit=self.factory.max_line_length,
        )
        self.factory.metrics.lines_rejected.labels(reason="too_long").inc()
        self._close()

    def lineReceived(self, line):
        if not self._accepting or self._closing:
            return
        if len(line) - line.endswith(b"\r") > self.factory.max_line_length:
            return self.lineLengthExceeded(line)
        text = decode_line(line)
        if text is None:
            self._log.warn(
                "CLI connection from {address} sent a line that is not "
                "UTF-8 text; closing it",
                address=self._address,
            )
            self.factory.metrics.lines_rejected.labels(reason="not_text").inc()
            # Answer it in turn, after the replies still owed, then close.
            self._accepting = False
            self._queue.append(_INVALID_LINE)
        else:
            self._queue.append(text)
        if len(self._queue) >= QUEUE_HIGH_WATER and not self.paused:
            self.pauseProducing()
        self._drain()

    def _drain(self):
        if self._draining:
            return
        self._draining = True
        try:
            while self._queue and not self._busy and not self._closing:
                item = self._queue.popleft()
                self._busy = True
                self._handle(item).addBoth(self._handled)
        finally:
            self._draining = False
        if self.paused and not self._closing and len(self._queue) < QUEUE_HIGH_WATER // 2:
            self.resumeProducing()

    def _handled(self, result):
        if isinstance(result, Failure):
            self._log.failure("Unhandled error in a CLI session", failure=result)
        self._busy = False
        self._drain()

    def _handle(self, item) -> Deferred:
        if item is _INVALID_LINE:
            self._reply(501, NOT_TEXT)
            self._close()
            return _done()
        verb, argument = split_command(item)
        if self._context is None:
            if verb in self._PRE_LOGIN_VERBS:
                handler = getattr(self, "pwd_" + verb)
                d = maybeDeferred(handler, argument)
                return d.addErrback(self._login_error, verb)
            return _done(self._bad_line(500, "log in first with USER and PASS"))
        if verb == "INLINE":
            return _done(self.pwd_INLINE(argument))
        if verb == "QUIT":
            return _done(self.pwd_QUIT(argument))
        return self._execute(verb, item)

    # -- before login ---------------------------------------------------

    def _bad_line(self, code: int, text: str):
        self._bad_lines += 1
        self.factory.metrics.lines_rejected.labels(reason="before_login").inc()
        if self._bad_lines >= MAX_BAD_LINES_BEFORE_LOGIN:
            self._log.info(
                "Closing CLI connection from {address}: {count} bad lines "
                "before login",
                address=self._address,
                count=self._bad_lines,
            )
            self._reply(code, f"{text}; too many bad commands, closing the connection")
            self._close()
        else:
            self._reply(code, text)

    def pwd_USER(self, argument):
        name = argument.strip()
        if not name:
            return self._bad_line(501, "USER needs an account name")
        self._user = name
        self._reply(300, "please send the PASS")

    def pwd_PASS(self, argument):
        if self._user is None:
            return self._bad_line(501, "send USER first")
        name, self._user = self._user, None
        return self._log_in(name, argument)

    def pwd_AUTH(self, argument):
        mechanism, _, rest = argument.partition(" ")
        name, _, password = rest.partition(" ")
        if mechanism.upper() != "WEBUSER" or not name:
            return self._bad_line(501, "use AUTH WEBUSER name password")
        return self._log_in(name, password)

    def pwd_APOP(self, argument):
        self._reply(
            501,
            "APOP is not supported: passwords are not stored in plain text; "
            "log in with USER and PASS",
        )

    def pwd_INLINE(self, argument):
        self._inline = True
        self._reply(200, "OK")

    def pwd_QUIT(self, argument):
        self._reply(200, "communigate PWD connection closed")
        self._close()

    def _log_in(self, name: str, password: str) -> Deferred | None:
        throttle = self.factory.throttle
        delay = throttle.delay_for(self._address)
        if not delay:
            return self._check_password(name, password)
        self._log.info(
            "Delaying a CLI login for {user} from {address} by {delay}s after "
            "repeated failures",
            user=name,
            address=self._address,
            delay=delay,
        )
        wait = deferLater(self.factory.clock, delay, lambda: None)
        self._throttle_wait = wait

        def waited(_):
            self._throttle_wait = None
            return self._check_password(name, password)

        return wait.addCallback(waited)

    def _check_password(self, name: str, password: str) -> Deferred:
        credentials = UsernamePassword(name.encode("utf-8"), password.encode("utf-8"))
        d = maybeDeferred(self.factory.portal.login, credentials, None, IAccount)
        return d.addCallbacks(
            self._logged_in, self._login_refused, errbackArgs=(name,)
        )

    def _logged_in(self, login):
        _interface, avatar, logout = login
        if self._lost:
            self._call_logout(logout)
            return
        self.factory.throttle.record_success(self._address)
        self._logout = logout
        self._context = CommandContext.for_account(avatar.name)
        self._log.info(
            "CLI login by {account} from {address}",
            account=avatar.name,
            address=self._address,
        )
        self._reply(200, "login OK")

    def _login_refused(self, failure, name):
        failure.trap(UnauthorizedLogin)
        self.factory.throttle.record_failure(self._address)
        self.factory.metrics.login_failures.inc()
        self._log.info(
            "CLI login refused for {user} from {address}",
            user=name,
            address=self._address,
        )
        self._reply(515, "incorrect user name or password")

    def _login_error(self, failure, verb):
        if self._lost and failure.check(CancelledError):
            return
        self._log.failure(
            "CLI {verb} from {address} failed",
            failure=failure,
            verb=verb,
            address=self._address,
        )
        self._reply(501, "internal error")

    # -- after login ----------------------------------------------------

    def _execute(self, verb: str, line: str) -> Deferred:
        context = self._context
        d = maybeDeferred(self.factory.interpreter.execute, context, line)
        d.addCallback(self._result)
        d.addErrback(self._command_error, verb, context)
        return d.addCallback(self._write)

    def _result(self, result: CommandResult) -> bytes:
        reply = format_result(result, self._inline)
        outcome = "ok" if result.ok else "error"
        self.factory.metrics.commands.labels(outcome=outcome).inc()
        return reply

    def _command_error(self, failure, verb, context):
        self.factory.metrics.commands.labels(outcome="error").inc()
        # Only the command name is logged: arguments may hold passwords.
        self._log.failure(
            "CLI command {command} of {account} from {address} failed",
            failure=failure,
            command=verb[:64],
            account=context.account,
            address=self._address,
        )
        return format_reply(501, "internal error")


def _done(_=None) -> Deferred:
    d = Deferred()
    d.callback(None)
    return d


class PWDFactory(Factory):
    """
    Builds L{PWDProtocol}s sharing one portal, interpreter, clock, login
    throttle and set of metrics.

    @param portal: a L{twisted.cred.portal.Portal} whose avatars provide
        L{IAccount}; it is handed L{UsernamePassword} credentials with
        UTF-8 encoded name and password.
    @param interpreter: the L{communigate.interfaces.ICommandInterpreter}.
    @param clock: the L{IReactorTime} for time-outs and login delays.
    @param hostname: the name the banner shows.
    @param registry: the Prometheus registry the metrics are added to.
    @param max_line_length: the longest request line, in bytes; a longer
        one closes the connection.
    @param idle_timeout: seconds without a request or reply after which a
        connection is closed, or L{None} for never.
    @param throttle: the L{LoginThrottle}; by default a new one on C{clock}.
    @param banner_challenge: whether the banner carries the C{<...@host>}
        challenge that APOP clients hash.
    """

    protocol = PWDProtocol

    def __init__(
        self,
        portal,
        interpreter,
        clock: IReactorTime,
        hostname: str,
        registry: CollectorRegistry,
        max_line_length: int = DEFAULT_MAX_LINE_LENGTH,
        idle_timeout: float | None = DEFAULT_IDLE_TIMEOUT,
        throttle: LoginThrottle | None = None,
        banner_challenge: bool = True,
    ):
        if max_line_length < 1:
            raise ValueError(
                f"max_line_length must be a positive number of bytes, not {max_line_length!r}"
            )
        if idle_timeout is not None and idle_timeout <= 0:
            raise ValueError(
                f"idle_timeout must be a positive number of seconds or None, not {idle_timeout!r}"
            )
        self.portal = portal
        self.interpreter = interpreter
        self.clock = clock
        self.hostname = hostname
        self.max_line_length = max_line_length
        self.idle_timeout = idle_timeout
        self.throttle = throttle if throttle is not None else LoginThrottle(clock)
        self.banner_challenge = banner_challenge
        self.metrics = PWDMetrics(registry)

    def banner(self) -> str:
        """
        The greeting text, with a fresh challenge for each connection.
        """
        text = f"communigate PWD server at {self.hostname} ready"
        if not self.banner_challenge:
            return text
        challenge = f"{secrets.randbelow(10**9)}.{int(self.clock.seconds())}"
        return f"{text} <{challenge}@{self.hostname}>"

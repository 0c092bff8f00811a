"""
Tests for the CLI/PWD wire protocol and its login throttle.

Everything runs on a StringTransport and a Clock: no sockets, no sleeps.
"""

import re

import attrs
import pytest
from prometheus_client import CollectorRegistry
from twisted.cred.checkers import ICredentialsChecker
from twisted.cred.credentials import IUsernamePassword
from twisted.cred.error import UnauthorizedLogin
from twisted.cred.portal import IRealm, Portal
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.error import ConnectionDone
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.logger import capturedLogs
from twisted.python.failure import Failure
from zope.interface import implementer
from zope.interface.verify import verifyObject

from communigate.admin.pwd import PWDFactory, format_reply, split_command
from communigate.admin.throttle import LoginThrottle
from communigate.cli.context import CommandContext
from communigate.cli.result import CommandResult
from communigate.interfaces import IAccount, ICommandInterpreter

HOST = "cli.example.com"
START = 1_700_000_000
PASSWORDS = {b"postmaster@example.com": b"right secret", b"bob@example.com": b"bob pw"}


# ---------------------------------------------------------------------------
# Fakes


@implementer(IAccount)
@attrs.define
class FakeAccount:
    name: str
    domain: str
    logouts: int = 0

    def effective_settings(self):
        return {}

    def logout(self):
        self.logouts += 1


@implementer(ICredentialsChecker)
class PasswordTable:
    credentialInterfaces = (IUsernamePassword,)

    def __init__(self, passwords):
        self.passwords = passwords
        self.checked = []

    def requestAvatarId(self, credentials):
        self.checked.append(credentials.username)
        if self.passwords.get(credentials.username) == credentials.password:
            return succeed(credentials.username)
        return fail(UnauthorizedLogin())


@implementer(IRealm)
class AccountRealm:
    def __init__(self):
        self.accounts = []

    def requestAvatar(self, avatar_id, mind, *interfaces):
        assert IAccount in interfaces
        name = avatar_id.decode("utf-8")
        account = FakeAccount(name=name, domain=name.partition("@")[2])
        self.accounts.append(account)
        return IAccount, account, account.logout


@attrs.frozen
class Rendered(CommandResult):
    """
    A result whose rendering is fixed, so these tests do not depend on the
    data-format serializer.
    """

    text: str = ""

    def render(self):
        return self.text


@implementer(ICommandInterpreter)
class ScriptedInterpreter:
    """
    Answers by the first word of the line: canned results, a failure for
    C{BUG}, and for C{SLOW} a Deferred the test fires itself.
    """

    def __init__(self):
        self.calls = []
        self.slow = []
        self.answers = {
            "NOOP": CommandResult(),
            "LISTDOMAINS": Rendered(data=["example.com"], text="(example.com, client1.com)"),
            "DELETEACCOUNT": CommandResult.failed("unknown account\r\nsecond line"),
        }

    def execute(self, context, line):
        self.calls.append((context, line))
        verb = line.split()[0].upper()
        if verb == "SLOW":
            d = Deferred()
            self.slow.append(d)
            return d
        if verb == "BUG":
            return fail(RuntimeError("interpreter bug"))
        return succeed(self.answers.get(verb, CommandResult.failed("unknown command")))

    def command_names(self):
        return sorted(self.answers)


# ---------------------------------------------------------------------------
# Helpers


@attrs.define
class Server:
    clock: Clock
    registry: CollectorRegistry
    interpreter: ScriptedInterpreter
    realm: AccountRealm
    checker: PasswordTable
    factory: PWDFactory

    def metric(self, name, **labels):
        return self.registry.get_sample_value(name, labels or None) or 0.0


def make_server(**options):
    clock = Clock()
    clock.advance(START)
    registry = CollectorRegistry()
    interpreter = ScriptedInterpreter()
    realm = AccountRealm()
    checker = PasswordTable(PASSWORDS)
    portal = Portal(realm, [checker])
    factory = PWDFactory(portal, interpreter, clock, HOST, registry, **options)
    return Server(clock, registry, interpreter, realm, checker, factory)


class Session:
    """
    One client connection on a StringTransport.
    """

    def __init__(self, server, address="198.51.100.7"):
        peer = IPv4Address("TCP", address, 40000)
        self.transport = StringTransport(peerAddress=peer)
        self.protocol = server.factory.buildProtocol(peer)
        self.protocol.makeConnection(self.transport)
        self.banner = self.take()

    def send(self, *lines, ending=b"\r\n"):
        """
        Send C{lines} in one segment, as a pipelining client would.
        """
        self.protocol.dataReceived(b"".join(line.encode() + ending for line in lines))

    def take(self):
        """
        The reply lines written since the last call.
        """
        data = self.transport.value()
        self.transport.clear()
        assert data == b"" or data.endswith(b"\r\n"), data
        return data.decode("utf-8").split("\r\n")[:-1]

    def login(self, user="postmaster@example.com", password="right secret"):
        self.send(f"USER {user}", f"PASS {password}")
        assert self.take() == ["300 please send the PASS", "200 login OK"]

    @property
    def closed(self):
        return self.transport.disconnecting

    def hang_up(self):
        self.protocol.connectionLost(Failure(ConnectionDone()))


@pytest.fixture
def server():
    return make_server()


# ---------------------------------------------------------------------------
# The fakes honour the interfaces the protocol relies on.


def test_fakes_provide_the_interfaces_the_protocol_is_written_against():
    """
    The protocol talks to real accounts and interpreters only through
    these interfaces, so the fakes must really provide them.
    """
    verifyObject(IAccount, FakeAccount("a@b", "b"))
    verifyObject(ICommandInterpreter, ScriptedInterpreter())


# ---------------------------------------------------------------------------
# Wire format


def test_reply_lines_end_in_crlf_and_never_span_lines():
    """
    CGPCLI reads until CRLF, so a bare LF inside a message would split a
    reply and desynchronise it.
    """
    assert format_reply(501, "a\nb\r\nc\rd") == b"501 a b c d\r\n"


def test_split_command_upper_cases_the_verb_and_keeps_the_argument_verbatim():
    """
    Verbs are case-insensitive (CGPCLI sends C{inline}); passwords may
    contain spaces, so the argument is not trimmed or split.
    """
    assert split_command("pass  two words ") == ("PASS", " two words ")


# ---------------------------------------------------------------------------
# Banner and login


def test_banner_carries_a_challenge_with_the_clock_time_and_hostname(server):
    """
    APOP clients hash the C{<...>} token of the banner; it must be fresh per
    connection and built from the injected clock.
    """
    first, second = Session(server).banner, Session(server).banner
    pattern = rf"200 communigate PWD server at {re.escape(HOST)} ready <(\d+)\.{START}@{re.escape(HOST)}>"
    assert re.fullmatch(pattern, first[0])
    assert re.fullmatch(pattern, second[0])
    assert first != second


def test_banner_without_challenge_when_configured():
    """
    The Perl CGP::CLI uses APOP whenever the banner has a challenge;
    leaving it out makes that client fall back to USER/PASS.
    """
    session = Session(make_server(banner_challenge=False))
    assert session.banner == [f"200 communigate PWD server at {HOST} ready"]


def test_user_then_correct_pass_logs_in_with_the_accounts_context(server):
    session = Session(server)
    session.send("USER postmaster@example.com")
    assert session.take() == ["300 please send the PASS"]
    session.send("PASS right secret")
    assert session.take() == ["200 login OK"]
    session.send("NOOP")
    assert session.take() == ["200 OK"]
    assert server.interpreter.calls == [
        (CommandContext("postmaster@example.com", "example.com"), "NOOP")
    ]


def test_wrong_password_answers_515_so_cgpcli_raises_failed_login(server):
    """
    CGPCLI repeats USER/PASS until it sees 200 and gives up only on 515.
    """
    session = Session(server)
    session.send("USER postmaster@example.com", "PASS wrong")
    assert session.take() == ["300 please send the PASS", "515 incorrect user name or password"]
    session.send("NOOP")
    assert session.take() == ["500 log in first with USER and PASS"]
    assert server.metric("communigate_cli_login_failures_total") == 1


def test_pass_without_user_is_refused(server):
    session = Session(server)
    session.send("PASS right secret")
    assert session.take() == ["501 send USER first"]
    assert server.checker.checked == []


def test_each_pass_needs_its_own_user(server):
    """
    A failed PASS forgets the name, as CGPCLI sends USER again each try.
    """
    session = Session(server)
    session.send("USER postmaster@example.com", "PASS wrong", "PASS right secret")
    assert session.take()[-1] == "501 send USER first"


def test_auth_webuser_logs_in_in_one_line(server):
    session = Session(server)
    session.send("AUTH WEBUSER bob@example.com bob pw")
    assert session.take() == ["200 login OK"]
    session.send("NOOP")
    assert server.interpreter.calls[0][0].account == "bob@example.com"


def test_auth_webuser_with_a_wrong_password_answers_515(server):
    session = Session(server)
    session.send("AUTH WEBUSER bob@example.com nope")
    assert session.take() == ["515 incorrect user name or password"]


def test_apop_is_refused_and_points_to_user_and_pass(server):
    """
    Only password hashes are stored, so an APOP digest cannot be checked;
    the reply says what to use instead.
    """
    session = Session(server)
    session.send("APOP postmaster@example.com 0123456789abcdef0123456789abcdef")
    (reply,) = session.take()
    assert reply.startswith("501 ")
    assert "APOP is not supported" in reply and "USER and PASS" in reply
    assert not session.closed
    session.login()


def test_credentials_reach_the_portal_as_utf8_bytes(server):
    """
    twisted.cred's UsernamePassword holds bytes; non-ASCII names survive.
    """
    server.checker.passwords[b"j\xc3\xb6rg@example.com"] = b"p\xc3\xa4ss"
    session = Session(server)
    session.login("jörg@example.com", "päss")
    assert server.realm.accounts[0].name == "jörg@example.com"


# ---------------------------------------------------------------------------
# Before login


def test_commands_before_login_are_refused_and_the_third_closes(server):
    """
    A scanner or a confused client gets a few clear answers, not an open
    door to probe with.
    """
    session = Session(server)
    session.send("LISTDOMAINS", "NOOP")
    assert session.take() == ["500 log in first with USER and PASS"] * 2
    assert not session.closed
    session.send("GETACCOUNTSETTINGS x", "USER late@example.com")
    assert session.take() == [
        "500 log in first with USER and PASS; too many bad commands, closing the connection"
    ]
    assert session.closed
    assert server.interpreter.calls == []
    assert server.metric("communigate_cli_lines_rejected_total", reason="before_login") == 3


def test_quit_before_login_closes_politely(server):
    session = Session(server)
    session.send("QUIT")
    assert session.take() == ["200 communigate PWD connection closed"]
    assert session.closed


# ---------------------------------------------------------------------------
# Commands after login


def test_inline_mode_puts_data_on_the_reply_line(server):
    session = Session(server)
    session.login()
    session.send("inline", "ListDomains")
    assert session.take() == ["200 OK", "201 (example.com, client1.com)"]


def test_without_inline_data_follows_on_its_own_line(server):
    session = Session(server)
    session.login()
    session.send("ListDomains")
    assert session.take() == ["200 data follow", "(example.com, client1.com)"]


def test_command_without_data_answers_200_ok(server):
    session = Session(server)
    session.login()
    session.send("INLINE", "NOOP")
    assert session.take() == ["200 OK", "200 OK"]


def test_command_error_is_one_501_line(server):
    """
    Clients read exactly one line per error; a multi-line message would be
    taken as the reply to the next command.
    """
    session = Session(server)
    session.login()
    session.send("DeleteAccount nobody")
    assert session.take() == ["501 unknown account second line"]
    assert server.metric("communigate_cli_commands_total", outcome="error") == 1


def test_interpreter_failure_answers_internal_error_and_is_logged(server):
    session = Session(server)
    session.login()
    with capturedLogs() as events:
        session.send("BUG now")
    assert session.take() == ["501 internal error"]
    (event,) = [e for e in events if e.get("log_failure") is not None]
    assert event["command"] == "BUG"
    assert event["account"] == "postmaster@example.com"
    assert event["log_failure"].check(RuntimeError)
    assert server.metric("communigate_cli_commands_total", outcome="error") == 1
    session.send("NOOP")
    assert session.take() == ["200 OK"]


def test_pipelined_commands_are_answered_in_order_behind_a_slow_one(server):
    """
    A client may send several lines at once; the reply to a later, fast
    command must not overtake the reply to an earlier, slow one.
    """
    session = Session(server)
    session.login()
    session.send("INLINE", "SLOW", "ListDomains", "NOOP")
    assert session.take() == ["200 OK"]
    assert [line for _, line in server.interpreter.calls] == ["SLOW"]
    server.interpreter.slow[0].callback(CommandResult.failed("took long"))
    assert session.take() == ["501 took long", "201 (example.com, client1.com)", "200 OK"]


def test_a_long_pipeline_behind_a_slow_command_pauses_reading(server):
    """
    Queued lines are bounded: the connection stops reading until the
    backlog is worked off.
    """
    session = Session(server)
    session.login()
    session.send("SLOW", *["NOOP"] * 100)
    assert session.transport.producerState == "paused"
    server.interpreter.slow[0].callback(CommandResult())
    assert session.take() == ["200 OK"] * 101
    assert session.transport.producerState == "producing"


def test_quit_answers_and_closes_and_ignores_what_follows(server):
    session = Session(server)
    session.login()
    session.send("QUIT", "NOOP")
    assert session.take() == ["200 communigate PWD connection closed"]
    assert session.closed
    assert server.interpreter.calls == []


def test_lf_only_line_endings_are_accepted(server):
    """
    Both client libraries end commands with a bare LF.
    """
    session = Session(server)
    session.send("USER postmaster@example.com", "PASS right secret", "NOOP", ending=b"\n")
    assert session.take() == ["300 please send the PASS", "200 login OK", "200 OK"]


# ---------------------------------------------------------------------------
# Bad input


def test_a_line_over_the_limit_closes_without_waiting_for_its_end():
    """
    A client streaming an endless line must be cut off once it passes the
    limit, not buffered until it sends a newline.
    """
    server = make_server(max_line_length=1024)
    session = Session(server)
    session.login()
    session.protocol.dataReceived(b"x" * 1000)
    assert not session.closed
    session.protocol.dataReceived(b"x" * 1000)
    assert session.closed
    for _ in range(100):
        session.protocol.dataReceived(b"y" * 65536 + b"\n")
    assert server.interpreter.calls == []
    assert session.take() == []
    assert server.metric("communigate_cli_lines_rejected_total", reason="too_long") == 1


def test_the_limit_counts_the_line_without_its_ending():
    """
    A client should not lose a byte of its allowance for ending lines in
    CRLF rather than LF.
    """
    server = make_server(max_line_length=64)
    session = Session(server)
    session.login()
    session.send("NOOP " + "a" * 59)
    session.send("NOOP " + "b" * 59, ending=b"\n")
    assert session.take() == ["200 OK", "200 OK"]
    session.send("NOOP " + "c" * 60, ending=b"\n")
    assert session.closed
    assert session.take() == []


@pytest.mark.parametrize("line", [b"NOOP \xff\xfe\r\n", b"NO\x00OP\r\n"])
def test_a_line_that_is_not_utf8_text_is_refused_and_closes(server, line):
    session = Session(server)
    session.login()
    session.protocol.dataReceived(line + b"NOOP\r\n")
    assert session.take() == ["501 line is not valid UTF-8 text"]
    assert session.closed
    assert server.interpreter.calls == []
    assert server.metric("communigate_cli_lines_rejected_total", reason="not_text") == 1


def test_a_bad_line_is_answered_after_the_replies_owed_before_it(server):
    session = Session(server)
    session.login()
    session.protocol.dataReceived(b"SLOW\r\n\xff\r\n")
    assert session.take() == []
    server.interpreter.slow[0].callback(CommandResult())
    assert session.take() == ["200 OK", "501 line is not valid UTF-8 text"]
    assert session.closed


# ---------------------------------------------------------------------------
# Idle time-out


def test_idle_connection_is_closed_after_the_timeout():
    server = make_server(idle_timeout=600)
    session = Session(server)
    session.login()
    server.clock.advance(599)
    assert not session.closed
    session.send("NOOP")
    server.clock.advance(599)
    assert not session.closed
    server.clock.advance(1)
    assert session.closed
    assert server.metric("communigate_cli_idle_timeouts_total") == 1


def test_idle_timeout_can_be_disabled():
    server = make_server(idle_timeout=None)
    session = Session(server)
    server.clock.advance(10**6)
    assert not session.closed


# ---------------------------------------------------------------------------
# Login throttling


def fail_login(session, times):
    for _ in range(times):
        session.send("USER postmaster@example.com", "PASS wrong")
        assert session.take() == ["300 please send the PASS", "515 incorrect user name or password"]


def test_sixth_wrong_password_is_answered_only_after_a_delay(server):
    session = Session(server)
    fail_login(session, 5)
    session.send("USER postmaster@example.com", "PASS wrong", "NOOP")
    assert session.take() == ["300 please send the PASS"]
    server.clock.advance(1.9)
    assert session.take() == []
    server.clock.advance(0.1)
    assert session.take() == ["515 incorrect user name or password", "500 log in first with USER and PASS"]


def test_throttle_delay_doubles_and_spans_connections(server):
    """
    Reconnecting does not reset the count: the table is per address and
    shared by the factory's connections.
    """
    fail_login(Session(server), 5)
    session = Session(server)
    session.send("USER postmaster@example.com", "PASS wrong")
    server.clock.advance(2)
    assert session.take()[-1] == "515 incorrect user name or password"
    session.send("USER postmaster@example.com", "PASS wrong")
    server.clock.advance(3.9)
    assert session.take() == ["300 please send the PASS"]
    server.clock.advance(0.1)
    assert session.take() == ["515 incorrect user name or password"]


def test_throttle_does_not_slow_other_addresses(server):
    fail_login(Session(server, "198.51.100.7"), 5)
    session = Session(server, "203.0.113.9")
    session.login()


def test_correct_password_after_failures_is_delayed_then_resets_the_count(server):
    session = Session(server)
    fail_login(session, 5)
    session.send("USER postmaster@example.com", "PASS right secret")
    assert session.take() == ["300 please send the PASS"]
    server.clock.advance(2)
    assert session.take() == ["200 login OK"]
    # The next failure from this address is answered at once again.
    fail_login(Session(server), 1)


def test_disconnect_during_a_throttle_delay_never_checks_the_password(server):
    session = Session(server)
    fail_login(session, 5)
    checked = len(server.checker.checked)
    session.send("USER postmaster@example.com", "PASS right secret")
    session.hang_up()
    server.clock.advance(60)
    assert len(server.checker.checked) == checked
    assert server.realm.accounts == []


def test_throttle_delay_is_capped():
    throttle = LoginThrottle(Clock(), free_failures=5, base_delay=2, max_delay=60)
    delays = []
    for _ in range(12):
        delays.append(throttle.delay_for("192.0.2.1"))
        throttle.record_failure("192.0.2.1")
    assert delays == [0, 0, 0, 0, 0, 2, 4, 8, 16, 32, 60, 60]


def test_throttle_entries_expire():
    clock = Clock()
    throttle = LoginThrottle(clock, expiry=900)
    for _ in range(6):
        throttle.record_failure("192.0.2.1")
    clock.advance(899)
    assert throttle.delay_for("192.0.2.1") == 4
    clock.advance(1)
    assert throttle.delay_for("192.0.2.1") == 0
    assert len(throttle) == 0


def test_throttle_table_is_capped_dropping_the_oldest():
    clock = Clock()
    throttle = LoginThrottle(clock, free_failures=1, max_entries=3)
    for index in range(5):
        clock.advance(1)
        throttle.record_failure(f"192.0.2.{index}")
    assert len(throttle) == 3
    assert throttle.delay_for("192.0.2.0") == 0
    assert throttle.delay_for("192.0.2.4") == 2


def test_throttle_success_forgets_the_address():
    throttle = LoginThrottle(Clock(), free_failures=1)
    throttle.record_failure("192.0.2.1")
    throttle.record_failure("192.0.2.1")
    throttle.record_success("192.0.2.1")
    assert throttle.delay_for("192.0.2.1") == 0
    assert len(throttle) == 0


@pytest.mark.parametrize(
    "options",
    [{"free_failures": 0}, {"base_delay": 0}, {"base_delay": 90}, {"expiry": 0}, {"max_entries": 0}],
)
def test_throttle_refuses_nonsense_settings(options):
    with pytest.raises(ValueError):
        LoginThrottle(Clock(), **options)


# ---------------------------------------------------------------------------
# Session end and metrics


def test_logout_is_called_once_when_the_connection_is_lost(server):
    """
    The avatar may hold bindings (sessions, presence) that must be released
    when the CLI client hangs up.
    """
    session = Session(server)
    session.login()
    session.hang_up()
    (account,) = server.realm.accounts
    assert account.logouts == 1


def test_hang_up_before_login_calls_no_logout(server):
    session = Session(server)
    session.send("USER postmaster@example.com")
    session.hang_up()
    assert server.realm.accounts == []


def test_connection_and_command_metrics_are_counted(server):
    first = Session(server)
    Session(server)
    assert server.metric("communigate_cli_connections_total") == 2
    assert server.metric("communigate_cli_open_connections") == 2
    first.login()
    first.send("NOOP", "ListDomains", "DeleteAccount x")
    assert server.metric("communigate_cli_commands_total", outcome="ok") == 2
    assert server.metric("communigate_cli_commands_total", outcome="error") == 1
    first.hang_up()
    assert server.metric("communigate_cli_open_connections") == 1


def test_factory_refuses_nonsense_settings():
    with pytest.raises(ValueError, match="max_line_length"):
        make_server(max_line_length=0)
    with pytest.raises(ValueError, match="idle_timeout"):
        make_server(idle_timeout=0)

"""
Tests for the CLI command language over the directory, run through the
interpreter exactly as the CLI/PWD protocol, the admin tool and the web
admin use it: the core from build_core over a MemoryStore, the first-start
objects, and command lines from the main domain's postmaster.
"""

import pytest
from twisted.internet.task import Clock
from twisted.logger import globalLogPublisher
from zope.interface.verify import verifyObject

from communigate.cli.context import CommandContext
from communigate.cli.directory_commands import DirectoryCommands
from communigate.cli.interpreter import BuiltinCommands
from communigate.cli.result import CommandResult
from communigate.config import Config
from communigate.first_start import create_initial_objects
from communigate.interfaces import ICommandInterpreter
from communigate.server import build_core
from communigate.storage import MemoryStore

POSTMASTER = CommandContext.for_account("postmaster@example.com")
KINDS = ("server", "domain", "domain-alias", "name", "account", "forwarder", "group", "telnum")


@pytest.fixture
def core():
    built = build_core(Config(data_dir="", domain="example.com"), MemoryStore(), Clock())
    create_initial_objects(built.directory, "example.com")
    return built


def run(core, line, context=POSTMASTER) -> CommandResult:
    return core.interpreter.run(context, line)


def ok(core, line, context=POSTMASTER):
    """
    Run a line that must succeed; its rendered data, or None.
    """
    result = run(core, line, context)
    assert result.ok, f"{line!r} failed: {result.error}"
    return result.render() if result.has_data else None


def refused(core, line, context=POSTMASTER) -> str:
    """
    Run a line that must fail; its error text.
    """
    result = run(core, line, context)
    assert not result.ok, f"{line!r} succeeded with {result!r}"
    assert not result.has_data
    return result.error


def snapshot(core):
    return {kind: core.store.scan(kind) for kind in KINDS}


# -- one success and one error for every command -----------------------------------

# command: (setup lines, the line, its rendered data or None, [(check line, rendered)])
SUCCESSES = {
    "CREATEACCOUNT": (
        [],
        'CREATEACCOUNT alice {Password = "pw"; RealName = "Alice A";}',
        None,
        [("GETACCOUNTSETTINGS alice", '{RealName = "Alice A";}'),
         ("VERIFYACCOUNTPASSWORD alice PASSWORD pw", None)],
    ),
    "CREATEDOMAIN": (
        [],
        "CREATEDOMAIN example.org {SignalToUnknown = Rerouted;}",
        None,
        [("LISTDOMAINS", "(example.com, example.org)"),
         ("GETDOMAINSETTINGS example.org", "{SignalToUnknown = Rerouted;}")],
    ),
    "CREATEFORWARDER": (
        [],
        "CREATEFORWARDER sales TO boss@elsewhere.example",
        None,
        [("GETFORWARDER sales", "boss@elsewhere.example")],
    ),
    "CREATEGROUP": (
        [],
        "CREATEGROUP team {Members = (alice, bob@example.org);}",
        None,
        [("GETGROUP team", "{Members = (alice, bob@example.org);}")],
    ),
    "DELETEACCOUNT": (
        ["CREATEACCOUNT alice", "SETACCOUNTTELNUMS alice (100)"],
        "DELETEACCOUNT alice@example.com",
        None,
        [("LISTACCOUNTS", "{postmaster = MultiMailbox;}"), ("LISTSERVERTELNUMS", "{}")],
    ),
    "DELETEDOMAIN": (
        ["CREATEDOMAIN example.org", "CREATEACCOUNT bob@example.org"],
        "DELETEDOMAIN example.org FORCE",
        None,
        [("LISTDOMAINS", "(example.com)")],
    ),
    "DELETEFORWARDER": (
        ["CREATEFORWARDER sales TO x@y.example"],
        "DELETEFORWARDER sales",
        None,
        [("LISTFORWARDERS", "()")],
    ),
    "DELETEGROUP": (
        ["CREATEGROUP team"],
        "DELETEGROUP team@example.com",
        None,
        [("LISTGROUPS", "()")],
    ),
    "GETACCOUNTALIASES": (
        ["CREATEACCOUNT alice", "SETACCOUNTALIASES alice (ally, al)"],
        "GETACCOUNTALIASES alice",
        "(al, ally)",
        [],
    ),
    "GETACCOUNTDEFAULTS": (
        ["UPDATEACCOUNTDEFAULTS {RealName = Staff;}"],
        "GETACCOUNTDEFAULTS example.com",
        "{RealName = Staff;}",
        [("GETACCOUNTDEFAULTS", "{RealName = Staff;}")],
    ),
    "GETACCOUNTEFFECTIVESETTINGS": (
        ["CREATEACCOUNT alice {RealName = A;}"],
        "GETACCOUNTEFFECTIVESETTINGS alice",
        "{AccessModes = All; DialogInfo = NO; MaxRosterItems = 500; MaxSignalContacts = 10; MediaRelay = NO;"
        " RSIPAllowed = NO; RealName = A; ServerAdministrator = NO;}",
        [],
    ),
    "GETACCOUNTSETTINGS": (
        ["CREATEACCOUNT alice {RealName = A; X = (1, 2);}"],
        "GETACCOUNTSETTINGS alice",
        "{RealName = A; X = (1, 2);}",
        [],
    ),
    "GETACCOUNTTELNUMS": (
        ["CREATEACCOUNT alice", 'SETACCOUNTTELNUMS alice ("+15551234", 100)'],
        "GETACCOUNTTELNUMS alice",
        '("+15551234", 100)',
        [],
    ),
    "GETDOMAINALIASES": (
        ["SETDOMAINALIASES example.com (mail.example.com)"],
        "GETDOMAINALIASES",
        "(mail.example.com)",
        [("GETDOMAINALIASES example.com", "(mail.example.com)")],
    ),
    "GETDOMAINDEFAULTS": (
        ["UPDATEDOMAINDEFAULTS {SignalToUnknown = Rerouted;}"],
        "GETDOMAINDEFAULTS",
        "{SignalToUnknown = Rerouted;}",
        [],
    ),
    "GETDOMAINEFFECTIVESETTINGS": (
        ["UPDATEDOMAINSETTINGS {SignalRerouteAddress = pbx;}"],
        "GETDOMAINEFFECTIVESETTINGS example.com",
        "{AccessToUnknown = Rejected; DomainAccessModes = All;"
        ' SIPDigestAlgorithms = ("SHA-256", MD5); SignalRerouteAddress = pbx; SignalToUnknown = Rejected;}',
        [],
    ),
    "GETDOMAINSETTINGS": (
        ["UPDATEDOMAINSETTINGS example.com {SignalToUnknown = Rerouted;}"],
        "GETDOMAINSETTINGS",
        "{SignalToUnknown = Rerouted;}",
        [],
    ),
    "GETFORWARDER": (
        ["CREATEFORWARDER sales TO boss@elsewhere.example"],
        "GETFORWARDER sales@example.com",
        "boss@elsewhere.example",
        [],
    ),
    "GETGROUP": (
        ["CREATEGROUP team {Members = (a); RealName = \"The Team\";}"],
        "GETGROUP team",
        '{Members = (a); RealName = "The Team";}',
        [],
    ),
    "GETSERVERACCOUNTDEFAULTS": (
        ["UPDATESERVERACCOUNTDEFAULTS {MaxSignalContacts = 5;}"],
        "GETSERVERACCOUNTDEFAULTS",
        "{MaxSignalContacts = 5;}",
        [],
    ),
    "LISTACCOUNTS": (
        ["CREATEACCOUNT alice AGrade"],
        "LISTACCOUNTS example.com",
        "{alice = AGrade; postmaster = MultiMailbox;}",
        [],
    ),
    "LISTCLICOMMANDS": ([], "LISTCLICOMMANDS", None, []),  # data checked below
    "LISTDOMAINS": ([], "LISTDOMAINS", "(example.com)", []),
    "LISTDOMAINTELNUMS": (
        [
            "CREATEDOMAIN example.org",
            "CREATEACCOUNT alice",
            "CREATEACCOUNT bob@example.org",
            "SETACCOUNTTELNUMS alice (100)",
            "SETACCOUNTTELNUMS bob@example.org (200)",
        ],
        "LISTDOMAINTELNUMS example.org",
        "{200 = bob@example.org;}",
        [],
    ),
    "LISTFORWARDERS": (
        ["CREATEFORWARDER b TO x@y.example", "CREATEFORWARDER a TO x@y.example"],
        "LISTFORWARDERS",
        "(a, b)",
        [],
    ),
    "LISTGROUPS": (["CREATEGROUP team"], "LISTGROUPS example.com", "(team)", []),
    "LISTSERVERTELNUMS": (
        ["CREATEACCOUNT alice", "SETACCOUNTTELNUMS alice (100, 200)"],
        "LISTSERVERTELNUMS",
        "{100 = alice@example.com; 200 = alice@example.com;}",
        [],
    ),
    "MAINDOMAINNAME": ([], "MAINDOMAINNAME", "example.com", []),
    "NOOP": ([], "NOOP", None, []),
    "RENAMEACCOUNT": (
        ["CREATEACCOUNT alice"],
        "RENAMEACCOUNT alice INTO alicia",
        None,
        [("LISTACCOUNTS", "{alicia = MultiMailbox; postmaster = MultiMailbox;}")],
    ),
    "SETACCOUNTALIASES": (
        ["CREATEACCOUNT alice"],
        "SETACCOUNTALIASES alice (al)",
        None,
        [("GETACCOUNTSETTINGS al", "{}"), ("GETACCOUNTALIASES alice", "(al)")],
    ),
    "SETACCOUNTDEFAULTS": (
        ["UPDATEACCOUNTDEFAULTS {A = 1;}"],
        "SETACCOUNTDEFAULTS example.com {B = 2;}",
        None,
        [("GETACCOUNTDEFAULTS", "{B = 2;}")],
    ),
    "SETACCOUNTPASSWORD": (
        ["CREATEACCOUNT alice {Password = old;}"],
        'SETACCOUNTPASSWORD alice PASSWORD "new one"',
        None,
        [('VERIFYACCOUNTPASSWORD alice PASSWORD "new one"', None)],
    ),
    "SETACCOUNTSETTINGS": (
        ["CREATEACCOUNT alice {A = 1; B = 2;}"],
        "SETACCOUNTSETTINGS alice {C = 3;}",
        None,
        [("GETACCOUNTSETTINGS alice", "{C = 3;}")],
    ),
    "SETACCOUNTTELNUMS": (
        ["CREATEACCOUNT alice"],
        'SETACCOUNTTELNUMS alice ("+15551234")',
        None,
        [("LISTSERVERTELNUMS", '{"+15551234" = alice@example.com;}')],
    ),
    "SETDOMAINALIASES": (
        ["CREATEDOMAIN example.org"],
        "SETDOMAINALIASES example.org (example.net, example.info)",
        None,
        [("GETDOMAINALIASES example.org", "(example.info, example.net)")],
    ),
    "SETDOMAINDEFAULTS": (
        ["UPDATEDOMAINDEFAULTS {A = 1;}"],
        "SETDOMAINDEFAULTS {B = 2;}",
        None,
        [("GETDOMAINDEFAULTS", "{B = 2;}")],
    ),
    "SETDOMAINSETTINGS": (
        ["UPDATEDOMAINSETTINGS {A = 1;}"],
        "SETDOMAINSETTINGS example.com {B = 2;}",
        None,
        [("GETDOMAINSETTINGS", "{B = 2;}")],
    ),
    "SETGROUP": (
        ["CREATEGROUP team {Members = (a);}"],
        "SETGROUP team {Members = (b, c);}",
        None,
        [("GETGROUP team", "{Members = (b, c);}")],
    ),
    "SETSERVERACCOUNTDEFAULTS": (
        ["UPDATESERVERACCOUNTDEFAULTS {A = 1;}"],
        "SETSERVERACCOUNTDEFAULTS {B = 2;}",
        None,
        [("GETSERVERACCOUNTDEFAULTS", "{B = 2;}")],
    ),
    "UPDATEACCOUNTDEFAULTS": (
        ["UPDATEACCOUNTDEFAULTS {A = 1; B = 2;}"],
        "UPDATEACCOUNTDEFAULTS example.com {A = default; C = 3;}",
        None,
        [("GETACCOUNTDEFAULTS", "{B = 2; C = 3;}")],
    ),
    "UPDATEACCOUNTSETTINGS": (
        ["CREATEACCOUNT alice {A = 1; B = 2;}"],
        "UPDATEACCOUNTSETTINGS alice {B = default; C = 3;}",
        None,
        [("GETACCOUNTSETTINGS alice", "{A = 1; C = 3;}")],
    ),
    "UPDATEDOMAINDEFAULTS": (
        ["UPDATEDOMAINDEFAULTS {A = 1;}"],
        "UPDATEDOMAINDEFAULTS {A = default; B = 2;}",
        None,
        [("GETDOMAINDEFAULTS", "{B = 2;}")],
    ),
    "UPDATEDOMAINSETTINGS": (
        ["UPDATEDOMAINSETTINGS {A = 1;}"],
        "UPDATEDOMAINSETTINGS example.com {B = 2;}",
        None,
        [("GETDOMAINSETTINGS", "{A = 1; B = 2;}")],
    ),
    "UPDATESERVERACCOUNTDEFAULTS": (
        ["UPDATESERVERACCOUNTDEFAULTS {A = 1;}"],
        "UPDATESERVERACCOUNTDEFAULTS {A = default; B = 2;}",
        None,
        [("GETSERVERACCOUNTDEFAULTS", "{B = 2;}")],
    ),
    "VERIFYACCOUNTPASSWORD": (
        ["CREATEACCOUNT alice {Password = secret;}", "SETACCOUNTALIASES alice (al)"],
        "VERIFYACCOUNTPASSWORD al PASSWORD secret",
        None,
        [],
    ),
}

# (id, setup lines, the line, a substring of the error)
ERRORS = [
    ("CREATEACCOUNT", [], "CREATEACCOUNT postmaster", "postmaster@example.com is already an account"),
    ("CREATEACCOUNT", ["CREATEACCOUNT alice", "SETACCOUNTALIASES alice (al)"],
     "CREATEACCOUNT al", "al@example.com is already an account alias"),
    ("CREATEACCOUNT", [], "CREATEACCOUNT", "missing account name"),
    ("CREATEACCOUNT", [], 'CREATEACCOUNT "a b"', "'a b' is not a valid object name"),
    ("CREATEACCOUNT", [], "CREATEACCOUNT alice@nowhere.example", "unknown domain 'nowhere.example'"),
    ("CREATEACCOUNT", [], "CREATEACCOUNT alice Mailbox", "unknown account type Mailbox; use one of"),
    ("CREATEACCOUNT", [], "CREATEACCOUNT alice {Password = x",
     "bad account settings: expected ';' after the value of key \"Password\""),
    ("CREATEACCOUNT", [], "CREATEACCOUNT alice {a = 1; a = 2;}", 'duplicate key "a"'),
    ("CREATEACCOUNT", [], "CREATEACCOUNT alice {Password = \"\";}", "the password must be a non-empty string"),
    ("CREATEACCOUNT", [], "CREATEACCOUNT alice {} {}", "unexpected text '{}'"),
    ("CREATEACCOUNT", [], "CREATEACCOUNT {a = b;}", "account name must be a string"),
    ("CREATEACCOUNT", [], "CREATEACCOUNT alice {\"\" = 1;}", "account settings has an empty key"),
    ("CREATEDOMAIN", [], "CREATEDOMAIN EXAMPLE.COM", "domain 'example.com' already exists"),
    ("CREATEDOMAIN", [], "CREATEDOMAIN bad_name.example", "'bad_name.example' is not a valid domain name"),
    ("CREATEDOMAIN", [], "CREATEDOMAIN x.example (a)", "unexpected text '(a)'"),
    ("CREATEDOMAIN", ["SETDOMAINALIASES example.com (alias.example)"],
     "CREATEDOMAIN alias.example", "already an alias of domain 'example.com'"),
    ("CREATEFORWARDER", [], "CREATEFORWARDER sales boss@x.example", "expected the keyword TO"),
    ("CREATEFORWARDER", [], "CREATEFORWARDER postmaster TO x@y.example",
     "postmaster@example.com is already an account"),
    ("CREATEFORWARDER", [], "CREATEFORWARDER sales TO", "missing forwarding address"),
    ("CREATEGROUP", [], "CREATEGROUP team {Members = alice;}", "Members must be an array of strings"),
    ("CREATEGROUP", [], "CREATEGROUP postmaster", "postmaster@example.com is already an account"),
    ("DELETEACCOUNT", [], "DELETEACCOUNT ghost", "unknown account ghost@example.com"),
    ("DELETEACCOUNT", [], "DELETEACCOUNT postmaster", "cannot delete the account it is using"),
    ("DELETEDOMAIN", [], "DELETEDOMAIN example.com", "'example.com' is the main domain"),
    ("DELETEDOMAIN", ["CREATEDOMAIN example.org", "CREATEACCOUNT a@example.org"],
     "DELETEDOMAIN example.org", "still has 1 objects; delete them first or use FORCE"),
    ("DELETEDOMAIN", [], "DELETEDOMAIN nowhere.example", "unknown domain 'nowhere.example'"),
    ("DELETEDOMAIN", ["CREATEDOMAIN example.org"], "DELETEDOMAIN example.org NOW", "unexpected text 'NOW'"),
    ("DELETEFORWARDER", [], "DELETEFORWARDER postmaster", "unknown forwarder postmaster@example.com"),
    ("DELETEGROUP", [], "DELETEGROUP team", "unknown group team@example.com"),
    ("GETACCOUNTALIASES", [], "GETACCOUNTALIASES ghost", "unknown account ghost@example.com"),
    ("GETACCOUNTDEFAULTS", [], "GETACCOUNTDEFAULTS nowhere.example", "unknown domain 'nowhere.example'"),
    ("GETACCOUNTEFFECTIVESETTINGS", [], "GETACCOUNTEFFECTIVESETTINGS", "missing account name"),
    ("GETACCOUNTSETTINGS", [], "GETACCOUNTSETTINGS postmaster extra", "unexpected text 'extra'"),
    ("GETACCOUNTTELNUMS", [], "GETACCOUNTTELNUMS ghost@example.com", "unknown account ghost@example.com"),
    ("GETDOMAINALIASES", [], "GETDOMAINALIASES nowhere.example", "unknown domain 'nowhere.example'"),
    ("GETDOMAINDEFAULTS", [], "GETDOMAINDEFAULTS example.com", "unexpected text 'example.com'"),
    ("GETDOMAINEFFECTIVESETTINGS", [], "GETDOMAINEFFECTIVESETTINGS nowhere.example",
     "unknown domain 'nowhere.example'"),
    ("GETDOMAINSETTINGS", [], "GETDOMAINSETTINGS -bad-", "'-bad-' is not a valid domain name"),
    ("GETFORWARDER", [], "GETFORWARDER postmaster", "unknown forwarder postmaster@example.com"),
    ("GETGROUP", [], "GETGROUP postmaster", "unknown group postmaster@example.com"),
    ("GETSERVERACCOUNTDEFAULTS", [], "GETSERVERACCOUNTDEFAULTS x", "unexpected text 'x'"),
    ("LISTACCOUNTS", [], "LISTACCOUNTS nowhere.example", "unknown domain 'nowhere.example'"),
    ("LISTCLICOMMANDS", [], "LISTCLICOMMANDS ALL", "unexpected text 'ALL'"),
    ("LISTDOMAINS", [], "LISTDOMAINS extra", "unexpected text 'extra'"),
    ("LISTDOMAINTELNUMS", [], "LISTDOMAINTELNUMS", "missing domain name"),
    ("LISTDOMAINTELNUMS", [], "LISTDOMAINTELNUMS nowhere.example 10", "unknown domain 'nowhere.example'"),
    ("LISTFORWARDERS", [], "LISTFORWARDERS nowhere.example", "unknown domain 'nowhere.example'"),
    ("LISTGROUPS", [], "LISTGROUPS nowhere.example", "unknown domain 'nowhere.example'"),
    ("LISTSERVERTELNUMS", [], "LISTSERVERTELNUMS many", "limit must be a number"),
    ("LISTSERVERTELNUMS", [], "LISTSERVERTELNUMS #-1", "limit must be at least 0, not -1"),
    ("LISTSERVERTELNUMS", [], "LISTSERVERTELNUMS 10 FILTER", "missing filter"),
    ("LISTSERVERTELNUMS", [], "LISTSERVERTELNUMS 10 20", "unexpected text '20'"),
    ("MAINDOMAINNAME", [], "MAINDOMAINNAME example.com", "unexpected text 'example.com'"),
    ("NOOP", [], "NOOP now", "unexpected text 'now'"),
    ("RENAMEACCOUNT", ["CREATEACCOUNT alice"], "RENAMEACCOUNT alice alicia", "expected the keyword INTO"),
    ("RENAMEACCOUNT", ["CREATEACCOUNT alice"], "RENAMEACCOUNT alice INTO postmaster",
     "postmaster@example.com is already an account"),
    ("RENAMEACCOUNT", [], "RENAMEACCOUNT ghost INTO spirit", "unknown account ghost@example.com"),
    ("SETACCOUNTALIASES", ["CREATEACCOUNT alice"], "SETACCOUNTALIASES alice (al, postmaster)",
     "postmaster@example.com is already an account"),
    ("SETACCOUNTALIASES", ["CREATEACCOUNT alice"], "SETACCOUNTALIASES alice al",
     "aliases must be an array, like (a, b)"),
    ("SETACCOUNTALIASES", ["CREATEACCOUNT alice"], "SETACCOUNTALIASES alice (al, (x))",
     "aliases must be an array of strings"),
    ("SETACCOUNTDEFAULTS", [], "SETACCOUNTDEFAULTS example.com (A)",
     "account defaults must be a dictionary, like {Key = value;}"),
    ("SETACCOUNTPASSWORD", ["CREATEACCOUNT alice"], "SETACCOUNTPASSWORD alice secret",
     "expected the keyword PASSWORD"),
    ("SETACCOUNTPASSWORD", ["CREATEACCOUNT alice"], 'SETACCOUNTPASSWORD alice PASSWORD ""',
     "the password must be a non-empty string"),
    ("SETACCOUNTPASSWORD", [], "SETACCOUNTPASSWORD ghost PASSWORD x", "unknown account ghost@example.com"),
    ("SETACCOUNTSETTINGS", ["CREATEACCOUNT alice"], "SETACCOUNTSETTINGS alice", "missing account settings"),
    ("SETACCOUNTTELNUMS", ["CREATEACCOUNT alice", "CREATEACCOUNT bob", "SETACCOUNTTELNUMS alice (100)"],
     "SETACCOUNTTELNUMS bob (200, 100)", "telnum 100 already belongs to alice@example.com"),
    ("SETACCOUNTTELNUMS", ["CREATEACCOUNT alice"], "SETACCOUNTTELNUMS alice (12ab)",
     "'12ab' is not a telephone number"),
    ("SETDOMAINALIASES", ["CREATEDOMAIN example.org"], "SETDOMAINALIASES example.com (example.org)",
     "'example.org' is a domain; it cannot be an alias"),
    ("SETDOMAINALIASES", ["CREATEDOMAIN example.org", "SETDOMAINALIASES example.org (taken.example)"],
     "SETDOMAINALIASES example.com (taken.example)",
     "'taken.example' is already an alias of domain 'example.org'"),
    ("SETDOMAINALIASES", [], "SETDOMAINALIASES (x.example)", "domain name must be a string"),
    ("SETDOMAINDEFAULTS", [], "SETDOMAINDEFAULTS {A = (1, 2;}", "bad domain defaults: expected ',' or ')'"),
    ("SETDOMAINSETTINGS", [], "SETDOMAINSETTINGS nowhere.example {}", "unknown domain 'nowhere.example'"),
    ("SETGROUP", [], "SETGROUP team {}", "unknown group team@example.com"),
    ("SETSERVERACCOUNTDEFAULTS", [], 'SETSERVERACCOUNTDEFAULTS {"" = 1;}', "has an empty key"),
    ("UPDATEACCOUNTDEFAULTS", [], "UPDATEACCOUNTDEFAULTS {A = 1", "bad account defaults: expected ';'"),
    ("UPDATEACCOUNTSETTINGS", [], "UPDATEACCOUNTSETTINGS ghost {A = 1;}", "unknown account ghost@example.com"),
    ("UPDATEDOMAINDEFAULTS", [], "UPDATEDOMAINDEFAULTS A", "domain defaults must be a dictionary"),
    ("UPDATEDOMAINSETTINGS", [], "UPDATEDOMAINSETTINGS example.com {A = 1;} more",
     "unexpected text 'more'"),
    ("UPDATESERVERACCOUNTDEFAULTS", [], "UPDATESERVERACCOUNTDEFAULTS", "missing account defaults"),
    ("VERIFYACCOUNTPASSWORD", ["CREATEACCOUNT alice {Password = secret;}"],
     "VERIFYACCOUNTPASSWORD alice PASSWORD Secret", "incorrect password"),
    ("VERIFYACCOUNTPASSWORD", [], "VERIFYACCOUNTPASSWORD ghost PASSWORD x", "unknown account ghost@example.com"),
]


def test_every_directory_command_has_a_success_and_an_error_test(core):
    listed = {
        name
        for name in core.interpreter.command_names()
        if hasattr(DirectoryCommands, f"command_{name}") or hasattr(BuiltinCommands, f"command_{name}")
    }
    assert set(SUCCESSES) == listed
    assert {command for command, *_ in ERRORS} == listed


@pytest.mark.parametrize("command", sorted(SUCCESSES))
def test_command_succeeds(core, command):
    setup, line, expected, checks = SUCCESSES[command]
    for earlier in setup:
        ok(core, earlier)
    rendered = ok(core, line)
    if command != "LISTCLICOMMANDS":
        assert rendered == expected
    for check, check_expected in checks:
        assert ok(core, check) == check_expected


@pytest.mark.parametrize(
    "setup, line, message",
    [error[1:] for error in ERRORS],
    ids=[f"{error[0]}-{error[2]}" for error in ERRORS],
)
def test_command_error_is_specific_and_changes_nothing(core, setup, line, message):
    for earlier in setup:
        ok(core, earlier)
    before = snapshot(core)
    assert message in refused(core, line)
    assert snapshot(core) == before


def test_listclicommands_lists_every_command_sorted(core):
    result = run(core, "LISTCLICOMMANDS")
    assert result.data == core.interpreter.command_names()
    assert result.data == sorted(result.data)
    assert {"CREATEACCOUNT", "LISTCLICOMMANDS", "VERIFYACCOUNTPASSWORD"} <= set(result.data)


def test_every_command_has_a_usage_line_naming_it(core):
    for name in core.interpreter.command_names():
        assert core.interpreter.usage(name).split()[0] == name


def test_interpreter_provides_its_interface(core):
    assert verifyObject(ICommandInterpreter, core.interpreter)


# -- the command language ----------------------------------------------------------


def test_unknown_command_is_named_in_the_error(core):
    assert refused(core, "FROBNICATE alice") == (
        "unknown command 'FROBNICATE'; LISTCLICOMMANDS lists the commands"
    )


@pytest.mark.parametrize("line", ["", "   ", "{a = b;}", "(x)"])
def test_line_without_a_command_name_is_refused(core, line):
    assert "a command line starts with a command name" in refused(core, line)


def test_command_names_and_keywords_are_case_insensitive(core):
    ok(core, "createaccount alice agrade {Password = pw;}")
    ok(core, "renameaccount alice into bob")
    ok(core, "CreateForwarder sales to bob")
    ok(core, "setaccountpassword bob password pw2")
    ok(core, "VerifyAccountPassword bob Password pw2")
    ok(core, "createdomain example.org")
    ok(core, "CREATEACCOUNT x@example.org")
    ok(core, "deletedomain example.org force")
    assert ok(core, "listaccounts") == "{bob = AGrade; postmaster = MultiMailbox;}"
    assert ok(core, "ListDomains") == "(example.com)"


def test_names_are_case_insensitive_and_kept_in_lower_case(core):
    ok(core, "CREATEACCOUNT Alice@EXAMPLE.com")
    assert ok(core, "GETACCOUNTSETTINGS ALICE") == "{}"
    assert ok(core, "LISTACCOUNTS") == "{alice = MultiMailbox; postmaster = MultiMailbox;}"


def test_star_means_the_callers_own_account(core):
    assert ok(core, "GETACCOUNTSETTINGS *") == "{}"
    ok(core, "UPDATEACCOUNTSETTINGS * {RealName = Boss;}")
    assert ok(core, "GETACCOUNTSETTINGS postmaster") == "{RealName = Boss;}"
    assert "RealName = Boss" in ok(core, "GETACCOUNTEFFECTIVESETTINGS *")
    assert "cannot delete the account it is using" in refused(core, "DELETEACCOUNT *")


def test_star_of_another_administrator_is_that_administrator(core):
    ok(core, "CREATEDOMAIN example.org")
    ok(core, "CREATEACCOUNT admin@example.org {ServerAdministrator = YES;}")
    admin = CommandContext.for_account("admin@example.org")
    ok(core, "UPDATEACCOUNTSETTINGS * {RealName = Org;}", admin)
    assert run(core, "GETACCOUNTSETTINGS admin@example.org").data == {
        "RealName": "Org",
        "ServerAdministrator": "YES",
    }


def test_star_is_not_an_account_name_to_create(core):
    assert "bad account name" in refused(core, "CREATEACCOUNT *")


def test_bare_names_are_in_the_callers_domain(core):
    ok(core, "CREATEDOMAIN example.org")
    ok(core, "CREATEACCOUNT admin@example.org {ServerAdministrator = YES;}")
    admin = CommandContext.for_account("admin@example.org")
    ok(core, "CREATEACCOUNT bob", admin)
    ok(core, "CREATEFORWARDER sales TO bob", admin)
    ok(core, "CREATEGROUP team", admin)
    assert ok(core, "LISTACCOUNTS", admin) == "{admin = MultiMailbox; bob = MultiMailbox;}"
    assert ok(core, "LISTACCOUNTS") == "{postmaster = MultiMailbox;}"
    assert ok(core, "LISTFORWARDERS example.org") == "(sales)"
    assert ok(core, "LISTGROUPS example.org") == "(team)"
    assert ok(core, "GETACCOUNTDEFAULTS", admin) == "{}"
    assert ok(core, "GETDOMAINSETTINGS", admin) == "{}"


def test_full_names_reach_other_domains(core):
    ok(core, "CREATEDOMAIN example.org")
    ok(core, "CREATEACCOUNT bob@example.org")
    assert ok(core, "LISTACCOUNTS example.org") == "{bob = MultiMailbox;}"


def test_no_space_form_of_cgpcli(core):
    ok(core, "CREATEGROUP sales{Members=(a,b);}")
    assert ok(core, "GETGROUP sales") == "{Members = (a, b);}"
    ok(core, 'CREATEACCOUNT alice{Password="x y";RealName=A;}')
    assert ok(core, "GETACCOUNTSETTINGS alice") == "{RealName = A;}"
    ok(core, "SETACCOUNTALIASES alice(al,ally)")
    assert ok(core, "GETACCOUNTALIASES alice") == "(al, ally)"


def test_quoted_arguments_with_spaces_and_escapes(core):
    ok(core, 'CREATEACCOUNT "alice@example.com" {RealName = "Alice \\"Al\\" A";}')
    assert ok(core, "GETACCOUNTSETTINGS alice") == '{RealName = "Alice \\"Al\\" A";}'


def test_setaccountpassword_accepts_to_as_keyword(core):
    ok(core, "CREATEACCOUNT alice")
    ok(core, "SETACCOUNTPASSWORD alice TO secret")
    ok(core, "VERIFYACCOUNTPASSWORD alice PASSWORD secret")


def test_verify_account_password_returns_a_deferred_firing_with_the_result(core):
    ok(core, "CREATEACCOUNT alice {Password = secret;}")
    results = []
    core.interpreter.execute(POSTMASTER, "VERIFYACCOUNTPASSWORD alice PASSWORD nope").addCallback(
        results.append
    )
    assert results == [CommandResult.failed("incorrect password")]


def test_renamed_account_still_verifies_its_password(core):
    ok(core, "CREATEACCOUNT alice {Password = secret;}")
    ok(core, "RENAMEACCOUNT alice INTO alicia")
    ok(core, "VERIFYACCOUNTPASSWORD alicia PASSWORD secret")
    # Verifying the plain password refreshed the SIP digest secrets.
    assert core.directory.password_secrets("alicia@example.com").digest_is_current(
        "alicia@example.com"
    )


def test_create_account_with_a_type_and_settings(core):
    ok(core, "CREATEACCOUNT alice TextMailbox {RealName = A;}")
    ok(core, "CREATEACCOUNT bob cgrade")
    assert ok(core, "LISTACCOUNTS") == (
        "{alice = TextMailbox; bob = CGrade; postmaster = MultiMailbox;}"
    )


def test_alias_collisions_through_the_cli(core):
    ok(core, "CREATEACCOUNT alice")
    ok(core, "CREATEACCOUNT bob")
    ok(core, "SETACCOUNTALIASES alice (al)")
    ok(core, "CREATEFORWARDER fwd TO x@y.example")
    assert refused(core, "SETACCOUNTALIASES bob (al)") == "al@example.com is already an account alias"
    assert refused(core, "SETACCOUNTALIASES bob (fwd)") == "fwd@example.com is already a forwarder"
    assert refused(core, "CREATEGROUP al") == "al@example.com is already an account alias"
    assert refused(core, "RENAMEACCOUNT bob INTO al") == "al@example.com is already an account alias"


def test_listservertelnums_with_limit_and_filter_adds_the_total(core):
    ok(core, "CREATEACCOUNT alice")
    ok(core, "CREATEACCOUNT bob")
    ok(core, 'SETACCOUNTTELNUMS alice ("+15551000", 5552000)')
    ok(core, "SETACCOUNTTELNUMS bob (5553000, 100)")
    assert ok(core, "LISTSERVERTELNUMS 2") == (
        '{"+15551000" = alice@example.com; 100 = bob@example.com; "" = #4;}'
    )
    assert ok(core, "LISTSERVERTELNUMS 1 FILTER 555") == (
        '{"+15551000" = alice@example.com; "" = #3;}'
    )
    assert ok(core, "LISTSERVERTELNUMS #10 filter 5553") == (
        '{5553000 = bob@example.com; "" = #1;}'
    )
    assert ok(core, "LISTSERVERTELNUMS FILTER 100") == (
        '{"+15551000" = alice@example.com; 100 = bob@example.com;}'
    )
    assert ok(core, "LISTSERVERTELNUMS 0") == '{"" = #4;}'


def test_listdomaintelnums_uses_the_same_limit_and_filter(core):
    ok(core, "CREATEACCOUNT alice")
    ok(core, "SETACCOUNTTELNUMS alice (100, 200, 300)")
    assert ok(core, "LISTDOMAINTELNUMS example.com 1 FILTER 0") == (
        '{100 = alice@example.com; "" = #3;}'
    )


def test_telnum_owned_by_another_account_is_refused(core):
    ok(core, "CREATEACCOUNT alice")
    ok(core, "CREATEACCOUNT bob")
    ok(core, "SETACCOUNTTELNUMS alice (100)")
    assert refused(core, "SETACCOUNTTELNUMS bob (100)") == (
        "telnum 100 already belongs to alice@example.com"
    )
    assert ok(core, "GETACCOUNTTELNUMS bob") == "()"


def test_acceptance_24_default_removes_the_explicit_value(core):
    ok(core, "UPDATEACCOUNTDEFAULTS example.com {X = domain;}")
    ok(core, "CREATEACCOUNT a {X = mine;}")
    assert "X = mine" in ok(core, "GETACCOUNTEFFECTIVESETTINGS a")
    ok(core, "UPDATEACCOUNTSETTINGS a {X=default;}")
    assert ok(core, "GETACCOUNTSETTINGS a") == "{}"
    assert "X = domain" in ok(core, "GETACCOUNTEFFECTIVESETTINGS a")


def test_inheritance_through_the_cli_levels(core):
    ok(core, "UPDATESERVERACCOUNTDEFAULTS {A = server; B = server; MaxSignalContacts = 3;}")
    ok(core, "UPDATEACCOUNTDEFAULTS {B = domain;}")
    ok(core, "CREATEACCOUNT a {C = mine;}")
    assert ok(core, "GETACCOUNTEFFECTIVESETTINGS a") == (
        "{A = server; AccessModes = All; B = domain; C = mine; DialogInfo = NO; MaxRosterItems = 500;"
        " MaxSignalContacts = 3; MediaRelay = NO;"
        ' RSIPAllowed = NO; RealName = ""; ServerAdministrator = NO;}'
    )
    ok(core, "UPDATEDOMAINDEFAULTS {SignalToUnknown = Rerouted;}")
    assert "SignalToUnknown = Rerouted" in ok(core, "GETDOMAINEFFECTIVESETTINGS")


def test_bad_data_format_text_is_reported_with_its_position(core):
    error = refused(core, "CREATEACCOUNT alice {RealName = \"unterminated;}")
    assert error.startswith("bad account settings: ")
    assert "offset" in error
    assert "bad domain aliases" in refused(core, "SETDOMAINALIASES example.com (a.example,")


# -- access control ----------------------------------------------------------------


def test_non_administrator_is_denied(core):
    ok(core, "CREATEACCOUNT alice")
    alice = CommandContext.for_account("alice@example.com")
    before = snapshot(core)
    assert refused(core, "CREATEACCOUNT mallory", alice) == (
        "access denied: alice@example.com is not a server administrator"
    )
    assert "access denied" in refused(core, "LISTACCOUNTS", alice)
    assert "access denied" in refused(core, "GETACCOUNTSETTINGS *", alice)
    assert snapshot(core) == before


def test_unknown_account_is_denied(core):
    ghost = CommandContext.for_account("ghost@example.com")
    assert "access denied: ghost@example.com" in refused(core, "LISTDOMAINS", ghost)


def test_postmaster_of_another_domain_is_not_an_administrator(core):
    ok(core, "CREATEDOMAIN example.org")
    ok(core, "CREATEACCOUNT postmaster@example.org")
    other = CommandContext.for_account("postmaster@example.org")
    assert "access denied" in refused(core, "LISTDOMAINS", other)


def test_server_administrator_setting_grants_access(core):
    ok(core, "CREATEACCOUNT alice {ServerAdministrator = YES;}")
    alice = CommandContext.for_account("alice@example.com")
    assert ok(core, "LISTDOMAINS", alice) == "(example.com)"
    ok(core, "UPDATEACCOUNTSETTINGS alice {ServerAdministrator = default;}")
    assert "access denied" in refused(core, "LISTDOMAINS", alice)


def test_typed_yes_flag_grants_access_too(core):
    ok(core, "CREATEACCOUNT alice {ServerAdministrator = #YES;}")
    assert ok(core, "LISTDOMAINS", CommandContext.for_account("alice@example.com")) == (
        "(example.com)"
    )


def test_server_administrator_can_be_inherited_from_domain_defaults(core):
    ok(core, "CREATEACCOUNT alice")
    ok(core, "UPDATEACCOUNTDEFAULTS {ServerAdministrator = YES;}")
    assert ok(core, "MAINDOMAINNAME", CommandContext.for_account("alice@example.com")) == (
        "example.com"
    )


def test_trusted_context_may_run_commands_without_an_account(core):
    tool = CommandContext(account="nobody@example.com", domain="example.com", trusted=True)
    ok(core, "CREATEACCOUNT alice", tool)
    assert ok(core, "LISTACCOUNTS", tool) == "{alice = MultiMailbox; postmaster = MultiMailbox;}"


def test_unknown_command_is_reported_before_access_is_checked(core):
    ok(core, "CREATEACCOUNT alice")
    alice = CommandContext.for_account("alice@example.com")
    assert refused(core, "NOSUCHTHING", alice).startswith("unknown command 'NOSUCHTHING'")


# -- failures, extension and metrics -----------------------------------------------


class ExplodingCommands:
    """
    A command set whose command has a bug.
    """

    def command_EXPLODE(self, context, arguments):
        """EXPLODE"""
        raise ZeroDivisionError("the bug")

    def command_ECHO(self, context, arguments):
        """ECHO value"""
        value = arguments.value("value")
        arguments.end()
        return value


def test_unexpected_exception_is_an_internal_error_and_logged(core):
    core.interpreter.add_commands(ExplodingCommands())
    events = []
    globalLogPublisher.addObserver(events.append)
    try:
        result = run(core, "EXPLODE")
    finally:
        globalLogPublisher.removeObserver(events.append)
    assert result.error == "internal error; the server log has the details"
    failures = [e for e in events if "log_failure" in e]
    assert len(failures) == 1
    assert failures[0]["log_failure"].check(ZeroDivisionError)
    assert failures[0]["line"] == "EXPLODE"
    # The server goes on.
    assert ok(core, "LISTDOMAINS") == "(example.com)"


def test_added_command_set_is_listed_and_runs(core):
    core.interpreter.add_commands(ExplodingCommands())
    assert {"ECHO", "EXPLODE"} <= set(run(core, "LISTCLICOMMANDS").data)
    assert ok(core, "echo {a = (1, #2);}") == "{a = (1, #2);}"


def test_adding_a_command_name_twice_is_refused(core):
    class Duplicate:
        def command_listdomains(self, context, arguments):
            """LISTDOMAINS"""

    with pytest.raises(ValueError, match="CLI command LISTDOMAINS is defined twice"):
        core.interpreter.add_commands(Duplicate())


def test_commands_are_counted_by_name_and_outcome(core):
    ok(core, "LISTDOMAINS")
    ok(core, "listdomains")
    refused(core, "LISTDOMAINS extra")
    refused(core, "NOSUCHCOMMAND")
    refused(core, "LISTDOMAINS", CommandContext.for_account("ghost@example.com"))

    def sample(command, outcome):
        return core.metrics.get_sample_value(
            "communigate_commands_total", {"command": command, "outcome": outcome}
        )

    assert sample("LISTDOMAINS", "ok") == 2
    assert sample("LISTDOMAINS", "error") == 2
    assert sample("unknown", "error") == 1


def test_internal_errors_are_counted_as_errors(core):
    core.interpreter.add_commands(ExplodingCommands())
    events = []
    globalLogPublisher.addObserver(events.append)
    try:
        run(core, "EXPLODE")
    finally:
        globalLogPublisher.removeObserver(events.append)
    assert core.metrics.get_sample_value(
        "communigate_commands_total", {"command": "EXPLODE", "outcome": "error"}
    ) == 1


# -- CommuniGate-style output ------------------------------------------------------


def test_rendered_outputs_are_communigate_style(core):
    assert ok(core, "LISTDOMAINS") == "(example.com)"
    assert ok(core, "LISTACCOUNTS") == "{postmaster = MultiMailbox;}"
    assert ok(core, "MAINDOMAINNAME") == "example.com"
    ok(core, "CREATEDOMAIN client1.com")
    assert ok(core, "LISTDOMAINS") == "(client1.com, example.com)"
    ok(core, 'CREATEACCOUNT "u1@client1.com" {Password = "x"; }')
    assert refused(core, 'CreateAccount "u1@client1.com"') == "u1@client1.com is already an account"
    ok(core, 'UPDATEACCOUNTSETTINGS u1@client1.com {CallInpFlow = ("-1", 3600); PSTNAreaCode = "1(415)";}')
    assert ok(core, "GETACCOUNTSETTINGS u1@client1.com") == (
        '{CallInpFlow = ("-1", 3600); PSTNAreaCode = "1(415)";}'
    )
    assert ok(core, "GETACCOUNTALIASES u1@client1.com") == "()"
    assert ok(core, "GETACCOUNTDEFAULTS client1.com") == "{}"
    assert ok(core, "NOOP") is None


def test_a_password_cannot_be_set_to_default(core):
    ok(core, "CREATEACCOUNT pat {Password = old;}")
    assert "cannot be set to default" in refused(core, "UPDATEACCOUNTSETTINGS pat {Password = default;}")
    ok(core, "VERIFYACCOUNTPASSWORD pat PASSWORD old")


def test_explicit_settings_are_listed_in_key_order(core):
    ok(core, "CREATEACCOUNT sorted {Zeta = 1; Alpha = 2;}")
    ok(core, "UPDATEACCOUNTSETTINGS sorted {Mid = 3;}")
    assert run(core, "GETACCOUNTSETTINGS sorted").render() == "{Alpha = 2; Mid = 3; Zeta = 1;}"


def test_the_trusted_admin_tool_may_delete_the_postmaster_it_runs_as(core):
    trusted = CommandContext("postmaster@example.com", "example.com", trusted=True)
    assert "cannot delete the account it is using" in refused(core, "DELETEACCOUNT postmaster")
    ok(core, "DELETEACCOUNT postmaster", context=trusted)

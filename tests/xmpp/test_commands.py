"""
The XMPP module as a plugin, its CLI commands (settings, sessions) and the
generated certificate.
"""

import os

import pytest
from twisted.plugin import IPlugin
from zope.interface.verify import verifyObject

from communigate.cli.context import CommandContext
from communigate.interfaces import IProtocolModule
from communigate.plugins.xmpp import xmpp_module
from communigate.server import protocol_modules
from communigate.testing_pki import TestAuthority
from communigate.xmpp.tls import GENERATED_NAME, CertificateError, generate_self_signed, load_context

POSTMASTER = CommandContext.for_account("postmaster@example.com")


@pytest.fixture
def module_service(service):
    return service


@pytest.fixture
def cli(context, service):
    def run(line):
        return context.interpreter.run(POSTMASTER, line)

    return run


def test_the_module_is_a_plugin_with_its_listen_option():
    verifyObject(IProtocolModule, xmpp_module)
    assert IPlugin.providedBy(xmpp_module)
    assert "xmpp" in {module.name for module in protocol_modules()}
    assert xmpp_module.default_listen == ("tcp:5222",)
    xmpp_module.check_listen("tcp:5222:interface=127.0.0.1")
    with pytest.raises(ValueError, match="allowed forms"):
        xmpp_module.check_listen("udp:5222")


def test_the_listen_option_is_checked_by_tap():
    from twisted.python import usage

    from communigate.tap import Options

    options = Options()
    options.parseOptions(["--data", "/tmp/x", "--xmpp", "tcp:15222"])
    assert options.config().listen["xmpp"] == ("tcp:15222",)
    disabled = Options()
    disabled.parseOptions(["--data", "/tmp/x", "--xmpp", "none"])
    assert disabled.config().listen["xmpp"] == ()
    with pytest.raises(usage.UsageError, match="--xmpp"):
        Options().parseOptions(["--data", "/tmp/x", "--xmpp", "bogus:1"])


def test_settings_are_listed_with_their_defaults(cli):
    result = cli("GETXMPPSETTINGS")
    assert result.ok
    assert result.data["RequireTLS"] == "YES"
    assert result.data["MaxStanzaSize"] == "65536"
    assert result.data["MaxResources"] == "10"


def test_updated_settings_are_stored_and_in_force(cli, module_service, context):
    assert cli("UPDATEXMPPSETTINGS {MaxResources = 3; RequireTLS = NO;}").ok
    assert module_service.settings.max_resources == 3
    assert module_service.settings.require_tls is False
    assert cli("GETXMPPSETTINGS").data["MaxResources"] == "3"
    assert "MaxResources" in context.store.get("server", "xmpp-settings")
    assert cli("UPDATEXMPPSETTINGS {MaxResources = default;}").ok
    assert module_service.settings.max_resources == 10


@pytest.mark.parametrize(
    "line, words",
    [
        ("UPDATEXMPPSETTINGS {MaxStanzaSize = 10;}", "MaxStanzaSize"),
        ("UPDATEXMPPSETTINGS {RequireTLS = maybe;}", "RequireTLS"),
        ("UPDATEXMPPSETTINGS {Colour = blue;}", "unknown XMPP settings"),
        ("UPDATEXMPPSETTINGS {CertificateFile = missing.pem;}", "CertificateFile"),
        ("UPDATEXMPPSETTINGS {S2STrustedCAFile = missing.pem;}", "S2STrustedCAFile: cannot read"),
        ("UPDATEXMPPSETTINGS {S2STrustedCAFile = (a);}", "S2STrustedCAFile must be a file name"),
        ("UPDATEXMPPSETTINGS {S2SCRLFile = missing.pem;}", "S2SCRLFile: cannot read"),
        ("UPDATEXMPPSETTINGS {S2SCRLFile = (a);}", "S2SCRLFile must be a file name"),
    ],
)
def test_bad_settings_are_refused_naming_the_setting(cli, line, words, module_service):
    result = cli(line)
    assert not result.ok and words in result.error
    assert module_service.settings.max_stanza_size == 65536


def test_a_certificate_file_setting_is_loaded(cli, module_service, tmp_path):
    (tmp_path / "mine.pem").write_bytes(generate_self_signed(["example.com"]))
    assert cli("UPDATEXMPPSETTINGS {CertificateFile = mine.pem;}").ok
    assert module_service.tls_context is not None


def test_a_trusted_ca_file_must_hold_certificates_and_is_kept(cli, module_service, tmp_path):
    (tmp_path / "nothing.pem").write_text("no PEM here")
    result = cli("UPDATEXMPPSETTINGS {S2STrustedCAFile = nothing.pem;}")
    assert not result.ok and "S2STrustedCAFile" in result.error and "no PEM certificate" in result.error
    (tmp_path / "ca.pem").write_bytes(TestAuthority().pem)
    assert cli("UPDATEXMPPSETTINGS {S2STrustedCAFile = ca.pem;}").ok
    assert module_service.settings.s2s_trusted_ca_file == "ca.pem"
    assert cli("GETXMPPSETTINGS").data["S2STrustedCAFile"] == "ca.pem"


def test_a_revocation_list_file_must_hold_lists_and_is_kept(cli, module_service, tmp_path):
    authority = TestAuthority()
    (tmp_path / "ca.pem").write_bytes(authority.pem)
    result = cli("UPDATEXMPPSETTINGS {S2SCRLFile = ca.pem;}")
    assert not result.ok and "S2SCRLFile" in result.error and "no PEM certificate revocation list" in result.error
    (tmp_path / "revoked.pem").write_bytes(authority.revocation_list(authority.issue(["bad.test"])))
    assert cli("UPDATEXMPPSETTINGS {S2SCRLFile = revoked.pem;}").ok
    assert module_service.settings.s2s_crl_file == "revoked.pem"
    assert cli("GETXMPPSETTINGS").data["S2SCRLFile"] == "revoked.pem"


def test_a_self_signed_certificate_is_generated_into_the_data_directory(module_service, tmp_path):
    path = tmp_path / GENERATED_NAME
    assert path.exists()
    assert os.stat(path).st_mode & 0o777 == 0o600
    assert module_service.tls_context is not None
    from cryptography import x509

    certificate = x509.load_pem_x509_certificate(path.read_bytes())
    names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert set(names.get_values_for_type(x509.DNSName)) >= {"example.com", "example.org"}


def test_the_generated_certificate_is_kept_across_starts(service, tmp_path):
    from communigate.xmpp.tls import ensure_generated

    first = (tmp_path / GENERATED_NAME).read_bytes()
    service.stopService()
    service.startService()
    assert ensure_generated(str(tmp_path), ["other.test"]) == str(tmp_path / GENERATED_NAME)
    assert (tmp_path / GENERATED_NAME).read_bytes() == first


def test_a_file_without_a_key_is_a_certificate_error(tmp_path):
    (tmp_path / "bad.pem").write_text("not a certificate")
    with pytest.raises(CertificateError, match="does not hold"):
        load_context(str(tmp_path / "bad.pem"))
    with pytest.raises(CertificateError, match="cannot read"):
        load_context(str(tmp_path / "absent.pem"))



def test_sessions_are_listed_for_all_and_for_one_account(cli, connect, clock):
    connect().bound("phone")
    clock.advance(5)
    connect().bound("desk", "bob", "builder")
    listed = cli("LISTXMPPSESSIONS").data
    assert [entry["JID"] for entry in listed] == ["alice@example.com/phone", "bob@example.com/desk"]
    entry = listed[0]
    assert entry["Account"] == "alice@example.com" and entry["TLS"] == "YES"
    assert entry["Mechanism"] == "SCRAM-SHA-256" and entry["Since"] == "5"
    assert entry["Address"] == "[192.0.2.7]:40000"
    assert [e["JID"] for e in cli("LISTXMPPSESSIONS bob").data] == ["bob@example.com/desk"]
    assert not cli("LISTXMPPSESSIONS nobody").ok


def test_a_session_is_killed_by_its_full_jid(cli, connect):
    alice = connect().bound("phone")
    assert cli('KILLXMPPSESSION "alice@example.com/phone"').ok
    assert alice.closed_with() == "policy-violation"
    result = cli('KILLXMPPSESSION "alice@example.com/other"')
    assert not result.ok and "no XMPP session" in result.error


def test_all_sessions_of_an_account_are_killed(cli, connect):
    phone, desk = connect().bound("phone"), connect().bound("desk")
    bob = connect().bound("x", "bob", "builder")
    assert cli("KILLACCOUNTSESSIONS alice").ok
    assert phone.closed_with() == desk.closed_with() == "policy-violation"
    assert bob.closed_with() is None


def test_deleting_or_renaming_an_account_ends_its_streams(cli, connect):
    phone = connect().bound("phone")
    bob = connect().bound("x", "bob", "builder")
    assert cli("RENAMEACCOUNT alice INTO alicia").ok
    assert phone.closed_with() == "not-authorized"
    assert bob.closed_with() is None
    assert cli("DELETEACCOUNT bob").ok
    assert bob.closed_with() == "not-authorized"

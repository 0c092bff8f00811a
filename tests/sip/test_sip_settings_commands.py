"""
GETSIPSETTINGS and UPDATESIPSETTINGS through the CLI interpreter: the TLS
settings are listed with their defaults, and a TLS file that cannot be used
is refused at UPDATESIPSETTINGS time with an error naming the setting,
leaving the stored settings as they were.
"""

import pytest
from twisted.internet.task import Clock

from communigate.cli.context import CommandContext
from communigate.config import Config
from communigate.first_start import create_initial_objects
from communigate.server import build_core
from communigate.sip.commands import SIPSettingsCommands, sip_settings
from communigate.storage import MemoryStore
from communigate.testing import make_certificates

POSTMASTER = CommandContext.for_account("postmaster@example.com")


class Service:
    def __init__(self, context):
        self.context = context
        self.applied = []

    def apply_settings(self, settings):
        self.applied.append(settings)


@pytest.fixture
def service():
    core = build_core(Config(data_dir="", domain="example.com"), MemoryStore(), Clock())
    create_initial_objects(core.directory, "example.com")
    sip = Service(core)
    core.interpreter.add_commands(SIPSettingsCommands(sip))
    return sip


def run(service, line):
    return service.context.interpreter.run(POSTMASTER, line)


def test_the_tls_settings_are_listed_with_their_defaults(service):
    settings = run(service, "GETSIPSETTINGS").data
    assert (settings["TLSVerify"], settings["TLSCAFile"], settings["TLSClientCertificate"]) == ("YES", "", "")


def test_usable_tls_files_are_stored_and_put_in_force(service, tmp_path):
    pki = make_certificates(str(tmp_path))
    result = run(service, f'UPDATESIPSETTINGS {{TLSCAFile = "{pki.ca}"; TLSClientCertificate = "{pki.client}";}}')
    assert result.error is None, result
    stored = sip_settings(service.context.store)
    assert (stored["TLSCAFile"], stored["TLSClientCertificate"]) == (pki.ca, pki.client)
    assert service.applied[-1]["TLSCAFile"] == pki.ca


@pytest.mark.parametrize(
    "change, message",
    [
        ('TLSCAFile = "/nonexistent/ca.pem";', "TLSCAFile: cannot read /nonexistent/ca.pem"),
        ("TLSCAFile = ca.pem;", "TLSCAFile must be an absolute path"),
        ('TLSClientCertificate = "{ca}";', "TLSClientCertificate: {ca} holds no PEM private key"),
        ("TLSVerify = Sometimes;", "TLSVerify must be YES or NO"),
    ],
)
def test_an_unusable_tls_setting_is_refused_and_nothing_changes(service, tmp_path, change, message):
    pki = make_certificates(str(tmp_path))
    result = run(service, "UPDATESIPSETTINGS {" + change.format(ca=pki.ca) + "}")
    assert result.error.startswith("SIP settings not changed: ")
    assert message.format(ca=pki.ca) in result.error
    assert sip_settings(service.context.store)["TLSCAFile"] == "" and service.applied == []

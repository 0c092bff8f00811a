"""
ROUTE in a running `twistd communigate`, ENUM included: the server asks a
real DNS server (twisted.names on 127.0.0.1) for numbers no account holds.
"""

import pytest_twisted
from twisted.internet import reactor, threads
from twisted.names import dns as tdns

from communigate.admin.client import CLIClient
from communigate.testing import served_zone, start_server, stop_server

TABLE = (
    '"<+(6-15d)*> = +*@telnum\\e'
    "S:<+*@telnum> = 00*@pstn\\e"
    'S:<*@pstn> = gatewaycaller{*}#postmaster"'
)


def cli_session(server, lines):
    with CLIClient.connect(f"tcp:127.0.0.1:{server.cli_port}") as client:
        client.login("postmaster", server.postmaster_password)
        return [client.command(line) for line in lines]


@pytest_twisted.inlineCallbacks
def test_route_goes_to_the_owner_then_enum_then_the_table(tmp_path):
    zone, port = served_zone(
        {
            b"1.6.4.7.3.8.3.5.5.5.1.e164.arpa": [
                tdns.Record_NAPTR(100, 10, b"u", b"E2U+sip", b"!^.*$!sip:info@example.net!", b"")
            ]
        }
    )
    server = start_server(tmp_path / "data")
    try:
        replies = yield threads.deferToThread(
            cli_session,
            server,
            [
                "CREATEACCOUNT alice",
                'SETACCOUNTTELNUMS alice ("+15550000001")',
                f"SETROUTERTABLE {TABLE}",
                "UPDATEROUTERSETTINGS {ENUMRouting = YES; "
                f'ENUMServers = ("127.0.0.1:{port.getHost().port}");}}',
                "ROUTE +15550000001 signal",
                "ROUTE +15553837461 signal",
                "ROUTE +4930123456 signal",
                "ROUTE +4930123456 mail",
            ],
        )
    finally:
        stop_server(server)
        yield port.stopListening()
    codes = [code for code, _ in replies[:4]]
    assert codes == [200, 200, 200, 200]
    assert replies[4] == (201, '(LOCAL, alice@example.com, "")')
    assert replies[5] == (201, '(SIP, example.net, "sip:info@example.net")')
    assert replies[6] == (201, '(PBX, postmaster@example.com, "gatewaycaller{004930123456}")')
    assert replies[7][0] == 501  # ENUM and the S: records are for Signals only
    assert zone.queries == [b"1.6.4.7.3.8.3.5.5.5.1.e164.arpa", b"6.5.4.3.2.1.0.3.9.4.e164.arpa"]

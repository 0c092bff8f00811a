"""
The PSTN gateway applications' pure parts (the PSTN settings, gateway
lists, numbers, the failover rule), what they answer callers they cannot
serve, and the call records PBX calls leave.  The calls through a real
gateway are in tests/integration/test_pbx_gateway_live.py.
"""

import pytest
from zope.interface.verify import verifyObject

from communigate.interfaces import ICallApplication
from communigate.pbx.gateway import (
    GatewayCaller,
    GatewayIncoming,
    GatewayLeg,
    PSTNSettingError,
    PSTNSettings,
    fails_over,
    gateway_list,
    gateway_uri,
    pstn_number,
)

from .conftest import PBXHarness


def test_the_gateway_applications_provide_icallapplication():
    for application in (GatewayCaller(), GatewayIncoming(), GatewayLeg()):
        assert verifyObject(ICallApplication, application)


def test_a_dictionary_of_gateways_is_tried_in_the_order_written():
    assert gateway_list({"gw1": "11.22.33.44:5061", "gw2": "pstn.org"}) == ["11.22.33.44:5061", "pstn.org"]
    assert gateway_list({"b": "second.example", "a": "first.example"}) == ["second.example", "first.example"]


def test_a_gateway_may_be_one_host_an_array_or_a_sip_uri():
    assert gateway_list("pstn.org") == ["pstn.org"]
    assert gateway_list(["10.0.0.1", "gw.example:5080"]) == ["10.0.0.1", "gw.example:5080"]
    assert gateway_list("sip:gw.example:5062") == ["gw.example:5062"]
    assert gateway_list("[2001:db8::1]:5060") == ["[2001:db8::1]:5060"]


@pytest.mark.parametrize("value", [None, "", {}, [], "bad host!", {"gw1": "a b"}, "gw:port", 5])
def test_bad_or_missing_gateway_settings_disable_dial_out_naming_the_setting(value):
    with pytest.raises(PSTNSettingError, match="PSTNGatewayDomain"):
        gateway_list(value)


def test_a_number_keeps_its_digits_and_leading_plus():
    assert pstn_number("+1 (555) 383-7461") == "+15553837461"
    assert pstn_number("0036301234567") == "0036301234567"
    assert pstn_number("abc") == ""
    assert gateway_uri("0301234567", "11.22.33.44:5061") == "sip:0301234567@11.22.33.44:5061"


def test_pstn_settings_read_the_gateway_caller_id_and_credentials():
    settings = PSTNSettings.of(
        {"PSTNGatewayDomain": {"gw1": "pstn.org"}, "PSTNFromName": "15551234",
         "PSTNGatewayAuthName": "acct", "PSTNGatewayPassword": "pw"},
        "alice@example.com",
    )
    assert settings.gateways == ("pstn.org",)
    assert settings.from_name == "15551234"
    assert settings.credentials == ("acct", "pw")


def test_the_caller_id_defaults_to_the_account_name_and_credentials_are_optional():
    settings = PSTNSettings.of({"PSTNGatewayDomain": "pstn.org"}, "alice@example.com")
    assert settings.from_name == "alice" and settings.credentials is None


def test_an_auth_name_without_a_password_is_a_bad_setting():
    with pytest.raises(PSTNSettingError, match="PSTNGatewayPassword"):
        PSTNSettings.of({"PSTNGatewayDomain": "pstn.org", "PSTNGatewayAuthName": "acct"}, "alice@example.com")


def test_timeouts_and_server_failures_fail_over_and_the_callees_answers_do_not():
    assert fails_over(503) and fails_over(500) and fails_over(408)
    assert not fails_over(486) and not fails_over(404) and not fails_over(603) and not fails_over(None)


def test_an_unauthenticated_caller_of_gatewaycaller_gets_403():
    pbx = PBXHarness(applications={"gatewaycaller": GatewayCaller()})
    try:
        # A caller from outside reaching a local number (the proxy refuses
        # to relay its calls to other domains, such as pstn, before that).
        pbx.route("S:<(7d)*> = gatewaycaller{*}#postmaster")
        pbx.invite("sip:5551234@example.com")
        answer = pbx.final()
        assert answer.status == 403 and answer.reason == "PSTN calls need an authenticated caller"
        pbx.turn()
        assert pbx.pbx.tasks == {}
    finally:
        pbx.pbx.stopService()
        pbx.stop()


def test_gatewayincoming_without_a_destination_answers_404(pbx):
    pbx.pbx.applications["gatewayincoming"] = GatewayIncoming()
    pbx.route("S:<incoming> = gatewayincoming#postmaster")
    pbx.invite("sip:incoming@example.com")
    assert pbx.final().status == 404


def test_gatewayincoming_bridges_the_call_to_its_destination_and_either_bye_ends_both(pbx):
    pbx.pbx.applications["gatewayincoming"] = GatewayIncoming()
    pbx.route("S:<incoming*> = gatewayincoming{echo,bridge}#postmaster", "S:<echo> = echo#postmaster")
    pbx.invite("sip:incomingGW1@example.com")
    pbx.reactor.advance(0.1)
    answer = pbx.final()
    assert answer.status == 200
    programs = sorted(task.program for task in pbx.pbx.tasks.values())
    assert programs == ["echo", "gatewayincoming", "gatewayleg"]
    gateway = next(t for t in pbx.pbx.tasks.values() if t.program == "gatewayincoming")
    assert gateway.bridge is not None and gateway.bridge.program == "gatewayleg"
    pbx.ack(answer)
    pbx.in_dialog("BYE", answer, cseq=2)
    pbx.reactor.advance(0.1)
    pbx.turn()
    assert pbx.pbx.tasks == {}


def test_a_pbx_call_leaves_a_call_record_when_it_ends(pbx):
    pbx.route("S:<echo> = echo#postmaster")
    pbx.invite("sip:echo@example.com")
    answer = pbx.final()
    pbx.ack(answer)
    pbx.reactor.advance(2)
    pbx.in_dialog("BYE", answer, cseq=2)
    pbx.turn()
    records = [r for r in pbx.core.call_records.recent() if r.protocol == "pbx"]
    assert len(records) == 1
    (record,) = records
    assert record.call_id == answer.call_id
    assert record.caller == "caller@example.net" and record.callee == "echo@example.com"
    assert record.target == "sip:echo@example.com"
    assert record.status == 200 and record.cause == "BYE from caller"
    assert record.answered is not None and record.duration == pytest.approx(2, abs=0.1)


def test_a_rejected_pbx_call_is_recorded_with_its_code():
    pbx = PBXHarness(applications={"gatewaycaller": GatewayCaller()})
    try:
        # A caller from outside reaching a local number (the proxy refuses
        # to relay its calls to other domains, such as pstn, before that).
        pbx.route("S:<(7d)*> = gatewaycaller{*}#postmaster")
        pbx.invite("sip:5551234@example.com")
        pbx.turn()
        (record,) = [r for r in pbx.core.call_records.recent() if r.protocol == "pbx"]
        assert record.status == 403 and record.cause == "403 Forbidden" and record.answered is None
    finally:
        pbx.pbx.stopService()
        pbx.stop()


class _Placing:
    name = "placing"
    description = "places one call with a caller ID and credentials, shows how it completed"

    async def run(self, task):
        await task.start_call(
            "sip:5551234@127.0.0.1:5099", caller="sip:15551234@127.0.0.1:5099", credentials=("gwuser", "gwpass")
        )
        while True:
            item = await task.read_input(30)
            if item is None or item.is_call_completed:
                task.set_status(f"completed {None if item is None else item.parameter}")
                await task.read_input(30)
                return


def test_a_challenged_call_goes_again_with_the_credentials_on_the_same_call_id_to_the_uri_port():
    from communigate.sip.message import make_response, serialize

    gateway = ("127.0.0.1", 5099)
    pbx = PBXHarness(applications={"placing": _Placing()})
    try:
        task = pbx.pbx.start_task("placing", "postmaster@example.com")
        pbx.turn()
        (first,) = [r for r in pbx.requests_to(gateway) if r.method == "INVITE"]
        assert str(first.uri) == "sip:5551234@127.0.0.1:5099"
        assert first.headers.get("From").startswith("<sip:15551234@127.0.0.1:5099>;tag=")
        assert first.headers.get("Authorization") is None
        challenge = make_response(first, 401, to_tag="gw1", headers=[
            ("WWW-Authenticate", 'Digest realm="gateway.test", nonce="n0nce", algorithm=MD5, qop="auth"'),
        ])
        pbx.port.receive(serialize(challenge), gateway)
        pbx.turn()
        invites = [r for r in pbx.requests_to(gateway) if r.method == "INVITE"]
        assert len(invites) == 1, invites
        (second,) = invites
        assert second.call_id == first.call_id
        assert second.cseq().number == first.cseq().number + 1
        assert second.headers.get("From") == first.headers.get("From")
        authorization = second.headers.get("Authorization")
        assert 'username="gwuser"' in authorization and 'uri="sip:5551234@127.0.0.1:5099"' in authorization
        # A second challenge is the answer: no third INVITE.
        pbx.port.receive(serialize(make_response(second, 401, to_tag="gw2", headers=[
            ("WWW-Authenticate", 'Digest realm="gateway.test", nonce="n0nce2", algorithm=MD5'),
        ])), gateway)
        pbx.turn()
        assert not [r for r in pbx.requests_to(gateway) if r.method == "INVITE"]
        assert task.status == "completed 401 Unauthorized"
    finally:
        pbx.pbx.stopService()
        pbx.stop()


def test_the_seeds_pstn_records_route_numbers_to_gatewaycaller_and_gateway_calls_to_gatewayincoming(pbx):
    pbx.route(
        "<+(6-15d)*> = +*@telnum",
        "<00(6-15d)*> = +*@telnum",
        "S:<+36*@telnum> = 0*@pstn",
        "S:<+*@telnum> = 00*@pstn",
        "S:<*@pstn> = gatewaycaller{*}#postmaster",
        "S:<incoming*@[203.0.113.7]> = gatewayincoming{*,bridge}#postmaster",
        "S:<*@incoming.example.com> = gatewayincoming{+*,bridge,media}#postmaster",
    )
    expected = {
        "0036301234567": "gatewaycaller{0301234567}",
        "+15553837461": "gatewaycaller{0015553837461}",
        "incomingGW1@[203.0.113.7]": "gatewayincoming{GW1,bridge}",
        "15551234@incoming.example.com": "gatewayincoming{+15551234,bridge,media}",
    }
    for address, program in expected.items():
        assert pbx.cli(f'ROUTE "{address}" signal') == ["PBX", "postmaster@example.com", program]


def test_the_callers_cancel_while_the_destination_rings_cancels_the_bridged_call(pbx):
    from communigate.sip.message import make_response, serialize

    destination = ("127.0.0.1", 5099)
    pbx.pbx.applications["gatewayincoming"] = GatewayIncoming()
    pbx.route("S:<incoming> = gatewayincoming{sip:5551234@127.0.0.1:5099,bridge}#postmaster")
    pbx.invite("sip:incoming@example.com")
    (invite,) = [r for r in pbx.requests_to(destination) if r.method == "INVITE"]
    pbx.port.receive(serialize(make_response(invite, 180, to_tag="far")), destination)
    pbx.turn()
    assert [r.status for r in pbx.responses() if r.status > 100] == [180]
    pbx.cancel()
    pbx.turn()
    assert [r.method for r in pbx.requests_to(destination)] == ["CANCEL"]
    assert 487 in [r.status for r in pbx.responses()]


@pytest.mark.parametrize("flags, transparent", [("bridge", True), ("bridge,media", False), ("media", False)])
def test_gatewayincoming_bridge_alone_is_transparent_and_media_keeps_the_media_on_the_server(pbx, flags, transparent):
    from communigate.media.offer_answer import streams
    from communigate.media.sdp import parse_sdp

    from .conftest import CALLER_MEDIA

    destination = ("127.0.0.1", 5099)
    pbx.pbx.applications["gatewayincoming"] = GatewayIncoming()
    pbx.route(f"S:<incoming> = gatewayincoming{{sip:5551234@127.0.0.1:5099,{flags}}}#postmaster")
    pbx.invite("sip:incoming@example.com")
    (invite,) = [r for r in pbx.requests_to(destination) if r.method == "INVITE"]
    port = streams(parse_sdp(invite.body))[0].port
    # transparent: the destination is offered the gateway caller's own media address
    assert (port == CALLER_MEDIA[1]) is transparent
    leg = next(t for t in pbx.pbx.tasks.values() if t.program == "gatewayleg")
    assert leg.call.transparent is transparent


@pytest.mark.parametrize("setting, expected", [
    (None, []),
    ("(Subject, X-Account-Code)", [("Subject", "Invoice 42"), ("X-Account-Code", "77")]),
    ("(Subject, Call-ID, Via)", [("Subject", "Invoice 42")]),   # dialog headers are never copied
])
def test_the_bridged_call_carries_only_the_headers_the_account_names(pbx, setting, expected):
    destination = ("127.0.0.1", 5099)
    if setting is not None:
        pbx.cli(f"UPDATEACCOUNTSETTINGS postmaster {{BridgedCallHeaders = {setting};}}")
    pbx.pbx.applications["gatewayincoming"] = GatewayIncoming()
    pbx.route("S:<incoming> = gatewayincoming{sip:5551234@127.0.0.1:5099,bridge}#postmaster")
    pbx.invite("sip:incoming@example.com", headers=[
        ("Subject", "Invoice 42"), ("P-Asserted-Identity", "<sip:+15550001@gw.example.net>"),
        ("X-Account-Code", "77"),
    ])
    (invite,) = [r for r in pbx.requests_to(destination) if r.method == "INVITE"]
    carried = [(name, invite.headers.get(name)) for name in ("Subject", "P-Asserted-Identity", "X-Account-Code")]
    assert [(name, value) for name, value in carried if value is not None] == expected


def test_start_bridged_call_refuses_to_copy_a_dialog_header():
    from communigate.pbx.bridging import _copied_headers
    from communigate.pbx.events import CallError

    with pytest.raises(CallError, match="call-id"):
        _copied_headers(None, ["Subject", "Call-ID"])
    assert _copied_headers(None, ["Subject"]) == ()

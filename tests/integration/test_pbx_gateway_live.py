"""
The seed's PSTN routing examples end to end in a real C{twistd
communigate}: alice (a sipp UAC that authenticates to the proxy) dials a
number; the Router's PSTN records (E.164 through C{telnum}, then the
fictitious C{pstn} domain) start C{gatewaycaller}, which reads alice's
C{PSTN*} settings and calls the sipp UAS "gateway" on 127.0.0.1:

  - the gateway challenges (401), the second INVITE carries the digest
    answer for C{PSTNGatewayAuthName}/C{PSTNGatewayPassword}; its
    Request-URI holds the number as the Router rewrote it and its From
    the configured caller ID (C{PSTNFromName}); the call connects, alice
    hangs up, the gateway gets the BYE; LISTCALLRECORDS shows the PBX
    legs;
  - the first gateway of the dictionary answers 503 and the second takes
    the call.
"""

from __future__ import annotations

import re
import time

import pytest

from communigate.formats.cgdata import loads
from communigate.testing import free_port

from pbx_live_helpers import (
    SIPP,
    cli,
    configure,
    errors,
    finished,
    pbx_server,
    router_table,
    run_sipp_client,
    start_sipp_server,
)

#: The Router records of the seed's "VoIP routing: best practices" slide.
PSTN_TABLE = [
    "<+(6-15d)*> = +*@telnum",
    "<00(6-15d)*> = +*@telnum",
    "S:<+36*@telnum> = 0*@pstn",
    "S:<+*@telnum> = 00*@pstn",
    "S:<*@pstn> = gatewaycaller{*}#postmaster",
]


@pytest.fixture
def pstn_server(tmp_path):
    with pbx_server(tmp_path) as (server, _):
        configure(
            server,
            router_table(*PSTN_TABLE),
            "UPDATEDOMAINSETTINGS example.com {SIPDigestAlgorithms = (MD5);}",
            "CREATEACCOUNT alice {Password = apw;}",
        )
        yield server


def gateway(workdir, scenario, port, name):
    """A sipp gateway answering on C{port} in its own directory C{name}, tracing the messages it gets."""
    directory = workdir / name
    directory.mkdir()
    return start_sipp_server(directory, scenario, port, timeout="25s", options=[*SIPP, "-trace_msg"])


def dial(server, workdir, number):
    """alice, authenticating to the proxy, calls C{number}; the finished process."""
    return run_sipp_client(server, workdir, "uac_auth.xml",
                           ["alice", "example.com", number, "[authentication username=alice password=apw]"],
                           csv="caller.csv", wait=40)


def received_invites(directory) -> list[str]:
    text = "".join(p.read_text(errors="replace") for p in directory.glob("*_messages.log"))
    found = []
    for block in re.split(r"-{10,}[^\n]*\n", text):
        if "message received" in block and "\nINVITE " in "\n" + block.split("message received", 1)[1]:
            found.append(block.split("message received", 1)[1])
    return found


def call_records(server, account="alice"):
    deadline = time.monotonic() + 5
    while True:
        code, text = cli(server, f"LISTCALLRECORDS {{Account = {account};}}")
        assert code in (200, 201), text
        records = loads(text) if text else []
        if any(record.get("Protocol") == "pbx" for record in records) or time.monotonic() > deadline:
            return records
        time.sleep(0.2)


def test_a_dialled_number_goes_through_the_router_to_gatewaycaller_and_the_authenticating_gateway(
    pstn_server, tmp_path
):
    port = free_port()
    assert cli(
        pstn_server,
        f'UPDATEACCOUNTSETTINGS alice {{PSTNGatewayDomain = "127.0.0.1:{port}"; PSTNFromName = 15551234; '
        "PSTNGatewayAuthName = gwuser; PSTNGatewayPassword = gwpass;}",
    )[0] == 200
    uas = gateway(tmp_path, "uas_gateway_auth.xml", port, "gw")
    time.sleep(0.3)
    caller = dial(pstn_server, tmp_path, "0036301234567")
    code, output = finished(uas, timeout=25)
    assert caller.returncode == 0, caller.stdout + errors(tmp_path, below=True) + pstn_server.output()[-3000:]
    assert code == 0, output + errors(tmp_path, below=True)

    first, second = received_invites(tmp_path / "gw")[:2]
    # +36301234567@telnum -> 0301234567@pstn -> gatewaycaller{0301234567}
    assert re.search(rf"^INVITE sip:0301234567@127\.0\.0\.1:{port} SIP/2\.0", second.strip(), re.M), second
    assert re.search(r"^From: <sip:15551234@127\.0\.0\.1:\d+>;tag=", second, re.M), second
    assert "Authorization: Digest" in second and 'username="gwuser"' in second
    assert "Authorization" not in first
    # The same call, challenged and sent again.
    call_id = re.search(r"^Call-ID: (.+)$", first, re.M).group(1)
    assert f"Call-ID: {call_id}" in second

    records = [r for r in call_records(pstn_server) if r.get("Protocol") == "pbx"]
    assert records, call_records(pstn_server)
    incoming = [r for r in records if r.get("Account") == "alice@example.com"]
    assert incoming and incoming[0]["Status"] == "200" and incoming[0]["Cause"] == "BYE from caller", records


def test_a_gateway_answering_503_passes_the_call_to_the_next_one(pstn_server, tmp_path):
    down, up = free_port(), free_port()
    assert cli(
        pstn_server,
        f'UPDATEACCOUNTSETTINGS alice {{PSTNGatewayDomain = {{gw1 = "127.0.0.1:{down}"; '
        f'gw2 = "127.0.0.1:{up}";}}; PSTNFromName = 15551234;}}',
    )[0] == 200
    failing = gateway(tmp_path, "uas_503.xml", down, "gw1")
    answering = gateway(tmp_path, "uas.xml", up, "gw2")
    time.sleep(0.3)
    caller = dial(pstn_server, tmp_path, "+15553837461")
    failed_code, failed_output = finished(failing, timeout=25)
    code, output = finished(answering, timeout=25)
    assert caller.returncode == 0, caller.stdout + errors(tmp_path, below=True) + pstn_server.output()[-3000:]
    assert failed_code == 0, failed_output
    assert code == 0, output + errors(tmp_path, below=True)
    # +15553837461@telnum -> 0015553837461@pstn
    (invite,) = received_invites(tmp_path / "gw2")[:1]
    assert re.search(rf"^INVITE sip:0015553837461@127\.0\.0\.1:{up} SIP/2\.0", invite.strip(), re.M), invite

"""
Reliable provisional responses (RFC 3262) with sipp, in a real C{twistd
communigate}:

  - a task's call to a callee that sends its early media reliably (a
    gateway, say: 183 with C{Require: 100rel}) is PRACKed in the early
    dialog, answered and bridged: the caller (through
    C{gatewayincoming{bob,media}}) hears the callee's 1 kHz;
  - a caller that requires C{100rel} calling a program that rings
    reliably gets its 180 with an C{RSeq}, PRACKs it, and only then is
    answered.
"""

from __future__ import annotations

import pytest

from pbx_live_helpers import (
    SIPP_LOGS,
    RTPPeer,
    answering_phone,
    call,
    configure,
    errors,
    finished,
    hears,
    install_plugin,
    pbx_server,
    router_table,
)

APP_PLUGIN = '''
from twisted.plugin import IPlugin
from zope.interface import implementer

from communigate.interfaces import ICallApplication


@implementer(IPlugin, ICallApplication)
class RingsReliably:
    name = "ringsreliably"
    description = "rings reliably (RFC 3262), answers once the caller's PRACK came, echoes nothing"

    async def run(self, task):
        await task.provision_call(reliably=True)
        task.set_status("acknowledged")
        await task.accept_call()
        while True:
            item = await task.read_input(None)
            if getattr(item, "is_disconnect", False):
                return


ringsreliably = RingsReliably()
'''


@pytest.fixture
def server(tmp_path, monkeypatch):
    install_plugin(tmp_path, monkeypatch, "pbx_100rel_test_app.py", APP_PLUGIN)
    with pbx_server(tmp_path) as (running, _):
        configure(
            running,
            router_table(
                "S:<bridged> = gatewayincoming{bob,media}#postmaster",
                "S:<ringer> = ringsreliably#postmaster",
            ),
            "UPDATEDOMAINSETTINGS example.com {SIPDigestAlgorithms = (MD5);}",
            "CREATEACCOUNT bob {Password = bpw;}",
        )
        yield running


def logged(workdir, scenario: str) -> str:
    return "".join(p.read_text() for p in workdir.glob(f"{scenario}_*_logs.log"))


def test_a_callees_reliable_early_media_is_pracked_and_the_call_goes_through(server, tmp_path):
    bob_dir, caller_dir = tmp_path / "bob", tmp_path / "caller"
    bob_dir.mkdir()
    caller_dir.mkdir()
    with RTPPeer(440) as caller, RTPPeer(1000) as bob:
        gateway = answering_phone(server, bob_dir, "bob", "bpw", "uas_100rel.xml", bob.port, options=SIPP_LOGS)
        calling = call(server, caller_dir, "bridged", caller.port, "uac_app_ringing.xml")
        heard = caller.wait_for(lambda: hears(caller.audio(), 1000, 440) and hears(bob.audio(), 440, 1000))
        code, output = finished(calling)
        gateway_code, gateway_output = finished(gateway)
    assert gateway_code == 0, gateway_output + errors(bob_dir)
    assert code == 0, output + errors(caller_dir)
    assert "(CSeq 1) for INVITE CSeq 1" in logged(bob_dir, "uas_100rel"), logged(bob_dir, "uas_100rel")
    assert heard, "the caller and the callee did not hear each other after the PRACK"


def test_a_caller_requiring_100rel_gets_a_reliable_180_and_is_answered_after_its_prack(server, tmp_path):
    with RTPPeer(440) as caller:
        calling = call(server, tmp_path, "ringer", caller.port, "uac_100rel.xml", options=SIPP_LOGS)
        code, output = finished(calling)
    assert code == 0, output + errors(tmp_path) + server.output()[-3000:]
    log = logged(tmp_path, "uac_100rel")
    assert "rseq " in log and "PRACK answered (2 PRACK)" in log, log

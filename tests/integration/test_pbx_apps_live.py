"""
The stock PBX applications and bridged calls in a real C{twistd
communigate}: sipp places and answers the calls, the Python RTP peer of
C{pbx_live_helpers} sends and analyses the audio.

  - voicemail: a caller leaves a 1 kHz message; the WAV is in the data
    directory and GETACCOUNTMWI shows new = 1;
  - attendant: the caller presses 2 and is bridged to the sipp phone
    registered as the support account; the caller's BYE ends that leg;
  - a bridged call being set up (a B2BUA task to a ringing phone): the
    caller's CANCEL cancels the outgoing leg too;
  - a bridged call: the callee's BYE ends the caller's leg;
  - attended transfer: a task hands its caller to the phone another task
    called: the caller gets a REFER whose Refer-To holds Replaces with both
    tags (sipp cannot follow it with INVITE/Replaces; the REFER is checked).
"""

from __future__ import annotations

import time

import pytest

from communigate.formats.cgdata import loads
from communigate.media.analysis import dominant_frequency
from communigate.media.wav import read_wav

from pbx_live_helpers import (
    RTPPeer,
    answering_phone,
    call,
    cli,
    configure,
    errors,
    finished,
    heard_tone,
    install_plugin,
    pbx_server,
    router_table,
    run_sipp_client,
)

B2BUA_PLUGIN = '''
from twisted.plugin import IPlugin
from zope.interface import implementer

from communigate.interfaces import ICallApplication
from communigate.pbx.events import CallError, Event


@implementer(IPlugin, ICallApplication)
class B2BUA:
    name = "b2bua"
    description = "bridges the caller to its parameter before answering"

    async def run(self, task):
        helper = task.start_task("bridgedcall", task.parameters[:1])
        try:
            await task.start_bridge(helper)
        except CallError:
            return
        while True:
            item = await task.read_input(None)
            if isinstance(item, Event) and (item.is_disconnect or item.is_break_bridge):
                if task.is_connected():
                    await task.disconnect()
                return


@implementer(IPlugin, ICallApplication)
class Front:
    name = "front"
    description = "answers, has a consult task call its parameter, then transfers the caller there"

    async def run(self, task):
        await task.accept_call()
        consult = task.start_task("consult", (task.id, task.parameters[0]))
        while True:
            item = await task.read_input(None)
            if isinstance(item, Event) and item.is_disconnect:
                return
            if isinstance(item, Event) and item.what == "Ready":
                break
        try:
            await task.start_transfer(consult)
            task.set_status("transferred")
        except CallError as error:
            task.set_status(f"transfer failed: {error}")
        while True:
            item = await task.read_input(None)
            if isinstance(item, Event) and item.is_disconnect:
                return


@implementer(IPlugin, ICallApplication)
class Consult:
    name = "consult"
    description = "calls its second parameter, tells the first it is ready, accepts a transfer"

    async def run(self, task):
        front, destination = task.parameters
        await task.start_call(destination)
        while True:
            item = await task.read_input(None)
            if not isinstance(item, Event):
                continue
            if item.is_call_completed:
                if item.parameter is not None:
                    return
                task.send_event(front, "Ready")
            elif item.what == "StartTransfer":
                await task.accept_transfer(item)
                # B would drop this call on the caller's INVITE with Replaces;
                # a sipp UAS cannot, so the test ends it here.
                await task.read_input(1)
                await task.disconnect()
                return
            elif item.is_disconnect:
                return


b2bua = B2BUA()
front = Front()
consult = Consult()
'''


@pytest.fixture
def apps_server(tmp_path, monkeypatch):
    install_plugin(tmp_path, monkeypatch, "pbx_b2bua_test_app.py", B2BUA_PLUGIN)
    with pbx_server(tmp_path) as (server, _):
        configure(
            server,
            router_table(
                "S:<vm> = voicemail#postmaster",
                "S:<main> = attendant{2=support}#postmaster",
                "S:<gw> = b2bua{bob}#postmaster",
                "S:<front> = front{bob}#postmaster",
            ),
            "UPDATEDOMAINSETTINGS example.com {SIPDigestAlgorithms = (MD5);}",
            "CREATEACCOUNT alice {Password = apw;}",
            "CREATEACCOUNT bob {Password = bpw;}",
            "CREATEACCOUNT support {Password = spw;}",
        )
        yield server


def test_a_caller_leaves_a_1_khz_message_in_voicemail_and_mwi_counts_it(apps_server, tmp_path):
    with RTPPeer(1000) as peer:
        code, output = finished(call(apps_server, tmp_path, "vm", peer.port))
        heard = peer.audio()
    assert code == 0, output + errors(tmp_path)
    assert heard_tone(heard, 440), "the greeting tone was not heard"
    mailbox = tmp_path / "data" / "pbx" / "voicemail" / "example.com" / "postmaster"
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and not list(mailbox.glob("new-*.wav")):
        time.sleep(0.05)
    (message,) = mailbox.glob("new-*.wav")
    pcm = read_wav(str(message)).to_l16()
    assert len(pcm) > 16000, "less than a second recorded"
    assert abs(dominant_frequency(pcm[len(pcm) // 4:]) - 1000) < 20
    code, text = cli(apps_server, "GETACCOUNTMWI postmaster")
    assert code == 201 and loads(text)["new"] == "1", text


def test_pressing_2_at_the_attendant_bridges_the_caller_to_support_and_the_callers_bye_ends_it(
        apps_server, tmp_path):
    support = answering_phone(apps_server, tmp_path, "support", "spw", "uas.xml")
    with RTPPeer(0) as peer:
        sipp = call(apps_server, tmp_path, "main", peer.port)
        assert peer.wait_for(lambda: heard_tone(peer.audio(), 440)), "the greeting was not heard"
        peer.press("2")
        code, output = finished(sipp)
    assert code == 0, output + errors(tmp_path)
    code, output = finished(support)
    assert code == 0, output + errors(tmp_path)      # answered, then got the BYE


def test_the_callers_cancel_during_a_bridged_call_setup_cancels_the_outgoing_leg(apps_server, tmp_path):
    bob = answering_phone(apps_server, tmp_path, "bob", "bpw", "uas_ringing.xml")
    done = run_sipp_client(apps_server, tmp_path, "uac_cancel.xml",
                           ["alice", "example.com", "gw", "[authentication username=alice password=apw]"])
    assert done.returncode == 0, done.stdout + errors(tmp_path)
    code, output = finished(bob)
    assert code == 0, output + errors(tmp_path)      # it got the CANCEL


def test_the_callees_bye_on_a_bridged_call_ends_the_callers_leg(apps_server, tmp_path):
    bob = answering_phone(apps_server, tmp_path, "bob", "bpw", "uas_hangs_up.xml")
    with RTPPeer(0) as peer:
        code, output = finished(call(apps_server, tmp_path, "gw", peer.port, "uac_app_hung_up.xml"))
    assert code == 0, output + errors(tmp_path)
    code, output = finished(bob)
    assert code == 0, output + errors(tmp_path)


def test_an_attended_transfer_refers_the_caller_to_the_consulted_phone_with_replaces(apps_server, tmp_path):
    bob = answering_phone(apps_server, tmp_path, "bob", "bpw", "uas.xml")
    with RTPPeer(0) as peer:
        code, output = finished(call(apps_server, tmp_path, "front", peer.port, "uac_app_referred.xml"))
    assert code == 0, output + errors(tmp_path)
    code, output = finished(bob)
    assert code == 0, output + errors(tmp_path)      # answered the consult call, then its BYE

"""
PBX applications in a real C{twistd communigate}: sipp places the calls,
a Python RTP peer on 127.0.0.1 (the port sipp's SDP names) sends and
analyses the audio.

  - echo: the peer sends 440 Hz and hears 440 Hz back;
  - dtmftest: the peer hears the greeting prompt (a WAV file in the data
    directory's pbx/prompts, 700 Hz), presses 5 as RFC 4733 events and
    hears the 900 Hz tone that answers it; from a phone without
    telephone-event, 5 pressed as tones in the audio is answered the same
    way while the media server setting InBandDTMF is Auto, and not at all
    when it is No;
  - an application nobody installed: 404; one that raises: 500, and the
    server goes on answering;
  - STARTPBXTASK, SENDTASKEVENT, READNODESTATUS, KILLNODE over the CLI.
"""

from __future__ import annotations

import time

import pytest

from communigate.media import g711
from communigate.media.tones import sine
from communigate.media.wav import Audio, write_wav

from pbx_live_helpers import (
    RTPPeer,
    call,
    cli,
    configure,
    errors,
    finished,
    heard_tone,
    install_plugin,
    pbx_server as running_pbx,
    router_table,
)

TEST_PLUGIN = '''
from twisted.plugin import IPlugin
from zope.interface import implementer

from communigate.interfaces import ICallApplication
from communigate.pbx.events import Event


@implementer(IPlugin, ICallApplication)
class Raising:
    name = "raising"
    description = "raises before answering (a test of failure handling)"

    async def run(self, task):
        raise RuntimeError("deliberate failure in a test application")


@implementer(IPlugin, ICallApplication)
class EventStatus:
    name = "eventstatus"
    description = "shows each event it receives as its status"

    async def run(self, task):
        task.set_status("started")
        while True:
            item = await task.read_input(None)
            if isinstance(item, Event):
                task.set_status(f"{item.what} {item.parameter}")


raising = Raising()
eventstatus = EventStatus()
'''


@pytest.fixture
def pbx_server(tmp_path, monkeypatch):
    install_plugin(tmp_path, monkeypatch, "pbx_test_apps.py", TEST_PLUGIN)
    with running_pbx(tmp_path) as (server, _):
        configure(server, router_table(
            "S:<echo> = echo#postmaster",
            "S:<dtmf> = dtmftest{greeting}#postmaster",
            "S:<nothing> = nosuchapp#postmaster",
            "S:<boom> = raising#postmaster",
        ))
        yield server


def test_a_caller_hears_its_own_440_hz_back_from_echo(pbx_server, tmp_path):
    with RTPPeer(440) as peer:
        sipp = call(pbx_server, tmp_path, "echo", peer.port)
        assert peer.wait_for(lambda: len(peer.heard) > 80), "the echo task sent too little audio"
        code, output = finished(sipp)
        heard = peer.audio()
    assert code == 0, output + errors(tmp_path)
    assert heard_tone(heard, 440)
    assert not heard_tone(heard, 1000)


def test_dtmf_events_reach_the_application_and_its_prompt_and_answer_are_heard(pbx_server, tmp_path):
    prompts = tmp_path / "data" / "pbx" / "prompts"
    prompts.mkdir(parents=True)
    write_wav(str(prompts / "greeting.wav"), Audio("PCMU", g711.encode("PCMU", sine((700,), 0.5))))
    with RTPPeer(0) as peer:
        sipp = call(pbx_server, tmp_path, "dtmf", peer.port)
        assert peer.wait_for(lambda: heard_tone(peer.audio(), 700)), "the greeting was not heard"
        peer.press("5")
        assert peer.wait_for(lambda: heard_tone(peer.audio(), 900)), "the answer to key 5 was not heard"
        code, output = finished(sipp)
    assert code == 0, output + errors(tmp_path)


def test_keys_sent_as_tones_are_heard_unless_in_band_detection_is_off(pbx_server, tmp_path):
    prompts = tmp_path / "data" / "pbx" / "prompts"
    prompts.mkdir(parents=True)
    write_wav(str(prompts / "greeting.wav"), Audio("PCMU", g711.encode("PCMU", sine((700,), 0.5))))
    for setting, answered in (("No", False), ("Auto", True)):
        configure(pbx_server, f"UPDATEMEDIASERVERSETTINGS {{InBandDTMF = {setting};}}")
        with RTPPeer(0) as peer:
            sipp = call(pbx_server, tmp_path, "dtmf", peer.port, "uac_app_pcmu.xml")
            assert peer.wait_for(lambda: heard_tone(peer.audio(), 700)), "the greeting was not heard"
            peer.press_tones("5")
            if answered:
                assert peer.wait_for(lambda: heard_tone(peer.audio(), 900)), "5 as tones was not heard (Auto)"
            else:
                assert not peer.wait_for(lambda: heard_tone(peer.audio(), 900), timeout=1.5), (
                    "5 as tones was answered although InBandDTMF = No"
                )
            code, output = finished(sipp)
        assert code == 0, output + errors(tmp_path)


def test_an_application_that_is_not_installed_answers_404_and_is_logged(pbx_server, tmp_path):
    code, output = finished(call(pbx_server, tmp_path, "nothing", 9, "uac_app_404.xml"))
    assert code == 0, output + errors(tmp_path)
    assert "nosuchapp" in pbx_server.output()


def test_an_application_that_raises_releases_the_call_with_500_and_the_server_goes_on(pbx_server, tmp_path):
    code, output = finished(call(pbx_server, tmp_path, "boom", 9, "uac_app_500.xml"))
    assert code == 0, output + errors(tmp_path)
    log = pbx_server.output()
    assert "deliberate failure in a test application" in log
    with RTPPeer(440) as peer:
        code, output = finished(call(pbx_server, tmp_path, "echo", peer.port))
        assert code == 0, output + errors(tmp_path)
    assert pbx_server.process.poll() is None


def test_tasks_started_signalled_read_and_killed_over_the_cli(pbx_server):
    code, task_id = cli(pbx_server, "STARTPBXTASK postmaster PROGRAM eventstatus")
    assert code == 201 and task_id.isdigit(), task_id
    assert cli(pbx_server, f"SENDTASKEVENT {task_id} EVENT Ping PARAM hello")[0] == 200
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        code, status = cli(pbx_server, f"READNODESTATUS {task_id}")
        if "Ping hello" in str(status):
            break
        time.sleep(0.05)
    assert code == 201 and "Ping hello" in str(status) and "eventstatus" in str(status), status
    assert task_id in str(cli(pbx_server, "LISTPBXTASKS")[1])
    assert cli(pbx_server, f"KILLNODE {task_id}")[0] == 200
    code, answer = cli(pbx_server, f"READNODESTATUS {task_id}")
    assert code >= 500 and "unknown task" in str(answer)

"""
A task's media options (CG/PL's C{MediaOption}) over SIP on a memory
reactor: C{inbandDTMF}, its default from the media server setting
C{InBandDTMF}, and what it does to keys sent as tones.
"""

import pytest
from twisted.plugin import IPlugin
from zope.interface import implementer

from communigate.interfaces import ICallApplication
from communigate.media.tones import dtmf
from communigate.pbx.events import Event

from .conftest import PBXHarness, offer


@implementer(IPlugin, ICallApplication)
class KeyReader:
    """
    Answers, sets C{inbandDTMF} to what a C{set} event carries (reporting
    the old value), and shows every key it reads in its status.
    """

    name = "keyreader"
    description = "reads keys"

    def __init__(self, initial=None, before_answering=None):
        self.initial = initial
        self.before_answering = before_answering
        self.seen = []

    async def run(self, task):
        if self.before_answering is not None:
            # No channel yet: the one accept_call makes takes the option.
            self.seen.append(("before", task.media_option("inbandDTMF", self.before_answering)))
        await task.accept_call()
        if self.initial is not None:
            self.seen.append(("old", task.media_option("inbandDTMF", self.initial)))
        keys = ""
        while True:
            item = await task.read_input(None)
            if isinstance(item, Event):
                if item.is_disconnect:
                    return
                if item.what == "set":
                    self.seen.append(("old", task.media_option("inbandDTMF", item.parameter)))
                continue
            keys += item
            task.set_status(keys)


def harness(app, settings=None):
    built = PBXHarness(applications={"keyreader": app})
    if settings:
        built.cli(f"UPDATEMEDIASERVERSETTINGS {settings}")
    built.route("S:<keys> = keyreader#postmaster")
    return built


def call(pbx):
    pbx.invite("sip:keys@example.com", body=offer(formats="0", events=False))
    answer = pbx.final()
    assert answer.status == 200
    pbx.ack(answer)
    (task,) = pbx.pbx.tasks.values()
    return task, pbx.peer(answer)


def press(pbx, peer, key):
    peer.send_audio(bytes(320 * 5) + dtmf(key, 0.1) + bytes(320 * 10))
    pbx.reactor.advance(0.2)


@pytest.fixture
def stop():
    made = []
    yield made.append
    for pbx in made:
        pbx.pbx.stopService()
        pbx.stop()


def test_a_task_that_turns_in_band_dtmf_off_hears_no_tones_and_on_again_does(stop):
    app = KeyReader(initial=False)
    pbx = harness(app)
    stop(pbx)
    task, peer = call(pbx)
    assert app.seen == [("old", True)]
    assert not task.call.channel.detecting_inband
    assert "InBandDTMF" not in pbx.cli(f"READNODESTATUS {task.id}")["Call"]["Media"]
    press(pbx, peer, "7")
    assert task.status is None
    assert pbx.pbx.counters.dtmf == {}
    pbx.cli(f"SENDTASKEVENT {task.id} set 1")
    pbx.turn()
    assert app.seen == [("old", True), ("old", False)]
    assert pbx.cli(f"READNODESTATUS {task.id}")["Call"]["Media"]["InBandDTMF"] == "YES"
    press(pbx, peer, "4")
    assert task.status == "4"
    assert pbx.pbx.counters.dtmf == {"inband": 1}


def test_the_server_setting_no_makes_channels_without_the_detector(stop):
    app = KeyReader()
    pbx = harness(app, "{InBandDTMF = No;}")
    stop(pbx)
    task, peer = call(pbx)
    assert task.media_option("inbandDTMF") is False
    assert not task.call.channel.detecting_inband
    press(pbx, peer, "7")
    assert task.status is None
    # The task may still want keys from this caller.
    assert task.media_option("inbandDTMF", True) is False
    assert task.call.channel.detecting_inband
    press(pbx, peer, "8")
    assert task.status == "8"


def test_a_setting_changed_during_a_call_leaves_its_channel_and_the_option_says_so(stop):
    pbx = harness(KeyReader())
    stop(pbx)
    task, peer = call(pbx)
    pbx.cli("UPDATEMEDIASERVERSETTINGS {InBandDTMF = No;}")
    assert task.media_option("inbandDTMF") is True
    press(pbx, peer, "6")
    assert task.status == "6"


def test_the_default_setting_auto_detects_tones(stop):
    app = KeyReader()
    pbx = harness(app)
    stop(pbx)
    task, peer = call(pbx)
    assert task.media_option("inbandDTMF") is True
    press(pbx, peer, "5")
    assert task.status == "5"


def test_an_option_set_before_the_call_has_a_channel_holds_for_the_channel_made_later(stop):
    app = KeyReader(before_answering=False)
    pbx = harness(app)
    stop(pbx)
    task, peer = call(pbx)
    assert app.seen == [("before", True)]
    assert task.call.channel.inband_dtmf is False
    press(pbx, peer, "7")
    assert task.status is None


def test_an_unknown_media_option_is_refused_naming_the_known_ones(stop):
    pbx = harness(KeyReader())
    stop(pbx)
    task, _ = call(pbx)
    with pytest.raises(ValueError, match="unknown media option 'mixMOH'; known: inbandDTMF"):
        task.media_option("mixMOH")


@pytest.mark.parametrize("value, flag", [
    (False, False), (True, True), (0, False), (1, True), ("NO", False), ("yes", True), ("0", False), ("off", False),
])
def test_the_flag_takes_bools_and_the_words_for_them(stop, value, flag):
    pbx = harness(KeyReader())
    stop(pbx)
    task, _ = call(pbx)
    task.media_option("inbandDTMF", not flag)
    task.media_option("inbandDTMF", value)
    assert task.media_option("inbandDTMF") is flag
    assert task.call.channel.detecting_inband is flag


@pytest.mark.parametrize("value", ["maybe", 2, 0.5, ""])
def test_a_value_that_is_no_flag_is_refused_and_changes_nothing(stop, value):
    pbx = harness(KeyReader())
    stop(pbx)
    task, _ = call(pbx)
    with pytest.raises(ValueError, match="media option inbandDTMF is a flag"):
        task.media_option("inbandDTMF", value)
    assert task.media_option("inbandDTMF") is True

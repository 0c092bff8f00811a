"""
PBX applications in a real C{twistd communigate}: sipp places the calls,
a Python RTP peer on 127.0.0.1 (the port sipp's SDP names) sends and
analyses the audio.

  - echo: the peer sends 440 Hz and hears 440 Hz back;
  - dtmftest: the peer hears the greeting prompt (a WAV file in the data
    directory's pbx/prompts, 700 Hz), presses 5 as RFC 4733 events and
    hears the 900 Hz tone that answers it;
  - an application nobody installed: 404; one that raises: 500, and the
    server goes on answering;
  - STARTPBXTASK, SENDTASKEVENT, READNODESTATUS, KILLNODE over the CLI.
"""

from __future__ import annotations

import os
import random
import socket
import subprocess
import threading
import time

import pytest

from communigate.admin.client import CLIClient
from communigate.media import g711
from communigate.media.analysis import energy_fraction
from communigate.media.events import TelephoneEventSender
from communigate.media.rtp import RTPError, RTPPacket, parse_rtp
from communigate.media.tones import Tone, ToneGenerator, sine
from communigate.media.wav import Audio, write_wav
from communigate.testing import start_server, stop_server

SCENARIOS = os.path.join(os.path.dirname(__file__), "sipp")
SIPP = ["-i", "127.0.0.1", "-nostdin", "-default_behaviors", "all,-bye", "-trace_err"]

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


class RTPPeer:
    """
    A phone's media side in a thread: it waits for the task's first packet
    (symmetric RTP: it answers where that came from), then sends a 20 ms
    frame of its tone (silence for frequency 0) and, when asked, a key as
    RFC 4733 events; it keeps what it hears.
    """

    def __init__(self, frequency: float = 0.0) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.005)
        self.port = self.sock.getsockname()[1]
        self.frequency = frequency
        self.remote = None
        self.heard: list[bytes] = []
        self.frames_sent = 0
        self._keys = TelephoneEventSender(160)
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(5)
        self.sock.close()

    def press(self, key: str) -> None:
        with self._lock:
            self._keys.send(key)

    def audio(self) -> bytes:
        with self._lock:
            return b"".join(self.heard)

    def wait_for(self, predicate, timeout: float = 10.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return True
            time.sleep(0.02)
        return False

    def _run(self) -> None:
        tone = ToneGenerator(Tone((self.frequency,), -10.0)) if self.frequency else None
        sequence, timestamp, ssrc = 1, 1000, 0x5EED
        next_send = None
        while not self._stop.is_set():
            try:
                data, source = self.sock.recvfrom(2048)
            except socket.timeout:
                data = None
            except OSError:
                return
            if data is not None:
                try:
                    packet = parse_rtp(data)
                except RTPError:
                    packet = None
                if packet is not None and packet.payload_type == 0:
                    with self._lock:
                        self.heard.append(g711.decode("PCMU", packet.payload))
                if self.remote is None:
                    self.remote = source
                    next_send = time.monotonic()
            if self.remote is None or time.monotonic() < next_send:
                continue
            next_send += 0.02
            with self._lock:
                event = self._keys.tick(timestamp)
            if event is not None:
                packet = RTPPacket(101, sequence, event.timestamp, ssrc, event.payload, event.marker)
            else:
                pcm = tone.frame(160) if tone is not None else bytes(320)
                packet = RTPPacket(0, sequence, timestamp, ssrc, g711.encode("PCMU", pcm))
            self.sock.sendto(packet.serialize(), self.remote)
            self.frames_sent += 1
            sequence = (sequence + 1) & 0xFFFF
            timestamp = (timestamp + 160) & 0xFFFFFFFF


def windows(pcm: bytes, size: int = 3200):
    return [pcm[start:start + size] for start in range(0, len(pcm) - size + 1, size // 2)]


def heard_tone(pcm: bytes, frequency: float) -> bool:
    return any(energy_fraction(window, frequency) > 0.6 for window in windows(pcm))


@pytest.fixture
def pbx_server(tmp_path, monkeypatch):
    plugins = tmp_path / "plugins" / "communigate" / "plugins"
    plugins.mkdir(parents=True)
    (plugins / "pbx_test_apps.py").write_text(TEST_PLUGIN)
    monkeypatch.setenv(
        "PYTHONPATH", os.pathsep.join(filter(None, [str(tmp_path / "plugins"), os.environ.get("PYTHONPATH")]))
    )
    low = random.randrange(30000, 60000, 200)
    server = start_server(tmp_path / "data", "--pbx", f"rtp:{low}-{low + 199}:interface=127.0.0.1")
    try:
        with CLIClient.connect(f"tcp:127.0.0.1:{server.cli_port}") as client:
            client.login("postmaster", server.postmaster_password)
            table = "\\e".join([
                "S:<echo> = echo#postmaster",
                "S:<dtmf> = dtmftest{greeting}#postmaster",
                "S:<nothing> = nosuchapp#postmaster",
                "S:<boom> = raising#postmaster",
            ])
            assert client.command(f'SETROUTERTABLE "{table}"')[0] == 200
        yield server
    finally:
        stop_server(server)


def cli(server, line):
    with CLIClient.connect(f"tcp:127.0.0.1:{server.cli_port}") as client:
        client.login("postmaster", server.postmaster_password)
        return client.command(line)


def call(server, workdir, callee, rtp_port, scenario="uac_app.xml"):
    (workdir / f"{scenario}.csv").write_text(f"SEQUENTIAL\n{callee};example.com;{rtp_port}\n")
    return subprocess.Popen(
        ["sipp", "-sf", os.path.join(SCENARIOS, scenario), "-inf", f"{scenario}.csv", "-m", "1", "-p", "0",
         *SIPP, "-timeout", "20s", "-timeout_error", f"127.0.0.1:{server.sip_port}"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=workdir,
    )


def finished(process) -> tuple[int | None, str]:
    try:
        output, _ = process.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        output, _ = process.communicate()
        return None, output
    return process.returncode, output


def errors(workdir) -> str:
    return "".join(p.read_text() for p in workdir.glob("*_errors.log"))


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

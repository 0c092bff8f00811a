"""
The SIP service and the PBX on one L{MemoryUDPReactor}: INVITEs played
in as datagrams, RTP played into the channels' fake ports, every timer on
the clock.
"""

from __future__ import annotations

import importlib.util
import itertools
import os

import pytest

from communigate.media import g711
from communigate.media.analysis import dominant_frequency
from communigate.media.events import TelephoneEvent, event_code
from communigate.media.rtp import RTPPacket, parse_rtp
from communigate.media.sdp import parse_sdp
from communigate.media.offer_answer import streams
from communigate.media.tones import sine
from communigate.pbx.apps import DTMFTest, Echo
from communigate.pbx.commands import PBXCommands
from communigate.pbx.service import MediaSettings, PBXService
from communigate.sip.message import Request, Response

def _sip_harness():
    # The SIP tests' harness, loaded by path: the test directories are not
    # packages.
    path = os.path.join(os.path.dirname(__file__), "..", "sip", "conftest.py")
    spec = importlib.util.spec_from_file_location("sip_harness_for_pbx", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.SIPHarness


SIPHarness = _sip_harness()

CALLER = ("127.0.0.1", 5070)
CALLER_MEDIA = ("127.0.0.1", 40100)
#: 20 ms and a little: float steps never fall short of the tick times.
TICK = 0.02 + 1e-7


def offer(port=CALLER_MEDIA[1], formats="0 8 101", events=True, direction=None) -> bytes:
    lines = [
        "v=0", "o=- 1 1 IN IP4 127.0.0.1", "s=-", "c=IN IP4 127.0.0.1", "t=0 0",
        f"m=audio {port} RTP/AVP {formats}",
    ]
    if events:
        lines += ["a=rtpmap:101 telephone-event/8000", "a=fmtp:101 0-15"]
    if direction:
        lines.append(f"a={direction}")
    return ("\r\n".join(lines) + "\r\n").encode()


class PeerMedia:
    """
    The caller's RTP side: packets it sends into a channel's fake port and
    the packets the channel wrote to it.
    """

    def __init__(self, harness, port, payload_type=0, codec="PCMU", event_type=101):
        self.harness = harness
        self.port = port
        self.payload_type = payload_type
        self.codec = codec
        self.event_type = event_type
        self.sequence = 1000
        self.timestamp = 50_000
        self.source = CALLER_MEDIA

    def send_audio(self, pcm: bytes, *, advance=True):
        """Send L16 C{pcm} as 20 ms packets, one per tick."""
        for start in range(0, len(pcm), 320):
            frame = pcm[start:start + 320]
            packet = RTPPacket(self.payload_type, self.sequence, self.timestamp, 0x1234, g711.encode(self.codec, frame))
            self.port.receive(packet.serialize(), self.source)
            self.sequence = (self.sequence + 1) & 0xFFFF
            self.timestamp += 160
            if advance:
                self.harness.reactor.advance(TICK)

    def send_key(self, key: str):
        """One RFC 4733 event: start, an update, three end packets."""
        code = event_code(key)
        start = self.timestamp
        for duration, end, marker in ((160, False, True), (320, False, False), (480, True, False),
                                      (480, True, False), (480, True, False)):
            payload = TelephoneEvent(code, end, 10, duration).serialize()
            packet = RTPPacket(self.event_type, self.sequence, start, 0x1234, payload, marker)
            self.port.receive(packet.serialize(), self.source)
            self.sequence = (self.sequence + 1) & 0xFFFF
            self.harness.reactor.advance(TICK)
        self.timestamp += 480

    def received(self):
        """The RTP packets the channel sent to the caller, parsed."""
        packets = [parse_rtp(data) for data, address in self.port.written if address == self.source]
        self.port.written[:] = [(d, a) for d, a in self.port.written if a != self.source]
        return packets

    def heard(self, packets=None) -> bytes:
        packets = self.received() if packets is None else packets
        return b"".join(g711.decode(self.codec, p.payload) for p in packets if p.payload_type == self.payload_type)


class PBXHarness(SIPHarness):
    def __init__(self, applications=None, **kwargs):
        super().__init__(**kwargs)
        apps = {"echo": Echo(), "dtmftest": DTMFTest()}
        apps.update(applications or {})
        self.pbx = PBXService(self.core, MediaSettings(30000, 30099, "127.0.0.1"), applications=apps)
        self.pbx.startService()
        self.core.interpreter.add_commands(PBXCommands(self.pbx))
        self._calls = itertools.count(1)
        self._inboxes = {}

    def route(self, *lines):
        self.cli('SETROUTERTABLE "' + "\\e".join(lines) + '"')

    def turn(self, times=5):
        for _ in range(times):
            self.reactor.advance(0)

    def invite(self, uri, *, body=None, call_id=None, source=CALLER, headers=(), content_type="application/sdp"):
        call_id = call_id or f"call{next(self._calls)}@127.0.0.1"
        body = offer() if body is None else body
        host, port = source
        message = self.request(
            "INVITE", uri, user="caller", domain="example.net", call_id=call_id, source=source,
            headers=[("Contact", f"<sip:caller@{host}:{port}>"), *headers], body=body,
            content_type=content_type if body else None,
        )
        self.last_invite = message
        self.port.receive(message, source)
        self.turn()
        return call_id

    def cancel(self, source=CALLER):
        """CANCEL the last INVITE (same branch, RFC 3261 9.1)."""
        text = self.last_invite.split(b"\r\n\r\n", 1)[0].decode()
        lines = text.split("\r\n")
        method, uri, version = lines[0].split(" ")
        kept = [f"CANCEL {uri} {version}"]
        for line in lines[1:]:
            name = line.split(":", 1)[0].lower()
            if name in ("via", "from", "to", "call-id", "max-forwards"):
                kept.append(line)
            elif name == "cseq":
                kept.append(line.replace("INVITE", "CANCEL"))
        kept.append("Content-Length: 0")
        self.port.receive(("\r\n".join(kept) + "\r\n\r\n").encode(), source)
        self.turn()

    def _collect(self, source):
        inbox = self._inboxes.setdefault(source, [])
        inbox.extend(self.take(source))
        return inbox

    def responses(self, source=CALLER):
        inbox = self._collect(source)
        found = [m for m in inbox if isinstance(m, Response)]
        inbox[:] = [m for m in inbox if not isinstance(m, Response)]
        return found

    def final(self, source=CALLER):
        finals = [m for m in self.responses(source) if m.status >= 200]
        assert finals, "no final response"
        return finals[-1]

    def in_dialog(self, method, answer: Response, *, cseq=2, body=b"", content_type=None, source=CALLER,
                  headers=()):
        """A request of the caller inside the dialog C{answer} made."""
        to_tag = answer.to().tag
        contact = answer.headers.get("Contact").strip("<>")
        call_id = answer.call_id
        message = self.request(
            method, contact, user="caller", domain="example.net", to="sip:echo@example.com", call_id=call_id,
            cseq=cseq, to_tag=to_tag, source=source, body=body, content_type=content_type, headers=headers,
        )
        self.port.receive(message, source)
        self.turn()

    def ack(self, answer, **kwargs):
        self.in_dialog("ACK", answer, cseq=1, **kwargs)

    def media_port(self, answer: Response):
        sd = parse_sdp(answer.body)
        info = [s for s in streams(sd) if s.accepted][0]
        for port in self.reactor.udp_ports:
            if port.getHost().port == info.port and port.listening:
                return port
        raise AssertionError(f"no channel port {info.port}")

    def peer(self, answer, **kwargs) -> PeerMedia:
        return PeerMedia(self, self.media_port(answer), **kwargs)

    def requests_to(self, source=CALLER):
        inbox = self._collect(source)
        found = [m for m in inbox if isinstance(m, Request)]
        inbox[:] = [m for m in inbox if not isinstance(m, Request)]
        return found


@pytest.fixture
def caplog_events():
    """The text of every log event while the test runs."""
    from twisted.logger import formatEvent, globalLogPublisher

    texts = []

    def observe(event):
        text = formatEvent(event)
        failure = event.get("log_failure")
        if failure is not None:
            text += " " + failure.getErrorMessage()
        texts.append(text)

    globalLogPublisher.addObserver(observe)
    yield texts
    globalLogPublisher.removeObserver(observe)


@pytest.fixture
def pbx():
    harness = PBXHarness()
    yield harness
    harness.pbx.stopService()
    harness.stop()


def tone(frequency, seconds=0.4, level=-10.0) -> bytes:
    return sine((frequency,), seconds, level)


def frequency_of(pcm: bytes) -> float:
    return dominant_frequency(pcm)

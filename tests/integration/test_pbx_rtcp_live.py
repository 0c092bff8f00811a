"""
RTCP from a PBX task in a real C{twistd communigate}: sipp calls the
C{echo} application for six and a half seconds with SDP naming a Python
RTP peer that also listens on its RTCP port (RTP port + 1).

The peer must receive, within about seven seconds, a valid compound
SR from the server whose sender SSRC is the SSRC of the RTP it hears,
whose packet and octet counts match what it heard, and whose report block
covers the peer's own SSRC with plausible figures.  It answers with a
receiver report about the server's stream (LSR/DLSR), after which the
task's READNODESTATUS shows a round-trip time; the BYE that ends the call
brings the server's RTCP BYE.

The same with RTCP multiplexed on the RTP port (RFC 5761): sipp offers
C{a=rtcp-mux} and fails the call unless the 200 agrees; the peer sends
its own SR on its RTP port the moment it hears the task, and must get
every report of the task's on its RTP port, from the task's RTP source,
none on its RTCP port, with the block's LSR showing that the task read
its SR, and its RR (muxed too) giving the task a round-trip time.
"""

from __future__ import annotations

import random
import re
import select
import socket
import time

import pytest

from communigate.media import g711
from communigate.media.rtcp import (
    Goodbye,
    RTCPError,
    ReceiverReport,
    ReportBlock,
    SenderReport,
    compound,
    ntp_middle,
    parse_rtcp,
)
from communigate.media.rtcp import ntp_timestamp
from communigate.media.rtp import RTPError, RTPPacket, is_rtcp, parse_rtp
from communigate.media.tones import Tone, ToneGenerator

from pbx_live_helpers import ThreadedPeer, call, cli, configure, pbx_server

PEER_SSRC = 0x5EED0001


def bind_pair():
    """Two UDP sockets on 127.0.0.1, an even port and the odd one above."""
    for _ in range(200):
        port = random.randrange(20000, 29998, 2)
        rtp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            rtp.bind(("127.0.0.1", port))
        except OSError:
            rtp.close()
            continue
        rtcp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            rtcp.bind(("127.0.0.1", port + 1))
        except OSError:
            rtp.close()
            rtcp.close()
            continue
        return rtp, rtcp
    raise RuntimeError("no free even/odd UDP port pair")


class RTCPListeningPeer(ThreadedPeer):
    """
    A phone's media side with RTCP, in a thread: it answers the task's RTP
    where it came from with a 440 Hz tone every 20 ms (SSRC C{PEER_SSRC}),
    keeps the RTP it hears, and keeps every RTCP datagram that reaches its
    RTCP port, parsed, with how many RTP packets it had heard by then.
    C{reply_to_sr} makes it answer the first SR with a RR about the
    server's stream, 50 ms later (for the round-trip time).

    C{muxed}: RTCP shares the RTP port (RFC 5761) both ways: RTCP that
    arrives on the RTP port is kept as above, what arrives on the RTCP
    port is only counted (C{rtcp_port_datagrams}), the RR goes out of the
    RTP port, and the peer sends a SR of its own there as soon as it hears
    the task.
    """

    def __init__(self, muxed: bool = False) -> None:
        super().__init__()
        self.muxed = muxed
        self.rtcp_port_datagrams = 0
        self.rtp_sources: set = set()
        self.rtp, self.rtcp = bind_pair()
        self.port = self.rtp.getsockname()[1]
        self.rtp_heard: list[RTPPacket] = []
        self.rtcp_heard: list[tuple[float, tuple, int]] = []  # (time, packets, RTP heard by then)
        self.rtcp_sources: list[tuple] = []
        self.rtcp_malformed = 0
        self.sent = 0
        self.highest_sent = None
        self.replied = False
        self._remote = None

    def _close(self) -> None:
        self.rtp.close()
        self.rtcp.close()

    def reports(self):
        with self._lock:
            return list(self.rtcp_heard)

    def _run(self) -> None:
        tone = ToneGenerator(Tone((440.0,), -10.0))
        sequence, timestamp = 40000, 123456
        next_send = None
        reply = None  # (when, datagram, address)
        while not self._stop.is_set():
            try:
                ready, _, _ = select.select([self.rtp, self.rtcp], [], [], 0.005)
            except (OSError, ValueError):
                return
            now = time.monotonic()
            for sock in ready:
                data, source = sock.recvfrom(4096)
                if sock is self.rtp and not (self.muxed and is_rtcp(data)):
                    try:
                        packet = parse_rtp(data)
                    except RTPError:
                        continue
                    with self._lock:
                        self.rtp_heard.append(packet)
                        self.rtp_sources.add(source)
                    if self._remote is None:
                        self._remote, next_send = source, now
                        if self.muxed:
                            sr = SenderReport(PEER_SSRC, ntp_timestamp(time.time()), 123456, 0, 0)
                            self.rtp.sendto(compound(sr, "peer@test"), source)
                    continue
                if sock is self.rtcp and self.muxed:
                    self.rtcp_port_datagrams += 1
                    continue
                try:
                    packets = parse_rtcp(data)
                except RTCPError:
                    self.rtcp_malformed += 1
                    continue
                with self._lock:
                    self.rtcp_heard.append((now, packets, len(self.rtp_heard)))
                    self.rtcp_sources.append(source)
                first = packets[0]
                if isinstance(first, SenderReport) and not self.replied and reply is None:
                    block = ReportBlock(first.ssrc, 0, 0, 0, 0, ntp_middle(first.ntp_timestamp), round(0.05 * 65536))
                    reply = (now + 0.05, compound(ReceiverReport(PEER_SSRC, (block,)), "peer@test"), source)
            if reply is not None and now >= reply[0]:
                (self.rtp if self.muxed else self.rtcp).sendto(reply[1], reply[2])
                self.replied, reply = True, None
            if self._remote is None or now < next_send:
                continue
            next_send += 0.02
            packet = RTPPacket(0, sequence, timestamp, PEER_SSRC, g711.encode("PCMU", tone.frame(160)))
            self.rtp.sendto(packet.serialize(), self._remote)
            self.sent += 1
            self.highest_sent = sequence
            sequence = (sequence + 1) & 0xFFFF
            timestamp = (timestamp + 160) & 0xFFFFFFFF


def round_trip_shown(server) -> str:
    """The echo task's READNODESTATUS once it shows an RTT (or after 3 s)."""
    status = ""
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline and "RTT" not in status:
        code, tasks = cli(server, "LISTPBXTASKS")
        for task_id in re.findall(r"(\d+)\s*=", str(tasks)):
            status = str(cli(server, f"READNODESTATUS {task_id}")[1])
        time.sleep(0.1)
    return status


def echo_call_reports(server, workdir, peer, scenario: str):
    """
    A sipp call to echo with C{scenario}, its media C{peer}: the task's
    first SR must come within 7 s, our RR reach it (an RTT shows) and its
    BYE come when the call ends.  Returns (when the call started, the
    task's READNODESTATUS, sipp's output and exit code).
    """
    started = time.monotonic()
    sipp = call(server, workdir, "echo", peer.port, scenario, timeout="30s")
    try:
        got_sr = peer.wait_for(
            lambda: any(isinstance(p[0], SenderReport) for _, p, _ in peer.reports()), timeout=7.0
        )
        assert got_sr, (
            f"no SR within 7 s of the call ({time.monotonic() - started:.1f} s; RTP packets heard: "
            f"{len(peer.rtp_heard)}, datagrams on the RTCP port: {peer.rtcp_port_datagrams})"
        )
        # The round-trip time shows once our RR has reached the task.
        assert peer.wait_for(lambda: peer.replied, timeout=2.0)
        status = round_trip_shown(server)
        assert peer.wait_for(
            lambda: any(isinstance(p[-1], Goodbye) for _, p, _ in peer.reports()), timeout=15.0
        ), "no RTCP BYE after the call ended"
        output, _ = sipp.communicate(timeout=30)
    finally:
        if sipp.poll() is None:
            sipp.kill()
            sipp.communicate()
    return started, status, output, sipp.returncode


@pytest.fixture
def echo_server(tmp_path):
    with pbx_server(tmp_path) as (server, _):
        configure(server, 'SETROUTERTABLE "S:<echo> = echo#postmaster"')
        yield server


def test_a_call_to_echo_gets_sender_reports_about_its_stream_and_a_bye(echo_server, tmp_path):
    with RTCPListeningPeer() as peer:
        started, status, output, returncode = echo_call_reports(echo_server, tmp_path, peer, "uac_app_rtcp.xml")
        when, packets, heard = next((w, p, h) for w, p, h in peer.reports() if isinstance(p[0], SenderReport))
        rtp_ssrcs = {p.ssrc for p in peer.rtp_heard}
        sources = set(peer.rtcp_sources)
        sent, highest_sent = peer.sent, peer.highest_sent
    assert returncode == 0, output

    sr, sdes = packets[0], packets[1]
    assert rtp_ssrcs == {sr.ssrc}, "the SR's sender is not the stream we hear"
    assert sdes.chunks[0].ssrc == sr.ssrc and sdes.chunks[0].cname
    # What the SR says was sent is what had reached us, give or take a few in flight.
    assert abs(sr.packet_count - heard) <= 5, (sr.packet_count, heard)
    assert sr.octet_count == 160 * sr.packet_count
    assert when - started < 7.5
    (block,) = sr.reports
    assert block.ssrc == PEER_SSRC
    assert 40000 < block.highest_sequence <= highest_sent
    assert 0 <= block.cumulative_lost <= 5 and block.fraction_lost <= 13
    assert block.jitter < 8000  # under a second, in timestamp units
    assert block.lsr == 0  # we never sent an SR
    # Every report came from one source: the channel's RTCP port.
    assert len(sources) == 1 and next(iter(sources))[0] == "127.0.0.1"
    assert "RTT" in status, status
    assert sent > 0


def test_a_call_that_muxes_gets_the_reports_on_its_rtp_port_and_the_task_reads_its_sr(echo_server, tmp_path):
    with RTCPListeningPeer(muxed=True) as peer:
        _, status, output, returncode = echo_call_reports(echo_server, tmp_path, peer, "uac_app_rtcp_mux.xml")
        reports = peer.reports()
        rtcp_sources = set(peer.rtcp_sources)
        rtp_sources = set(peer.rtp_sources)
        on_rtcp_port = peer.rtcp_port_datagrams
        rtp_ssrcs = {p.ssrc for p in peer.rtp_heard}
    assert returncode == 0, output  # the 200 carried a=rtcp-mux
    assert on_rtcp_port == 0, "the task sent RTCP to the RTCP port although mux was agreed"
    assert len(rtp_sources) == 1 and rtcp_sources == rtp_sources, (rtcp_sources, rtp_sources)
    sr = next(p[0] for _, p, _ in reports if isinstance(p[0], SenderReport))
    assert rtp_ssrcs == {sr.ssrc}
    (block,) = sr.reports
    assert block.ssrc == PEER_SSRC
    assert block.lsr != 0, "the task did not read the SR the peer sent on its RTP port"
    assert "RTT" in status, status

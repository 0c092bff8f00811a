"""
Cost of the sans-IO media pieces on one core: G.711 frames (160 samples,
20 ms) encoded and decoded, RTP packets (172 octets: PCMU frame) parsed and
built, an RTCP compound report parsed, a 10-party mix-minus (what each
conference party hears) per 20 ms tick, a jitter buffer push + tick, the
in-band DTMF detector per frame, and SDP answering.  Prints microseconds
per operation, operations per second and, where it means something, how
many real-time streams that is (50 frames/s each).  Best of 7 runs.

    python benchmarks/media_codecs.py [REPEATS]
"""

import sys
import timeit

from communigate.media import g711, pcm, rtcp
from communigate.media.inband import DTMFDetector
from communigate.media.jitter import JitterBuffer
from communigate.media.offer_answer import DEFAULT_CAPABILITIES, answer
from communigate.media.rtp import RTPPacket, parse_rtp
from communigate.media.sdp import parse_sdp
from communigate.media.tones import sine

FRAME_RATE = 50  # frames per second of one 20 ms stream

OFFER = (
    b"v=0\r\no=alice 2890844526 2890844526 IN IP4 192.0.2.10\r\ns=-\r\n"
    b"c=IN IP4 192.0.2.10\r\nt=0 0\r\nm=audio 49170 RTP/AVP 0 8 101\r\n"
    b"a=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n"
    b"a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=ptime:20\r\na=sendrecv\r\n"
)


def best(run, number: int) -> float:
    run()
    return min(timeit.repeat(run, number=number, repeat=7)) / number


def report(label: str, seconds: float, streams: bool = False) -> None:
    line = f"  {label:58} {seconds * 1e6:8.2f} us  {1 / seconds:12,.0f}/s"
    if streams:
        line += f"  = {1 / seconds / FRAME_RATE:9,.0f} streams"
    print(line)


def jitter_buffer_run(count: int):
    packets = [(i, 160 * i, b"\xff" * 160, 0.02 * i + 0.005) for i in range(count)]

    def run():
        buffer = JitterBuffer()
        for sequence, timestamp, payload, arrival in packets:
            buffer.push(sequence, timestamp, payload, arrival)
            buffer.tick(arrival + 0.001)

    return run


def main(repeats: int) -> None:
    l16 = sine([440, 1000], 0.02, level=-10)
    ulaw = g711.ulaw_encode(l16)
    alaw = g711.alaw_encode(l16)
    packet = RTPPacket(0, 1234, 567890, 0xDEADBEEF, ulaw, True)
    data = packet.serialize()
    report_bytes = rtcp.compound(
        rtcp.SenderReport(1, 2, 3, 4, 5, (rtcp.ReportBlock(9, 1, 2, 3, 4, 5, 6),)), "alice@example.com"
    )
    parties = [pcm.from_samples(pcm.to_samples(sine([200 + 100 * i], 0.02, level=-20))) for i in range(10)]
    detector = DTMFDetector()
    offer = parse_sdp(OFFER)

    print(f"G.711, one 20 ms frame (160 samples); best of 7 runs of {repeats}")
    report("µ-law encode (L16 -> PCMU)", best(lambda: g711.ulaw_encode(l16), repeats), True)
    report("µ-law decode (PCMU -> L16)", best(lambda: g711.ulaw_decode(ulaw), repeats), True)
    report("A-law encode (L16 -> PCMA)", best(lambda: g711.alaw_encode(l16), repeats), True)
    report("A-law decode (PCMA -> L16)", best(lambda: g711.alaw_decode(alaw), repeats), True)
    print(f"RTP and RTCP ({len(data)}-octet PCMU packet, {len(report_bytes)}-octet SR+SDES)")
    report("RTP parse", best(lambda: parse_rtp(data), repeats), True)
    report("RTP build (serialize)", best(packet.serialize, repeats), True)
    report("RTP parse + build (what a relay that rewrites SSRC does)",
           best(lambda: parse_rtp(data).serialize(), repeats), True)
    report("RTCP compound parse", best(lambda: rtcp.parse_rtcp(report_bytes), repeats))
    print("mixing, per 20 ms tick")
    tick = best(lambda: pcm.mix_minus(parties), max(1, repeats // 10))
    report("mix-minus of 10 parties (L16 in, 10 frames out)", tick)
    print(f"  {'':58} one tick is {tick / 0.02:.1%} of a 20 ms tick: "
          f"{int(0.02 / tick)} such conferences per core")
    decode_mix_encode = best(
        lambda: [g711.ulaw_encode(f) for f in pcm.mix_minus([g711.ulaw_decode(ulaw)] * 10)],
        max(1, repeats // 10),
    )
    report("decode 10 PCMU frames, mix-minus, encode 10", decode_mix_encode)
    print("per-stream machinery, per 20 ms frame")
    count = 500
    report("jitter buffer push + tick", best(jitter_buffer_run(count), max(1, repeats // count)) / count, True)
    report("in-band DTMF detector (two 160-sample blocks)",
           best(lambda: detector.feed(l16), max(1, repeats // 50)), True)
    print("signalling")
    report("SDP parse + answer + serialize",
           best(lambda: answer(parse_sdp(OFFER), DEFAULT_CAPABILITIES, "198.51.100.1", [40000]).serialize(),
                max(1, repeats // 10)))
    del offer


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 20000)

"""
Media: the sans-IO pieces of the real-time side — RTP and RTCP packets and
receiver statistics, SDP and offer/answer, G.711, RFC 4733 telephone-events
and in-band DTMF detection, a jitter buffer, tones, WAV files and signal
analysis — plus a minimal Twisted RTP session.  See docs/media.md.
"""

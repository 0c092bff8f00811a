"""
WAV files: 8 kHz mono PCM, A-law and µ-law (also as EXTENSIBLE), chunks in
any order, the stdlib reading what we write, and clear errors for
everything else.
"""

import io
import struct
import wave

import pytest
from hypothesis import given, strategies as st

from communigate.media import g711, tones
from communigate.media.wav import Audio, WAVError, parse_wav, read_wav, serialize_wav, write_wav

TONE = tones.sine([440], 0.1)


def stdlib_wav(frames: bytes, channels=1, width=2, rate=8000) -> bytes:
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(width)
        w.setframerate(rate)
        w.writeframes(frames)
    return out.getvalue()


def riff(*chunks: bytes) -> bytes:
    body = b"WAVE" + b"".join(chunks)
    return b"RIFF" + struct.pack("<I", len(body)) + body


def chunk(chunk_id: bytes, payload: bytes) -> bytes:
    return chunk_id + struct.pack("<I", len(payload)) + payload + (b"\x00" if len(payload) & 1 else b"")


def fmt(tag=1, channels=1, rate=8000, block=2, bits=16, extra=b""):
    return chunk(b"fmt ", struct.pack("<HHIIHH", tag, channels, rate, rate * block, block, bits) + extra)


def test_a_stdlib_pcm_file_reads_as_l16():
    audio = parse_wav(stdlib_wav(TONE))
    assert audio == Audio("L16", TONE, 8000)
    assert audio.sample_count == 800 and audio.duration == pytest.approx(0.1)


def test_what_we_write_as_pcm_the_stdlib_reads():
    data = serialize_wav(Audio("L16", TONE))
    with wave.open(io.BytesIO(data)) as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate()) == (1, 2, 8000)
        assert w.readframes(10**6) == TONE


@pytest.mark.parametrize("encoding, tag", [("PCMU", 7), ("PCMA", 6)])
def test_g711_files_have_their_format_tag_and_a_fact_chunk(encoding, tag):
    codes = g711.encode(encoding, TONE)
    data = serialize_wav(Audio(encoding, codes))
    assert data[20:22] == struct.pack("<H", tag)
    assert data[16:20] == struct.pack("<I", 18)  # fmt with cbSize
    assert b"fact" in data
    audio = parse_wav(data)
    assert audio == Audio(encoding, codes) and audio.sample_count == 800
    assert audio.to_l16() == g711.decode(encoding, codes)


def test_conversion_between_encodings():
    audio = Audio("L16", TONE)
    assert audio.encode("pcmu") == g711.ulaw_encode(TONE)
    through_ulaw = g711.ulaw_decode(g711.ulaw_encode(TONE))
    assert Audio("PCMU", audio.encode("PCMU")).encode("PCMA") == g711.alaw_encode(through_ulaw)
    assert audio.encode("L16") == TONE and audio.to_l16() == TONE


def test_extensible_format_and_other_chunks_in_between():
    guid_tail = bytes.fromhex("0000 0000 1000 8000 00aa00389b71")
    extensible = struct.pack("<HHI", 22, 8, 0) + struct.pack("<H", 7) + guid_tail
    data = riff(
        chunk(b"LIST", b"INFOISFT\x03\x00\x00\x00ab\x00"),  # odd size, padded
        fmt(tag=0xFFFE, block=1, bits=8, extra=extensible),
        chunk(b"fact", struct.pack("<I", 3)),
        chunk(b"data", b"\xff\x00\x80"),
        chunk(b"cue ", bytes(4)),
    )
    assert parse_wav(data) == Audio("PCMU", b"\xff\x00\x80")


def test_odd_length_g711_data_is_padded_and_read_back():
    data = serialize_wav(Audio("PCMA", b"\xd5\xd5\xd5"))
    assert len(data) % 2 == 0
    assert parse_wav(data).data == b"\xd5\xd5\xd5"


@pytest.mark.parametrize("data, message", [
    (b"", "not a WAV file"),
    (b"RIFF\x00\x00\x00\x00AVI ", "not a WAV file"),
    (stdlib_wav(TONE, channels=2), "2 channels"),
    (stdlib_wav(TONE, rate=16000), "sample rate 16000 Hz"),
    (stdlib_wav(TONE[:100], width=1), "8 bits per sample; L16"),
    (riff(fmt(tag=3, bits=32, block=4), chunk(b"data", bytes(8))), "IEEE float"),
    (riff(fmt(tag=0x55), chunk(b"data", b"")), "MP3"),
    (riff(fmt(tag=0x1234), chunk(b"data", b"")), "format tag 0x1234"),
    (riff(fmt(tag=7, bits=16, block=2), chunk(b"data", b"")), "16 bits per sample; PCMU"),
    (riff(fmt(block=4), chunk(b"data", b"")), "block align 4"),
    (riff(chunk(b"data", bytes(4)), fmt()), "data chunk before the fmt chunk"),
    (riff(fmt()), "no data chunk"),
    (riff(chunk(b"LIST", b"")), "no fmt chunk"),
    (riff(chunk(b"fmt ", bytes(10))), "fmt chunk of 10 octets"),
    (riff(fmt(tag=0xFFFE)), "EXTENSIBLE fmt chunk shorter"),
    (riff(fmt(), b"data" + struct.pack("<I", 100) + bytes(10)), "claims 100 octets"),
    (riff(fmt(), chunk(b"data", bytes(3))), "not whole 2-octet samples"),
])
def test_files_we_cannot_play_raise_wav_errors_saying_why(data, message):
    with pytest.raises(WAVError, match=message):
        parse_wav(data)


def test_file_io(tmp_path):
    path = tmp_path / "prompt.wav"
    write_wav(path, Audio("PCMU", b"\xff" * 160))
    assert read_wav(path) == Audio("PCMU", b"\xff" * 160)


def test_bad_audio_values_are_refused():
    with pytest.raises(ValueError, match="encoding must be"):
        Audio("G729", b"")
    with pytest.raises(ValueError, match="only 8000 Hz"):
        serialize_wav(Audio("L16", b"", 16000))


@given(st.sampled_from(["L16", "PCMU", "PCMA"]), st.binary(max_size=300))
def test_every_audio_survives_a_round_trip(encoding, data):
    if encoding == "L16":
        data = data[: len(data) // 2 * 2]
    audio = Audio(encoding, data)
    assert parse_wav(serialize_wav(audio)) == audio


@given(st.binary(max_size=200))
def test_arbitrary_octets_parse_or_raise_wav_error(data):
    for prefix in (b"", b"RIFF\x00\x00\x00\x00WAVE"):
        try:
            parse_wav(prefix + data)
        except WAVError:
            pass

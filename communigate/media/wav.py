"""
WAV files of telephone audio: 8 kHz mono, as 16-bit PCM (format tag 1),
A-law (6) or µ-law (7), also inside WAVE_FORMAT_EXTENSIBLE (0xFFFE).

The stdlib ``wave`` module reads only PCM, so this module parses RIFF
itself: chunks in any order (``LIST``, ``fact``, ``cue `` ... skipped, odd
sizes padded), ``fmt `` before ``data``.  Anything else raises `WAVError`
with the reason: not RIFF/WAVE, a truncated chunk, stereo, another
sample rate, another format (IEEE float, ADPCM, GSM, MP3 ... named when
known), an inconsistent block size.

`parse_wav(octets) -> Audio`, `serialize_wav(audio) -> octets`;
`read_wav(path)` and `write_wav(path, audio)` do the file I/O.  An
`Audio` holds the encoding (``"L16"``, ``"PCMU"``, ``"PCMA"``), the
octets as stored (L16 little-endian, or G.711 codes) and the rate;
``to_l16()`` decodes, ``encode(name)`` re-encodes for a given RTP codec.
G.711 files are written with an 18-octet ``fmt `` chunk and a ``fact``
chunk (sample count), as the format requires for non-PCM data.
"""

from __future__ import annotations

import struct

import attrs

from communigate.media import g711

__all__ = ["WAVError", "Audio", "parse_wav", "serialize_wav", "read_wav", "write_wav"]

PCM, ALAW, MULAW, EXTENSIBLE = 0x0001, 0x0006, 0x0007, 0xFFFE
_ENCODING_OF_TAG = {PCM: "L16", ALAW: "PCMA", MULAW: "PCMU"}
_TAG_OF_ENCODING = {v: k for k, v in _ENCODING_OF_TAG.items()}
_KNOWN_OTHER_FORMATS = {
    0x0002: "Microsoft ADPCM",
    0x0003: "IEEE float",
    0x0011: "IMA ADPCM",
    0x0031: "GSM 6.10",
    0x0050: "MPEG",
    0x0055: "MP3",
    0x0064: "G.726 ADPCM",
}
_BITS = {"L16": 16, "PCMU": 8, "PCMA": 8}
RATE = 8000


class WAVError(ValueError):
    """The file is not a WAV file this server can play."""


@attrs.frozen
class Audio:
    encoding: str
    data: bytes
    rate: int = RATE

    def __attrs_post_init__(self):
        if self.encoding not in _BITS:
            raise ValueError(f"encoding must be L16, PCMU or PCMA, not {self.encoding!r}")

    @property
    def sample_count(self) -> int:
        return len(self.data) // (_BITS[self.encoding] // 8)

    @property
    def duration(self) -> float:
        return self.sample_count / self.rate

    def to_l16(self) -> bytes:
        """The audio as L16."""
        if self.encoding == "L16":
            return self.data
        return g711.decode(self.encoding, self.data)

    def encode(self, encoding: str) -> bytes:
        """The audio in ``encoding`` (L16, PCMU or PCMA), converting if needed."""
        encoding = encoding.upper()
        if encoding == self.encoding:
            return self.data
        l16 = self.to_l16()
        return l16 if encoding == "L16" else g711.encode(encoding, l16)


def _format_name(tag: int) -> str:
    known = _KNOWN_OTHER_FORMATS.get(tag)
    return f"format tag {tag:#06x}" + (f" ({known})" if known else "")


def parse_wav(data: bytes) -> Audio:
    """The audio of a WAV file's octets."""
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise WAVError("not a WAV file (no RIFF/WAVE header)")
    offset = 12
    fmt = None
    while offset + 8 <= len(data):
        chunk_id = data[offset:offset + 4]
        (size,) = struct.unpack_from("<I", data, offset + 4)
        start = offset + 8
        end = start + size
        if end > len(data):
            raise WAVError(
                f"{chunk_id.decode('latin-1')!r} chunk claims {size} octets, "
                f"the file has {len(data) - start}"
            )
        if chunk_id == b"fmt ":
            fmt = _parse_fmt(data[start:end])
        elif chunk_id == b"data":
            if fmt is None:
                raise WAVError("data chunk before the fmt chunk")
            encoding, block_align = fmt
            body = bytes(data[start:end])
            if len(body) % block_align:
                raise WAVError(f"data of {len(body)} octets is not whole {block_align}-octet samples")
            return Audio(encoding, body, RATE)
        offset = end + (size & 1)
    raise WAVError("no data chunk" if fmt is not None else "no fmt chunk")


def _parse_fmt(chunk: bytes) -> tuple[str, int]:
    if len(chunk) < 16:
        raise WAVError(f"fmt chunk of {len(chunk)} octets, needs 16")
    tag, channels, rate, _byte_rate, block_align, bits = struct.unpack_from("<HHIIHH", chunk)
    if tag == EXTENSIBLE:
        if len(chunk) < 40:
            raise WAVError("WAVE_FORMAT_EXTENSIBLE fmt chunk shorter than 40 octets")
        (tag,) = struct.unpack_from("<H", chunk, 24)  # first two octets of the sub-format GUID
    encoding = _ENCODING_OF_TAG.get(tag)
    if encoding is None:
        raise WAVError(f"unsupported {_format_name(tag)}; use 16-bit PCM, A-law or µ-law")
    if channels != 1:
        raise WAVError(f"{channels} channels; only mono is supported")
    if rate != RATE:
        raise WAVError(f"sample rate {rate} Hz; only {RATE} Hz is supported")
    if bits != _BITS[encoding]:
        raise WAVError(f"{bits} bits per sample; {encoding} files have {_BITS[encoding]}")
    if block_align != bits // 8:
        raise WAVError(f"block align {block_align} does not match {bits}-bit mono")
    return encoding, block_align


def serialize_wav(audio: Audio) -> bytes:
    """A WAV file of the audio (as stored, no conversion)."""
    if audio.rate != RATE:
        raise ValueError(f"only {RATE} Hz audio is written, not {audio.rate}")
    bits = _BITS[audio.encoding]
    block = bits // 8
    tag = _TAG_OF_ENCODING[audio.encoding]
    fmt = struct.pack("<HHIIHH", tag, 1, RATE, RATE * block, block, bits)
    chunks = []
    if tag == PCM:
        chunks.append(_chunk(b"fmt ", fmt))
    else:
        chunks.append(_chunk(b"fmt ", fmt + b"\x00\x00"))
        chunks.append(_chunk(b"fact", struct.pack("<I", audio.sample_count)))
    chunks.append(_chunk(b"data", audio.data))
    body = b"WAVE" + b"".join(chunks)
    return b"RIFF" + struct.pack("<I", len(body)) + body


def _chunk(chunk_id: bytes, payload: bytes) -> bytes:
    pad = b"\x00" if len(payload) & 1 else b""
    return chunk_id + struct.pack("<I", len(payload)) + payload + pad


def read_wav(path) -> Audio:
    with open(path, "rb") as f:
        return parse_wav(f.read())


def write_wav(path, audio: Audio) -> None:
    with open(path, "wb") as f:
        f.write(serialize_wav(audio))

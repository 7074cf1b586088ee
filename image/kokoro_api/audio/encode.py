"""Encode float32 24 kHz mono audio into mp3, opus (Ogg), aac (ADTS), flac, wav or raw pcm.

One incremental encoder serves both whole and streamed responses: ``write`` takes samples and returns
the bytes ready so far, ``close`` flushes. The concatenation of everything returned is one valid file
(a single header), so a streamed body decodes like the whole one. WAV streams with an "unknown length"
header (0xFFFFFFFF sizes; libsndfile, PyAV and ffprobe all take the length from the data); the whole-file
path patches in the real sizes.

FLAC is the exception: its STREAMINFO header carries the total sample count, and a stream that leaves it
0 ("unknown", legal but) is refused by libsndfile (soundfile's "array is too big"). So a FLAC encoder
always writes to a seekable buffer and hands out the whole file, header finalized, on ``close``:
``write`` returns nothing for FLAC (see :data:`HELD_WHOLE`).
"""

from __future__ import annotations

import io
import struct

import numpy as np

SAMPLE_RATE = 24_000

MEDIA_TYPES = {
    "mp3": "audio/mpeg",
    "opus": "audio/ogg",
    "ogg": "audio/ogg",
    "aac": "audio/aac",
    "flac": "audio/flac",
    "wav": "audio/wav",
    "pcm": "audio/pcm",
}
EXTENSIONS = {"mp3": "mp3", "opus": "opus", "ogg": "ogg", "aac": "aac", "flac": "flac", "wav": "wav", "pcm": "pcm"}

HELD_WHOLE = frozenset({"flac"})  # formats whose header needs the length: bytes only on close()

# format -> (container, codec, bit rate)
_AV = {
    "mp3": ("mp3", "libmp3lame", 64_000),
    "opus": ("ogg", "libopus", 48_000),
    "ogg": ("ogg", "libopus", 48_000),
    "aac": ("adts", "aac", 64_000),
    "flac": ("flac", "flac", None),
}


def to_int16(audio: np.ndarray) -> np.ndarray:
    return (np.clip(audio, -1.0, 1.0) * 32767.0).astype("<i2")


class _Sink(io.RawIOBase):
    """A write-only, non-seekable byte sink that hands out what was written since the last drain."""

    def __init__(self) -> None:
        self._buf = bytearray()

    def writable(self) -> bool:
        return True

    def write(self, b) -> int:  # type: ignore[override]
        self._buf += b
        return len(b)

    def drain(self) -> bytes:
        out = bytes(self._buf)
        self._buf.clear()
        return out


class _SeekableSink(io.BytesIO):
    """Keeps everything until the muxer is closed (it may seek back to patch the header)."""

    closed_out = False

    def drain(self) -> bytes:
        return self.getvalue() if self.closed_out else b""


class Encoder:
    """Incremental encoder for one response."""

    def __init__(self, fmt: str, seekable: bool = False) -> None:
        if fmt not in MEDIA_TYPES:
            raise ValueError(f"unsupported format {fmt}")
        self.fmt = fmt
        self.media_type = MEDIA_TYPES[fmt]
        self._started = False
        if fmt in _AV:
            import av

            container, codec, bit_rate = _AV[fmt]
            # A whole file goes to a seekable buffer so the muxer can finalize headers (FLAC's length).
            self._sink = _SeekableSink() if seekable or fmt in HELD_WHOLE else _Sink()
            self._out = av.open(self._sink, mode="w", format=container)
            self._stream = self._out.add_stream(codec, rate=SAMPLE_RATE, layout="mono")
            if bit_rate:
                self._stream.bit_rate = bit_rate
            self._fifo = av.AudioFifo()
            self._pts = 0

    def write(self, audio: np.ndarray) -> bytes:
        pcm = to_int16(audio)
        if self.fmt == "pcm":
            return pcm.tobytes()
        if self.fmt == "wav":
            head = b"" if self._started else wav_header(None)
            self._started = True
            return head + pcm.tobytes()
        return self._encode(pcm, final=False)

    def close(self) -> bytes:
        if self.fmt == "wav" and not self._started:
            self._started = True
            return wav_header(None)
        if self.fmt in ("pcm", "wav"):
            return b""
        tail = self._encode(np.zeros(0, dtype="<i2"), final=True)
        return tail

    def _encode(self, pcm: np.ndarray, final: bool) -> bytes:
        import av

        if len(pcm):
            frame = av.AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16", layout="mono")
            frame.sample_rate = SAMPLE_RATE
            self._fifo.write(frame)
        size = self._stream.codec_context.frame_size or 1024
        while self._fifo.samples >= size or (final and self._fifo.samples):
            frame = self._fifo.read(size, partial=final)
            if frame is None:
                break
            if frame.samples < size and self.fmt in ("opus", "ogg"):  # libopus needs whole frames
                data = np.zeros((1, size), dtype="<i2")
                data[0, : frame.samples] = frame.to_ndarray()[0]
                frame = av.AudioFrame.from_ndarray(data, format="s16", layout="mono")
            frame.sample_rate = SAMPLE_RATE
            frame.pts = self._pts
            self._pts += frame.samples
            for packet in self._stream.encode(frame):
                self._out.mux(packet)
        if final:
            for packet in self._stream.encode(None):
                self._out.mux(packet)
            self._out.close()
            if isinstance(self._sink, _SeekableSink):
                self._sink.closed_out = True
        return self._sink.drain()


def wav_header(n_samples: int | None) -> bytes:
    """44-byte PCM s16le mono header; ``None`` writes the 'unknown length' sizes used for streaming."""
    data = 0xFFFFFFFF if n_samples is None else n_samples * 2
    riff = 0xFFFFFFFF if n_samples is None else 36 + data
    return (
        b"RIFF" + struct.pack("<I", riff) + b"WAVEfmt "
        + struct.pack("<IHHIIHH", 16, 1, 1, SAMPLE_RATE, SAMPLE_RATE * 2, 2, 16)
        + b"data" + struct.pack("<I", data)
    )


def encode(audio: np.ndarray, fmt: str) -> bytes:
    """Encode a whole clip (WAV gets its real sizes)."""
    if fmt == "wav":
        pcm = to_int16(audio)
        return wav_header(len(pcm)) + pcm.tobytes()
    if fmt == "pcm":
        return to_int16(audio).tobytes()
    enc = Encoder(fmt, seekable=True)
    return enc.write(audio) + enc.close()

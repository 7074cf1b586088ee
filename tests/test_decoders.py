"""Streamed audio (the default) of every format decodes with the readers clients use: soundfile
(libsndfile), PyAV (FFmpeg's libraries) and the ffprobe command, each on its own, no fallback between them.

The streamed FLAC once had a sample count of 0 in its header, which soundfile refuses ("array is too big");
the WAV stream's "unknown length" header must be read from the data by all three.
"""

from __future__ import annotations

import io
import json
import shutil
import subprocess

import numpy as np
import pytest

FORMATS = ["mp3", "opus", "aac", "flac", "wav", "pcm"]
TEXT = "A streamed file must open in every reader. This one has two sentences, so it comes in several chunks."
RATE = 24_000


@pytest.fixture(scope="module")
def streamed(client) -> dict[str, bytes]:
    """One streamed response per format, plus the whole PCM as the reference length."""
    out = {}
    for fmt in FORMATS:
        r = client.post("/v1/audio/speech", json={"input": TEXT, "voice": "af_heart", "response_format": fmt})
        assert r.status_code == 200, r.text
        assert "content-length" not in r.headers  # it did stream
        out[fmt] = r.content
    whole = client.post("/v1/audio/speech", json={"input": TEXT, "voice": "af_heart", "response_format": "pcm",
                                                  "stream": False})
    out["reference_seconds"] = len(whole.content) / 2 / RATE  # type: ignore[assignment]
    return out


def check(samples: np.ndarray, rate: int, reference: float, fmt: str, opus_rate: int = RATE) -> None:
    assert rate == (opus_rate if fmt == "opus" else RATE), (fmt, rate)
    seconds = len(samples) / rate
    # lossy codecs pad a frame or two (and Opus pre-skips): within 0.1 s of the whole file's length
    assert abs(seconds - reference) <= 0.1, (fmt, seconds, reference)
    assert float(np.sqrt(np.mean(np.square(samples.astype(np.float64))))) > 0.01, f"{fmt}: silent"


@pytest.mark.parametrize("fmt", [f for f in FORMATS if f != "aac"])
def test_soundfile_reads_every_streamed_format(streamed, fmt):
    """libsndfile has no AAC decoder at all (not a property of our files), so AAC is covered by the others."""
    import soundfile as sf

    data = io.BytesIO(streamed[fmt])
    if fmt == "pcm":
        samples, rate = sf.read(data, dtype="float32", format="RAW", subtype="PCM_16", samplerate=RATE,
                                channels=1, endian="LITTLE")
    else:
        with sf.SoundFile(data) as f:
            assert f.channels == 1
            assert 0 < f.frames < 10**9, f"{fmt}: header says {f.frames} frames"
        data.seek(0)
        samples, rate = sf.read(data, dtype="float32")  # the call that failed on the streamed FLAC
    check(samples, rate, streamed["reference_seconds"], fmt)


@pytest.mark.parametrize("fmt", FORMATS)
def test_pyav_reads_every_streamed_format(streamed, fmt):
    import av

    options = {"sample_rate": str(RATE), "ch_layout": "mono"} if fmt == "pcm" else {}
    with av.open(io.BytesIO(streamed[fmt]), format="s16le" if fmt == "pcm" else None, options=options) as c:
        stream = c.streams.audio[0]
        assert stream.codec_context.channels == 1
        frames = [fr.to_ndarray().reshape(-1).astype(np.float32) for fr in c.decode(stream)]
        rate = stream.codec_context.sample_rate
    samples = np.concatenate(frames)
    if fmt in ("wav", "pcm"):
        samples = samples / 32768
    check(samples, rate, streamed["reference_seconds"], fmt, opus_rate=48_000)  # FFmpeg's Opus decodes at 48 kHz


@pytest.mark.parametrize("fmt", FORMATS)
def test_ffprobe_reads_every_streamed_format(streamed, fmt, tmp_path):
    """ffprobe decodes every frame (-count_frames) without a single error and finds the right stream."""
    ffprobe = shutil.which("ffprobe")
    if ffprobe is None:
        pytest.skip("ffprobe is not installed (Debian's ffmpeg package; .ci/run installs it)")
    path = tmp_path / f"speech.{fmt}"
    path.write_bytes(streamed[fmt])
    raw = ["-f", "s16le", "-sample_rate", str(RATE), "-ch_layout", "mono"] if fmt == "pcm" else []
    r = subprocess.run(
        [ffprobe, "-v", "error", *raw, "-count_frames", "-of", "json",
         "-show_entries", "stream=codec_name,sample_rate,channels,nb_read_frames:format=duration", str(path)],
        capture_output=True, text=True, timeout=60,
    )
    assert r.returncode == 0 and not r.stderr.strip(), r.stderr
    info = json.loads(r.stdout)
    (stream,) = info["streams"]
    codec = {"mp3": "mp3", "opus": "opus", "aac": "aac", "flac": "flac", "wav": "pcm_s16le", "pcm": "pcm_s16le"}
    assert stream["codec_name"] == codec[fmt]
    assert int(stream["sample_rate"]) == (48_000 if fmt == "opus" else RATE) and stream["channels"] == 1
    assert int(stream["nb_read_frames"]) > 0
    if fmt in ("flac", "wav", "pcm", "opus"):  # exact containers; mp3/aac durations are bit-rate estimates
        assert abs(float(info["format"]["duration"]) - streamed["reference_seconds"]) <= 0.1, info

"""Does a prepared variant sound like the shipped int8 model? The checks ``auto`` and the tests apply.

A variant whose arithmetic differs (``fast``: static int8 generator convolutions) cannot be bit-identical
to int8, so it is compared on what a listener and the word timestamps depend on:

* the same ``durations`` (so the same length and word times: only the decoder's arithmetic may differ),
* loudness (RMS) within :data:`MAX_RMS_DB` dB,
* no clipping (no sample at or beyond :data:`CLIP_LEVEL`),
* log-mel spectrogram distance (mean absolute difference, dB) below :data:`MAX_LOG_MEL_DB`.

The distance limit comes from the float variant, whose only difference from int8 is that it does not
quantize activations: float vs int8 measured 0.74-1.03 dB on the 8 test phrases, ``fast`` vs int8
2.2-2.65 dB (its 8-bit activations add a noise floor; Whisper hears the same words, tests/test_asr.py).
The measure is sensitive: white noise added at 5 % of the speech's RMS (26 dB SNR, waveform correlation
still 0.999) measures 8.9 dB, at 30 % 18 dB. :data:`MAX_LOG_MEL_DB` = 3 dB (about 3x float's largest
distance) passes what measured intelligible and fails audible added noise; tests/engine/test_fast.py
also checks that float stays well inside it, so a change that made int8 itself drift would show.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import numpy as np

SAMPLE_RATE = 24_000
MAX_RMS_DB = 1.0
CLIP_LEVEL = 0.999
MAX_LOG_MEL_DB = 3.0
N_FFT, HOP, N_MELS = 1024, 256, 80


@cache
def mel_filters(n_fft: int = N_FFT, n_mels: int = N_MELS, sr: int = SAMPLE_RATE) -> np.ndarray:
    """Triangular mel filter bank (HTK mel scale), ``[n_mels, n_fft // 2 + 1]``."""

    def mel(f):
        return 2595.0 * np.log10(1.0 + np.asarray(f) / 700.0)

    def hz(m):
        return 700.0 * (10.0 ** (np.asarray(m) / 2595.0) - 1.0)

    edges = hz(np.linspace(mel(0.0), mel(sr / 2), n_mels + 2))
    freqs = np.linspace(0.0, sr / 2, n_fft // 2 + 1)
    lower = (freqs[None, :] - edges[:-2, None]) / (edges[1:-1, None] - edges[:-2, None])
    upper = (edges[2:, None] - freqs[None, :]) / (edges[2:, None] - edges[1:-1, None])
    return np.maximum(0.0, np.minimum(lower, upper))


def log_mel(audio: np.ndarray) -> np.ndarray:
    """Log-mel power spectrogram in dB, ``[frames, N_MELS]``, floored at 80 dB below its peak."""
    x = np.asarray(audio, dtype=np.float64).reshape(-1)
    if x.size < N_FFT:
        x = np.pad(x, (0, N_FFT - x.size))
    frames = np.lib.stride_tricks.sliding_window_view(x, N_FFT)[::HOP] * np.hanning(N_FFT)
    power = np.abs(np.fft.rfft(frames, axis=1)) ** 2
    db = 10.0 * np.log10(np.maximum(power @ mel_filters().T, 1e-10))
    return np.maximum(db, db.max() - 80.0)


def log_mel_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Mean absolute log-mel difference in dB (the shorter signal's frames)."""
    ma, mb = log_mel(a), log_mel(b)
    n = min(len(ma), len(mb))
    return float(np.mean(np.abs(ma[:n] - mb[:n])))


def rms_db(a: np.ndarray, b: np.ndarray) -> float:
    """Loudness of ``b`` relative to ``a`` in dB."""
    ra = np.sqrt(np.mean(np.square(a, dtype=np.float64)))
    rb = np.sqrt(np.mean(np.square(b, dtype=np.float64)))
    return float(20.0 * np.log10(max(rb, 1e-12) / max(ra, 1e-12)))


@dataclass
class Comparison:
    """``candidate`` against ``reference`` (int8) for one input."""

    same_durations: bool
    rms_db: float
    peak: float
    log_mel_db: float
    correlation: float

    @property
    def problems(self) -> list[str]:
        out = []
        if not self.same_durations:
            out.append("durations differ")
        if abs(self.rms_db) > MAX_RMS_DB:
            out.append(f"loudness {self.rms_db:+.2f} dB (limit {MAX_RMS_DB})")
        if self.peak >= CLIP_LEVEL:
            out.append(f"clipping (peak {self.peak:.3f})")
        if not self.log_mel_db < MAX_LOG_MEL_DB:
            out.append(f"log-mel distance {self.log_mel_db:.2f} dB (limit {MAX_LOG_MEL_DB})")
        return out

    def as_dict(self) -> dict:
        return {"same_durations": self.same_durations, "rms_db": round(self.rms_db, 3),
                "peak": round(self.peak, 4), "log_mel_db": round(self.log_mel_db, 3),
                "correlation": round(self.correlation, 4), "problems": self.problems}


def compare(ref_audio: np.ndarray, ref_durations: np.ndarray | None, audio: np.ndarray,
            durations: np.ndarray | None) -> Comparison:
    a, b = np.asarray(ref_audio, np.float32).reshape(-1), np.asarray(audio, np.float32).reshape(-1)
    same = (
        ref_durations is not None and durations is not None
        and np.array_equal(np.asarray(ref_durations).reshape(-1), np.asarray(durations).reshape(-1))
    )
    n = min(a.size, b.size)
    corr = float(np.corrcoef(a[:n], b[:n])[0, 1]) if n > 1 else 0.0
    return Comparison(bool(same and a.size == b.size), rms_db(a, b), float(np.max(np.abs(b), initial=0.0)),
                      log_mel_distance(a, b), corr)

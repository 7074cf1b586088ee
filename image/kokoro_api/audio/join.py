"""Join chunk audio so that speech synthesized in pieces sounds like one take.

Kokoro pads every call with ~0.35 s of silence before and ~0.45 s after the speech; left as is, each
join is a ~0.8 s gap wherever the chunker cut. So each chunk's audio is trimmed to its speech (plus a few
milliseconds of onset and decay below the threshold), and between two chunks goes exactly the pause the
punctuation at the cut calls for, divided by the speed (none inside a phrase). Where no pause separates two
chunks their edges overlap in a short cross-fade instead of butting together.

Streaming-friendly: ``Joiner.push`` returns what can be sent now and holds back only the last few
milliseconds of speech (for the cross-fade) and the pending pause (the final one becomes ``end_pause``,
so a text ends the same way however it was cut).
"""

from __future__ import annotations

import numpy as np

from .encode import SAMPLE_RATE

EDGE_THRESHOLD = 0.003  # ~-50 dBFS: below this the model's padding is silence
KEEP_LEAD = int(0.015 * SAMPLE_RATE)  # onset below the threshold kept before the first loud sample
KEEP_TRAIL = int(0.030 * SAMPLE_RATE)  # decay kept after the last loud sample
CROSSFADE = int(0.008 * SAMPLE_RATE)  # fade at every chunk edge
END_PAUSE_S = 0.25  # silence after the last word of the whole text (s at speed 1)


def edges(audio: np.ndarray, durations: np.ndarray | None) -> tuple[int, int]:
    """Samples of edge silence to cut: never into speech, never past the predicted leading pad."""
    loud = np.flatnonzero(np.abs(audio) > EDGE_THRESHOLD)
    if not len(loud):
        return 0, 0
    lead = max(0, int(loud[0]) - KEEP_LEAD)
    if durations is not None and len(durations) > 2 and durations.sum() > 0:
        lead = min(lead, int(durations[0] * len(audio) / durations.sum()))
    trail = max(0, len(audio) - 1 - int(loud[-1]) - KEEP_TRAIL)
    return lead, trail


def fade(audio: np.ndarray, n: int = CROSSFADE) -> np.ndarray:
    """Fade both edges in place (a raised-cosine ramp of ``n`` samples) and return the array."""
    n = min(n, len(audio) // 2)
    if n:
        ramp = (0.5 - 0.5 * np.cos(np.linspace(0.0, np.pi, n, dtype=np.float32))).astype(np.float32)
        audio[:n] *= ramp
        audio[-n:] *= ramp[::-1]
    return audio


def pause_samples(seconds: float, speed: float) -> int:
    """The silence to insert for a punctuation pause of ``seconds`` (at speed 1): scaled by the speed,
    less the onset and decay margins the trimmed chunks already keep."""
    if seconds <= 0:
        return 0
    return max(0, round(seconds / speed * SAMPLE_RATE) - KEEP_LEAD - KEEP_TRAIL)


class Joiner:
    """Concatenates trimmed, faded chunk audio with pauses between them (stateful, one per text).

    Where no pause is due, the next chunk's kept onset overlaps the previous chunk's kept decay (both
    below the speech threshold), so a join inside a phrase adds no silence that one take would not have."""

    def __init__(self, overlap: int = KEEP_LEAD + KEEP_TRAIL, end_pause: int = 0) -> None:
        self.overlap = overlap
        self.end_pause = end_pause
        self.emitted = 0  # samples returned so far
        self._tail = np.zeros(0, np.float32)  # the end of the last speech, held for a cross-fade
        self._pause = 0  # the silence due after it
        self._started = False

    def push(self, speech: np.ndarray, pause: int) -> tuple[np.ndarray, int]:
        """Add one chunk's speech (trimmed and faded) and the pause due after it, in samples.

        Returns (audio that can be sent now, the sample position where this speech starts in the output).
        """
        if not len(speech):
            start = self.emitted + len(self._tail) + self._pause
            self._pause = max(self._pause, pause)
            return np.zeros(0, np.float32), start
        if self._started and self._pause == 0:  # no pause between: overlap the edges (cross-fade)
            m = min(len(self._tail), len(speech), self.overlap)
            head = speech.copy()
            head[:m] += self._tail[len(self._tail) - m :]
            parts = [self._tail[: len(self._tail) - m], head]
            start = self.emitted + len(self._tail) - m
        else:
            parts = [self._tail, np.zeros(self._pause, np.float32), speech]
            start = self.emitted + len(self._tail) + self._pause
        self._started = True
        joined = np.concatenate(parts)
        keep = min(self.overlap, len(speech))
        out, self._tail = joined[: len(joined) - keep], joined[len(joined) - keep :]
        self._pause = pause
        self.emitted += len(out)
        return out, start

    def flush(self) -> np.ndarray:
        """The held-back end: the last speech's tail and a short final silence."""
        out = np.concatenate([self._tail, np.zeros(self.end_pause if self._started else 0, np.float32)])
        self._tail, self._pause = np.zeros(0, np.float32), 0
        self.emitted += len(out)
        return out

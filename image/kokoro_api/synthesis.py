"""Text -> audio segments: normalize and chunk the text, pick the style row, run the engine, join the
chunks (``audio.join``: trimmed edges, the punctuation's pause scaled by speed, cross-fades).

Plain data in, plain data out; no HTTP here. Each chunk (phonemization included) runs on an engine
worker thread, so the event loop never blocks. Cancelling the consumer stops the remaining chunks and
aborts the chunk in flight (ONNX Runtime's ``RunOptions.terminate``).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field

import numpy as np

from .audio.join import Joiner, edges, fade, pause_samples
from .engine.pool import SAMPLE_RATE, EnginePool
from .errors import InvalidRequest
from .text.chunker import FIRST_CHUNK_TOKENS, Chunk, chunk_text
from .text.g2p import Phonemizer, vocab
from .text.normalize import normalize as normalize_text
from .voices import VoiceStore

SAMPLES_PER_FRAME = 600  # Kokoro v1.0: one predicted duration frame = 600 samples at 24 kHz


@dataclass(frozen=True)
class WordTime:
    word: str
    start: float
    end: float


@dataclass
class Segment:
    """One chunk's audio (pause included) and its words' times, relative to the segment's start."""

    audio: np.ndarray
    words: list[WordTime] = field(default_factory=list)
    tokens: int = 0

    @property
    def seconds(self) -> float:
        return len(self.audio) / SAMPLE_RATE


@dataclass
class _Piece:
    """One chunk's trimmed speech, its words' times (relative to the speech), and the pause due after it."""

    speech: np.ndarray
    words: list[WordTime]
    tokens: int
    pause: int


def _consume(fut: asyncio.Future) -> None:
    if not fut.cancelled():
        fut.exception()


def word_times(chunk: Chunk, durations: np.ndarray | None, n_samples: int) -> list[WordTime]:
    """Map per-token durations back to the chunk's words (as the user wrote them)."""
    lengths = [len(w.phonemes) for w in chunk.words]
    n_tokens = sum(lengths) + max(0, sum(1 for x in lengths if x) - 1)
    if durations is not None and len(durations) == n_tokens + 2:
        cum = np.concatenate([[0], np.cumsum(durations)]).astype(np.float64)
        scale = n_samples / cum[-1] if cum[-1] else 0.0
    else:  # no duration output: spread time over tokens evenly
        cum = np.linspace(0, n_tokens + 2, n_tokens + 3)
        scale = n_samples / (n_tokens + 2)
    out, pos, first = [], 0, True
    for word, n in zip(chunk.words, lengths, strict=True):
        if not word.text:
            continue
        if n:
            if not first:
                pos += 1  # the space token between words
            first = False
            start, end = cum[pos + 1], cum[pos + n + 1]
            pos += n
        else:
            start = end = cum[pos + 1] if pos else cum[1]
        out.append(WordTime(word.text, start * scale / SAMPLE_RATE, end * scale / SAMPLE_RATE))
    return out


class Synthesizer:
    def __init__(
        self,
        pool: EnginePool,
        phonemizer: Phonemizer,
        voices: VoiceStore,
        first_chunk_tokens: int = FIRST_CHUNK_TOKENS,
    ) -> None:
        self.pool = pool
        self.first_chunk_tokens = first_chunk_tokens
        self.phonemizer = phonemizer
        self.voices = voices
        self._vocab = vocab()

    def _chunks(self, text: str, british: bool, short_first: bool, normalize: bool) -> Iterator[Chunk]:
        """Lazy: normalization and G2P run on the first ``next`` (on a worker thread), not here."""
        if normalize:
            text = normalize_text(text, british=british)
        words = lambda s: self.phonemizer.words(s, british)  # noqa: E731
        yield from chunk_text(text, words, short_first=short_first, first=self.first_chunk_tokens)

    def _step(self, chunks: Iterator[Chunk], style: np.ndarray, speed: float, run_options) -> _Piece | None:
        """Next chunk -> trimmed, faded speech (runs on a worker thread). None when the text is exhausted."""
        chunk = next(chunks, None)
        if chunk is None:
            return None
        ids = [self._vocab[c] for c in chunk.phonemes]
        pause = pause_samples(chunk.pause_after, speed)
        if not ids:
            return _Piece(np.zeros(0, np.float32), word_times(chunk, None, 0), 0, pause)
        result = self.pool.run(ids, style[len(ids) - 1], speed, run_options)
        lead, trail = edges(result.audio, result.durations)
        words = word_times(chunk, result.durations, len(result.audio))
        audio = fade(result.audio[lead : len(result.audio) - trail].copy())
        if lead or trail:
            cut, end = lead / SAMPLE_RATE, len(audio) / SAMPLE_RATE
            words = [WordTime(w.word, min(max(w.start - cut, 0.0), end), min(max(w.end - cut, 0.0), end))
                     for w in words]
        return _Piece(audio, words, len(ids), pause)

    async def segments(
        self, text: str, voice: str, speed: float, *, short_first: bool = False, british: bool | None = None,
        normalize: bool = True,
    ) -> AsyncIterator[Segment]:
        """Yield audio segment by segment. Word times are absolute (seconds from the start)."""
        style = self.voices.style(voice)
        if british is None:
            british = self.voices.language_of(voice) == "en-gb"
        chunks = self._chunks(text, british, short_first, normalize)
        loop = asyncio.get_running_loop()
        joiner = Joiner()
        spoken = 0
        while True:
            run_options = self.pool.run_options()
            fut = loop.run_in_executor(self.pool.executor, self._step, chunks, style, speed, run_options)
            try:
                piece = await asyncio.shield(fut)
            except asyncio.CancelledError:
                run_options.terminate = True  # abort the chunk in flight, free the worker
                fut.add_done_callback(_consume)  # its "terminated" error is expected: don't log it
                raise
            if piece is None:
                break
            spoken += piece.tokens
            audio, start = joiner.push(piece.speech, piece.pause)
            offset = start / SAMPLE_RATE
            words = [WordTime(w.word, w.start + offset, w.end + offset) for w in piece.words]
            yield Segment(audio, words, piece.tokens)
        if spoken == 0:
            raise InvalidRequest("The input has nothing that can be spoken.", {"field": "input"})
        yield Segment(joiner.flush())

    async def synthesize(
        self, text: str, voice: str, speed: float, british: bool | None = None, normalize: bool = True
    ) -> Segment:
        """The whole text as one segment."""
        parts = [s async for s in self.segments(text, voice, speed, british=british, normalize=normalize)]
        return Segment(
            np.concatenate([p.audio for p in parts]) if parts else np.zeros(0, np.float32),
            [w for p in parts for w in p.words],
            sum(p.tokens for p in parts),
        )

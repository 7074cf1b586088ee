"""Text -> audio segments: normalize and chunk the text, pick the style row, run the engine, join the
chunks (``audio.join``: trimmed edges, the punctuation's pause scaled by speed, cross-fades).

Plain data in, plain data out; no HTTP here. Each chunk (phonemization included) runs on an engine
worker thread, so the event loop never blocks. Cancelling the consumer stops the remaining chunks and
aborts the chunk in flight (ONNX Runtime's ``RunOptions.terminate``).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field

import numpy as np

from .audio.join import END_PAUSE_S, Joiner, edges, fade, pause_samples
from .engine.pool import SAMPLE_RATE, EnginePool
from .errors import InvalidRequest, SpeechTooLong, TextTooComplex
from .text.chunker import FIRST_CHUNK_TOKENS, Chunk, chunk_text
from .text.g2p import Budget, G2PTimeout, Phonemizer, vocab
from .text.normalize import SAFETY_RULES, Normalized, normalize_aligned
from .voices import VoiceStore

SAMPLES_PER_FRAME = 600  # Kokoro v1.0: one predicted duration frame = 600 samples at 24 kHz

# Audio ceiling (docs/api.md, "Limits"): a request makes at most max(AUDIO_FLOOR_S, characters x
# audio_s_per_char) seconds of audio at speed 1.0 (a slower speed stretches it by 1/speed), and a caller may
# lower it (non-streamed responses: KOKORO_MAX_UNSTREAMED_AUDIO_S). Before a chunk runs, its audio is
# estimated from its phoneme tokens (SECONDS_PER_TOKEN: Kokoro speaks 0.044-0.065 s per token at speed 1.0,
# measured over prose, numbers, dates, acronyms, digits and emoji); a chunk that would cross the ceiling is
# refused before any work, and the audio actually made is checked after each chunk.
AUDIO_FLOOR_S = 10.0
SECONDS_PER_TOKEN = 0.06


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
    g2p_seconds: float = 0.0  # phonemization time spent producing this segment

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
    g2p_seconds: float = 0.0


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


_MARKUP = re.compile(r"\[([^\[\]]{1,200})\]\([^()]{0,400}\)")  # misaki's [word](/phonemes/) inline markup


class Relabel:
    """Word times of the spoken (normalized) words -> word times of the words as written: "3:30pm!" gets
    one entry spanning "three thirty P M!". Several written words said together ("Henry VIII" -> "Henry
    the Eighth") share their spoken words in proportion to their lengths. Without normalization, a no-op."""

    def __init__(self) -> None:
        self._groups: tuple[tuple[tuple[str, ...], int], ...] | None = None
        self._i = 0
        self._buf: list[WordTime] = []
        self._end = 0.0

    def start(self, normalized: Normalized) -> None:
        self._groups = normalized.groups

    def __call__(self, times: list[WordTime]) -> list[WordTime]:
        if self._groups is None:
            return times
        self._buf += times
        out: list[WordTime] = []
        while self._i < len(self._groups) and len(self._buf) >= self._groups[self._i][1]:
            written, n = self._groups[self._i]
            part, self._buf = self._buf[:n], self._buf[n:]
            out += self._spread(written, part)
            self._i += 1
        return out

    def _spread(self, written: tuple[str, ...], spoken: list[WordTime]) -> list[WordTime]:
        out = []
        n, total = len(spoken), sum(len(w) for w in written)
        cum = k = 0
        for i, w in enumerate(written):
            cum += len(w)
            later = len(written) - i - 1
            upto = n if not later else max(k, min(max(round(n * cum / total), k + 1), n - later))
            part, k = spoken[k:upto], upto
            start, end = (part[0].start, part[-1].end) if part else (self._end, self._end)
            out.append(WordTime(_MARKUP.sub(r"\1", w), start, end))  # "[Kokoro](/kˈOkəɹO/)" -> "Kokoro"
            self._end = end
        return out

    def rest(self) -> list[WordTime]:
        """Whatever did not line up (never expected): the spoken words as they are."""
        out, self._buf = self._buf, []
        return out


class Synthesizer:
    def __init__(
        self,
        pool: EnginePool,
        phonemizer: Phonemizer,
        voices: VoiceStore,
        first_chunk_tokens: int = FIRST_CHUNK_TOKENS,
        *,
        audio_s_per_char: float = 0.6,
        g2p_deadline_s: float | None = 30.0,
    ) -> None:
        self.pool = pool
        self.audio_s_per_char = audio_s_per_char
        self.g2p_deadline_s = g2p_deadline_s
        self.first_chunk_tokens = first_chunk_tokens
        self.phonemizer = phonemizer
        self.voices = voices
        self._vocab = vocab()

    def _chunks(
        self, text: str, british: bool, short_first: bool, budget: Budget | None = None, normalize: bool = True,
        relabel: Relabel | None = None,
    ) -> Iterator[Chunk]:
        """Lazy: normalization and G2P run on the first ``next`` (on a worker thread), not here."""
        normalized = normalize_aligned(text, british=british, rules=None if normalize else SAFETY_RULES)
        text = normalized.text
        if relabel is not None:
            relabel.start(normalized)
        words = lambda s: self.phonemizer.words(s, british, budget)  # noqa: E731
        yield from chunk_text(text, words, short_first=short_first, first=self.first_chunk_tokens)

    def audio_cap(self, text: str, max_audio_s: float | None = None) -> float:
        """Most seconds of audio (at speed 1.0) ``text`` may make: the documented ceiling."""
        cap = max(AUDIO_FLOOR_S, len(text) * self.audio_s_per_char)
        return cap if max_audio_s is None else min(cap, max_audio_s)

    def _step(self, chunks: Iterator[Chunk], style: np.ndarray, speed: float, run_options,
              budget: Budget, room_s: float) -> _Piece | None:
        """Next chunk -> trimmed, faded speech (runs on a worker thread). None when the text is exhausted.

        ``room_s``: audio (seconds at speed 1.0) the request may still make; a chunk estimated above it
        raises SpeechTooLong before the model runs.
        """
        spent = budget.spent
        try:
            chunk = next(chunks, None)
        except G2PTimeout as exc:
            raise TextTooComplex(
                f"The text took too long to turn into phonemes ({exc}); split it or simplify it.",
                {"field": "input"},
            ) from None
        g2p_s = budget.spent - spent
        if chunk is None:
            return None
        ids = [self._vocab[c] for c in chunk.phonemes]
        pause = pause_samples(chunk.pause_after, speed)
        if not ids:
            return _Piece(np.zeros(0, np.float32), word_times(chunk, None, 0), 0, pause, g2p_s)
        if len(ids) * SECONDS_PER_TOKEN > room_s:
            raise SpeechTooLong("", {"estimated_tokens": len(ids)})
        result = self.pool.run(ids, style[len(ids) - 1], speed, run_options)
        lead, trail = edges(result.audio, result.durations)
        words = word_times(chunk, result.durations, len(result.audio))
        audio = fade(result.audio[lead : len(result.audio) - trail].copy())
        if lead or trail:
            cut, end = lead / SAMPLE_RATE, len(audio) / SAMPLE_RATE
            words = [WordTime(w.word, min(max(w.start - cut, 0.0), end), min(max(w.end - cut, 0.0), end))
                     for w in words]
        return _Piece(audio, words, len(ids), pause, g2p_s)

    async def segments(
        self, text: str, voice: str, speed: float, *, short_first: bool = False, british: bool | None = None,
        max_audio_s: float | None = None, normalize: bool = True,
    ) -> AsyncIterator[Segment]:
        """Yield audio segment by segment. Word times are absolute (seconds from the start).

        Raises SpeechTooLong when the audio would pass :meth:`audio_cap` (``max_audio_s`` lowers it) and
        TextTooComplex when phonemizing passes its deadline. Cancelling stops the G2P between two bounded
        misaki calls and aborts the model call in flight.
        """
        style = self.voices.style(voice)
        if british is None:
            british = self.voices.language_of(voice) == "en-gb"
        budget = Budget(self.g2p_deadline_s)
        relabel = Relabel()
        chunks = self._chunks(text, british, short_first, budget, normalize, relabel)
        cap = self.audio_cap(text, max_audio_s)
        loop = asyncio.get_running_loop()
        joiner = Joiner(end_pause=pause_samples(END_PAUSE_S, speed))
        spoken, made = 0, 0.0
        while True:
            run_options = self.pool.run_options()
            fut = loop.run_in_executor(
                self.pool.executor, self._step, chunks, style, speed, run_options, budget, cap - made
            )
            try:
                piece = await asyncio.shield(fut)
            except asyncio.CancelledError:
                budget.cancel()  # stop the G2P at its next call boundary
                run_options.terminate = True  # abort the chunk in flight, free the worker
                fut.add_done_callback(_consume)  # its "terminated" error is expected: don't log it
                raise
            except SpeechTooLong:
                raise self._too_long(text, cap, max_audio_s) from None
            if piece is None:
                break
            made += (len(piece.speech) + piece.pause) / SAMPLE_RATE * speed
            if made > cap * 1.1:  # the token estimate was off by more than 10 %
                raise self._too_long(text, cap, max_audio_s)
            spoken += piece.tokens
            audio, start = joiner.push(piece.speech, piece.pause)
            offset = start / SAMPLE_RATE
            words = relabel([WordTime(w.word, w.start + offset, w.end + offset) for w in piece.words])
            yield Segment(audio, words, piece.tokens, piece.g2p_seconds)
        if spoken == 0:
            raise InvalidRequest("The input has nothing that can be spoken.", {"field": "input"})
        yield Segment(joiner.flush(), relabel.rest())

    def _too_long(self, text: str, cap: float, max_audio_s: float | None) -> SpeechTooLong:
        details = {"field": "input", "length": len(text), "max_audio_seconds": round(cap, 1)}
        if max_audio_s is not None and cap >= max_audio_s:
            return SpeechTooLong(
                f"'input' makes more than {cap:g} s of audio, the limit for a non-streamed response. "
                "Stream the response (stream_format='audio') or split the text.", details)
        return SpeechTooLong(
            f"'input' would make more than {cap:.0f} s of audio for its {len(text)} characters (at most "
            f"{self.audio_s_per_char:g} s per character, {AUDIO_FLOOR_S:g} s for short texts): long digit "
            "runs, symbols or emoji read out one by one. Shorten or rewrite those parts.", details)

    async def synthesize(
        self, text: str, voice: str, speed: float, british: bool | None = None,
        max_audio_s: float | None = None, progress: Callable[[float], None] | None = None,
        normalize: bool = True,
    ) -> Segment:
        """The whole text as one segment; ``progress`` is told each chunk's audio seconds as they come."""
        parts = []
        async for seg in self.segments(
            text, voice, speed, british=british, max_audio_s=max_audio_s, normalize=normalize
        ):
            parts.append(seg)
            if progress is not None:
                progress(seg.seconds)
        return Segment(
            np.concatenate([p.audio for p in parts]) if parts else np.zeros(0, np.float32),
            [w for p in parts for w in p.words],
            sum(p.tokens for p in parts),
            sum(p.g2p_seconds for p in parts),
        )

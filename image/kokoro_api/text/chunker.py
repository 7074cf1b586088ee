"""Split text into model-sized chunks: by sentence, then clause, then word. Nothing is ever dropped.

One Kokoro call takes at most 510 phoneme tokens. Short chunks bring the first audio sooner; longer
ones waste less per call (and join more smoothly). So a streamed request ramps up: its first chunk holds
at most FIRST_CHUNK_TOKENS (a few words, cut at a clause end when one fits), and each next chunk may be
RAMP times longer, until chunks pack whole sentences up to ``target`` tokens. Each chunk is computed
while the previous one plays, and its audio lasts longer than its computation (real-time factor < 1),
so the stream keeps ahead of the listener.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from .g2p import Word

MAX_TOKENS = 510
TARGET_TOKENS = 250
FIRST_CHUNK_TOKENS = 16
RAMP = 2

# Pauses inserted after a chunk, by what ends it (seconds). The model's own edge silence adds to these.
PAUSE_PARAGRAPH = 0.25
PAUSE_SENTENCE = 0.08
PAUSE_CLAUSE = 0.04
PAUSE_NONE = 0.0

_ABBREVIATIONS = {
    "mr", "mrs", "ms", "dr", "st", "prof", "sr", "jr", "vs", "etc", "e.g", "i.e", "no", "mt", "ft", "inc",
    "ltd", "co", "corp", "jan", "feb", "mar", "apr", "jun", "jul", "aug", "sep", "sept", "oct", "nov", "dec",
}
_SENTENCE_END = re.compile(r"[.!?…]+[\"'”’)\]]*$")
_CLAUSE_END = re.compile(r"[,;:—–]+[\"'”’)\]]*$")


@dataclass(frozen=True)
class Chunk:
    words: tuple[Word, ...]
    pause_after: float

    @property
    def phonemes(self) -> str:
        return " ".join(w.phonemes for w in self.words if w.phonemes)

    @property
    def text(self) -> str:
        return " ".join(w.text for w in self.words)


def split_sentences(text: str) -> Iterator[tuple[str, bool]]:
    """Yield (sentence, ends_paragraph) from raw text. Splits after . ! ? unless an abbreviation."""
    for paragraph in re.split(r"\n\s*\n", text):
        words = paragraph.split()
        if not words:
            continue
        start = 0
        for i, w in enumerate(words):
            last = i == len(words) - 1
            if last or (_SENTENCE_END.search(w) and not _is_abbreviation(w)):
                yield " ".join(words[start : i + 1]), last
                start = i + 1


def _is_abbreviation(word: str) -> bool:
    core = word.rstrip(".").lower().lstrip("\"'(“‘[")
    return word.endswith(".") and (core in _ABBREVIATIONS or (len(core) == 1 and core.isalpha()))


def _tokens(words: list[Word] | tuple[Word, ...]) -> int:
    ps = [w.phonemes for w in words if w.phonemes]
    return sum(len(p) for p in ps) + max(0, len(ps) - 1)


def _split_long_word(word: Word, limit: int) -> list[Word]:
    """A single 'word' longer than a whole chunk (a run of digits, say): cut its phonemes, keep all."""
    parts = [word.phonemes[i : i + limit] for i in range(0, len(word.phonemes), limit)]
    return [Word(word.text if i == 0 else "", p) for i, p in enumerate(parts)]


def _clauses(words: list[Word]) -> list[list[Word]]:
    out: list[list[Word]] = [[]]
    for w in words:
        out[-1].append(w)
        if _CLAUSE_END.search(w.text):
            out.append([])
    return [c for c in out if c]


def _fit(words: list[Word], limit: int) -> list[tuple[list[Word], float]]:
    """Split one sentence's words into pieces of <= limit tokens: by clause, then by word."""
    if _tokens(words) <= limit:
        return [(words, PAUSE_SENTENCE)]
    pieces: list[tuple[list[Word], float]] = []
    cur: list[Word] = []
    for clause in _clauses(words):
        if cur and _tokens(cur + clause) > limit:
            pieces.append((cur, PAUSE_CLAUSE))
            cur = []
        if _tokens(clause) <= limit:
            cur = cur + clause
            continue
        for w in clause:  # a clause longer than a chunk: split between words
            for part in [w] if len(w.phonemes) <= limit else _split_long_word(w, limit):
                if cur and _tokens(cur + [part]) > limit:
                    pieces.append((cur, PAUSE_NONE))
                    cur = []
                cur.append(part)
    if cur:
        pieces.append((cur, PAUSE_SENTENCE))
    return pieces


def chunk_text(
    text: str,
    phonemize: Callable[[str], list[Word]],
    *,
    short_first: bool = False,
    first: int = FIRST_CHUNK_TOKENS,
    target: int = TARGET_TOKENS,
    limit: int = MAX_TOKENS,
) -> Iterator[Chunk]:
    """Lazily turn text into chunks (phonemizing sentence by sentence, so the first chunk is ready fast).

    ``short_first``: ramp up from a chunk of at most ``first`` tokens (x RAMP per chunk) to ``target``.
    """
    pending: list[Word] = []
    pending_pause = PAUSE_NONE
    cap = min(target, first) if short_first else target

    def emit(words: list[Word], pause: float) -> Chunk:
        nonlocal cap
        cap = min(target, cap * RAMP)
        return Chunk(tuple(words), pause)

    for sentence, ends_paragraph in split_sentences(text):
        for piece, pause in _fit(phonemize(sentence), limit):
            if ends_paragraph and pause == PAUSE_SENTENCE:
                pause = PAUSE_PARAGRAPH
            while cap < target and _tokens(pending + piece) > cap:  # ramping up: cut inside the piece
                if pending:
                    yield emit(pending, pending_pause)
                    pending = []
                    continue
                head, piece = _lead(piece, cap)
                if not piece:
                    yield emit(head, pause)
                    break
                yield emit(head, PAUSE_CLAUSE if _CLAUSE_END.search(head[-1].text) else PAUSE_NONE)
            else:
                if pending and _tokens(pending + piece) > cap:
                    yield emit(pending, pending_pause)
                    pending = []
                pending = pending + piece
                pending_pause = pause
    if pending:
        yield Chunk(tuple(pending), pending_pause)


def _lead(words: list[Word], cap: int) -> tuple[list[Word], list[Word]]:
    """Split off the longest head of at most ``cap`` tokens (at least one word), ending at the last
    clause end inside it if there is one."""
    head: list[Word] = []
    cut = 0
    for w in words:
        if head and _tokens(head + [w]) > cap:
            break
        head.append(w)
        if _CLAUSE_END.search(w.text):
            cut = len(head)
    n = cut or len(head)
    return words[:n], words[n:]

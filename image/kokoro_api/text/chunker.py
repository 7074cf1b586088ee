"""Split text into model-sized chunks at phrase boundaries. Nothing is ever dropped.

One Kokoro call takes at most 510 phoneme tokens. Short chunks bring the first audio sooner; longer
ones waste less per call. So a streamed request ramps up: its first chunk holds about FIRST_CHUNK_TOKENS
(a few words), and each next chunk may be RAMP times longer, until chunks pack whole sentences up to
``target`` tokens. Each chunk is computed while the previous one plays, and its audio lasts longer than its
computation (real-time factor < 1), so the stream keeps ahead of the listener.

Where a chunk must end inside a sentence it ends at a phrase boundary: a punctuation mark first, else a
syntactic break read from the part-of-speech tags spaCy already computed for G2P (before a conjunction,
preposition or relative pronoun, between subject and verb), never inside a noun phrase ("the quick brown |
fox") when any better cut fits. A short chunk may run up to 1.5 times its size to reach such a boundary
(no more: the first chunk's length is the time to first audio).
Every chunk carries the pause its last word's punctuation calls for (at speed 1; the synthesizer divides it
by the speed), which the audio join puts between this chunk's speech and the next one's.
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

# The pause after a chunk, by the punctuation that ends it (seconds at speed 1): what Kokoro itself
# leaves after these marks inside one utterance (measured with af_heart and bm_george, docs/text.md).
PAUSES = {".": 0.50, "!": 0.50, "?": 0.50, "…": 0.50, ";": 0.35, ":": 0.35,
          ",": 0.30, "—": 0.30, "–": 0.30}
PAUSE_PARAGRAPH = 0.75
PAUSE_NONE = 0.0

_ABBREVIATIONS = {
    "mr", "mrs", "ms", "dr", "st", "prof", "sr", "jr", "vs", "etc", "e.g", "i.e", "no", "mt", "ft", "inc",
    "ltd", "co", "corp", "jan", "feb", "mar", "apr", "jun", "jul", "aug", "sep", "sept", "oct", "nov", "dec",
}
_SENTENCE_END = re.compile(r"[.!?…]+[\"'”’)\]]*$")
_CLAUSE_END = re.compile(r"[,;:—–]+[\"'”’)\]]*$")
_CLOSERS = "\"'”’)]"

# Penn Treebank tags (spaCy's tagger): a phrase may start before these ...
_PHRASE_START = {"CC", "IN", "TO", "WDT", "WP", "WP$", "WRB"}
_VERBS = {"VB", "VBD", "VBG", "VBN", "VBP", "VBZ", "MD"}
_NOUNS = {"NN", "NNS", "NNP", "NNPS", "PRP", "CD"}
# ... and never ends after these (a determiner, adjective or preposition wants its noun)
_NO_END = {"DT", "PDT", "PRP$", "WP$", "JJ", "JJR", "JJS", "IN", "TO", "CC", "POS", "HYPH", "NFP", "$", "MD"}


def pause_for(word: str) -> float:
    """The pause (s, at speed 1) that the punctuation ending ``word`` calls for; 0 without punctuation."""
    core = word.rstrip(_CLOSERS)
    return PAUSES.get(core[-1:], PAUSE_NONE) if core else PAUSE_NONE


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
    """A single 'word' longer than a whole chunk (a long run of digits read digit by digit, say): cut its
    phonemes at the last comma or space that fits (else anywhere), keep all."""
    parts, ps = [], word.phonemes
    while len(ps) > limit:
        comma, space = ps.rfind(", ", 0, limit - 1), ps.rfind(" ", 0, limit)
        cut = comma + 2 if comma > 0 else space + 1 if space > 0 else limit
        parts.append(ps[:cut].rstrip())
        ps = ps[cut:].lstrip()
    parts.append(ps)
    return [Word(word.text if i == 0 else "", p, word.tag) for i, p in enumerate(parts) if p or i == 0]


def _clauses(words: list[Word]) -> list[list[Word]]:
    out: list[list[Word]] = [[]]
    for w in words:
        out[-1].append(w)
        if _CLAUSE_END.search(w.text):
            out.append([])
    return [c for c in out if c]


def _break_score(before: Word, after: Word) -> int:
    """How good a chunk boundary between two words is: 3 punctuation, 2 a phrase start, 1 a subject/verb
    break, 0 a plain word boundary, -1 inside a phrase."""
    if _CLAUSE_END.search(before.text) or _SENTENCE_END.search(before.text):
        return 3
    if before.tag in _NO_END or (before.tag in _NOUNS and after.tag in _NOUNS):
        return -1
    if after.tag in _PHRASE_START:
        return 2
    if before.tag in _NOUNS and after.tag in _VERBS or before.tag in _VERBS and after.tag in {"DT", "PRP$"}:
        return 1
    return 0


def _lead(words: list[Word], cap: int, hard: int) -> tuple[list[Word], list[Word]]:
    """Split off a head of about ``cap`` tokens (at most ``hard``, at least one word) ending at the best
    phrase boundary: the best-scored boundary wins; among equals, the longest head within ``cap``, else the
    shortest beyond it. Boundaries in the first third of ``cap`` count as plain ones (no tiny chunks)."""
    best, best_key = 1, None
    tokens = -1
    for k, w in enumerate(words, 1):
        tokens += len(w.phonemes) + (1 if w.phonemes else 0)
        if k > 1 and tokens > hard:
            break
        score = 4 if k == len(words) else _break_score(w, words[k])
        if tokens < cap // 3 and score < 4:
            score = min(score, 0)
        fits = tokens <= cap
        key = (score, fits, k if fits else -k)
        if best_key is None or key > best_key:
            best, best_key = k, key
    return words[:best], words[best:]


def _fit(words: list[Word], limit: int) -> list[list[Word]]:
    """Split one sentence's words into pieces of <= limit tokens: by clause, then at phrase boundaries."""
    if _tokens(words) <= limit:
        return [words]
    pieces: list[list[Word]] = []
    cur: list[Word] = []
    for clause in _clauses(words):
        if cur and _tokens(cur + clause) > limit:
            pieces.append(cur)
            cur = []
        if _tokens(clause) <= limit:
            cur = cur + clause
            continue
        if cur:
            pieces.append(cur)
            cur = []
        rest = [p for w in clause for p in ([w] if len(w.phonemes) <= limit else _split_long_word(w, limit))]
        while rest:  # a clause longer than a chunk: cut at phrase boundaries
            head, rest = _lead(rest, limit, limit)
            if rest:
                pieces.append(head)
            else:
                cur = head
    if cur:
        pieces.append(cur)
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

    ``short_first``: ramp up from a chunk of about ``first`` tokens (x RAMP per chunk) to ``target``.
    """
    pending: list[Word] = []
    pending_para = False
    cap = min(target, first) if short_first else target

    def emit(words: list[Word], ends_paragraph: bool) -> Chunk:
        nonlocal cap
        cap = min(target, cap * RAMP)
        pause = PAUSE_PARAGRAPH if ends_paragraph else pause_for(words[-1].text)
        return Chunk(tuple(words), pause)

    for sentence, ends_paragraph in split_sentences(text):
        pieces = _fit(phonemize(sentence), limit)
        for n, piece in enumerate(pieces):
            para = ends_paragraph and n == len(pieces) - 1
            while cap < target and _tokens(pending + piece) > cap:  # ramping up: cut inside the piece
                if pending:
                    yield emit(pending, pending_para)
                    pending = []
                    continue
                head, piece = _lead(piece, cap, min(limit, cap + cap // 2))
                if not piece:
                    yield emit(head, para)
                    break
                yield emit(head, False)
            else:
                if pending and _tokens(pending + piece) > cap:
                    yield emit(pending, pending_para)
                    pending = []
                pending = pending + piece
                pending_para = para
    if pending:
        yield emit(pending, pending_para)

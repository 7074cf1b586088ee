"""Voice style vectors: load a bundle, describe voices, parse and cache weighted mixes.

A voice is a float32 array (510, 1, 256): one style vector per input length. A mix such as
``af_bella(2)+af_sky(1)`` is the weighted average of its voices' arrays (weights normalized).
Names are matched only against loaded voices, so no request can reach the file system.
"""

from __future__ import annotations

import re
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import InvalidVoice, StartupError

VOICE_SHAPE = (510, 1, 256)
_NAME = r"[A-Za-z0-9_\-]{1,64}"
_TERM = re.compile(rf"^\s*({_NAME})\s*(?:\(\s*([^()]*?)\s*\))?\s*$")
_ACCENTS = {"a": "en-us", "b": "en-gb"}
_GENDERS = {"f": "female", "m": "male"}
MIX_CACHE_SIZE = 64


@dataclass(frozen=True)
class VoiceInfo:
    id: str
    name: str
    language: str
    gender: str


def describe(voice_id: str) -> VoiceInfo:
    prefix, _, rest = voice_id.partition("_")
    language = _ACCENTS.get(prefix[:1], "unknown")
    gender = _GENDERS.get(prefix[1:2], "unknown")
    return VoiceInfo(voice_id, (rest or voice_id).replace("_", " ").title(), language, gender)


def load_bundle(path: Path | None) -> dict[str, np.ndarray]:
    """Load an .npz bundle or a folder of .npy files; every array must have the v1.0 shape."""
    if path is None:
        raise StartupError(
            "No voices configured. Set KOKORO_VOICES_PATH to a voice bundle (.npz in kokoro-onnx's "
            "voices-v1.0.bin layout) or a folder of .npy files, e.g. ../shared/kokoro/voices-v1.0-en.npz, "
            "or run `kokoro-api models pull` where the internet is reachable."
        )
    path = Path(path)
    voices: dict[str, np.ndarray] = {}
    try:
        if path.is_dir():
            for f in sorted(path.glob("*.npy")):
                voices[f.stem] = np.load(f, allow_pickle=False)
        else:
            with np.load(path, allow_pickle=False) as bundle:
                voices = {k: bundle[k] for k in bundle.files}
    except FileNotFoundError:
        raise StartupError(f"Voice file {path} does not exist (KOKORO_VOICES_PATH).") from None
    except Exception as exc:  # numpy raises many types for a corrupt file
        raise StartupError(f"Voice file {path} cannot be read as a voice bundle: {exc}") from None
    if not voices:
        raise StartupError(f"No voices found in {path} (expected .npz or a folder of .npy files).")
    for name, arr in voices.items():
        if arr.shape != VOICE_SHAPE or not re.fullmatch(_NAME, name):
            raise StartupError(
                f"Voice {name!r} in {path} has shape {arr.shape}; expected {VOICE_SHAPE} (Kokoro v1.0)."
            )
        if not np.isfinite(arr).all():
            raise StartupError(f"Voice {name!r} in {path} holds NaN or infinite values.")
    return {k: v.astype(np.float32, copy=False) for k, v in voices.items()}


def parse_mix(spec: str) -> list[tuple[str, float]]:
    """``"a(2)+b(1)"`` -> [("a", 2.0), ("b", 1.0)]; raises InvalidVoice naming the problem."""
    if not spec or not spec.strip():
        raise InvalidVoice("The voice is empty.", {"voice": spec})
    terms = []
    for raw in spec.split("+"):
        m = _TERM.match(raw)
        if not m:
            raise InvalidVoice(
                f"Cannot parse voice term {raw.strip()!r}: use a voice id (listed at GET /v1/audio/voices) "
                "or a mix like 'af_bella(2)+af_sky(1)'.",
                {"voice": spec, "term": raw.strip()},
            )
        name, weight_s = m.group(1), m.group(2)
        if weight_s is None:
            weight = 1.0
        else:
            try:
                weight = float(weight_s)
            except ValueError:
                raise InvalidVoice(
                    f"Weight {weight_s!r} of voice {name!r} is not a number.", {"voice": spec, "term": name}
                ) from None
            if not np.isfinite(weight) or weight <= 0:
                raise InvalidVoice(
                    f"Weight of voice {name!r} must be a positive number, got {weight_s!r}.",
                    {"voice": spec, "term": name},
                )
        terms.append((name, weight))
    return terms


class VoiceStore:
    """Loaded voices plus saved named mixes; resolves ids and mixes to style arrays (cached)."""

    def __init__(self, voices: dict[str, np.ndarray]) -> None:
        self._voices = voices
        self._saved: dict[str, str] = {}
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    @property
    def builtin_ids(self) -> list[str]:
        return sorted(self._voices)

    @property
    def saved(self) -> dict[str, str]:
        return dict(self._saved)

    def set_saved(self, mixes: dict[str, str]) -> None:
        with self._lock:
            self._saved = dict(mixes)
            self._cache.clear()

    def infos(self) -> list[VoiceInfo]:
        return [describe(v) for v in self.builtin_ids]

    def language_of(self, spec: str) -> str:
        """The accent of a voice or mix: that of its first (or heaviest) voice."""
        terms = self._expand(spec)
        first = max(terms, key=lambda t: t[1])[0]
        return describe(first).language

    def _expand(self, spec: str, depth: int = 0) -> list[tuple[str, float]]:
        out: list[tuple[str, float]] = []
        for name, weight in parse_mix(spec):
            if name in self._voices:
                out.append((name, weight))
            elif name in self._saved and depth < 4:
                sub = self._expand(self._saved[name], depth + 1)
                total = sum(w for _, w in sub)
                out.extend((n, weight * w / total) for n, w in sub)
            else:
                raise InvalidVoice(
                    f"Unknown voice {name!r}. The available voices are listed at GET /v1/audio/voices.",
                    {"voice": spec, "unknown": name},
                )
        return out

    def style(self, spec: str) -> np.ndarray:
        """The (510, 1, 256) style array for a voice id or mix."""
        with self._lock:
            hit = self._cache.get(spec)
            if hit is not None:
                self._cache.move_to_end(spec)
                return hit
        terms = self._expand(spec)
        total = sum(w for _, w in terms)
        arr = sum(self._voices[n] * np.float32(w / total) for n, w in terms)
        arr = np.asarray(arr, dtype=np.float32)
        with self._lock:
            self._cache[spec] = arr
            while len(self._cache) > MIX_CACHE_SIZE:
                self._cache.popitem(last=False)
        return arr

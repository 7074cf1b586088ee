"""Everything the service loads once: model sessions, voices, G2P. Built in the lifespan, kept on app.state."""

from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .config import DEFAULT_VOICE_ALIASES, Settings
from .engine.model import resolve_model
from .engine.pool import EnginePool, release_free_heap
from .errors import StartupError
from .synthesis import Synthesizer
from .text.g2p import Phonemizer
from .voices import VoiceStore, load_bundle, parse_aliases

log = logging.getLogger(__name__)
WARMUP_TEXT = "Ready."


def probe_style(settings: Settings, voices: dict[str, np.ndarray] | None = None) -> np.ndarray:
    """The style array ``auto`` times the variants with: the default voice's, else the first voice's."""
    voices = voices if voices is not None else load_bundle(settings.voices_path)
    return voices.get(settings.default_voice, next(iter(voices.values())))


def prepared_model(settings: Settings, progress: bool = False, style: np.ndarray | None = None) -> Path:
    """Resolve the model, then add the durations output and pick the variant (cached on disk).

    ``auto`` times both variants on this machine once (engine/choose.py) with ``style`` (default: see
    :func:`probe_style`).
    """
    source = resolve_model(settings.model_path, settings.cache_dir, progress=progress)
    try:
        from .engine.choose import choose_variant
        from .engine.prepare import prepare_in_subprocess
    except ImportError:  # preparation not available: run the model as it is
        return source
    try:
        if settings.model_variant == "auto":
            style = style if style is not None else probe_style(settings)
            return choose_variant(source, settings.cache_dir, settings.intra_op_threads, style)[1]
        return prepare_in_subprocess(source, settings.cache_dir, settings.model_variant)
    except StartupError:  # e.g. no voices to time the variants with: say that, not "corrupt model"
        raise
    except Exception as exc:  # onnx raises DecodeError & co. for a truncated or corrupt file
        first = (str(exc).splitlines() or [type(exc).__name__])[0][:300]
        raise StartupError(f"Model file {source} cannot be prepared (truncated or corrupt?): {first}") from None


def apply_aliases(voices: VoiceStore, text: str) -> None:
    """Install KOKORO_VOICE_ALIASES. A configured alias whose voice is not loaded stops the start-up; the
    default table only warns (a custom voice bundle may lack the voices it names)."""
    try:
        aliases = parse_aliases(text)
    except ValueError as exc:
        raise StartupError(f"KOKORO_VOICE_ALIASES: {exc}") from None
    dropped = voices.set_aliases(aliases)
    if dropped and text != DEFAULT_VOICE_ALIASES:
        name, why = next(iter(dropped.items()))
        raise StartupError(f"KOKORO_VOICE_ALIASES: alias {name!r} names no loaded voice ({why}).")
    if dropped:
        log.warning("voice aliases dropped: their voices are not in the bundle", extra={"aliases": sorted(dropped)})


@dataclass
class Runtime:
    settings: Settings
    synthesizer: Synthesizer | None = None
    model_path: Path | None = None
    ready: bool = False
    error: str | None = None
    load_seconds: float = 0.0
    extras: dict = field(default_factory=dict)

    @property
    def voices(self) -> VoiceStore:
        assert self.synthesizer is not None
        return self.synthesizer.voices

    def load(self) -> None:
        """Blocking: load everything (call from a thread). Raises StartupError with a clear message.

        The ONNX Runtime session (C++, releases the GIL) and the G2P (spaCy + lexicons, Python) load in
        parallel: start-up to ready is the longer of the two, not their sum.
        """
        t0 = time.perf_counter()
        with ThreadPoolExecutor(max_workers=2, thread_name_prefix="kokoro-load") as ex:
            phonemizer = ex.submit(Phonemizer, self.settings.workers)  # one G2P engine per worker
            try:
                bundle = load_bundle(self.settings.voices_path)
                voices = VoiceStore(bundle)
                voices.attach(self.settings.voices_dir)  # saved named mixes, if persisted
                apply_aliases(voices, self.settings.voice_aliases)
                self.model_path = prepared_model(self.settings, style=probe_style(self.settings, bundle))
                pool = self._pool(bundle)
            except BaseException:
                phonemizer.cancel()
                raise
            self.synthesizer = Synthesizer(
                pool, phonemizer.result(), voices, first_chunk_tokens=self.settings.first_chunk_tokens,
                audio_s_per_char=self.settings.max_audio_s_per_char,
                g2p_deadline_s=self.settings.g2p_deadline_s,
            )
        # Parsing the model's protobuf leaves ~125 MB (float) of freed heap resident: 488 -> 362 MB RSS
        # after malloc_trim (docs/performance.md).
        release_free_heap()
        self.load_seconds = time.perf_counter() - t0
        log.info("model loaded", extra={"model": str(self.model_path), "seconds": round(self.load_seconds, 2),
                                        "voices": len(voices.builtin_ids), "workers": self.settings.workers})

    def _pool(self, bundle: dict[str, np.ndarray]) -> EnginePool:
        """The engine pool; a prepared model in the cache that ONNX Runtime cannot load (corrupted after it
        was written) is discarded and prepared once more."""
        assert self.model_path is not None
        try:
            return EnginePool(self.model_path, self.settings.workers, self.settings.intra_op_threads)
        except StartupError:
            cache = Path(self.settings.cache_dir).resolve()
            if cache not in self.model_path.resolve().parents:
                raise  # the operator's own file (KOKORO_MODEL_PATH): report it, never delete it
            from .engine.prepare import discard

            log.warning("cached model %s does not load: preparing it again", self.model_path.name)
            discard(self.model_path)
            self.model_path = prepared_model(self.settings, style=probe_style(self.settings, bundle))
            return EnginePool(self.model_path, self.settings.workers, self.settings.intra_op_threads)

    def close(self) -> None:
        if self.synthesizer is not None:
            self.synthesizer.pool.close()

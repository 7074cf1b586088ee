"""Everything the service loads once: model sessions, voices, G2P. Built in the lifespan, kept on app.state."""

from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from .config import Settings
from .engine.model import resolve_model
from .engine.pool import EnginePool
from .errors import StartupError
from .synthesis import Synthesizer
from .text.g2p import Phonemizer
from .voices import VoiceStore, load_bundle

log = logging.getLogger(__name__)
WARMUP_TEXT = "Ready."


def prepared_model(settings: Settings, progress: bool = False) -> Path:
    """Resolve the model, then add the durations output and pick the variant (cached on disk)."""
    source = resolve_model(settings.model_path, settings.cache_dir, progress=progress)
    try:
        from .engine.prepare import prepare_in_subprocess
    except ImportError:  # preparation not available: run the model as it is
        return source
    variant = "float" if settings.model_variant == "auto" else settings.model_variant
    try:
        return prepare_in_subprocess(source, settings.cache_dir, variant)
    except Exception as exc:  # onnx raises DecodeError & co. for a truncated or corrupt file
        first = (str(exc).splitlines() or [type(exc).__name__])[0][:300]
        raise StartupError(f"Model file {source} cannot be prepared (truncated or corrupt?): {first}") from None


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
            phonemizer = ex.submit(Phonemizer)
            try:
                voices = VoiceStore(load_bundle(self.settings.voices_path))
                voices.attach(self.settings.voices_dir)  # saved named mixes, if persisted
                self.model_path = prepared_model(self.settings)
                pool = EnginePool(self.model_path, self.settings.workers, self.settings.intra_op_threads)
            except BaseException:
                phonemizer.cancel()
                raise
            self.synthesizer = Synthesizer(
                pool, phonemizer.result(), voices, first_chunk_tokens=self.settings.first_chunk_tokens
            )
        self.load_seconds = time.perf_counter() - t0
        log.info("model loaded", extra={"model": str(self.model_path), "seconds": round(self.load_seconds, 2),
                                        "voices": len(voices.builtin_ids), "workers": self.settings.workers})

    def close(self) -> None:
        if self.synthesizer is not None:
            self.synthesizer.pool.close()

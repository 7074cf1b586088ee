"""The application factory. ``create_app(settings)`` builds a FastAPI app; nothing happens at import."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from .admission import Admission
from .api import download, health, jobs, models, native, speech, voices
from .auth import own_key
from .config import Settings
from .errors import StartupError, install_error_handlers
from .jobs import JobQueue
from .limits import BodySizeLimit
from .middleware import install_middleware
from .peers import Peers
from .runtime import WARMUP_TEXT, Runtime
from .storage import AudioStore

log = logging.getLogger(__name__)


async def _load(app: FastAPI) -> None:
    rt: Runtime = app.state.runtime
    try:
        await asyncio.to_thread(rt.load)
        peers: Peers = app.state.peers
        if peers.enabled and not rt.settings.voices_dir:  # the replicas' saved mixes, before turning ready
            await voices.pull_saved(peers, rt.voices)
        if rt.settings.warmup:
            voice = rt.settings.default_voice
            if voice not in rt.voices.builtin_ids:
                voice = rt.voices.builtin_ids[0]
            await rt.synthesizer.synthesize(WARMUP_TEXT, voice, 1.0)
        rt.ready = True
        log.info("ready", extra={"seconds": round(rt.load_seconds, 2)})
        on_ready = getattr(app.state, "on_ready", None)  # `kokoro-api serve`: one line for a human
        if on_ready is not None:
            on_ready()
        # British English (b* voices) builds its lexicon now, off the start-up path; a British request
        # arriving first simply waits for it.
        try:
            await asyncio.to_thread(rt.synthesizer.phonemizer.preload)
        except Exception:  # British requests will retry the build (and fail with a logged 500 cause)
            log.exception("British English G2P failed to load")
    except StartupError as exc:
        rt.error = str(exc)
        log.error("start-up failed: %s", exc)
    except Exception as exc:  # keep the process up so /healthz can report it; Kubernetes restarts it
        rt.error = f"Start-up failed unexpectedly ({type(exc).__name__}); the server log has the cause."
        log.exception("start-up failed")


async def _clean_audio(store: AudioStore) -> None:
    """Delete expired download files now and then (the age cap of KOKORO_AUDIO_MAX_AGE_S)."""
    while True:
        try:
            await asyncio.to_thread(store.cleanup)
        except Exception:
            log.exception("download cleanup failed")
        await asyncio.sleep(store.cleanup_interval_s)


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings: Settings = app.state.settings
    app.state.runtime = Runtime(settings)
    app.state.admission = Admission(settings.workers, settings.max_queue, settings.max_queue_wait_s)
    app.state.audio_store = AudioStore(
        settings.audio_dir, int(settings.audio_dir_max_mb * 1024 * 1024), settings.audio_max_age_s
    )
    app.state.peers = Peers(settings.peers, settings.peer_timeout_s, key=own_key(settings))
    app.state.jobs = JobQueue(settings.max_jobs, settings.audio_max_age_s)
    app.state.jobs.start()
    loader = asyncio.create_task(_load(app))
    cleaner = asyncio.create_task(_clean_audio(app.state.audio_store))
    try:
        yield
    finally:
        loader.cancel()
        cleaner.cancel()
        app.state.jobs.stop()
        await app.state.peers.aclose()
        app.state.runtime.close()


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    app = FastAPI(
        title="Kokoro TTS API",
        version="0.1.0",
        description="Kokoro-82M text-to-speech on ONNX Runtime, OpenAI-compatible.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    install_error_handlers(app)
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    install_middleware(app, settings)  # API keys, CORS, request log and /metrics
    routers = (
        health.router, models.router, voices.router, speech.router, native.router, download.router,
        jobs.router,
    )
    for router in routers:
        app.include_router(router)
    try:
        from .api.web import mount_web
    except ImportError:
        pass
    else:
        mount_web(app)
    return app

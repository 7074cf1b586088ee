"""Request bodies (pydantic). Validation failures become 400s in the error shape."""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

MODEL_IDS = ("kokoro", "tts-1", "tts-1-hd", "gpt-4o-mini-tts")  # every one runs Kokoro-82M
ModelId = Literal["kokoro", "tts-1", "tts-1-hd", "gpt-4o-mini-tts"]
VOLUME_MAX = 4.0
SPEED_MIN, SPEED_MAX = 0.25, 4.0
MAX_VOICE_CHARS = 1024  # a mix of 32 voices with weights fits easily
AudioFormat = Literal["mp3", "opus", "aac", "flac", "wav", "pcm"]


class NormalizationOptions(BaseModel):
    """Kokoro-FastAPI's ``normalization_options``. ``normalize`` maps onto the request's ``normalize``; the
    finer switches are accepted and ignored (the server's normalization is one fixed pipeline)."""

    model_config = ConfigDict(extra="allow")

    normalize: bool = True
    unit_normalization: bool = False
    url_normalization: bool = True
    email_normalization: bool = True
    optional_pluralization_normalization: bool = True
    phone_normalization: bool = True
    replace_remaining_symbols: bool = True

    def ignored(self) -> list[str]:
        """The switches set to something other than their default (they have no effect here)."""
        defaults = NormalizationOptions()
        out = [k for k in type(self).model_fields if k != "normalize" and getattr(self, k) != getattr(defaults, k)]
        extra = sorted(self.model_extra or {})
        named = [k for k in extra if re.fullmatch(r"[A-Za-z0-9_]{1,64}", k)][:10]  # echoed in a header
        return out + named + (["(other keys)"] if len(named) < len(extra) else [])


class SpeechRequest(BaseModel):
    """OpenAI's `POST /v1/audio/speech` body, plus the extra fields Kokoro-FastAPI clients send."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    model: ModelId = Field("kokoro", description="Any of these runs Kokoro-82M.")
    input: str = Field(..., description="Text to speak: 1..4096 characters after stripping (configurable).")
    voice: str | None = Field(
        None,
        max_length=MAX_VOICE_CHARS,
        description="Voice id, OpenAI voice name (alloy, echo, ...: KOKORO_VOICE_ALIASES), saved mix, or a "
        "weighted mix 'af_bella(2)+af_sky(1)'. Default: KOKORO_DEFAULT_VOICE.",
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
    lang_code: str | None = Field(
        None,
        max_length=16,
        description="Force American ('a', 'en-us') or British ('b', 'en-gb') English G2P; default: the "
        "voice's accent. Kokoro-FastAPI's other languages are a 400 UnsupportedLanguage.",
    )
    return_download_link: bool = Field(
        False,
        description="Also keep the audio for a while and return its path in the X-Download-Path header "
        "(GET it from /v1/download/{name}).",
    )
    normalize: bool = Field(
        True,
        description="Read what people type as a reader would (URLs, e-mail addresses, times, dates, units, "
        "abbreviations, phone numbers...; docs/text.md). false: the text goes to G2P as is (digit runs over "
        "15 digits are still read in groups).",
    )
    normalization_options: NormalizationOptions | None = Field(
        None,
        description="Kokoro-FastAPI compatibility: `normalize: false` turns normalization off (as `normalize`); "
        "the other switches are accepted and ignored (listed in X-Ignored-Fields).",
    )
    volume_multiplier: float = Field(
        1.0, ge=0.0, le=VOLUME_MAX, description="Kokoro-FastAPI compatibility: scale the audio (clipped), 0-4."
    )
    download_format: AudioFormat | None = Field(
        None,
        description="Kokoro-FastAPI compatibility: accepted and ignored (a download link keeps the "
        "response_format audio); listed in X-Ignored-Fields.",
    )
    user: str | None = Field(
        None, max_length=256, description="Accepted and ignored (listed in X-Ignored-Fields)."
    )

    @model_validator(mode="after")
    def _kfa_normalize(self) -> SpeechRequest:
        """Kokoro-FastAPI's ``normalization_options.normalize: false`` means ``normalize: false``."""
        if self.normalization_options is not None and not self.normalization_options.normalize:
            self.normalize = False
        return self

    def ignored_fields(self) -> list[str]:
        """Fields the client set that have no effect here (logged, and echoed in X-Ignored-Fields)."""
        out = []
        if self.instructions:
            out.append("instructions")
        if self.download_format is not None and self.download_format != self.response_format:
            out.append("download_format")
        if self.user is not None:
            out.append("user")
        if self.normalization_options is not None:
            out += [f"normalization_options.{k}" for k in self.normalization_options.ignored()]
        return out

    @property
    def streamed(self) -> bool:
        """Streamed unless ``stream: false`` (OpenAI's default stream_format is 'audio'; KFA's stream=true)."""
        if self.stream_format == "sse":
            return True
        return self.stream is not False


LANGUAGES = {"en": None, "en-us": False, "en-gb": True}  # language -> british G2P (None: the voice's accent)
LANG_CODES = {"a": False, "b": True, **LANGUAGES}  # /v1/audio/speech lang_code (Kokoro-FastAPI's a / b)
RATE_MIN, RATE_MAX = 0.5, 2.0
NativeFormat = Literal["mp3", "wav", "ogg"]


class SynthesizeRequest(BaseModel):
    """`POST /synthesize` (the deployment plan's data model); also one item of a batch."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    text: str = Field(..., description="Text to speak (same limits as `input` on /v1/audio/speech).")
    voice_id: str | None = Field(
        None,
        max_length=MAX_VOICE_CHARS,
        description="Voice id, saved mix name or weighted mix 'af_bella(2)+af_sky(1)'. "
        "Default: KOKORO_DEFAULT_VOICE."
    )
    language: str = Field(
        "en",
        description="'en' (the voice's accent), 'en-us' or 'en-gb'. Others: 400 UnsupportedLanguage; a "
        "voice of the other accent: 400 InvalidVoice.",
    )
    speaking_rate: float = Field(1.0, ge=RATE_MIN, le=RATE_MAX, description="Speaking rate, 0.5-2.0.")
    output_format: NativeFormat = Field("mp3", description="mp3, wav, or ogg (Opus in Ogg).")
    return_download_link: bool = Field(
        False, description="Also keep the audio for download: X-Download-Path header / download_url field."
    )
    normalize: bool = Field(
        True,
        description="Read what people type as a reader would (URLs, e-mail addresses, times, dates, units, "
        "abbreviations, phone numbers...; docs/text.md). false: the text goes to G2P as is (digit runs over "
        "15 digits are still read in groups).",
    )


class BatchRequest(BaseModel):
    """`POST /synthesize/batch`."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    items: list[Any] = Field(
        ..., description="1..KOKORO_MAX_BATCH_ITEMS SynthesizeRequest objects. Every item is validated "
        "before anything is synthesized; any bad item makes the whole batch a 400 listing each bad item."
    )
    concatenate: bool = Field(
        False,
        description="true: one audio file (the items in order; all items must share output_format). "
        "false: a JSON array with each item's audio (base64) and metadata.",
    )
    return_download_link: bool = Field(
        False, description="With concatenate=true: keep the joined file for download (X-Download-Path)."
    )


class SaveVoiceRequest(BaseModel):
    """`POST /v1/audio/voices`: save a mix of built-in voices under a name."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(..., description="1-64 of A-Z a-z 0-9 _ -; not a built-in voice id.")
    mix: str = Field(
        ..., max_length=MAX_VOICE_CHARS, description="A mix of built-in voices, e.g. 'af_bella(2)+af_sky(1)'."
    )

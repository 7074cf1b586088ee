"""Turn a validated synthesis job into an HTTP response: whole file, chunked audio, SSE, or JSON.

All synthesis endpoints go through here, so admission, validation of text and voice, encoding and
streaming behave the same everywhere.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass

from fastapi.responses import JSONResponse, Response, StreamingResponse

from ..admission import Admission, Lease
from ..audio.encode import EXTENSIONS, MEDIA_TYPES, SAMPLE_RATE, Encoder, encode
from ..config import Settings
from ..errors import InputTooLong, InvalidRequest
from ..runtime import Runtime
from ..synthesis import Segment

AUDIO_RESPONSES = {
    200: {"content": {m: {} for m in sorted(set(MEDIA_TYPES.values()))}, "description": "Audio"},
    400: {"description": "Invalid request (error shape)"},
    503: {"description": "Overloaded or not ready (error shape, Retry-After)"},
}


@dataclass
class SynthesisJob:
    rt: Runtime
    text: str
    voice: str
    speed: float
    fmt: str
    streamed: bool
    british: bool | None = None

    @classmethod
    def checked(
        cls, rt: Runtime, settings: Settings, *, text: str, voice: str | None, speed: float, fmt: str,
        streamed: bool, british: bool | None = None, field: str = "input",
    ) -> SynthesisJob:
        """Validate text length and voice up front, so errors are 400s before any audio is sent."""
        text = text.strip()
        if not text:
            raise InvalidRequest(f"'{field}' is empty: give some text to speak.", {"field": field})
        if len(text) > settings.max_input_chars:
            raise InputTooLong(
                f"'{field}' has {len(text)} characters; the limit is {settings.max_input_chars}.",
                {"field": field, "length": len(text), "limit": settings.max_input_chars},
            )
        if not streamed and len(text) > settings.max_unstreamed_chars:
            raise InputTooLong(
                f"'{field}' has {len(text)} characters; non-streamed responses are limited to "
                f"{settings.max_unstreamed_chars}. Stream the response (stream_format='audio') for longer text.",
                {"field": field, "length": len(text), "limit": settings.max_unstreamed_chars},
            )
        voice = voice or settings.default_voice
        rt.voices.style(voice)  # raises InvalidVoice naming the problem
        return cls(rt, text, voice, speed, fmt, streamed, british)

    def segments(self, short_first: bool = False) -> AsyncIterator[Segment]:
        return self.rt.synthesizer.segments(
            self.text, self.voice, self.speed, short_first=short_first, british=self.british
        )

    async def whole(self) -> Segment:
        return await self.rt.synthesizer.synthesize(self.text, self.voice, self.speed, british=self.british)

    @property
    def filename(self) -> str:
        return f"speech.{EXTENSIONS[self.fmt]}"


async def _encode(audio, fmt: str) -> bytes:
    return await asyncio.to_thread(encode, audio, fmt)


async def _stream_bytes(job: SynthesisJob, lease: Lease) -> AsyncIterator[bytes]:
    """Encoded audio, chunk by chunk; the lease is freed when the stream ends or the client leaves."""
    try:
        enc = Encoder(job.fmt)
        async for seg in job.segments(short_first=True):
            data = await asyncio.to_thread(enc.write, seg.audio)
            if data:
                yield data
        tail = enc.close()
        if tail:
            yield tail
    finally:
        lease.release()


async def _first(it: AsyncIterator[bytes]) -> tuple[bytes, AsyncIterator[bytes]]:
    """Pull the first piece before answering, so an error in it is still a proper 4xx."""
    first = await it.__anext__()

    async def rest() -> AsyncIterator[bytes]:
        yield first
        async for b in it:
            yield b

    return first, rest()


async def _sse(chunks: AsyncIterator[bytes], job: SynthesisJob) -> AsyncIterator[bytes]:
    total = 0
    async for data in chunks:
        total += len(data)
        event = {"type": "speech.audio.delta", "audio": base64.b64encode(data).decode()}
        yield f"data: {json.dumps(event)}\n\n".encode()
    usage = {"input_tokens": len(job.text), "output_tokens": total, "total_tokens": len(job.text) + total}
    yield f"data: {json.dumps({'type': 'speech.audio.done', 'usage': usage})}\n\n".encode()


async def audio_response(job: SynthesisJob, admission: Admission, sse: bool = False) -> Response:
    headers = {"Content-Disposition": f'inline; filename="{job.filename}"'}
    if not job.streamed:
        lease = await admission.acquire()
        try:
            seg = await job.whole()
        finally:
            lease.release()
        body = await _encode(seg.audio, job.fmt)
        headers["X-Audio-Duration"] = f"{seg.seconds:.3f}"
        return Response(body, media_type=MEDIA_TYPES[job.fmt], headers=headers)
    lease = await admission.acquire()
    stream = _stream_bytes(job, lease)
    try:
        _, stream = await _first(stream)
    except BaseException:
        lease.release()
        raise
    if sse:
        return StreamingResponse(_sse(stream, job), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache"})
    return StreamingResponse(stream, media_type=MEDIA_TYPES[job.fmt], headers=headers)


async def timestamps_response(job: SynthesisJob, admission: Admission) -> JSONResponse:
    lease = await admission.acquire()
    try:
        seg = await job.whole()
    finally:
        lease.release()
    body = await _encode(seg.audio, job.fmt)
    return JSONResponse({
        "audio": base64.b64encode(body).decode(),
        "format": job.fmt,
        "media_type": MEDIA_TYPES[job.fmt],
        "sample_rate": SAMPLE_RATE,
        "duration": round(seg.seconds, 3),
        "words": [{"word": w.word, "start": round(w.start, 3), "end": round(w.end, 3)} for w in seg.words],
    })

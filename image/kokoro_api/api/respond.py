"""Turn a validated synthesis job into an HTTP response: whole file, chunked audio, SSE, or JSON.

All synthesis endpoints go through here, so admission, validation of text and voice, encoding and
streaming behave the same everywhere.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

from fastapi.responses import JSONResponse, Response, StreamingResponse

from ..admission import Admission, Lease
from ..audio.encode import EXTENSIONS, MEDIA_TYPES, SAMPLE_RATE, Encoder, encode
from ..config import Settings
from ..errors import APIError, InputTooLong, InvalidRequest
from ..requestlog import current
from ..runtime import Runtime
from ..storage import AudioStore, new_name, url_for
from ..synthesis import Segment

log = logging.getLogger(__name__)

AUDIO_RESPONSES = {
    200: {"content": {m: {} for m in sorted(set(MEDIA_TYPES.values()))}, "description": "Audio"},
    400: {"description": "Invalid request (error shape)"},
    503: {"description": "Overloaded or not ready (error shape, Retry-After)"},
}


_LONE_SURROGATES = re.compile("[\ud800-\udfff]")


@dataclass
class SynthesisJob:
    rt: Runtime
    text: str
    voice: str
    speed: float
    fmt: str
    streamed: bool
    british: bool | None = None
    normalize: bool = True

    @classmethod
    def checked(
        cls, rt: Runtime, settings: Settings, *, text: str, voice: str | None, speed: float, fmt: str,
        streamed: bool, british: bool | None = None, field: str = "input", normalize: bool = True,
    ) -> SynthesisJob:
        """Validate text length and voice up front, so errors are 400s before any audio is sent."""
        text = _LONE_SURROGATES.sub("", text).strip()  # valid JSON ("\\ud800"); spaCy fails on them
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
        current().job(text=text, voice=voice, fmt=fmt, streamed=streamed)  # for the log line and metrics
        return cls(rt, text, voice, speed, fmt, streamed, british, normalize)

    def segments(self, short_first: bool = False) -> AsyncIterator[Segment]:
        return self.rt.synthesizer.segments(
            self.text, self.voice, self.speed, short_first=short_first, british=self.british,
            normalize=self.normalize,
        )

    async def whole(self) -> Segment:
        return await self.rt.synthesizer.synthesize(
            self.text, self.voice, self.speed, british=self.british, normalize=self.normalize
        )

    @property
    def filename(self) -> str:
        return f"speech.{EXTENSIONS[self.fmt]}"


async def _encode(audio, fmt: str) -> bytes:
    return await asyncio.to_thread(encode, audio, fmt)


async def _stream_bytes(job: SynthesisJob, lease: Lease, ramp: bool = True) -> AsyncIterator[bytes]:
    """Encoded audio, chunk by chunk; the lease is freed when the stream ends or the client leaves.

    ``ramp``: start with a short chunk (sooner first audio). Short chunks cost more per audio second (the
    model computes ~0.4 s of edge silence per call, which is trimmed), so a stream admitted while others
    were queued, whose first audio is late anyway, uses full-size chunks: throughput wins there.
    """
    rec = current()
    try:
        enc = Encoder(job.fmt)
        t = time.perf_counter()
        held: list[bytes] = []  # leading silence (unspeakable chunks), held back until a word is spoken:
        spoken = False  # an input with no speakable word is then a 400 before any byte is sent
        async for seg in job.segments(short_first=ramp):
            data = await asyncio.to_thread(enc.write, seg.audio)
            rec.synthesized(seg.seconds, time.perf_counter() - t)  # not counting time blocked on the client
            if not spoken and not seg.tokens:
                held.append(data)
                t = time.perf_counter()
                continue
            spoken = True
            data = b"".join(held) + data
            held.clear()
            if data:
                rec.sent(len(data))
                yield data
            t = time.perf_counter()
        tail = enc.close()
        if tail:
            rec.sent(len(tail))
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


async def render_all(jobs: list[SynthesisJob], admission: Admission) -> list[Segment]:
    """Whole, non-streamed syntheses, in order, under one worker slot (a batch never 503s halfway)."""
    lease = await admission.acquire()
    t = time.perf_counter()
    try:
        segs = [await job.whole() for job in jobs]
    finally:
        lease.release()
    current().synthesized(sum(seg.seconds for seg in segs), time.perf_counter() - t)
    return segs


async def encoded(audio, fmt: str) -> bytes:
    body = await _encode(audio, fmt)
    current().sent(len(body))
    return body


async def render(job: SynthesisJob, admission: Admission) -> tuple[Segment, bytes]:
    """A whole, non-streamed synthesis: hold a worker slot, synthesize, encode."""
    (seg,) = await render_all([job], admission)
    return seg, await encoded(seg.audio, job.fmt)


async def keep_for_download(store: AudioStore, body: bytes, fmt: str) -> str:
    """Store the audio for a download link; returns its path (/v1/download/<name>). 507 when it can't fit."""
    return url_for(await asyncio.to_thread(store.save, body, fmt))


async def _tee_to_store(
    stream: AsyncIterator[bytes], store: AudioStore, fmt: str, name: str
) -> AsyncIterator[bytes]:
    """Pass a stream through and store the whole of it once complete (nothing is stored if cut short)."""
    parts = []
    async for data in stream:
        parts.append(data)
        yield data
    try:
        await asyncio.to_thread(store.save, b"".join(parts), fmt, name)
    except APIError as exc:  # the response is already sent; the link will 404
        log.warning("streamed audio not kept for download: %s", exc.message)


def audio_headers(job: SynthesisJob) -> dict[str, str]:
    return {"Content-Disposition": f'inline; filename="{job.filename}"'}


async def audio_response(
    job: SynthesisJob, admission: Admission, sse: bool = False, store: AudioStore | None = None
) -> Response:
    """The audio as one file, a chunked stream or SSE; with ``store``, also kept for a download link."""
    headers = audio_headers(job)
    if not job.streamed:
        seg, body = await render(job, admission)
        headers["X-Audio-Duration"] = f"{seg.seconds:.3f}"
        if store is not None:
            headers["X-Download-Path"] = await keep_for_download(store, body, job.fmt)
        return Response(body, media_type=MEDIA_TYPES[job.fmt], headers=headers)
    if store is not None:
        store.check()  # an unusable directory is a 507 before any audio is sent
    lease = await admission.acquire()
    stream = _stream_bytes(job, lease, ramp=not admission.waiting)
    try:
        _, stream = await _first(stream)
    except BaseException:
        lease.release()
        raise
    if store is not None:  # the link is announced up front; the file appears when the stream completes
        name = new_name(job.fmt)
        stream = _tee_to_store(stream, store, job.fmt, name)
        headers["X-Download-Path"] = url_for(name)
    if sse:
        sse_headers = {"Cache-Control": "no-cache"}
        if "X-Download-Path" in headers:
            sse_headers["X-Download-Path"] = headers["X-Download-Path"]
        return StreamingResponse(_sse(stream, job), media_type="text/event-stream", headers=sse_headers)
    return StreamingResponse(stream, media_type=MEDIA_TYPES[job.fmt], headers=headers)


async def timestamps_response(job: SynthesisJob, admission: Admission) -> JSONResponse:
    seg, body = await render(job, admission)
    return JSONResponse({
        "audio": base64.b64encode(body).decode(),
        "format": job.fmt,
        "media_type": MEDIA_TYPES[job.fmt],
        "sample_rate": SAMPLE_RATE,
        "duration": round(seg.seconds, 3),
        "words": [{"word": w.word, "start": round(w.start, 3), "end": round(w.end, 3)} for w in seg.words],
    })

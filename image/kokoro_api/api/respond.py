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
from collections.abc import AsyncIterator, Callable
from contextlib import aclosing
from dataclasses import dataclass

import numpy as np
from fastapi.responses import JSONResponse, Response, StreamingResponse

from ..admission import Admission, Lease
from ..audio.encode import EXTENSIONS, HELD_WHOLE, MEDIA_TYPES, SAMPLE_RATE, Encoder, encode
from ..config import Settings
from ..errors import APIError, InputTooLong, InvalidRequest
from ..requestlog import current
from ..runtime import Runtime
from ..storage import AudioStore, new_name, url_for
from ..synthesis import Segment, WordTime

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
    max_audio_s: float | None = None  # the non-streamed audio cap (KOKORO_MAX_UNSTREAMED_AUDIO_S)
    volume: float = 1.0  # Kokoro-FastAPI's volume_multiplier
    normalize: bool = True

    @classmethod
    def checked(
        cls, rt: Runtime, settings: Settings, *, text: str, voice: str | None, speed: float, fmt: str,
        streamed: bool, british: bool | None = None, field: str = "input", volume: float = 1.0,
        deferred: bool = False,
        normalize: bool = True,
    ) -> SynthesisJob:
        """Validate text length and voice up front, so errors are 400s before any audio is sent.

        ``deferred``: the job answers at once (202) and runs later, so the non-streamed cap does not apply.
        """
        text = _LONE_SURROGATES.sub("", text).strip()  # valid JSON ("\\ud800"); spaCy fails on them
        if not text:
            raise InvalidRequest(f"'{field}' is empty: give some text to speak.", {"field": field})
        if len(text) > settings.max_input_chars:
            raise InputTooLong(
                f"'{field}' has {len(text)} characters; the limit is {settings.max_input_chars}.",
                {"field": field, "length": len(text), "limit": settings.max_input_chars},
            )
        if not (streamed or deferred) and len(text) > settings.max_unstreamed_chars:
            how = ("send it as a job (header 'Prefer: respond-async')" if field == "text"
                   else "stream the response (stream_format='audio') or send it as a job (header "
                   "'Prefer: respond-async' on the timestamps route)")
            raise InputTooLong(
                f"'{field}' has {len(text)} characters; responses that are not streamed are limited to "
                f"{settings.max_unstreamed_chars}. For longer text, {how}.",
                {"field": field, "length": len(text), "limit": settings.max_unstreamed_chars},
            )
        voice = voice or settings.default_voice
        rt.voices.style(voice)  # raises InvalidVoice naming the problem
        current().job(text=text, voice=voice, fmt=fmt, streamed=streamed)  # for the log line and metrics
        cap = None if (streamed or deferred) else settings.max_unstreamed_audio_s
        return cls(rt, text, voice, speed, fmt, streamed, british, cap, volume, normalize)

    def _scaled(self, seg: Segment) -> Segment:
        if self.volume != 1.0:
            seg.audio = np.clip(seg.audio * np.float32(self.volume), -1.0, 1.0)
        return seg

    async def segments(self, short_first: bool = False) -> AsyncIterator[Segment]:
        inner = self.rt.synthesizer.segments(
            self.text, self.voice, self.speed, short_first=short_first, british=self.british,
            normalize=self.normalize,
        )
        async with aclosing(inner):
            async for seg in inner:
                yield self._scaled(seg)

    async def whole(self, progress: Callable[[float], None] | None = None) -> Segment:
        seg = await self.rt.synthesizer.synthesize(
            self.text, self.voice, self.speed, british=self.british, max_audio_s=self.max_audio_s,
            progress=progress, normalize=self.normalize,
        )
        return self._scaled(seg)

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
            rec.phonemized(seg.g2p_seconds)
            if not spoken and not seg.tokens:
                held.append(data)
                t = time.perf_counter()
                continue
            first_spoken, spoken = not spoken, True
            data = b"".join(held) + data
            held.clear()
            if data or first_spoken:  # FLAC's bytes come at the end: an empty first piece starts the response
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
        if not data:
            continue
        total += len(data)
        event = {"type": "speech.audio.delta", "audio": base64.b64encode(data).decode()}
        yield f"data: {json.dumps(event)}\n\n".encode()
    usage = {"input_tokens": len(job.text), "output_tokens": total, "total_tokens": len(job.text) + total}
    yield f"data: {json.dumps({'type': 'speech.audio.done', 'usage': usage})}\n\n".encode()


async def render_all(jobs: list[SynthesisJob], admission: Admission) -> list[Segment]:
    """Whole, non-streamed syntheses, in order, under one worker slot (a batch never 503s halfway)."""
    lease = await admission.acquire()
    t = time.perf_counter()
    segs: list[Segment] = []
    made = 0.0  # a batch shares one non-streamed audio cap: it answers when all its items are done
    try:
        for job in jobs:
            if job.max_audio_s is not None:
                job.max_audio_s = max(0.0, job.max_audio_s - made)
            segs.append(await job.whole())
            made += segs[-1].seconds * job.speed
    finally:
        lease.release()
    current().synthesized(sum(seg.seconds for seg in segs), time.perf_counter() - t)
    current().phonemized(sum(seg.g2p_seconds for seg in segs))
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
    except APIError as exc:  # the response is already sent, whole; the link will 404
        log.warning("streamed audio not kept for download: %s", exc.message)
    except OSError as exc:  # never let a disk error cut the stream's last chunk
        log.warning("streamed audio not kept for download: %s", exc.strerror or exc)


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
    # A short first chunk only helps where bytes flow as they are made (FLAC's come whole at the end).
    stream = _stream_bytes(job, lease, ramp=not admission.waiting and job.fmt not in HELD_WHOLE)
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
        "words": word_list(seg.words),
    })


def word_list(words: list[WordTime], offset: float = 0.0) -> list[dict[str, object]]:
    """Word timestamps as JSON: seconds from the start of the audio (``offset`` added)."""
    return [
        {"word": w.word, "start": round(w.start + offset, 3), "end": round(w.end + offset, 3)} for w in words
    ]

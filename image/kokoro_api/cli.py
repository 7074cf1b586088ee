"""``kokoro-api serve | models [pull] | say``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import get_args

from pydantic import ValidationError

from .config import Settings, describe_invalid
from .errors import APIError, StartupError
from .schemas import SPEED_MAX, SPEED_MIN, AudioFormat


def _settings(args: argparse.Namespace) -> Settings:
    overrides = {k: v for k, v in {
        "host": getattr(args, "host", None),
        "port": getattr(args, "port", None),
        "workers": getattr(args, "workers", None),
        "model_path": getattr(args, "model", None),
        "voices_path": getattr(args, "voices", None),
    }.items() if v is not None}
    try:
        return Settings(**overrides)
    except ValidationError as exc:  # a bad value in the environment (.env, the Deployment): say which
        raise StartupError(describe_invalid(exc)) from None


def ready_line(settings: Settings) -> str:
    """What `serve` prints once it answers: where to point a browser or a client."""
    host = settings.host
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1"
    elif ":" in host:
        host = f"[{host}]"
    return f"ready: http://{host}:{settings.port}  studio: /web/  docs: /docs"


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from .app import create_app
    from .connections import (
        CONCURRENCY_HEADROOM, WriteTimeout, accept_backlog, connection_cap, guarded_protocol,
    )
    from .logs import setup_logging
    from .runtime import prepared_model
    from .voices import load_bundle

    settings = _settings(args)
    setup_logging(settings.log_level)
    # Fail fast, with a clear message, on what can be checked before the server starts.
    load_bundle(settings.voices_path)
    prepared_model(settings, progress=sys.stderr.isatty())
    from .shutdown import DrainingServer

    app = create_app(settings)
    cap = connection_cap(settings.max_connections)
    app.state.on_ready = lambda: print(ready_line(settings), file=sys.stderr, flush=True)
    config = uvicorn.Config(
        WriteTimeout(app, settings.write_timeout_s), host=settings.host, port=settings.port, log_config=None,
        timeout_graceful_shutdown=settings.graceful_timeout_s, access_log=False, backlog=accept_backlog(cap),
        http=guarded_protocol(header_timeout_s=settings.header_timeout_s, max_connections=cap,
                              send_buffer_bytes=settings.send_buffer_kb * 1024),
        timeout_keep_alive=settings.keep_alive_s, limit_concurrency=cap + CONCURRENCY_HEADROOM,
    )
    # SIGTERM: readiness 503 and new requests 503 at once, admitted requests finish, then exit 0.
    DrainingServer(
        config, app, drain_delay_s=settings.drain_delay_s, grace_s=settings.graceful_timeout_s
    ).run()
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    from .config import PULLED_VOICES
    from .engine.model import MODEL_SHA256, sha256_file
    from .runtime import prepared_model, probe_style
    from .voices import describe, load_bundle

    settings = _settings(args)
    if args.action == "pull":
        from .pull import pull_voices

        path = pull_voices((settings.cache_dir / PULLED_VOICES).parent)
        print(f"voices: {path}\n(every kokoro-api command now finds them; or set KOKORO_VOICES_PATH={path})")
        return 0
    from .engine.model import resolve_model

    source = resolve_model(settings.model_path, settings.cache_dir, progress=True)
    digest = sha256_file(source)
    print(f"model:    {source} ({source.stat().st_size:,} bytes)")
    print(f"sha256:   {digest} ({'embedded int8 v1.0, verified' if digest == MODEL_SHA256 else 'custom'})")
    try:
        voices = load_bundle(settings.voices_path)
    except StartupError as exc:  # the model is fine: say what is missing, not "corrupt model"
        print(f"voices:   missing. {exc}")
        print("prepared: not yet (choosing the model variant needs a voice)")
        return 1
    prepared = prepared_model(settings, progress=True, style=probe_style(settings, voices))
    print(f"prepared: {prepared}")
    by_lang: dict[str, int] = {}
    for v in voices:
        lang = describe(v).language
        by_lang[lang] = by_lang.get(lang, 0) + 1
    print(f"voices:   {settings.voices_path}: {len(voices)} ({', '.join(f'{k}: {n}' for k, n in sorted(by_lang.items()))})")
    return 0


SAY_FORMATS = get_args(AudioFormat)  # the formats of /v1/audio/speech


class UsageError(Exception):
    """A mistake on the command line: printed as one line, exit code 2."""


def cmd_say(args: argparse.Namespace) -> int:
    import asyncio

    from tqdm import tqdm

    from .audio.encode import Encoder
    from .runtime import Runtime

    settings = _settings(args)
    text = args.text if args.text != "-" else sys.stdin.read()
    out = Path(args.output)
    fmt = args.format or out.suffix.lstrip(".").lower() or "mp3"
    if fmt == "ogg":
        fmt = "opus"
    if fmt not in SAY_FORMATS:
        raise UsageError(f"cannot tell the audio format from {out.name!r}: use one of "
                         f"{', '.join(SAY_FORMATS)} as the extension, or -f")
    if not SPEED_MIN <= args.speed <= SPEED_MAX:
        raise UsageError(f"--speed must be within {SPEED_MIN}-{SPEED_MAX}, got {args.speed}")
    if not text.strip():
        raise UsageError("there is no text to speak")
    rt = Runtime(settings)
    rt.load()

    async def run() -> float:
        enc = Encoder(fmt)
        seconds = 0.0
        with open(out, "wb") as f, tqdm(total=len(text), unit="char", desc="speaking", disable=None) as bar:
            done = 0
            async for seg in rt.synthesizer.segments(text, args.voice or settings.default_voice, args.speed):
                f.write(enc.write(seg.audio))
                seconds += seg.seconds
                n = sum(len(w.word) + 1 for w in seg.words)
                bar.update(min(n, len(text) - done))
                done += n
            f.write(enc.close())
        return seconds

    try:
        seconds = asyncio.run(run())
    except BaseException:  # no half-written file left behind as if it were the result
        out.unlink(missing_ok=True)
        raise
    finally:
        rt.close()
    print(f"wrote {out} ({seconds:.1f} s of audio)", file=sys.stderr)
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="kokoro-api", description="Kokoro-82M text-to-speech service")
    sub = p.add_subparsers(dest="command", required=True)

    def common(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--model", type=Path, help="ONNX model file (env KOKORO_MODEL_PATH)")
        sp.add_argument("--voices", type=Path, help="voice bundle .npz or .npy folder (env KOKORO_VOICES_PATH)")

    s = sub.add_parser("serve", help="run the HTTP service")
    s.add_argument("--host", help="bind address (default 127.0.0.1, env KOKORO_HOST)")
    s.add_argument("--port", type=int, help="port (default 8880, env KOKORO_PORT)")
    s.add_argument("--workers", type=int, help="inference workers (default 2, env KOKORO_WORKERS)")
    common(s)
    s.set_defaults(func=cmd_serve)

    m = sub.add_parser("models", help="assemble, verify and report the model and voices (or 'pull' voices)")
    m.add_argument("action", nargs="?", choices=["show", "pull"], default="show")
    common(m)
    m.set_defaults(func=cmd_models)

    y = sub.add_parser("say", help="speak text into an audio file")
    y.add_argument("text", help="text to speak ('-' reads standard input)")
    y.add_argument("-o", "--output", required=True, help="output file (format from the extension)")
    y.add_argument("-v", "--voice", help="voice id or mix")
    y.add_argument("-s", "--speed", type=float, default=1.0)
    y.add_argument("-f", "--format", choices=SAY_FORMATS)
    common(y)
    y.set_defaults(func=cmd_say)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (StartupError, UsageError) as exc:
        print(f"kokoro-api: {exc}", file=sys.stderr)
        return 2
    except APIError as exc:  # the same checks as the HTTP API (unknown voice, nothing speakable, ...)
        print(f"kokoro-api: {exc.message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())

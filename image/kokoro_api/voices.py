"""Voice style vectors: load a bundle, describe voices, parse and cache weighted mixes.

A voice is a float32 array (510, 1, 256): one style vector per input length. A mix such as
``af_bella(2)+af_sky(1)`` is the weighted average of its voices' arrays (weights normalized).
Names are matched only against loaded voices, so no request can reach the file system.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import re
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import InsufficientStorage, InvalidVoice, StartupError

VOICE_SHAPE = (510, 1, 256)
_NAME = r"[A-Za-z0-9_\-]{1,64}"
MAX_MIX_TERMS = 32
MAX_WEIGHT = 1e6  # weights are relative; the bound keeps their sum finite
_ACCENTS = {"a": "en-us", "b": "en-gb"}
_GENDERS = {"f": "female", "m": "male"}
MIX_CACHE_SIZE = 64
SAVED_FILE = "saved_voices.json"
MAX_SAVED = 1000

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class VoiceInfo:
    id: str
    name: str
    language: str
    gender: str


def describe(voice_id: str) -> VoiceInfo:
    prefix, _, rest = voice_id.partition("_")
    language = _ACCENTS.get(prefix[:1], "unknown")
    gender = _GENDERS.get(prefix[1:2], "unknown")
    return VoiceInfo(voice_id, (rest or voice_id).replace("_", " ").title(), language, gender)


def load_bundle(path: Path | None) -> dict[str, np.ndarray]:
    """Load an .npz bundle or a folder of .npy files; every array must have the v1.0 shape."""
    if path is None:
        raise StartupError(
            "No voices configured. Set KOKORO_VOICES_PATH to a voice bundle (.npz in kokoro-onnx's "
            "voices-v1.0.bin layout) or a folder of .npy files, e.g. ../shared/kokoro/voices-v1.0-en.npz, "
            "or run `kokoro-api models pull` where the internet is reachable."
        )
    path = Path(path)
    voices: dict[str, np.ndarray] = {}
    try:
        if path.is_dir():
            for f in sorted(path.glob("*.npy")):
                voices[f.stem] = np.load(f, allow_pickle=False)
        else:
            with np.load(path, allow_pickle=False) as bundle:
                voices = {k: bundle[k] for k in bundle.files}
    except FileNotFoundError:
        raise StartupError(f"Voice file {path} does not exist (KOKORO_VOICES_PATH).") from None
    except Exception as exc:  # numpy raises many types for a corrupt file
        log.error("voice bundle %s unreadable: %r", path, exc)
        raise StartupError(
            f"Voice file {path} cannot be read as a voice bundle ({type(exc).__name__}); expected an .npz "
            "of (510, 1, 256) float32 arrays or a folder of .npy files."
        ) from None
    if not voices:
        raise StartupError(f"No voices found in {path} (expected .npz or a folder of .npy files).")
    for name, arr in voices.items():
        if arr.shape != VOICE_SHAPE or not re.fullmatch(_NAME, name):
            raise StartupError(
                f"Voice {name!r} in {path} has shape {arr.shape}; expected {VOICE_SHAPE} (Kokoro v1.0)."
            )
        if not np.isfinite(arr).all():
            raise StartupError(f"Voice {name!r} in {path} holds NaN or infinite values.")
    return {k: v.astype(np.float32, copy=False) for k, v in voices.items()}


def parse_aliases(text: str) -> dict[str, str]:
    """``"alloy=af_alloy, echo=am_echo"`` -> {"alloy": "af_alloy", ...}; raises ValueError naming a bad pair."""
    out: dict[str, str] = {}
    for pair in text.split(","):
        if not pair.strip():
            continue
        name, eq, target = (p.strip() for p in pair.partition("="))
        if not eq or not re.fullmatch(_NAME, name) or not target:
            raise ValueError(f"{pair.strip()!r} is not a name=voice pair (names: 1-64 of A-Z a-z 0-9 _ -)")
        out[name] = target
    return out


def _split_term(raw: str) -> tuple[str, str | None] | None:
    """``" af_bella ( 2 ) "`` -> ("af_bella", "2"); None if malformed. Linear time on any input
    (a backtracking regex here was cubic in runs of spaces, a few KB of them stalled a worker)."""
    term = raw.strip()
    name, paren, rest = term.partition("(")
    name, weight = name.strip(), None
    if paren:
        if not rest.endswith(")") or "(" in rest or ")" in rest[:-1]:
            return None
        weight = rest[:-1].strip()
    return (name, weight) if re.fullmatch(_NAME, name) else None


def parse_mix(spec: str) -> list[tuple[str, float]]:
    """``"a(2)+b(1)"`` -> [("a", 2.0), ("b", 1.0)]; raises InvalidVoice naming the problem."""
    if not spec or not spec.strip():
        raise InvalidVoice("The voice is empty.", {"voice": spec})
    raws = spec.split("+")
    if len(raws) > MAX_MIX_TERMS:
        raise InvalidVoice(
            f"A mix may combine at most {MAX_MIX_TERMS} voices, got {len(raws)}.", {"voice": spec[:200]}
        )
    terms = []
    for raw in raws:
        parsed = _split_term(raw)
        if parsed is None:
            raise InvalidVoice(
                f"Cannot parse voice term {raw.strip()!r}: use a voice id (listed at GET /v1/audio/voices) "
                "or a mix like 'af_bella(2)+af_sky(1)'.",
                {"voice": spec, "term": raw.strip()},
            )
        name, weight_s = parsed
        if weight_s is None:
            weight = 1.0
        else:
            try:
                weight = float(weight_s)
            except ValueError:
                raise InvalidVoice(
                    f"Weight {weight_s!r} of voice {name!r} is not a number.", {"voice": spec, "term": name}
                ) from None
            if not np.isfinite(weight) or not 0 < weight <= MAX_WEIGHT:
                raise InvalidVoice(
                    f"Weight of voice {name!r} must be a number above 0 and at most {MAX_WEIGHT:g}, "
                    f"got {weight_s!r}.",
                    {"voice": spec, "term": name},
                )
        terms.append((name, weight))
    return terms


#: Whose saved mixes a request sees. Set per request by the API-key middleware (auth.py) to an id derived
#: from the key (never the key); "" when keys are off, so everyone shares one namespace then.
SAVED_SCOPE: ContextVar[str] = ContextVar("kokoro_saved_scope", default="")
MAX_SAVED_TOTAL = 20_000  # all scopes together: bounds the file
STALE_TMP_S = 600  # a temporary file older than this is left over from a crash: deleted at attach


class SavedFileError(ValueError):
    """The saved-voices file does not have the expected shape."""


def parse_saved_file(text: str) -> dict[str, dict[str, str]]:
    """``saved_voices.json`` -> {scope: {name: mix}}; raises SavedFileError for anything else.

    Shape: ``{"version": 1|2, "voices": {name: mix}, "scopes": {scope: {name: mix}}}`` ("voices" is the
    scope "" used when API keys are off; version 1 files have only "voices"). Names and mixes are strings;
    whether a mix still resolves is checked per entry later (a bad entry is skipped, not the file).
    """
    try:
        data = json.loads(text)
    except RecursionError:
        raise SavedFileError("nested too deeply") from None
    except ValueError as exc:
        raise SavedFileError(f"not JSON ({exc})") from None
    if not isinstance(data, dict):
        raise SavedFileError(f"expected a JSON object, got {type(data).__name__}")
    if data.get("version", 1) not in (1, 2):
        raise SavedFileError(f"unknown version {data.get('version')!r}")
    unknown = set(data) - {"version", "voices", "scopes"}
    if unknown:
        raise SavedFileError(f"unexpected keys {sorted(unknown)[:5]}")
    scopes = {"": data.get("voices", {})}
    extra = data.get("scopes", {})
    if not isinstance(extra, dict):
        raise SavedFileError("'scopes' must be an object of scope -> {name: mix}")
    for scope, table in extra.items():
        if not re.fullmatch(r"[0-9a-f]{32}", scope):
            raise SavedFileError(f"bad scope id {str(scope)[:40]!r}")
        scopes[scope] = table
    total = 0
    for scope, table in scopes.items():
        if not isinstance(table, dict):
            raise SavedFileError(f"the mixes of scope {scope or 'voices'!r} must be an object of name -> mix")
        for name, mix in table.items():
            if not isinstance(mix, str) or len(mix) > 4096 or len(name) > 64:
                raise SavedFileError(f"entry {str(name)[:40]!r} must map a name to a mix string")
        total += len(table)
    if total > MAX_SAVED_TOTAL:
        raise SavedFileError(f"{total} entries, more than {MAX_SAVED_TOTAL}")
    return {k: v for k, v in scopes.items() if v or k == ""}


class VoiceStore:
    """Loaded voices plus saved named mixes; resolves ids and mixes to style arrays (cached).

    Saved mixes live in one namespace per API key (``SAVED_SCOPE``): with API keys on, a key holder sees,
    replaces and deletes only the mixes saved with the same key. A saved-voices file of the wrong shape is
    quarantined (renamed ``saved_voices.json.bad-<time>``, logged, counted in ``quarantined``), and the
    service keeps serving built-in voices: it never turns every request into a 500 or a crash loop.
    """

    def __init__(self, voices: dict[str, np.ndarray]) -> None:
        self._voices = voices
        self._saved: dict[str, dict[str, str]] = {"": {}}
        self._dir: Path | None = None
        self._cache: OrderedDict[tuple[str, str], np.ndarray] = OrderedDict()
        self._lock = threading.Lock()  # guards _saved and _cache
        self._write_lock = threading.Lock()  # serializes changes (with the file lock across processes)
        self._stamp: tuple[int, int, int] | None = None
        self.quarantined = 0  # saved-voices files set aside as unreadable (metric)
        self.problem: str | None = None  # the last saved-voices file problem, for /readyz
        self._aliases: dict[str, str] = {}

    # --- aliases (KOKORO_VOICE_ALIASES): other names for a voice or mix, e.g. OpenAI's "alloy"

    @property
    def aliases(self) -> dict[str, str]:
        return dict(self._aliases)

    def set_aliases(self, aliases: dict[str, str]) -> dict[str, str]:
        """Use these aliases; returns those dropped because their voice does not resolve (name -> why)."""
        dropped, kept = {}, {}
        for name, target in aliases.items():
            try:
                for term, _ in parse_mix(target):
                    if term not in self._voices:
                        raise InvalidVoice(f"{term!r} is not a loaded voice", {})
            except InvalidVoice as exc:
                dropped[name] = exc.message
                continue
            kept[name] = target
        with self._lock:
            self._aliases = kept
            self._cache.clear()
        return dropped

    @property
    def builtin_ids(self) -> list[str]:
        return sorted(self._voices)

    def _mine(self) -> dict[str, str]:
        return self._saved.get(SAVED_SCOPE.get(), {})

    @property
    def saved(self) -> dict[str, str]:
        """The saved mixes of the current scope (the caller's API key)."""
        self._reload()
        return dict(self._mine())

    # --- saved named mixes (POST/DELETE /v1/audio/voices), persisted in <dir>/saved_voices.json
    #
    # The directory may be shared by several replicas (a ReadWriteMany volume): every read first checks
    # the file's stamp (one stat) and reloads it when another process changed it, and every change is a
    # read-modify-write under an exclusive flock on <dir>/.saved_voices.lock, so no save is lost.

    def attach(self, directory: Path | None) -> None:
        """Persist saved mixes under ``directory`` (None: memory only) and load what is there."""
        self._dir = Path(directory) if directory else None
        self._stamp = None  # whatever was read before belongs to another directory
        if self._dir is None:
            return
        try:
            self._dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StartupError(f"Saved voices directory {self._dir} cannot be created: {exc}") from None
        self._remove_stale_temporaries()
        self._reload()

    def _remove_stale_temporaries(self) -> None:
        assert self._dir is not None
        now = time.time()
        for tmp in self._dir.glob(f".{SAVED_FILE}.*.tmp"):
            with contextlib.suppress(OSError):
                if now - tmp.stat().st_mtime > STALE_TMP_S:
                    tmp.unlink()
                    log.info("stale saved-voices temporary file removed", extra={"file": tmp.name})

    def _file_stamp(self) -> tuple[int, int, int] | None:
        try:
            st = (self._dir / SAVED_FILE).stat()  # type: ignore[operator]
        except FileNotFoundError:
            return None
        except OSError:  # e.g. a stale NFS handle: keep what was loaded rather than fail the request
            return self._stamp
        return (st.st_mtime_ns, st.st_size, st.st_ino)

    def _quarantine(self, path: Path, why: str) -> None:
        """Set a bad file aside (renamed, never deleted) so that saving works again; log and count it."""
        self.quarantined += 1
        bad = path.with_name(f"{SAVED_FILE}.bad-{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:6]}")
        try:
            os.replace(path, bad)
            self.problem = f"saved voices file was unreadable ({why}); set aside as {bad.name}"
        except OSError as exc:
            self.problem = f"saved voices file is unreadable ({why}) and could not be set aside ({exc})"
        log.error("saved voices file quarantined", extra={"reason": why, "moved_to": bad.name,
                                                           "problem": self.problem})

    def _reload(self) -> None:
        """Load the file if it changed since it was last read. Never raises: a bad file is quarantined."""
        if self._dir is None:
            return
        stamp = self._file_stamp()
        if stamp == self._stamp:
            return
        path = self._dir / SAVED_FILE
        try:
            scopes = parse_saved_file(path.read_text(encoding="utf-8")) if stamp else {"": {}}
        except FileNotFoundError:
            scopes = {"": {}}
        except SavedFileError as exc:
            self._quarantine(path, str(exc))
            self._stamp = self._file_stamp()
            return  # keep the mixes in memory: the next save writes a good file
        except (OSError, UnicodeDecodeError) as exc:
            log.warning("saved voices file %s unreadable, keeping the mixes in memory: %s", path, exc)
            self._stamp = stamp  # warn once per change of the file, not on every request
            return
        loaded: dict[str, dict[str, str]] = {}
        for scope, table in scopes.items():
            mixes = loaded.setdefault(scope, {})
            for name, mix in table.items():
                try:
                    self._check_saved(name, mix)
                except InvalidVoice as exc:  # e.g. the bundle no longer has a voice it used
                    log.warning("saved voice %r skipped: %s", name, exc.message)
                    continue
                mixes[name] = mix
        loaded.setdefault("", {})
        with self._lock:
            if loaded != self._saved:
                self._saved = loaded
                self._cache.clear()
            self._stamp = stamp

    @contextlib.contextmanager
    def _file_lock(self) -> Iterator[None]:
        """Serialize changes across processes sharing the directory (and threads of this one)."""
        with self._write_lock:
            if self._dir is None:
                yield
                return
            try:
                fd = os.open(self._dir / ".saved_voices.lock", os.O_RDWR | os.O_CREAT, 0o600)
            except OSError as exc:
                raise InsufficientStorage(f"Saved voices cannot be locked: {exc.strerror or exc}") from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                self._reload()
                yield
            finally:
                os.close(fd)  # releases the lock

    def _check_saved(self, name: str, mix: str) -> None:
        if not isinstance(name, str) or not re.fullmatch(_NAME, name):
            raise InvalidVoice(
                f"Invalid voice name {str(name)[:80]!r}: use 1-64 characters from A-Z a-z 0-9 _ -.",
                {"field": "name"},
            )
        if name in self._voices:
            raise InvalidVoice(
                f"{name!r} is a built-in voice and cannot be replaced.", {"field": "name", "name": name}
            )
        if not isinstance(mix, str):
            raise InvalidVoice("The mix must be a string like 'af_bella(2)+af_sky(1)'.", {"field": "mix"})
        for term, _ in parse_mix(mix):
            if term not in self._voices:
                raise InvalidVoice(
                    f"Unknown voice {term!r} in the mix: a saved mix combines built-in voices only "
                    "(listed at GET /v1/audio/voices).",
                    {"field": "mix", "voice": mix, "unknown": term},
                )

    def _change(self, scope: str, mixes: dict[str, str]) -> None:
        saved = {**self._saved, scope: mixes}
        self._persist(saved)
        with self._lock:
            self._saved = saved
            self._cache.clear()

    def save_mix(self, name: str, mix: str) -> bool:
        """Save (or replace) a named mix in the caller's scope; returns True if it was new."""
        mix = mix.strip()
        self._check_saved(name, mix)
        scope = SAVED_SCOPE.get()
        with self._file_lock():
            mine = self._saved.get(scope, {})
            created = name not in mine
            if created and len(mine) >= MAX_SAVED:
                raise InvalidVoice(f"At most {MAX_SAVED} saved voices; delete some first.", {"field": "name"})
            if created and sum(len(t) for t in self._saved.values()) >= MAX_SAVED_TOTAL:
                raise InsufficientStorage(f"The server holds {MAX_SAVED_TOTAL} saved voices, its limit.")
            self._change(scope, {**mine, name: mix})
        return created

    def delete_mix(self, name: str) -> bool:
        """Delete a saved mix of the caller's scope; False if there is none of that name."""
        if name in self._voices:
            raise InvalidVoice(f"{name!r} is a built-in voice and cannot be deleted.", {"name": name})
        scope = SAVED_SCOPE.get()
        with self._file_lock():
            mine = self._saved.get(scope, {})
            if name not in mine:
                return False
            self._change(scope, {k: v for k, v in mine.items() if k != name})
        return True

    def _persist(self, saved: dict[str, dict[str, str]]) -> None:
        if self._dir is None:
            return
        path = self._dir / SAVED_FILE
        tmp = self._dir / f".{SAVED_FILE}.{uuid.uuid4().hex}.tmp"  # pids repeat across pods
        scopes = {k: v for k, v in saved.items() if k and v}
        data: dict = {"version": 2 if scopes else 1, "voices": saved.get("", {})}
        if scopes:
            data["scopes"] = scopes
        try:
            with open(tmp, "w", encoding="utf-8") as f:
                json.dump(data, f, indent=1, sort_keys=True)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
            self._stamp = self._file_stamp()
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise InsufficientStorage(f"Saved voices could not be written: {exc.strerror or exc}") from None

    def infos(self) -> list[VoiceInfo]:
        return [describe(v) for v in self.builtin_ids]

    def language_of(self, spec: str) -> str:
        """The accent of a voice or mix: that of its first (or heaviest) voice."""
        self._reload()
        terms = self._expand(spec, self._mine())
        first = max(terms, key=lambda t: t[1])[0]
        return describe(first).language

    def _expand(self, spec: str, saved: dict[str, str], depth: int = 0) -> list[tuple[str, float]]:
        out: list[tuple[str, float]] = []
        for name, weight in parse_mix(spec):
            if name in self._voices:
                out.append((name, weight))
            elif (target := saved.get(name, self._aliases.get(name))) is not None and depth < 4:
                sub = self._expand(target, saved, depth + 1)
                total = sum(w for _, w in sub)
                out.extend((n, weight * w / total) for n, w in sub)
            else:
                raise InvalidVoice(
                    f"Unknown voice {name!r}. The available voices are listed at GET /v1/audio/voices.",
                    {"voice": spec, "unknown": name},
                )
        return out

    def style(self, spec: str) -> np.ndarray:
        """The (510, 1, 256) style array for a voice id or mix."""
        self._reload()
        mine = self._mine()
        saved = mine.get(spec.strip()) if spec else None
        return self._mix_style(saved if saved is not None else spec, mine)  # a saved name is its mix

    def _mix_style(self, spec: str, saved: dict[str, str]) -> np.ndarray:
        key = (SAVED_SCOPE.get(), spec)
        with self._lock:
            hit = self._cache.get(key)
            if hit is not None:
                self._cache.move_to_end(key)
                return hit
        terms = self._expand(spec, saved)
        total = sum(w for _, w in terms)
        arr = sum(self._voices[n] * np.float32(w / total) for n, w in terms)
        arr = np.asarray(arr, dtype=np.float32)
        with self._lock:
            self._cache[key] = arr
            while len(self._cache) > MIX_CACHE_SIZE:
                self._cache.popitem(last=False)
        return arr

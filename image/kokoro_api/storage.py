"""Audio files behind download links: one directory, a size cap with oldest-first eviction, an age cap.

Names are random (128 bits, URL-safe) plus the format's extension; only names of that shape are ever
looked up, so a request cannot reach outside the directory. Files are written under a hidden temporary
name and renamed into place, so a download never sees half a file.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import secrets
import threading
import time
from pathlib import Path

from .audio.encode import EXTENSIONS, MEDIA_TYPES
from .errors import InsufficientStorage

log = logging.getLogger(__name__)

_NAME = re.compile(r"^[A-Za-z0-9_-]{22}\.(" + "|".join(sorted(set(EXTENSIONS.values()))) + r")$")
_TMP_PREFIX = ".tmp-"
DOWNLOAD_PREFIX = "/v1/download/"
MEDIA_BY_EXT = {ext: MEDIA_TYPES[fmt] for fmt, ext in EXTENSIONS.items()}


def new_name(fmt: str) -> str:
    return f"{secrets.token_urlsafe(16)}.{EXTENSIONS[fmt]}"


def is_name(name: str) -> bool:
    """Whether ``name`` has the shape of a download name (only such names are ever looked up)."""
    return bool(_NAME.match(name))


def url_for(name: str) -> str:
    return DOWNLOAD_PREFIX + name


class AudioStore:
    def __init__(self, root: Path, max_bytes: int, max_age_s: float) -> None:
        self.root = Path(root)
        self.max_bytes = int(max_bytes)
        self.max_age_s = float(max_age_s)
        self._lock = threading.Lock()
        self.error: str | None = None
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            probe = self.root / f"{_TMP_PREFIX}probe-{secrets.token_hex(4)}"
            probe.write_bytes(b"")  # a read-only mount is found now, not halfway through a stream
            probe.unlink()
        except OSError as exc:
            self.error = f"{self.root.name}: {exc.strerror or exc}"
            log.warning("audio directory unusable; download links will fail: %s", exc)

    def _files(self) -> list[tuple[float, int, Path]]:
        """(mtime, size, path) of the stored files, oldest first."""
        out = []
        try:
            entries = list(os.scandir(self.root))
        except OSError:
            return []
        for e in entries:
            if e.name.startswith(_TMP_PREFIX) or not _NAME.match(e.name):
                continue
            try:
                st = e.stat()
            except OSError:
                continue
            out.append((st.st_mtime, st.st_size, Path(e.path)))
        out.sort()
        return out

    def used_bytes(self) -> int:
        return sum(size for _, size, _ in self._files())

    def check(self) -> None:
        """Raise InsufficientStorage if the directory is not usable at all."""
        if self.error:
            raise InsufficientStorage(
                f"The audio directory is not usable ({self.error}).", {"path": str(self.root)}
            )

    def save(self, data: bytes, fmt: str, name: str | None = None) -> str:
        """Store ``data``; returns its name. Raises InsufficientStorage when it cannot fit."""
        name = name or new_name(fmt)
        self.check()
        if len(data) > self.max_bytes:
            raise InsufficientStorage(
                f"The audio ({len(data)} bytes) is larger than the download directory's cap "
                f"({self.max_bytes} bytes).", {"size": len(data), "cap": self.max_bytes},
            )
        with self._lock:
            files = self._files()
            used = sum(size for _, size, _ in files)
            for _, size, path in files:  # oldest first
                if used + len(data) <= self.max_bytes:
                    break
                try:
                    path.unlink()
                    used -= size
                    log.info("evicted download file", extra={"file": path.name, "bytes": size})
                except FileNotFoundError:
                    used -= size
                except OSError:
                    continue
            if used + len(data) > self.max_bytes:
                raise InsufficientStorage(
                    "The download directory is full and nothing more can be evicted.",
                    {"size": len(data), "used": used, "cap": self.max_bytes},
                )
            tmp = self.root / f"{_TMP_PREFIX}{secrets.token_hex(8)}"
            try:
                with open(tmp, "wb") as f:
                    f.write(data)
                    f.flush()
                    os.fsync(f.fileno())
                os.replace(tmp, self.root / name)
            except OSError as exc:  # read-only or full disk, quota, I/O error: 507, never a 500
                with contextlib.suppress(OSError):  # on a read-only file system unlink fails too
                    tmp.unlink(missing_ok=True)
                raise InsufficientStorage(
                    f"The audio could not be written to the download directory ({exc.strerror or exc}).",
                    {"size": len(data)},
                ) from None
        return name

    def path(self, name: str) -> Path | None:
        """The file for a download name, or None (bad name, missing or expired)."""
        if not _NAME.match(name):
            return None
        path = self.root / name
        try:
            st = path.stat()
        except OSError:
            return None
        if time.time() - st.st_mtime > self.max_age_s:
            return None
        return path

    def cleanup(self, now: float | None = None) -> int:
        """Delete files older than the age cap (and stale temporary files); returns how many."""
        now = time.time() if now is None else now
        removed = 0
        try:
            entries = list(os.scandir(self.root))
        except OSError:
            return 0
        for e in entries:
            if not (e.name.startswith(_TMP_PREFIX) or _NAME.match(e.name)):
                continue
            try:
                if now - e.stat().st_mtime > self.max_age_s:
                    os.unlink(e.path)
                    removed += 1
            except OSError:
                continue
        if removed:
            log.info("expired download files removed", extra={"files": removed})
        return removed

    @property
    def cleanup_interval_s(self) -> float:
        return max(1.0, min(60.0, self.max_age_s / 4))

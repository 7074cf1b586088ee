"""EnginePool: one ONNX Runtime session shared by the worker threads; concurrent runs give the same audio."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from helpers import cache_dir, voices_path


@pytest.fixture(scope="module")
def model():
    from kokoro_api.engine.model import resolve_model
    from kokoro_api.engine.prepare import prepare_model

    return prepare_model(resolve_model(None, cache_dir()), cache_dir(), "float")


@pytest.fixture(scope="module")
def inputs():
    from kokoro_api.text.g2p import Phonemizer, vocab

    table, voices = vocab(), np.load(voices_path())
    out = []
    for text in ("Hello there, how are you?", "The quick brown fox jumps over the lazy dog."):
        ids = [table[c] for c in Phonemizer().phonemes(text)]
        out.append((ids, voices["af_heart"][len(ids) - 1]))
    return out


def test_workers_share_one_session(model, inputs):
    from kokoro_api.engine.pool import EnginePool

    pool = EnginePool(model, workers=2, intra_op_threads=1)
    try:
        assert pool.sessions == 1 and pool.has_durations
        alone = [pool.run(ids, style, 1.0) for ids, style in inputs]
        with ThreadPoolExecutor(2) as ex:  # both at once, on the one session
            together = list(ex.map(lambda x: pool.run(x[0], x[1], 1.0), inputs * 2))
        for a, b in zip(alone * 2, together, strict=True):
            np.testing.assert_array_equal(a.audio, b.audio)
            np.testing.assert_array_equal(a.durations, b.durations)
            assert int(b.durations.sum()) * 600 == len(b.audio)
    finally:
        pool.close()


def test_one_session_per_worker_on_request(model, inputs):
    from kokoro_api.engine.pool import EnginePool

    pool = EnginePool(model, workers=2, intra_op_threads=1, sessions=2)
    try:
        assert pool.sessions == 2
        ids, style = inputs[0]
        assert len(pool.run(ids, style, 1.0).audio) > 0
    finally:
        pool.close()

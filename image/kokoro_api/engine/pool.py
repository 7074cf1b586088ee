"""ONNX Runtime sessions shared by the inference worker threads. Only this module knows onnxruntime."""

from __future__ import annotations

import logging
import queue
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import StartupError
from . import snake

log = logging.getLogger(__name__)
SAMPLE_RATE = 24_000


@dataclass
class Inference:
    audio: np.ndarray  # float32 mono, 24 kHz
    durations: np.ndarray | None  # frames per input token (incl. the two pad tokens), if the model has them


#: Sessions per pool. One session serves every worker thread: ``InferenceSession.run`` is thread-safe and,
#: with ``intra_op_num_threads=1``, each call computes on its caller's thread, so ``workers`` concurrent
#: calls run in parallel on one session. One copy of the weights instead of one per worker: with the float
#: decoder (~260 MB of weights) two sessions put the server at ~930 MB peak RSS, one at ~750 MB, for the
#: same throughput (docs/performance.md).
SHARED_SESSIONS = 1

#: Memory. ONNX Runtime's CPU arena keeps every block it ever grew to: one 406-character sentence (a
#: 510-token chunk) took the server from 518 to 1,106 MB RSS for good, two long inputs at once to
#: 1,739 MB of a 2 GiB limit. A call of at least SHRINK_AFTER_TOKENS tokens asks ORT to shrink the arena
#: when it ends (run option ``memory.enable_memory_arena_shrinkage``: unused arena chunks are freed), then
#: ``malloc_trim`` hands the freed heap back to the OS, so RSS returns after the request. (Turning the
#: arena off instead returned RSS too but nearly doubled the peak and the time: docs/performance.md.)
USE_CPU_ARENA = True
SHRINK_AFTER_TOKENS = 120


def release_free_heap() -> None:
    """Give freed heap back to the OS (glibc ``malloc_trim``; elsewhere a no-op)."""
    import contextlib
    import ctypes

    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


class EnginePool:
    """``workers`` inference threads over ``sessions`` ONNX Runtime sessions of one model.

    ``run`` borrows one of ``workers`` slots (call it from ``executor``); slot ``i`` uses session
    ``i % sessions``, so no session runs more than ``ceil(workers / sessions)`` calls at once.
    """

    def __init__(
        self, model_path: Path, workers: int, intra_op_threads: int, sessions: int | None = None
    ) -> None:
        import onnxruntime as ort

        self.model_path = Path(model_path)
        self.workers = workers
        n_sessions = max(1, min(workers, sessions or SHARED_SESSIONS))
        self._sessions = []
        for _ in range(n_sessions):
            opts = ort.SessionOptions()
            opts.intra_op_num_threads = intra_op_threads
            opts.inter_op_num_threads = 1
            opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            opts.log_severity_level = 3
            # Shapes change with every chunk: a memory pattern planned for one length is useless for the next.
            opts.enable_mem_pattern = False
            opts.enable_cpu_mem_arena = USE_CPU_ARENA
            if intra_op_threads > 1:  # busy-waiting threads steal the core from the other workers
                opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
            snake.register(opts)  # the fused Snake op the fast variant may use (engine/snake.py)
            try:
                sess = ort.InferenceSession(str(model_path), opts, providers=["CPUExecutionProvider"])
            except Exception as exc:  # ORT raises Fail/InvalidProtobuf/... for a broken file
                first = str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__
                raise StartupError(
                    f"Model file {model_path} cannot be loaded by ONNX Runtime "
                    f"(truncated or corrupt?): {first}"
                ) from None
            self._sessions.append(sess)
        self._free: queue.SimpleQueue = queue.SimpleQueue()
        for i in range(workers):
            self._free.put(self._sessions[i % n_sessions])
        self.outputs = [o.name for o in sess.get_outputs()]
        self.has_durations = "durations" in self.outputs
        self.executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="kokoro-infer")

    @property
    def sessions(self) -> int:
        return len(self._sessions)

    @staticmethod
    def run_options():
        """Per-call options; setting ``terminate = True`` from another thread aborts that call."""
        import onnxruntime as ort

        return ort.RunOptions()

    def run(self, token_ids: list[int], style: np.ndarray, speed: float, run_options=None) -> Inference:
        """Synthesize one chunk (blocking). ``token_ids`` exclude the pad tokens; len <= 510."""
        tokens = np.array([[0, *token_ids, 0]], dtype=np.int64)
        feeds = {
            "tokens": tokens,
            "style": np.ascontiguousarray(style, dtype=np.float32).reshape(1, -1),
            "speed": np.array([speed], dtype=np.float32),
        }
        shrink = len(token_ids) >= SHRINK_AFTER_TOKENS
        if shrink:
            if run_options is None:
                run_options = self.run_options()
            run_options.add_run_config_entry("memory.enable_memory_arena_shrinkage", "cpu:0")
        sess = self._free.get()
        try:
            out = sess.run(None, feeds, run_options)
        finally:
            self._free.put(sess)
        result = dict(zip(self.outputs, out, strict=True))
        audio = np.array(result["audio"], dtype=np.float32).reshape(-1)  # a copy: ORT's buffers go now
        durations = result.get("durations")
        durations = None if durations is None else np.array(durations).reshape(-1)
        del out, result
        if shrink:
            release_free_heap()
        return Inference(audio, durations)

    def close(self) -> None:
        self.executor.shutdown(wait=False, cancel_futures=True)

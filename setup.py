"""The one compiled part: the fused Snake activation for ONNX Runtime (image/kokoro_api/engine/csrc/snake.c).

Optional: where it cannot be built (no C compiler), the install still succeeds and the ``fast`` model
variant runs its pure-ONNX graph (engine/snake.py). No -march: one binary runs on every CPU of the
architecture; the loop has AVX2/AVX-512 clones chosen at load time (see snake.c). -ffast-math is a
compile flag only: linking with it would pull in crtfastmath.o, which sets flush-to-zero for the whole
process when the library loads.
"""

import sys

from setuptools import Extension, setup

CSRC = "image/kokoro_api/engine/csrc"
FLAGS = [] if sys.platform == "win32" else ["-O3", "-ffast-math", "-fvisibility=hidden", "-std=c11"]

setup(
    ext_modules=[
        Extension(
            "kokoro_api.engine._snake",
            sources=[f"{CSRC}/snake.c"],
            include_dirs=[CSRC],
            extra_compile_args=FLAGS,
            libraries=[] if sys.platform == "win32" else ["m"],
            optional=True,
        )
    ]
)

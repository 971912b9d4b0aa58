"""Import TensorFlow safely inside a running napari (Linux + Mesa OpenGL).

napari's OpenGL canvas loads Mesa, whose ``swrast``/``llvmpipe`` (and AMD/Intel) drivers
link the system ``libLLVM``. TensorFlow bundles its own LLVM and loads it with
``RTLD_GLOBAL``; its static initialisers then bind to the system LLVM and the process
segfaults (``_GLOBAL__sub_I_DebugInfoMetadata.cpp``; see tensorflow/tensorflow#109933).
Loading TensorFlow with ``RTLD_DEEPBIND`` makes its libraries use their own LLVM first, so
the package imports it through :func:`ensure_tensorflow` before anything else does (CSBDeep
included): :mod:`.losses.keras_losses` and :func:`.training.build_care` call it first.
Outside Linux, or once TensorFlow is loaded, this is a no-op.
"""

from __future__ import annotations

import os
import sys
import threading

_lock = threading.Lock()


def ensure_tensorflow() -> None:
    """Import TensorFlow (and Keras) with ``RTLD_DEEPBIND`` where the platform has it."""
    if "tensorflow" in sys.modules and "keras" in sys.modules:
        return
    with _lock:
        deepbind = getattr(os, "RTLD_DEEPBIND", 0)
        can_set = deepbind and hasattr(sys, "setdlopenflags")
        old = sys.getdlopenflags() if can_set else 0
        if can_set and "tensorflow" not in sys.modules:
            sys.setdlopenflags(old | deepbind)
        try:
            import tensorflow  # noqa: F401
        finally:
            if can_set:
                sys.setdlopenflags(old)
        import keras  # noqa: F401

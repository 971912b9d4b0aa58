"""Import TensorFlow safely beside napari's OpenGL (Linux + Mesa).

napari's OpenGL canvas loads Mesa, whose ``swrast``/``llvmpipe`` (and AMD/Intel) drivers
link the system ``libLLVM``. TensorFlow bundles its own LLVM and loads it with
``RTLD_GLOBAL``; if the system LLVM is already loaded, TensorFlow's static initialisers
bind to it and the process segfaults (``_GLOBAL__sub_I_DebugInfoMetadata.cpp``; see
tensorflow/tensorflow#109933). In that case :func:`ensure_tensorflow` loads TensorFlow with
``RTLD_DEEPBIND``, so its libraries use their own LLVM first. Otherwise (TensorFlow first, as
in the CLI, the tests or a training process) it imports TensorFlow plainly: ``RTLD_DEEPBIND``
there would leave Mesa, loaded later, without a working OpenGL.

The package imports TensorFlow only through this function (:mod:`.losses.keras_losses` and
:func:`.models.network.build_care` call it first). Once TensorFlow is loaded it is a no-op.
Loading napari's OpenGL *after* TensorFlow in one process is not safe for drawing (Mesa's
LLVM then binds to TensorFlow's): open the viewer first, or train in another process as the
training dock does.
"""

from __future__ import annotations

import os
import sys
import threading

_lock = threading.Lock()


def _system_llvm_loaded() -> bool:
    """True if a shared ``libLLVM`` (Mesa's) is mapped into this process (Linux only)."""
    try:
        with open("/proc/self/maps") as fh:
            return any("libLLVM" in line for line in fh)
    except OSError:
        return False


def ensure_tensorflow() -> None:
    """Import TensorFlow (and Keras), with ``RTLD_DEEPBIND`` when Mesa's LLVM is loaded."""
    if "tensorflow" in sys.modules and "keras" in sys.modules:
        return
    with _lock:
        if "keras" not in sys.modules:  # CSBDeep needs Keras on TensorFlow; some packages
            os.environ["KERAS_BACKEND"] = "tensorflow"  # (bioimageio.core) ask for torch
        deepbind = getattr(os, "RTLD_DEEPBIND", 0)
        can_set = bool(deepbind and hasattr(sys, "setdlopenflags")
                       and "tensorflow" not in sys.modules and _system_llvm_loaded())
        old = sys.getdlopenflags() if can_set else 0
        if can_set:
            sys.setdlopenflags(old | deepbind)
        try:
            import tensorflow  # noqa: F401
        finally:
            if can_set:
                sys.setdlopenflags(old)
        import keras  # noqa: F401

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

import contextlib
import faulthandler
import logging
import os
import sys
import tempfile
import threading

_lock = threading.Lock()

#: What TensorFlow prints on stderr while it is imported that says nothing to a user: its
#: oneDNN notice (twice, each after absl's "before InitializeLog" warning; printed whatever
#: ``TF_CPP_MIN_LOG_LEVEL`` says, and silenced by ``TF_ENABLE_ONEDNN_OPTS=0`` only, which
#: would change the numerics), so a later error is the first line a user sees.
IMPORT_NOTICES = ("All log messages before absl::InitializeLog() is called are written to "
                  "STDERR", "oneDNN custom operations are on.")


@contextlib.contextmanager
def _without_import_notices():
    """Hold back what is written to file descriptor 2 (C++ and Python alike) and write it
    out again, without the lines of :data:`IMPORT_NOTICES`. A crash while importing still
    shows Python's fatal-error traceback (``faulthandler`` writes to the real stderr)."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError, AttributeError):  # no usable stderr: nothing to filter
        yield
        return
    real = os.fdopen(saved, "w", closefd=False)
    crash_report = faulthandler.is_enabled()
    if crash_report:
        faulthandler.enable(file=real)
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        try:
            yield
        finally:
            with contextlib.suppress(OSError, ValueError, AttributeError):
                sys.stderr.flush()
            os.dup2(saved, 2)
            if crash_report:  # a sys.stderr without a file descriptor (pytest's capture):
                try:  # back to file descriptor 2
                    faulthandler.enable(file=sys.stderr)
                except (OSError, ValueError):
                    faulthandler.enable(file=2)
            real.close()
            os.close(saved)
            held.seek(0)
            lines = held.read().splitlines(keepends=True)
            kept = b"".join(li for li in lines
                            if not any(n.encode() in li for n in IMPORT_NOTICES))
            if kept:
                os.write(2, kept)


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
            with _without_import_notices():
                import tensorflow  # noqa: F401
        finally:
            if can_set:
                sys.setdlopenflags(old)
        import keras  # noqa: F401

        tf_log = logging.getLogger("tensorflow")
        if tf_log.level == logging.NOTSET:  # its retracing warnings say nothing to a user
            tf_log.setLevel(logging.ERROR)

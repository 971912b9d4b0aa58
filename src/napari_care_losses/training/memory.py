"""Giving back the memory TensorFlow keeps after trainings in this process.

Once the last running training of the process ends, the graph state TensorFlow would keep
for its models forever is released (see :func:`release_graphs`), so training many models in
one process does not grow its memory. TensorFlow is never imported here: only looked up
when something else already loaded it.
"""

from __future__ import annotations

import gc
import sys
import threading

#: Trainings running in this process, and the gradient registrations that predate them.
_RUNNING: dict = {"count": 0, "baseline": frozenset()}
_RUNNING_LOCK = threading.Lock()


def _gradient_registry() -> dict | None:
    """TensorFlow's global gradient registry (private API: None if it moved)."""
    if "tensorflow" not in sys.modules:
        return None
    try:
        from tensorflow.python.framework import ops

        registry = ops._gradient_registry._registry
    except Exception:  # noqa: BLE001 - a TensorFlow without it: nothing to release
        return None
    return registry if isinstance(registry, dict) else None


def training_started() -> None:
    with _RUNNING_LOCK:
        if _RUNNING["count"] == 0:
            _RUNNING["baseline"] = frozenset(_gradient_registry() or ())
        _RUNNING["count"] += 1


def training_ended(release: bool = True) -> None:
    """When the last running training of this process ends, release its graphs (unless
    ``release`` is False: a process about to end gives everything back anyway)."""
    with _RUNNING_LOCK:
        _RUNNING["count"] -= 1
        if _RUNNING["count"] == 0 and release:
            release_graphs(_RUNNING["baseline"])


def release_graphs(baseline: frozenset) -> None:
    """Free what TensorFlow keeps of finished models' training graphs.

    Keras' optimizer sums gradients with the default strategy's ``all_reduce``, which wraps
    them in a ``tf.custom_gradient``: every traced training function registers a
    ``CustomGradient-N`` in TensorFlow's global gradient registry, whose closure holds the
    whole training ``FuncGraph`` (its functions and constants) forever — 20-35 MB per model
    (TensorFlow issues 27492 and 97697). ``keras.utils.clear_session`` does not remove them.
    Those entries are only needed while a graph is being differentiated, i.e. while it is
    traced: once no training runs here, the ones registered since the first of them started
    go, then the garbage is collected and freed heap given back to the system.
    """
    registry = _gradient_registry()
    if registry is not None:
        for key in [k for k in list(registry) if isinstance(k, str)
                    and k.startswith("CustomGradient-") and k not in baseline]:
            registry.pop(key, None)
    gc.collect()
    trim_heap()


def trim_heap() -> None:
    """Give freed heap back to the system (glibc keeps it otherwise; RSS would not drop)."""
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc (musl, …)
        pass

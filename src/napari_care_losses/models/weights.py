"""Saving a training's weights safely, and naming the model folder in disk errors.

Weights are written under a temporary name and renamed, so a full disk (or a killed run)
never leaves a truncated ``weights_best.h5`` that looks valid; a failed save is returned,
not raised, and reported as one line that names the model folder (disk full or not).
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

from .folder import WEIGHTS_BEST, WEIGHTS_LAST

#: How a weights file is written before it is renamed into place (Keras wants ``.h5``).
PARTIAL_SUFFIX = ".saving.h5"


def save_weights(model) -> OSError | None:
    """Keep the best weights; if none were checkpointed yet, keep the last ones as best.

    Returns the error of a failed save (a full disk, …) instead of raising: saving must never
    mask the training outcome, and the caller reports it as one line.
    """
    logdir = Path(model.logdir)
    try:
        model.keras_model.save_weights(str(logdir / WEIGHTS_LAST))
        best = logdir / WEIGHTS_BEST
        if not best.exists():
            model.keras_model.save_weights(str(best))
        else:
            model.load_weights(WEIGHTS_BEST)
    except OSError as exc:
        return exc
    except Exception as exc:  # noqa: BLE001 - h5py/Keras wrap some I/O errors
        return OSError(f"{type(exc).__name__}: {exc}")
    return None


def atomic_weight_saves(net) -> None:
    """Make every ``save_weights`` of ``net`` (ours and CSBDeep's ``ModelCheckpoint``) write
    a temporary file and rename it: a failed or interrupted save leaves the previous file
    (or none), never a truncated one, and no temporary file."""
    save = net.save_weights

    def save_weights(filepath, *args, **kwargs):
        path = Path(filepath)
        tmp = path.with_name(path.stem + PARTIAL_SUFFIX)
        try:
            save(str(tmp), *args, **kwargs)
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

    object.__setattr__(net, "save_weights", save_weights)


def disk_full(exc: BaseException) -> bool:
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    text = str(exc)
    return "No space left" in text or "errno = 28" in text or "Disk quota" in text


def os_error_message(model_dir: Path, what: str, exc: BaseException) -> str:
    """One line naming the model folder: "model folder X: disk full while saving weights …"."""
    reason = (exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc))
    reason = " ".join(reason.split()) or type(exc).__name__
    prefix = f"model folder {model_dir}: "
    if reason.startswith(prefix):  # model_folder.write_meta's "cannot write F (reason)"
        reason = reason[len(prefix):]
        if reason.startswith("cannot write ") and reason.endswith(")") and " (" in reason:
            reason = reason[reason.index(" (") + 2:-1]
    if disk_full(exc):
        return (f"{prefix}disk full while {what} ({reason}); free some space and train "
                "again")
    return f"{prefix}cannot finish {what} ({reason})"

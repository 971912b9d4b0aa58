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
    """Make every ``save_weights`` of ``net`` (ours and CSBDeep's ``ModelCheckpoint``) build
    the HDF5 file in memory and write its bytes to a temporary file that is then renamed.

    HDF5 itself never writes to the disk: on a full disk its error paths print pages of
    tracebacks and can crash the process (a segmentation fault while closing a file whose
    write failed). A failed or interrupted save leaves the previous file (or none), never a
    truncated one, and no temporary file; the error is a plain ``OSError`` (``ENOSPC``).
    """
    save = net.save_weights

    def save_weights(filepath, *args, **kwargs):
        path = Path(filepath)
        if path.name.endswith(".weights.h5"):  # Keras 3's own format: not ours
            return save(filepath, *args, **kwargs)
        if kwargs.get("overwrite", args[0] if args else True) is False and path.exists():
            raise FileExistsError(errno.EEXIST, "weights file exists", str(path))
        tmp = path.with_name(path.stem + PARTIAL_SUFFIX)
        write_file_atomically(path, hdf5_image(net, tmp.name), tmp)
        return None

    object.__setattr__(net, "save_weights", save_weights)


def hdf5_image(net, name: str) -> bytes:
    """The bytes of CSBDeep's weights file for ``net``, built in memory (``name`` is the file
    name HDF5 records)."""
    import h5py
    from csbdeep.models import base_model

    with h5py.File(name, "w", driver="core", backing_store=False) as f:
        base_model.save_weights_to_hdf5_group(f, net)
        f.flush()
        return f.id.get_file_image()


def write_file_atomically(path: Path, data: bytes, tmp: Path | None = None) -> None:
    """Write ``data`` to ``tmp`` (default: a hidden name beside ``path``), sync, rename it to
    ``path``; on any failure the temporary file is removed and ``path`` is untouched."""
    tmp = tmp or path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def disk_full(exc: BaseException | None) -> bool:
    """True for "no space left" / "quota exceeded", also as h5py or Keras word them."""
    if exc is None:
        return False
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


def is_storage_failure(message: str) -> bool:
    """True for a message of :func:`os_error_message`: the disk or the folder failed (bad
    environment, exit code 2), not the training."""
    return message.startswith("model folder ") and (
        ": disk full while " in message or ": cannot finish " in message)

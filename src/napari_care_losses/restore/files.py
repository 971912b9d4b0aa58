"""Restore TIFF files on disk with one method, frame by frame, into restored TIFF files.

For stacks too large to open in napari: frames are read one at a time and written one at a
time (a BigTIFF series), so memory holds a frame, not the stack. Each output is written
under a temporary name and renamed when complete: a Stop, a crash or a full disk never
leaves a partial file under the final name. Laplace models also write the scale map.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..io.data import FrameStack
from .engine import (
    FrameDone,
    MethodFailed,
    MethodSpec,
    MethodStarted,
    Stopped,
    open_method,
)

TIFF_SUFFIXES = (".tif", ".tiff")


@dataclass(frozen=True)
class FileWritten:
    """``source`` restored into ``image`` (and ``scale`` for Laplace models)."""

    name: str
    index: int
    source: str
    image: str
    scale: str | None = None


def tiff_files(paths: Sequence[str | Path]) -> list[Path]:
    """The TIFF files among ``paths``, a folder standing for the TIFFs directly inside it."""
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            out += sorted(f for f in p.iterdir()
                          if f.suffix.lower() in TIFF_SUFFIXES and not f.name.startswith("."))
        else:
            out.append(p)
    return out


def output_path(outdir: Path, source: Path, spec: MethodSpec, what: str = "") -> Path:
    """``OUT/<source stem>_<method>[_scale].tif``."""
    method = "".join(c if c.isalnum() or c in "-_" else "_" for c in spec.short).strip("_")
    return outdir / f"{source.stem}_{method}{'_' + what if what else ''}.tif"


def restore_files(specs: Sequence[MethodSpec], paths: Sequence[str | Path],
                  outdir: str | Path, stop=None, cache: dict | None = None) -> Iterator:
    """Restore every file with every method; per file and method, yield
    :class:`MethodStarted`, :class:`FrameDone` and :class:`FileWritten` (or
    :class:`MethodFailed`: that file is skipped, the others go on)."""
    files, outdir = tiff_files(paths), Path(outdir)
    jobs = [(spec, source) for spec in specs for source in files]
    methods: dict[str, object] = {}
    for index, (spec, source) in enumerate(jobs):
        if spec.key not in methods:
            try:
                methods[spec.key] = open_method(spec, None, cache)
            except (Exception, MemoryError) as exc:  # noqa: BLE001 - reported
                methods[spec.key] = exc
        yield from _one_file(index, len(jobs), spec, methods[spec.key], source, outdir, stop)
        if stop is not None and stop.is_set():
            return


def _one_file(index: int, n_jobs: int, spec: MethodSpec, method, source: Path, outdir: Path,
              stop) -> Iterator:
    import tifffile

    label = f"{source.name} ({spec.short})"
    if stop is not None and stop.is_set():
        yield Stopped(str(source))
        return
    frame, tmp = None, []
    try:
        if isinstance(method, BaseException):
            raise method
        outdir.mkdir(parents=True, exist_ok=True)
        stack = FrameStack.open(source)
        yield MethodStarted(label, index, n_jobs, stack.n_frames, method.note)
        targets = [output_path(outdir, source, spec)]
        if spec.probabilistic:
            targets.append(output_path(outdir, source, spec, "scale"))
        tmp = [t.with_name(f".{t.name}.part") for t in targets]
        with contextlib.ExitStack() as files_open:
            writers = [files_open.enter_context(tifffile.TiffWriter(t, bigtiff=True))
                       for t in tmp]
            files_open.callback(stack.close)
            for frame in range(stack.n_frames):
                if stop is not None and stop.is_set():
                    break
                outputs = method.restore_frame(stack.frame(frame))
                for writer, arr in zip(writers, outputs, strict=False):
                    if not np.all(np.isfinite(arr)):
                        raise ValueError("the restoration has NaN or infinite pixels")
                    writer.write(np.asarray(arr, np.float32), contiguous=True)
                yield FrameDone(label, index, frame, stack.n_frames)
        if stop is not None and stop.is_set():
            _remove(tmp)
            yield Stopped(str(source))
            return
        for t, final in zip(tmp, targets, strict=True):
            os.replace(t, final)
        yield FileWritten(label, index, str(source), str(targets[0]),
                          str(targets[1]) if len(targets) > 1 else None)
    except GeneratorExit:
        _remove(tmp)
        raise
    except (Exception, MemoryError) as exc:  # noqa: BLE001 - reported, next file
        _remove(tmp)
        where = f" frame {frame}" if frame is not None else ""
        yield MethodFailed(label, index, f"{spec.name} on {source}{where}: {exc}", frame)


def _remove(paths: Sequence[Path]) -> None:
    for p in paths:
        with contextlib.suppress(OSError):
            p.unlink()

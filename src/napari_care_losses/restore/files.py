"""Restore TIFF files on disk with one method, frame by frame, into restored TIFF files.

For stacks too large to open in napari: frames are read one at a time and written one at a
time (a BigTIFF series), so memory holds a frame, not the stack. Each output is written
under a temporary name and renamed when complete: a Stop, a crash or a full disk never
leaves a partial file under the final name. Laplace models also write the scale map.

Every (input file, method) gets its own output name (:func:`plan_outputs`): two models of
one loss, ``a.tif`` and ``a.tiff``, or ``d1/x.tif`` and ``d2/x.tif`` never share one. An
existing file is never overwritten: the output takes the next free name (``…_2.tif``) and
:class:`FileWritten` says so in its ``note``.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator, Sequence
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
    note: str = ""  # e.g. the name an existing file made us pick


@dataclass(frozen=True)
class OutputPlan:
    """Where one (source, method) is written; ``note`` says why the name differs from the
    plain ``<stem>_<method>.tif``."""

    image: Path
    scale: Path | None
    note: str = ""


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


def _safe(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in text).strip("_") or "x"


def _distinct(keys: Sequence, levels: Sequence[Callable]) -> dict:
    """``{key: label}``: each key gets the first level's label that no other key shares
    (compared case-insensitively: many file systems ignore case); keys that no level
    tells apart are numbered."""
    out: dict = {}
    for level in levels:
        labels = {k: level(k) for k in keys if k not in out}
        counts: dict[str, int] = {}
        for k in keys:
            lab = (out.get(k) or level(k)).lower()
            counts[lab] = counts.get(lab, 0) + 1
        for k, lab in labels.items():
            if counts[lab.lower()] == 1:
                out[k] = lab
    used = {v.lower() for v in out.values()}
    for k in keys:
        n = 2
        while k not in out:
            lab = f"{levels[-1](k)}_{n}"
            if lab.lower() not in used:
                out[k] = lab
                used.add(lab.lower())
            n += 1
    return out


def method_labels(specs: Sequence[MethodSpec]) -> dict[str, str]:
    """``{spec.key: file-name label}``: the short name ("Laplace") where it is unique
    among ``specs``, else the display name ("Laplace (laplace_20261125-101500)"), else
    numbered."""
    order = {s.key: i for i, s in enumerate(specs)}
    by_key = {s.key: s for s in specs}
    return _distinct(list(by_key), [
        lambda k: _safe(by_key[k].short), lambda k: _safe(by_key[k].name),
        lambda k: f"{_safe(by_key[k].name)}_{order[k] + 1}"])


def source_labels(files: Sequence[Path]) -> dict[Path, str]:
    """``{file: label}``: the stem where unique, else stem and suffix (``a_tiff``), else
    with the parent folder (``d1_x``), else numbered."""
    files = list(dict.fromkeys(files))
    order = {f: i for i, f in enumerate(files)}
    return _distinct(files, [
        lambda f: f.stem, lambda f: f"{f.stem}_{f.suffix.lstrip('.')}",
        lambda f: f"{_safe(f.parent.name)}_{f.stem}",
        lambda f: f"{_safe(f.parent.name)}_{f.stem}_{f.suffix.lstrip('.')}",
        lambda f: f"{f.stem}_{order[f] + 1}"])


def plan_outputs(specs: Sequence[MethodSpec], files: Sequence[Path], outdir: Path
                 ) -> dict[tuple[str, Path], OutputPlan]:
    """One distinct output (and scale map) per (method key, source file), none of them an
    existing file: ``OUT/<source>_<method>[_scale].tif``, numbered where a file of that
    name exists already."""
    methods, sources = method_labels(specs), source_labels(files)
    taken: set[str] = set()
    plans = {}
    for spec in specs:
        for source in files:
            base = f"{sources[source]}_{methods[spec.key]}"
            n, note = 1, ""
            while True:
                stem = base if n == 1 else f"{base}_{n}"
                names = [f"{stem}.tif"] + ([f"{stem}_scale.tif"] if spec.probabilistic else [])
                if not any(nm.lower() in taken or (outdir / nm).exists() for nm in names):
                    break
                n += 1
            if n > 1:
                note = (f"{base}.tif exists in {outdir}: wrote {stem}.tif instead "
                        "(never overwritten)")
            taken.update(nm.lower() for nm in names)
            plans[(spec.key, source)] = OutputPlan(
                outdir / names[0], outdir / names[1] if len(names) > 1 else None, note)
    return plans


def restore_files(specs: Sequence[MethodSpec], paths: Sequence[str | Path],
                  outdir: str | Path, stop=None, cache: dict | None = None) -> Iterator:
    """Restore every file with every method; per file and method, yield
    :class:`MethodStarted`, :class:`FrameDone` and :class:`FileWritten` (or
    :class:`MethodFailed`: that file is skipped, the others go on)."""
    files, outdir = list(dict.fromkeys(tiff_files(paths))), Path(outdir)
    jobs = [(spec, source) for spec in specs for source in files]
    plans = plan_outputs(specs, files, outdir)
    methods: dict[str, object] = {}
    for index, (spec, source) in enumerate(jobs):
        if spec.key not in methods:
            try:
                methods[spec.key] = open_method(spec, None, cache)
            except (Exception, MemoryError) as exc:  # noqa: BLE001 - reported
                methods[spec.key] = exc
        yield from _one_file(index, len(jobs), spec, methods[spec.key], source,
                             plans[(spec.key, source)], stop)
        if stop is not None and stop.is_set():
            return


def _one_file(index: int, n_jobs: int, spec: MethodSpec, method, source: Path,
              plan: OutputPlan, stop) -> Iterator:
    import tifffile

    label = f"{source.name} ({spec.name})"
    if stop is not None and stop.is_set():
        yield Stopped(str(source))
        return
    frame, tmp = None, []
    try:
        if isinstance(method, BaseException):
            raise method
        plan.image.parent.mkdir(parents=True, exist_ok=True)
        stack = FrameStack.open(source)
        yield MethodStarted(label, index, n_jobs, stack.n_frames, method.note)
        targets = [plan.image] + ([plan.scale] if plan.scale is not None else [])
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
            _move_new(t, final)
        yield FileWritten(label, index, str(source), str(targets[0]),
                          str(targets[1]) if len(targets) > 1 else None, plan.note)
    except GeneratorExit:
        _remove(tmp)
        raise
    except (Exception, MemoryError) as exc:  # noqa: BLE001 - reported, next file
        _remove(tmp)
        where = f" frame {frame}" if frame is not None else ""
        yield MethodFailed(label, index, f"{spec.name} on {source}{where}: {exc}", frame)


def _move_new(tmp: Path, final: Path) -> None:
    """Rename ``tmp`` to ``final``, refusing (``FileExistsError``) if ``final`` appeared
    meanwhile: a hard link fails on an existing name, where ``os.replace`` would not."""
    try:
        os.link(tmp, final)
    except FileExistsError:
        raise FileExistsError(f"{final} appeared while it was written; not overwritten "
                              f"(the restoration was discarded)") from None
    except OSError:  # no hard links here (some network/FAT file systems)
        if final.exists():
            raise FileExistsError(f"{final} exists; not overwritten") from None
        os.replace(tmp, final)
        return
    tmp.unlink()


def _remove(paths: Sequence[Path]) -> None:
    for p in paths:
        with contextlib.suppress(OSError):
            p.unlink()

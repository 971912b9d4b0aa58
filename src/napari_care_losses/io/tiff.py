"""Reading TIFF stacks whole or refusing them, and writing output files atomically.

:func:`open_tiff` checks a file before any frame is used: the series must hold every frame
its metadata declares (a stack cut short is never read as fewer frames), every page's data
must lie inside the file, the last frame must decode, and channels (``C``/``S`` axes) are
never taken for frames. Frames are then read one at a time; a frame that cannot be decoded
raises :class:`DataError` naming the file and the frame.
"""

from __future__ import annotations

import logging
import math
import os
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tifffile

#: tifffile log messages that mean the file is cut short or damaged.
_DAMAGE = ("invalid page offset", "invalid value offset", "failed to reshape",
           "metadata invalid or corrupted", "corrupted", "truncated")
CHANNEL_AXES = "CS"


class DataError(ValueError):
    """Bad input data; the message names the file or layer and what is wrong."""


def check_layout(name: str, shape, dtype, axes: str | None = None) -> None:
    """Refuse anything but integer/float frames of at least 8x8 in a ``(N, Y, X)`` shape."""
    dtype = np.dtype(dtype)
    if dtype.kind not in "uif" or dtype.itemsize > 8:
        raise DataError(f"{name}: unsupported pixel type {dtype}; expected integers or floats")
    if len(shape) != 3:
        what = f"axes {axes!r}, " if axes else ""
        raise DataError(
            f"{name}: expected a 2D image (YX) or a stack of 2D frames (TYX/ZYX), got "
            f"{what}shape {tuple(shape)}; split channels or colours into separate files"
        )
    if min(shape[1:]) < 8:
        raise DataError(f"{name}: frames of shape {tuple(shape[1:])} are too small")


def describe_nbytes(nbytes: float) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB"):
        if nbytes < 1024 or unit == "TiB":
            return f"{nbytes:.0f} {unit}" if unit == "bytes" else f"{nbytes:.1f} {unit}"
        nbytes /= 1024
    raise AssertionError  # pragma: no cover


def check_fits_memory(name: str, shape: tuple[int, ...], dtype) -> None:
    """Raise :class:`MemoryError` naming ``name`` if ``shape`` exceeds the machine's memory."""
    nbytes = math.prod(int(s) for s in shape) * np.dtype(dtype).itemsize
    try:
        total = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):  # pragma: no cover - not POSIX
        return
    if nbytes > total:
        raise MemoryError(f"{name}: {'x'.join(map(str, shape))} {np.dtype(dtype)} needs "
                          f"{describe_nbytes(nbytes)}, more than this machine's "
                          f"{describe_nbytes(total)} of memory")


def empty(name: str, shape: tuple[int, ...], dtype) -> np.ndarray:
    """``np.empty`` whose :class:`MemoryError` names ``name`` and the size asked for."""
    check_fits_memory(name, shape, dtype)
    try:
        return np.empty(shape, dtype)
    except MemoryError:
        nbytes = math.prod(shape) * np.dtype(dtype).itemsize
        raise MemoryError(f"{name}: not enough memory for {'x'.join(map(str, shape))} "
                          f"{np.dtype(dtype)} ({describe_nbytes(nbytes)})") from None


class _TiffLog(logging.Handler):
    """Collects tifffile's warnings/errors of this thread while a file is parsed."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.thread = threading.get_ident()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.thread == self.thread:
            self.messages.append(record.getMessage())

    def damage(self) -> str | None:
        for msg in self.messages:
            if any(word in msg for word in _DAMAGE):
                return msg.split("> ", 1)[-1]
        return None

    def __enter__(self) -> _TiffLog:
        self.logger = logging.getLogger("tifffile")
        self.propagate = self.logger.propagate
        self.logger.addHandler(self)
        self.logger.propagate = False  # the problem is reported in our error instead
        return self

    def __exit__(self, *exc) -> None:
        self.logger.removeHandler(self)
        self.logger.propagate = self.propagate


@dataclass
class TiffFrames:
    """What :func:`open_tiff` found: frame count, frame shape, dtype, reader and closer."""

    n_frames: int
    frame_shape: tuple[int, int]
    dtype: np.dtype
    read: Callable[[int], np.ndarray]
    close: Callable[[], None]
    axes: str


def check_path(path: Path) -> None:
    if path.is_dir():
        raise DataError(f"{path}: is a directory, not a TIFF file")
    if not path.exists():
        raise DataError(f"{path}: no such file")
    if not path.is_file():
        raise DataError(f"{path}: not a regular file")


def open_tiff(path: str | Path, channel: int | None = None,
              if_channels: bool = False) -> TiffFrames:
    """Open ``path`` lazily after checking it is whole; see the module docstring.

    ``channel`` picks one channel of a file with a ``C``/``S`` axis; with ``if_channels``
    it is ignored for files without channels (the command line's ``--channel``).
    """
    path = Path(path)
    check_path(path)
    with _TiffLog() as log:
        try:
            tif = tifffile.TiffFile(path)
        except Exception as exc:  # tifffile raises several types for non-TIFFs
            raise DataError(f"{path}: not a readable TIFF file ({_reason(exc)})") from None
        try:
            series = tif.series[0]
            n_pages = len(tif.pages)
        except Exception as exc:
            tif.close()
            raise DataError(f"{path}: damaged TIFF file ({_reason(exc)})") from None
    try:
        _check_whole(path, tif, series, n_pages, log.damage())
        frames = _frames(path, tif, series, channel, if_channels)
        frames.read(frames.n_frames - 1)  # the last frame must decode too
    except BaseException:
        tif.close()
        raise
    return frames


def _reason(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) < 200 else text[:197] + "..."


def _declared_elements(tif: tifffile.TiffFile, series) -> int | None:
    """Pixel count the file's metadata declares for the first series, if it says."""
    if tif.shaped_metadata and "shape" in tif.shaped_metadata[0]:
        return math.prod(int(s) for s in tif.shaped_metadata[0]["shape"])
    ij = tif.imagej_metadata
    if ij and "images" in ij and series.keyframe is not None:
        return int(ij["images"]) * math.prod(series.keyframe.shape)
    return None


def _check_whole(path: Path, tif, series, n_pages: int, damage: str | None) -> None:
    hint = "the file is truncated or damaged; copy or export it again"
    if series.size == 0 or 0 in tuple(series.shape):  # written empty: not damaged
        shape = "x".join(map(str, series.shape)) or "none"
        raise DataError(f"{path}: an empty image (shape {shape}, no pixels); nothing to read")
    declared = _declared_elements(tif, series)
    size = series.size
    if declared is not None and size < declared:
        frame_px = math.prod(series.shape[-2:]) if series.shape else 1
        raise DataError(f"{path}: declares {declared // frame_px} frames but only "
                        f"{size // frame_px} can be read; {hint}")
    if damage is not None:
        raise DataError(f"{path}: damaged TIFF ({damage}); {hint}")
    if series.kind in ("shaped", "imagej") and len(series.pages) < n_pages and \
            len(tif.series) == 1:
        raise DataError(f"{path}: {n_pages} pages but the image uses {len(series.pages)}; "
                        f"{hint}")
    file_size = path.stat().st_size
    if series.dataoffset is not None:
        end = series.dataoffset + series.nbytes
        if end > file_size:
            raise DataError(f"{path}: pixel data end at byte {end} but the file has "
                            f"{file_size} bytes; {hint}")
        return
    for i, page in enumerate(series.pages):
        if page is None:
            raise DataError(f"{path}: page {i} is missing; {hint}")
        ends = [o + n for o, n in zip(page.dataoffsets, page.databytecounts, strict=False)]
        if ends and max(ends) > file_size:
            raise DataError(f"{path}: page {i} ends at byte {max(ends)} but the file has "
                            f"{file_size} bytes; {hint}")


def _frames(path: Path, tif, series, channel: int | None, if_channels: bool) -> TiffFrames:
    shape, axes, dtype = tuple(series.shape), series.axes, np.dtype(series.dtype)
    if len(shape) == 2:
        shape, axes = (1, *shape), "I" + axes
    chans = [i for i, a in enumerate(axes) if a in CHANNEL_AXES]
    ij_channels = int((tif.imagej_metadata or {}).get("channels", 1))
    if not chans and ij_channels > 1:  # pragma: no cover - tifffile maps it to a C axis
        raise DataError(f"{path}: ImageJ metadata declare {ij_channels} channels but the "
                        f"axes are {axes}; save one channel per file")
    index: list[int | slice | None] = [None] * len(shape)
    if len(chans) > 1:
        raise DataError(f"{path}: axes {axes} hold several channel axes; save one channel "
                        "per file")
    if chans:
        c, n_ch = chans[0], shape[chans[0]]
        if channel is None:
            rgb = " (RGB colour samples)" if axes[c] == "S" else ""
            raise DataError(f"{path}: has {n_ch} channels{rgb} (axes {axes}); pick one with "
                            f"--channel N (0 to {n_ch - 1}; Python: channel=N) or save one "
                            "channel per file; if they are frames, save them as a TYX stack "
                            "(tifffile: photometric='minisblack')")
        if not 0 <= channel < n_ch:
            raise DataError(f"{path}: channel {channel} does not exist; the file has {n_ch} "
                            f"channels (axes {axes})")
        index[c] = channel
    elif channel not in (None, 0) and not if_channels:
        raise DataError(f"{path}: has no channel axis (axes {axes}); channel {channel} does "
                        "not exist")
    rest = [i for i in range(len(shape)) if index[i] is None]
    if len(rest) == 2:  # one frame left once the channel is picked
        rest = [-1, *rest]
    rest_axes = "".join(axes[i] if i >= 0 else "I" for i in rest)
    rest_shape = [shape[i] if i >= 0 else 1 for i in rest]
    check_layout(str(path), rest_shape, dtype, axes=axes)
    if rest_axes[-2:] != "YX":
        raise DataError(f"{path}: expected frames with axes ...YX, got axes {axes}")
    f_ax, y_ax, x_ax = rest
    index[y_ax] = index[x_ax] = slice(None)
    read_at = _reader(path, tif, series, shape, dtype)

    def read(i: int) -> np.ndarray:
        where = list(index)
        if f_ax >= 0:
            where[f_ax] = i
        try:
            return read_at(tuple(where))
        except MemoryError:
            raise MemoryError(f"{path}: not enough memory to read frame {i}") from None
        except Exception as exc:
            if tif.filehandle.closed:
                raise DataError(f"{path}: file was closed; open it again") from None
            raise DataError(f"{path}: frame {i} cannot be read ({_reason(exc)}); the file is "
                            "truncated or damaged") from None

    return TiffFrames(rest_shape[0], (shape[y_ax], shape[x_ax]), dtype, read, tif.close, axes)


def _reader(path: Path, tif, series, shape: tuple[int, ...], dtype: np.dtype):
    """``read_at(index)``: the pixels at a full index of the series, page by page if we can."""
    pages = series.pages
    key = series.keyframe
    page_shape = tuple(key.shape) if key is not None else ()
    n_lead = len(shape) - len(page_shape)
    lead_shape = shape[:n_lead]
    if (n_lead >= 0 and page_shape and shape[n_lead:] == page_shape
            and len(pages) == math.prod(lead_shape) and all(p is not None for p in pages)):
        cache: dict[int, np.ndarray] = {}

        def read_at(where):
            p = int(np.ravel_multi_index(where[:n_lead], lead_shape)) if n_lead else 0
            if p not in cache:
                cache.clear()
                cache[p] = pages[p].asarray().reshape(page_shape)
            return cache[p][where[n_lead:]]

        return read_at
    if series.dataoffset is not None and not series.is_multifile:
        mapped = np.memmap(path, dtype.newbyteorder(tif.byteorder), "r",
                           series.dataoffset, shape)

        def read_at(where):
            return np.asarray(mapped[where], dtype)

        return read_at
    whole: list[np.ndarray] = []

    def read_at(where):  # frames share pages in an unusual way: read the series once
        if not whole:
            check_fits_memory(str(path), shape, dtype)
            whole.append(series.asarray().reshape(shape))
        return whole[0][where]

    return read_at


def refuse_existing(*paths: str | Path | None, overwrite: bool = False) -> None:
    """A file is never overwritten silently: one clear line for an existing output, unless
    the user asked to replace it (``--overwrite``). Checked before any work is done."""
    for path in paths:
        if path is not None and not overwrite and Path(path).exists():
            raise DataError(f"{path} already exists; pass --overwrite to replace it")


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temporary file next to ``path`` that replaces ``path`` if the block succeeds.

    On any error the temporary file is removed and ``path`` is left as it was; an
    :class:`OSError` (disk full, no permission, ...) is re-raised naming ``path``.
    """
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"{path}: is a directory; give a file name")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
        os.close(os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
    except OSError as exc:
        raise _named(path, exc) from None
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException as exc:
        with suppress(OSError):
            tmp.unlink()
        if isinstance(exc, OSError):
            raise _named(path, exc) from None
        raise


def _named(path: Path, exc: OSError) -> OSError:
    err = OSError(f"could not write {path}: {exc.strerror or _reason(exc)}; nothing written")
    err.errno = exc.errno
    return err


def write_tiff(path: str | Path, image: np.ndarray, **kwargs) -> Path:
    """``tifffile.imwrite`` through :func:`atomic_path` (never a partial file)."""
    with atomic_path(path) as tmp:
        tifffile.imwrite(tmp, image, **kwargs)
    return Path(path)

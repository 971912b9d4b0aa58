"""One restore-and-score engine for every front end: models and baselines, frame by frame.

:class:`MethodSpec` is a picklable description of a method (a model folder, or a classical
baseline and how its strength is set); :func:`open_method` turns it into a :class:`Method`
that restores one frame at a time. :func:`restore_and_score` runs several methods over a
stack, scores every frame against the ground truth and yields typed events. The compare
dock (through :mod:`..workers.restore_runs`, in a child process), ``evaluate``, the demo, the
experiment score jobs and the benchmarks all call it.

A restoration with a NaN or infinite pixel is never reported as a result: the method
fails with the frame named.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

from ..io.data import DataError, FrameStack, as_stack, open_pair, release, restore_checked
from ..io.tiff import empty
from ..losses import LOSS_ORDER, loss_record  # noqa: F401 (LOSS_ORDER: kept name)
from .baselines import BASELINE_LABELS, Baseline, parse_baseline
from .metrics import Score, score

#: Baselines in panel order.
BASELINE_ORDER = ("tv", "nlm", "gaussian")


class MethodError(RuntimeError):
    """A method failed; the message names the method (and the frame, when known)."""


@dataclass(frozen=True)
class Calibration:
    """Where baseline strengths are calibrated: a low/high pair and frames of it."""

    low: object  # path, array or FrameStack
    high: object
    frames: tuple[int, ...] = (0,)
    source: str = "calibration pair"

    @classmethod
    def first_frames(cls, low, high, n: int, source: str | None = None) -> Calibration:
        """Calibrate on the first ``n`` frames of a pair (fewer if it has fewer); the pair
        is checked (it must pair) and closed again."""
        lows, highs = open_pair(low, high)
        try:
            count = min(int(n), lows.n_frames)
        finally:
            release((lows, low), (highs, high))
        return cls(low, high, tuple(range(count)), source or str(low))

    def describe(self) -> str:
        frames = ", ".join(str(f) for f in self.frames)
        return f"{self.source} frame{'s' if len(self.frames) > 1 else ''} {frames}"


@dataclass(frozen=True)
class MethodSpec:
    """A restoration method: a trained model folder, or a classical baseline."""

    key: str  # unique: the resolved model folder, or "baseline:NAME"
    name: str  # display name (table rows, layer names)
    short: str  # short panel title
    model_dir: str | None = None
    loss: str | None = None  # loss name of a model
    probabilistic: bool = False
    baseline: str | None = None
    factor: float | None = None  # fixed baseline strength; None: calibrate, or noise-based

    @classmethod
    def for_model(cls, model_dir: str | Path, display_name: str | None = None) -> MethodSpec:
        """A model's method; ``display_name`` (the napari registry's, unique there) becomes
        both its name and its panel title."""
        from ..models.folder import ModelFolder

        folder = ModelFolder.open(model_dir).require_usable()
        loss = folder.config.loss
        name = display_name or f"{loss.label} ({folder.name})"
        return cls(str(folder.path.resolve()), name, display_name or loss.label,
                   model_dir=str(folder.path), loss=loss.name.value,
                   probabilistic=loss.probabilistic)

    @classmethod
    def for_baseline(cls, name: str, factor: float | None = None) -> MethodSpec:
        b = parse_baseline(name)
        label = BASELINE_LABELS[b]
        return cls(f"baseline:{b.value}", label, label, baseline=b.value, factor=factor)

    @property
    def rank(self) -> tuple:
        """Sort key of the panel order: losses (their records' rank), then the baselines."""
        if self.loss is not None:
            return (0, loss_record(self.loss).rank, self.name)
        return (1, BASELINE_ORDER.index(self.baseline or "tv"), self.name)


class Method(Protocol):
    spec: MethodSpec
    note: str  # e.g. the baseline strength used and where it was calibrated

    def restore_frame(self, img: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]: ...


@dataclass
class ModelMethod:
    spec: MethodSpec
    model: object  # RestorationModel (TensorFlow is loaded only when it predicts)
    note: str = ""

    def restore_frame(self, img: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        return self.model.restore_frame(img)


@dataclass
class BaselineMethod:
    spec: MethodSpec
    baseline: Baseline
    note: str = ""

    def restore_frame(self, img: np.ndarray) -> tuple[np.ndarray, None]:
        return self.baseline.restore_frame(img), None


def open_method(spec: MethodSpec, calibration: Calibration | None = None,
                cache: dict | None = None) -> Method:
    """A ready :class:`Method`; ``cache`` (key → loaded model) keeps models loaded."""
    if spec.model_dir is not None:
        from .predict import RestorationModel

        cache = {} if cache is None else cache
        if spec.key not in cache:
            cache[spec.key] = RestorationModel(spec.model_dir)
        return ModelMethod(spec, cache[spec.key])
    if spec.factor is not None:
        b = Baseline.create(spec.baseline, spec.factor)
        return BaselineMethod(spec, b, f"strength x{b.factor:g} (fixed)")
    if calibration is not None:
        b = Baseline.calibrated(spec.baseline, calibration.low, calibration.high,
                                frames=list(calibration.frames))
        return BaselineMethod(spec, b, f"strength x{b.factor:g} (calibrated on "
                                       f"{calibration.describe()})")
    return BaselineMethod(spec, Baseline.create(spec.baseline), "strength x1 (noise-based)")


# ----------------------------------------------------------------------------- events


@dataclass(frozen=True)
class MethodStarted:
    name: str
    index: int  # 0-based, of n_methods
    n_methods: int
    n_frames: int
    note: str = ""


@dataclass(frozen=True)
class FrameDone:
    """Frame ``frame`` of method ``name`` is restored (and scored, if ``score``)."""

    name: str
    index: int
    frame: int
    n_frames: int
    score: Score | None = None


@dataclass
class MethodResult:
    """A whole stack restored with one method: ``(T, Y, X)`` float32 (+ Laplace scale)."""

    spec: MethodSpec
    image: np.ndarray
    scale: np.ndarray | None = None
    scores: list[Score] | None = None  # per frame, when ground truth was given
    note: str = ""
    factor: float | None = None  # the strength a baseline ran at


@dataclass(frozen=True)
class MethodDone:
    name: str
    index: int
    result: MethodResult = field(repr=False)


@dataclass(frozen=True)
class MethodFailed:
    name: str
    index: int
    error: str
    frame: int | None = None


@dataclass(frozen=True)
class Stopped:
    """Stop was requested: the method in progress (if any) was discarded."""

    discarded: str | None


RestoreEvent = MethodStarted | FrameDone | MethodDone | MethodFailed | Stopped

#: ``allocate(spec, what, shape)`` → a writable float32 array (``what``: image or scale).
Allocator = Callable[[MethodSpec, str, tuple[int, ...]], np.ndarray]


def _allocate_in_memory(spec: MethodSpec, what: str, shape: tuple[int, ...]) -> np.ndarray:
    return empty(f"the {what} of {spec.name}", shape, np.float32)  # MemoryError names it


#: ``scorer(restored_frame, gt_frame)`` → :class:`Score` (default: CARE-style metrics).
Scorer = Callable[[np.ndarray, np.ndarray], Score]


def restore_and_score(specs: Sequence[MethodSpec], low, gt=None, stop=None,
                      calibration: Calibration | None = None, cache: dict | None = None,
                      allocate: Allocator = _allocate_in_memory, scorer: Scorer = score,
                      ) -> Iterator[RestoreEvent]:
    """Restore ``low`` with each method in turn; score each frame against ``gt``.

    ``low``/``gt``: paths, arrays or :class:`FrameStack` of the same shape. ``stop`` (any
    object with ``is_set``) is checked between frames: the method in progress is discarded
    and a :class:`Stopped` event ends the run. A failing method yields
    :class:`MethodFailed` (naming the frame) and the run goes on with the next one.
    """
    frames = as_stack(low, "input")
    truth = as_stack(gt, "ground truth") if gt is not None else None
    try:
        if truth is not None and (truth.n_frames, truth.frame_shape) != (
                frames.n_frames, frames.frame_shape):
            raise ValueError(f"{frames.name} ({frames.n_frames} x {frames.frame_shape}) and "
                             f"{truth.name} ({truth.n_frames} x {truth.frame_shape}) differ")
        for index, spec in enumerate(specs):
            if stop is not None and stop.is_set():
                yield Stopped(None)
                return
            yield from _one_method(index, len(specs), spec, frames, truth, stop, calibration,
                                   cache, allocate, scorer)
            if stop is not None and stop.is_set():
                return
    finally:
        release((frames, low), *(((truth, gt),) if truth is not None else ()))


def _one_method(index: int, n: int, spec: MethodSpec, frames: FrameStack,
                truth: FrameStack | None, stop, calibration, cache,
                allocate: Allocator, scorer: Scorer) -> Iterator[RestoreEvent]:
    frame = None
    try:
        method = open_method(spec, calibration, cache)
        yield MethodStarted(spec.name, index, n, frames.n_frames, method.note)
        shape = (frames.n_frames, *frames.frame_shape)
        image = allocate(spec, "image", shape)
        scale = allocate(spec, "scale", shape) if spec.probabilistic else None
        scores: list[Score] | None = [] if truth is not None else None
        for frame in range(frames.n_frames):
            if stop is not None and stop.is_set():
                yield Stopped(spec.name)
                return
            img, sc = restore_checked(method.restore_frame, frames.frame(frame), frames.name,
                                      frame)
            _check_finite(img, "restoration")
            image[frame] = img
            if scale is not None and sc is not None:
                _check_finite(sc, "uncertainty (scale) map")
                scale[frame] = sc
            s = scorer(image[frame], truth.frame(frame)) if truth is not None else None
            if scores is not None:
                scores.append(s)
            yield FrameDone(spec.name, index, frame, frames.n_frames, s)
        factor = method.baseline.factor if isinstance(method, BaselineMethod) else None
        yield MethodDone(spec.name, index,
                         MethodResult(spec, image, scale, scores, method.note, factor))
    except (Exception, MemoryError) as exc:  # noqa: BLE001 - reported, the run goes on
        yield MethodFailed(spec.name, index, _failure(spec, frames, frame, exc), frame)


def _failure(spec: MethodSpec, frames: FrameStack, frame: int | None,
             exc: BaseException) -> str:
    """One line naming the method, and the input file and frame unless the error does."""
    if isinstance(exc, DataError):  # the input's fault; it names the file and frame
        return f"{spec.name} failed: {exc}"
    where = f" at frame {frame} of {frames.name}" if frame is not None else ""
    text = str(exc) or type(exc).__name__
    if isinstance(exc, MemoryError) or type(exc).__name__ == "ResourceExhaustedError":
        shape = "x".join(map(str, frames.frame_shape))
        text = f"out of memory ({shape} px frames: {' '.join(text.split())[:200]})"
    return f"{spec.name} failed{where}: {text}"


def _check_finite(arr: np.ndarray, what: str) -> None:
    bad = ~np.isfinite(arr)
    if bad.any():
        raise MethodError(f"the {what} has {int(bad.sum())} NaN or infinite pixels")


def restore_all(specs: Sequence[MethodSpec], low, gt=None,
                log: Callable[[str], None] | None = None, **kwargs,
                ) -> tuple[dict[str, MethodResult], list[str]]:
    """Run :func:`restore_and_score` to the end: ``({name: result}, [error messages])``;
    ``log`` gets one line per method (and its note)."""
    results, errors = {}, []
    for event in restore_and_score(specs, low, gt, **kwargs):
        if isinstance(event, MethodStarted) and log is not None:
            log(f"Restoring with {event.name}" + (f": {event.note}" if event.note else "")
                + " ...")
        elif isinstance(event, MethodDone):
            results[event.name] = event.result
        elif isinstance(event, MethodFailed):
            errors.append(event.error)
    return results, errors


def restore_all_or_raise(specs: Sequence[MethodSpec], low, gt=None, **kwargs
                         ) -> dict[str, MethodResult]:
    """:func:`restore_all`, raising :class:`MethodError` on the first failure."""
    results, errors = restore_all(specs, low, gt, **kwargs)
    if errors:
        raise MethodError(errors[0])
    return results

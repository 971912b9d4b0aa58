"""Qt-free work of the compare dock: restoration jobs, scoring, error maps, panel order.

Everything here takes and returns plain arrays (never layers or widgets), so the
functions can run in a ``thread_worker`` and be tested without a viewer.
"""

from __future__ import annotations

import threading
from collections.abc import Generator, Sequence
from dataclasses import dataclass

import numpy as np

from ..baselines import Baseline
from ..losses import LossName
from ..metrics import Score, affine_fit, normalize_gt, score
from ..predict import RestorationModel

#: Display (and layer) names of the classical baselines, in panel order.
BASELINE_NAMES: dict[str, str] = {"tv": "TV", "nlm": "NL-means"}

#: Panel order of the losses: the study's three first, then the rest in ``LossName`` order.
LOSS_PANEL_ORDER: tuple[LossName, ...] = (
    LossName.LAPLACE, LossName.FFT, LossName.BANDPASS,
    *(n for n in LossName if n not in (LossName.LAPLACE, LossName.FFT, LossName.BANDPASS)),
)

#: Baseline strength modes offered by the dock.
STRENGTH_DEFAULT = "noise-based default"
STRENGTH_CALIBRATE = "calibrate on ground truth (current frame)"


@dataclass(frozen=True)
class MethodSpec:
    """One restoration method: a trained model or a classical baseline."""

    name: str  # display name, also the result layer's name
    model: RestorationModel | None = None
    baseline: str | None = None  # "tv" | "nlm"

    @property
    def probabilistic(self) -> bool:
        return self.model is not None and self.model.probabilistic

    @property
    def rank(self) -> tuple:
        """Sort key giving the grid order: losses (study order), then TV, NL-means."""
        if self.model is not None:
            return (0, LOSS_PANEL_ORDER.index(self.model.loss.name), self.name)
        return (1, list(BASELINE_NAMES).index(self.baseline or "tv"), self.name)


def model_spec(model: RestorationModel) -> MethodSpec:
    """``"Laplace (laplace_20261125-0600)"``: loss label and model folder name."""
    return MethodSpec(f"{model.label} ({model.name})", model=model)


def baseline_spec(name: str) -> MethodSpec:
    key = Baseline.create(name).name.value
    if key not in BASELINE_NAMES:
        raise ValueError(f"baseline {name!r} is not offered for comparison")
    return MethodSpec(BASELINE_NAMES[key], baseline=key)


@dataclass
class MethodResult:
    """A finished restoration of the whole stack (``(T, Y, X)`` float32)."""

    spec: MethodSpec
    image: np.ndarray
    scale: np.ndarray | None = None
    scores: list[Score] | None = None  # per frame, when ground truth was given
    note: str = ""


@dataclass(frozen=True)
class Progress:
    """Yielded by :func:`run_method`: ``done`` frames of ``total`` (or a phase message)."""

    name: str
    done: int
    total: int
    message: str = ""


def as_frames(data: np.ndarray) -> np.ndarray:
    """A 2D image or ``(T, Y, X)`` stack as a ``(T, Y, X)`` array (no copy if possible)."""
    arr = np.asarray(data)
    if arr.ndim == 2:
        arr = arr[np.newaxis]
    if arr.ndim != 3:
        raise ValueError(f"expected a 2D image or a (T, Y, X) stack, got shape {arr.shape}")
    return arr


def run_method(spec: MethodSpec, low: np.ndarray, gt: np.ndarray | None,
               stop: threading.Event, calibrate_frame: int | None = None,
               ) -> Generator[Progress, None, MethodResult | None]:
    """Restore ``low`` frame by frame with ``spec``; score each frame against ``gt``.

    ``stop`` is checked between frames: once set, the generator returns ``None`` and the
    partial restoration is discarded. ``calibrate_frame`` (baselines, needs ``gt``) picks the
    strength with the best PSNR on that frame (``Baseline.calibrated``).
    """
    low = as_frames(low)
    gt = as_frames(gt) if gt is not None else None
    n = len(low)
    note = ""
    restore_frame = None
    if spec.model is not None:
        def restore_frame(img):
            return spec.model.restore_frame(img)
    else:
        baseline = Baseline.create(spec.baseline or "tv")
        if calibrate_frame is not None and gt is not None:
            yield Progress(spec.name, 0, n, f"calibrating {spec.name} on frame {calibrate_frame}")
            baseline = Baseline.calibrated(spec.baseline, low, gt, frames=[calibrate_frame])
            note = f"strength x{baseline.factor:g} (calibrated on frame {calibrate_frame})"
        else:
            note = "strength x1 (noise-based)"

        def restore_frame(img):
            return baseline.restore_frame(img), None

    image = np.empty(low.shape, np.float32)
    scale = np.empty(low.shape, np.float32) if spec.probabilistic else None
    scores: list[Score] | None = [] if gt is not None else None
    yield Progress(spec.name, 0, n)
    for i in range(n):
        if stop.is_set():
            return None
        image[i], sc = restore_frame(low[i])
        if scale is not None and sc is not None:
            scale[i] = sc
        if scores is not None:
            scores.append(score(image[i], gt[i]))
        yield Progress(spec.name, i + 1, n)
    return MethodResult(spec, image, scale, scores, note)


def score_frames(image: np.ndarray, gt: np.ndarray,
                 stop: threading.Event | None = None) -> list[Score] | None:
    """Per-frame :func:`~napari_care_losses.metrics.score`; ``None`` if stopped."""
    image, gt = as_frames(image), as_frames(gt)
    if image.shape != gt.shape:
        raise ValueError(f"shape {image.shape} differs from ground truth {gt.shape}")
    out = []
    for a, b in zip(image, gt, strict=True):
        if stop is not None and stop.is_set():
            return None
        out.append(score(a, b))
    return out


def score_many(images: dict[str, np.ndarray], gt: np.ndarray, stop: threading.Event
               ) -> Generator[tuple[str, list[Score]], None, None]:
    """Score several stacks against one ground truth; yield ``(name, scores)`` per stack."""
    for name, image in images.items():
        scores = score_frames(image, gt, stop)
        if scores is None:
            return
        yield name, scores


def mean_score(scores: Sequence[Score]) -> Score:
    return Score(float(np.mean([s.psnr for s in scores])), float(np.mean([s.ssim for s in scores])))


def error_map(image: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """``|fit - gt_n|`` per frame, in the units of :func:`score` (gt normalised to 0–1)."""
    image, gt = as_frames(image), as_frames(gt)
    out = np.empty(image.shape, np.float32)
    for i, (a, b) in enumerate(zip(image, gt, strict=True)):
        gt_n = normalize_gt(b)
        out[i] = np.abs(affine_fit(a, gt_n) - gt_n)
    return out


def spectrum_input(img: np.ndarray, gt: np.ndarray | None) -> np.ndarray:
    """A frame in comparable units for spectra: fitted to the normalised gt, else normalised."""
    if gt is None:
        from csbdeep.utils import normalize

        return normalize(np.asarray(img, np.float32), 2.0, 99.8, clip=False)
    gt_n = normalize_gt(gt)
    return gt_n if img is gt else affine_fit(img, gt_n)


def format_score(s: Score | None) -> str:
    """Metric lines shown on the panels."""
    return "no ground truth" if s is None else f"PSNR {s.psnr:.2f} dB\nSSIM {s.ssim:.3f}"


def panel_title(spec: MethodSpec) -> str:
    """A panel's title: the loss, then the model folder on a line of its own (panels are
    narrow); a baseline's name."""
    return f"{spec.model.label}\n{spec.model.name}" if spec.model is not None else spec.name

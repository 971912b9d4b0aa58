"""Qt-free helpers of the compare dock: re-scoring, error maps, spectra inputs, panel texts.

Restoring is the core's :mod:`..restore.engine` (run in a child process); everything here
takes and returns plain arrays (never layers or widgets), so it can run in a
``thread_worker`` and be tested without a viewer.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Generator, Sequence

import numpy as np

from ..io.data import normalize
from ..restore.engine import MethodSpec
from ..restore.metrics import Score, affine_fit, normalize_gt, score

#: Baseline strength modes offered by the dock.
STRENGTH_DEFAULT = "noise-based default"
STRENGTH_CALIBRATE = "calibrate on ground truth (current frame)"
_STAMP = re.compile(r"_\d{8}-(\d{2})(\d{2})(\d{2})(?:_(\d+))?$")

def as_frames(data: np.ndarray) -> np.ndarray:
    """A 2D image or ``(T, Y, X)`` stack as a ``(T, Y, X)`` array (no copy if possible)."""
    arr = np.asarray(data)
    if arr.ndim == 2:
        arr = arr[np.newaxis]
    if arr.ndim != 3:
        raise ValueError(f"expected a 2D image or a (T, Y, X) stack, got shape {arr.shape}")
    return arr


def score_frames(image: np.ndarray, gt: np.ndarray,
                 stop: threading.Event | None = None) -> list[Score] | None:
    """Per-frame :func:`~napari_care_losses.restore.metrics.score`; ``None`` if stopped."""
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
        return normalize(img)  # the core's percentile normalisation (2 / 99.8 %)
    gt_n = normalize_gt(gt)
    return gt_n if img is gt else affine_fit(img, gt_n)


def format_score(s: Score | None) -> str:
    """Metric lines shown on the panels."""
    return "no ground truth" if s is None else f"PSNR {s.psnr:.2f} dB\nSSIM {s.ssim:.3f}"


def panel_title(spec: MethodSpec) -> str:
    """A short panel title that fits a narrow grid panel: the loss and the time the model
    was trained (its folder's stamp), e.g. "Laplace 14:03:22"; a baseline's name, or a
    model's registry display name (then its name and short title are the same)."""
    if spec.model_dir is None or spec.short == spec.name:
        return spec.short
    match = _STAMP.search(spec.model_dir.rstrip("/"))
    if not match:
        return spec.short
    n = f" #{match[4]}" if match[4] else ""
    return f"{spec.short} {match[1]}:{match[2]}:{match[3]}{n}"


#: A reason on a panel: at most this many lines of this many characters (the table's
#: tooltip and the status line have it whole).
PANEL_REASON_LINES, PANEL_REASON_CHARS = 2, 26


def short_reason(text: str, width: int = PANEL_REASON_CHARS,
                 lines: int = PANEL_REASON_LINES) -> str:
    """The first line of ``text`` wrapped to ``lines`` lines of ``width`` characters, the
    last one ending in an ellipsis when cut (a narrow grid panel clips longer lines)."""
    import textwrap

    first = text.strip().splitlines()[0] if text.strip() else ""
    wrapped = textwrap.wrap(first, width) or [""]
    if len(wrapped) > lines:
        wrapped = wrapped[:lines]
        wrapped[-1] = wrapped[-1][:width - 1] + "…"
    return "\n".join(wrapped)


def first_bad_frame(frames: np.ndarray) -> int | None:
    """The first frame with a NaN or infinite pixel (``None``: all finite)."""
    if np.issubdtype(frames.dtype, np.integer):
        return None
    for t, frame in enumerate(frames):
        if not np.isfinite(frame).all():
            return t
    return None

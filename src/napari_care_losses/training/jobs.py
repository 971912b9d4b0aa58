"""The training dock's job: several losses in sequence, plus live previews.

Qt-free and layer-free on purpose: it gets frames (:class:`FrameStack`) and configs and talks
back only through the values it yields. The dock runs it in a child process
(:mod:`..workers.training_runs`), never in napari's own: TensorFlow loads only there. Each
model goes into a folder of its own, claimed in the output folder
(:func:`..models.folder.claim_model_dir`).
"""

from __future__ import annotations

import contextlib
import io
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .._tf import ensure_tensorflow
from ..config.train import TrainConfig
from ..io.data import FrameStack, PatchData, make_patches
from ..models.folder import WEIGHTS_BEST
from .trainer import EpochEnd, Failed, Started, StopFlag, train

#: Frames larger than this (pixels a side) are previewed on a central crop.
PREVIEW_MAX_SIDE = 1024


@dataclass(frozen=True)
class Preparing:
    """Work before the first batch (cutting patches, building the network)."""

    message: str


@dataclass(frozen=True)
class PreviewReady:
    """The current frame restored with the best weights so far (``image`` None on failure)."""

    frame: int
    epoch: int
    image: np.ndarray | None
    error: str = ""
    offset: tuple[int, int] = (0, 0)  # (y, x) of the image in the frame (large frames)


@dataclass(frozen=True)
class JobEvent:
    """One event of job ``job`` (0-based) out of ``n_jobs``; ``label`` names its loss."""

    job: int
    n_jobs: int
    label: str
    event: object


class PreviewRequest:
    """Preview settings the UI may change while a run is going (plain attributes, no locks:
    the worker only reads two ints)."""

    def __init__(self, every: int = 0, frame: int = 0) -> None:
        self.every = every
        self.frame = frame


def run_jobs(low: FrameStack, high: FrameStack, configs: Sequence[TrainConfig],
             outdir: Path, stop: StopFlag, preview: PreviewRequest | None = None,
             ) -> Iterator[JobEvent]:
    """Train one model per config, in order; stop early on Stop or on a failure."""
    if configs and "tensorflow" not in sys.modules:
        yield JobEvent(0, len(configs), configs[0].loss.label, Preparing("loading TensorFlow …"))
    ensure_tensorflow()  # before CSBDeep imports it: see .._tf
    previewer = _Previewer(low, preview) if preview is not None and preview.every else None
    try:
        yield from _jobs(low, high, configs, outdir, stop, previewer)
    finally:
        if previewer is not None:
            previewer.close()


def _jobs(low: FrameStack, high: FrameStack, configs: Sequence[TrainConfig], outdir: Path,
          stop: StopFlag, previewer: _Previewer | None) -> Iterator[JobEvent]:
    patches: dict[tuple, PatchData] = {}
    for job, cfg in enumerate(configs):
        if stop.is_set():
            return

        def wrap(event: object, job: int = job, cfg: TrainConfig = cfg) -> JobEvent:
            return JobEvent(job, len(configs), cfg.loss.label, event)

        key = (cfg.patch_size, cfg.patches_per_image, cfg.val_fraction, cfg.seed)
        if key not in patches:
            yield wrap(Preparing(f"cutting {cfg.patch_size} px patches from {low.name} …"))
            try:
                patches[key] = make_patches(low, high, cfg.patch_size, cfg.patches_per_image,
                                            cfg.val_fraction, cfg.seed)
            except Exception as exc:  # noqa: BLE001 - shown to the user as a Failed event
                yield wrap(Failed(str(exc), None, traceback.format_exc()))
                return
        yield wrap(Preparing(f"building the {cfg.loss.label} network …"))
        if previewer is not None:
            previewer.prepare(cfg)
        if stop.is_set():  # stopped while preparing: no model at all rather than a junk one
            return
        info = {"low": low.name, "high": high.name, "frames": low.n_frames}
        events = train(patches[key], cfg, outdir, stop, data_info=info)
        try:
            for event in events:
                yield wrap(event)
                if isinstance(event, Started) and previewer is not None:
                    previewer.model_dir = event.model_dir
                elif isinstance(event, EpochEnd) and previewer and previewer.due(event):
                    yield wrap(previewer.restore(event.epoch))
                elif isinstance(event, Failed):
                    return
        finally:
            events.close()


class _Previewer:
    """Restores one frame with a copy of the run's best weights, in the worker thread.

    The preview network is built *before* each training starts and then only gets weights
    loaded and is called eagerly: no TensorFlow graph is traced beside the training thread
    (tracing in two threads at once crashed TensorFlow in our tests).
    """

    def __init__(self, low: FrameStack, request: PreviewRequest) -> None:
        self.low = low
        self.request = request
        self.model_dir: Path | None = None
        self.cfg: TrainConfig | None = None
        self._tmp = Path(tempfile.mkdtemp(prefix="care-preview-"))
        self._nets: dict[tuple, object] = {}
        self._care = None

    def prepare(self, cfg: TrainConfig) -> None:
        """Build (or reuse) a network shaped like ``cfg``'s; call before training starts."""
        self.cfg, self.model_dir = cfg, None
        key = (cfg.unet_n_depth, cfg.unet_n_first, cfg.unet_kern_size, cfg.loss.probabilistic)
        if key not in self._nets:
            from ..models.network import build_care

            with contextlib.redirect_stdout(io.StringIO()):
                self._nets[key] = build_care(cfg, f"net{len(self._nets)}", self._tmp)
        self._care = self._nets[key]

    def due(self, event: EpochEnd) -> bool:
        every = self.request.every
        return every > 0 and (event.epoch % every == 0 or event.epoch == event.epochs)

    def restore(self, epoch: int) -> PreviewReady:
        frame = min(max(int(self.request.frame), 0), self.low.n_frames - 1)
        try:
            best = self.model_dir / WEIGHTS_BEST if self.model_dir else None
            if self._care is None or best is None or not best.exists():
                return PreviewReady(frame, epoch, None, "no best weights saved yet")
            self._load(best)
            img, offset = _central_crop(self.low.frame(frame), PREVIEW_MAX_SIDE)
            return PreviewReady(frame, epoch, _predict(self._care.keras_model, img, self.cfg),
                                offset=offset)
        except Exception as exc:  # noqa: BLE001 - a preview must never stop training
            return PreviewReady(frame, epoch, None, f"preview skipped: {exc}")

    def _load(self, best: Path) -> None:
        """Copy the weights (the trainer may rewrite them any time) and load the copy."""
        copy = Path(self._care.logdir) / WEIGHTS_BEST
        for attempt in range(3):
            try:
                shutil.copy2(best, copy)
                self._care.load_weights(WEIGHTS_BEST)
                return
            except OSError:  # caught the file half-written: try again shortly
                if attempt == 2:
                    raise
                time.sleep(0.3)

    def close(self) -> None:
        self._nets.clear()
        self._care = None
        shutil.rmtree(self._tmp, ignore_errors=True)


def _central_crop(img: np.ndarray, side: int) -> tuple[np.ndarray, tuple[int, int]]:
    h, w = img.shape
    y0, x0 = max(0, (h - side) // 2), max(0, (w - side) // 2)
    return img[y0:y0 + side, x0:x0 + side], (y0, x0)


def _predict(keras_model, img: np.ndarray, cfg: TrainConfig) -> np.ndarray:
    """CARE prediction of one frame, called eagerly: percentile-normalise, pad to the
    U-Net's multiple, predict (the mean channel for Laplace), map back to input scale."""
    x = np.asarray(img, np.float32)
    lo, hi = np.percentile(x, [cfg.norm_pmin, cfg.norm_pmax])
    scale = float(hi - lo) or 1.0
    div = 2 ** cfg.unet_n_depth
    h, w = x.shape
    padded = np.pad((x - lo) / scale, ((0, -h % div), (0, -w % div)), mode="reflect")
    out = np.asarray(keras_model(padded[None, :, :, None], training=False))
    return (out[0, :h, :w, 0] * scale + lo).astype(np.float32)

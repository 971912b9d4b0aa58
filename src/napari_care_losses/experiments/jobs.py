"""The two kinds of job in an experiment grid, and the functions that execute them.

Jobs are small picklable dataclasses; the functions here run in the client process (serial
mode) or on any Dask worker that can import this package and read the data and results
folders. Every job writes its own files atomically, so a crash never leaves a result that
looks finished:

* a training job's model folder counts only once its metadata status is ``finished``;
* a scoring job writes its restoration ``.tif`` first, then a small JSON of per-image scores
  (the JSON records the job key; a JSON with another key is stale and is recomputed).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import time
import uuid
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from .spec import Pair

#: Version of the files written by the jobs (part of every key).
FORMAT = 1


def make_key(payload: dict[str, Any]) -> str:
    """A short stable hash of a JSON-able description of a job."""
    text = json.dumps({"format": FORMAT, **payload}, sort_keys=True, default=str)
    return hashlib.sha1(text.encode()).hexdigest()[:12]


def atomic_write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def atomic_write_tif(path: Path, data: np.ndarray) -> None:
    import tifffile

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp.tif")
    tifffile.imwrite(tmp, np.asarray(data, np.float32), metadata={"axes": "TYX"})
    os.replace(tmp, path)


@dataclass(frozen=True)
class TrainJob:
    key: str
    outdir: str  # results folder (absolute)
    model_dir: str  # relative to outdir
    train: Pair
    config: dict[str, Any]  # TrainConfig.to_dict()
    title: str  # e.g. "ch0 · BP · p32 · s0"

    @property
    def path(self) -> Path:
        return Path(self.outdir) / self.model_dir

    def done(self) -> bool:
        return model_finished(self.path)


@dataclass(frozen=True)
class ScoreJob:
    key: str
    outdir: str
    experiment: str  # experiment id
    method: str  # method id ("input" for the unrestored input)
    label: str  # table column
    kind: str  # "input" | "model" | "baseline"
    test: Pair
    scores_file: str  # relative to outdir
    restoration_file: str | None = None  # relative to outdir; None for the input
    model_dir: str | None = None  # relative to outdir (kind "model")
    model_key: str | None = None
    baseline: str | None = None
    factor: float | None = None  # fixed baseline strength; None = calibrate
    calibration: Pair | None = None
    calibration_frames: int = 3
    test_images: int | None = None
    title: str = ""

    def done(self) -> bool:
        """Scores written for this key, and (for a model) by the model as it is now."""
        data = read_scores(self.outdir, self.scores_file, self.key)
        if data is None:
            return False
        if self.kind == "model":
            run = model_run_id(Path(self.outdir) / self.model_dir)
            return run is None or data.get("model_run") == run
        return True


def model_run_id(model_dir: Path) -> str | None:
    """The id of the training run that wrote a model folder (None if there is none)."""
    from ..models.folder import ModelFolder

    try:
        return ModelFolder.open(model_dir).data_info.run_id
    except (OSError, ValueError):
        return None


def model_finished(model_dir: Path) -> bool:
    from ..models.folder import FINISHED, ModelFolder, ModelFolderError

    try:
        folder = ModelFolder.open(model_dir)
    except (ModelFolderError, OSError):
        return False
    return folder.status == FINISHED and folder.has_weights


def read_scores(outdir: str | Path, scores_file: str, key: str | None = None
                ) -> dict[str, Any] | None:
    """A scoring job's JSON, or None if missing, corrupt, stale (other key) or incomplete."""
    try:
        data = json.loads((Path(outdir) / scores_file).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or (key is not None and data.get("key") != key):
        return None
    rest = data.get("restoration")
    if rest and not (Path(outdir) / rest).is_file():
        return None
    return data


def _where() -> dict[str, Any]:
    """Which process ran a job (recorded in ``run_log.jsonl``)."""
    return {"host": socket.gethostname(), "pid": os.getpid()}


def _limit_threads() -> None:
    """On a worker with N threads, let TensorFlow use only those (set before TF starts)."""
    n = os.environ.get("CARE_LOSSES_THREADS")
    if n:
        os.environ.setdefault("TF_NUM_INTRAOP_THREADS", n)
        os.environ.setdefault("TF_NUM_INTEROP_THREADS", "1")
        os.environ.setdefault("OMP_NUM_THREADS", n)


def _print_epoch(title: str, event) -> None:
    """One line per epoch, so a long run shows where it is (a Dask worker's log, or the
    terminal when the grid runs serially)."""
    from ..training.trainer import EpochEnd

    if isinstance(event, EpochEnd):
        print(f"    {title}: epoch {event.epoch}/{event.epochs}, loss {event.loss:.4g}, "
              f"validation {event.val_loss:.4g} ({event.seconds:.0f} s)", flush=True)


def run_train_job(job: TrainJob) -> dict[str, Any]:
    """Train one model into its folder (unless already finished); return a job record."""
    from ..config.train import TrainConfig
    from ..io.data import make_patches
    from ..models.meta import DataInfo
    from ..training.trainer import run_training

    if job.done():
        return {"job": job.key, "type": "train", "status": "skipped", "title": job.title}
    _limit_threads()
    t0, started = time.perf_counter(), time.time()
    if job.path.exists():  # an interrupted run: start this model over
        shutil.rmtree(job.path)
    cfg = TrainConfig.from_dict(job.config)
    low, high = job.train.paths()
    patches = make_patches(low, high, cfg.patch_size, cfg.patches_per_image, cfg.val_fraction,
                           seed=cfg.seed)
    info = DataInfo(low=str(low), high=str(high), job=job.key, run_id=uuid.uuid4().hex)
    done = run_training(patches, cfg, job.path.parent, model_dir=job.path, data_info=info,
                        on_event=partial(_print_epoch, job.title))
    return {"job": job.key, "type": "train", "status": "ran", "title": job.title,
            "seconds": time.perf_counter() - t0, "best_val_loss": done.best_val_loss,
            "started": started, "finished": time.time(), **_where()}


def _method(job: ScoreJob):
    """The engine's method spec, calibration and record fields of a model/baseline job."""
    from ..restore.engine import Calibration, MethodSpec

    if job.kind == "model":
        from ..models.folder import ModelFolder

        folder = ModelFolder.open(Path(job.outdir) / job.model_dir)
        return MethodSpec.for_model(folder.path), None, {
            "model_dir": job.model_dir, "model_key": job.model_key,
            "model_run": folder.data_info.run_id}
    calibration = None
    if job.factor is None:
        calibration = Calibration.first_frames(*job.calibration.paths(),
                                               job.calibration_frames)
    return MethodSpec.for_baseline(job.baseline, job.factor), calibration, {
        "baseline": job.baseline, "calibrated": job.factor is None}


def _restore(job: ScoreJob, low: np.ndarray, high: np.ndarray):
    """``(restoration, per-image scores, record fields)`` through the restore engine."""
    from ..restore.engine import restore_all_or_raise
    from ..restore.metrics import score_stack

    if job.kind == "input":
        return low.astype(np.float32), score_stack(low, high), {}
    spec, calibration, extra = _method(job)
    result = restore_all_or_raise([spec], low, high, calibration=calibration)[spec.name]
    if result.factor is not None:
        extra["factor"] = result.factor
    return result.image, result.scores, extra


def run_score_job(job: ScoreJob, *dependencies: Any) -> dict[str, Any]:
    """Restore the test set with one method, score every image, write .tif + JSON.

    ``dependencies`` (the training job's record) only make Dask wait for the model.
    """
    from ..io.data import as_stack

    if job.done():
        return {"job": job.key, "type": "score", "status": "skipped", "title": job.title}
    _limit_threads()
    t0, started = time.perf_counter(), time.time()
    low_p, high_p = job.test.paths()
    low_s, high_s = as_stack(low_p), as_stack(high_p)
    n = low_s.n_frames if job.test_images is None else min(job.test_images, low_s.n_frames)
    low = np.stack([low_s.frame(i) for i in range(n)])
    high = np.stack([high_s.frame(i) for i in range(n)])
    restored, scores, extra = _restore(job, low, high)
    out = Path(job.outdir)
    if job.restoration_file:
        atomic_write_tif(out / job.restoration_file, restored)
    record = {
        "key": job.key, "experiment": job.experiment, "method": job.method, "label": job.label,
        "kind": job.kind, "n_images": n, "test_low": str(low_p), "test_high": str(high_p),
        "psnr": [s.psnr for s in scores], "ssim": [s.ssim for s in scores],
        "restoration": job.restoration_file, "seconds": time.perf_counter() - t0, **extra,
    }
    atomic_write_text(out / job.scores_file, json.dumps(record, indent=1))
    return {"job": job.key, "type": "score", "status": "ran", "title": job.title,
            "seconds": record["seconds"], "mean_psnr": float(np.mean(record["psnr"])),
            "started": started, "finished": time.time(), **_where()}

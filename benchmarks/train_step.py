"""Seconds per training step by precision x kernel size against plain CSBDeep, and prediction
of a 2048x2048 frame against CSBDeep's ``predict`` with the same tiling.

Part 1 times ``train_on_batch`` (batch 16 of 64x64, U-Net depth 2, 32 first filters, Laplace
loss) for plain ``csbdeep.models.CARE`` (5x5, float32: the reference) and for this package's
network in each precision x kernel size; all variants are interleaved over ``--repeats``
rounds (median reported) so machine drift hits them alike.

Part 2 restores one 2048x2048 frame (tiles of at most 512 px) with CSBDeep's ``predict`` and
with ours in float32 and bfloat16 (the same float32-trained weights), interleaved.

Part 3 (``--per-loss``): seconds per step for every registered loss (same network).

Part 4 (``--networks D,F,K,B ...``): only seconds per step of float32 networks of other depth,
first filters, kernel and batch (interleaved).

Usage:  python benchmarks/train_step.py [--steps 10 --repeats 3 --per-loss]
Prints tables and writes ``benchmarks/results/train_step.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from dataclasses import replace
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

from napari_care_losses.config.settings import resolve_precision  # noqa: E402
from napari_care_losses.config.train import TrainConfig, versions  # noqa: E402
from napari_care_losses.losses import LossName, LossSpec  # noqa: E402
from napari_care_losses.models.folder import WEIGHTS_BEST  # noqa: E402
from napari_care_losses.models.network import build_care, care_config  # noqa: E402


def _batch(cfg: TrainConfig) -> tuple[np.ndarray, np.ndarray]:
    """One synthetic training batch (noisy target) of ``cfg``'s size."""
    rng = np.random.default_rng(0)
    x = rng.random((cfg.batch_size, cfg.patch_size, cfg.patch_size, 1), dtype=np.float32)
    return x, x + rng.normal(0, 0.1, x.shape).astype(np.float32)


def _interleaved_steps(nets: dict, x, y, steps: int, repeats: int,
                       warmup: int = 2) -> dict[str, float]:
    """Median s/step of each Keras model, rounds interleaved so drift hits all alike.
    ``x``/``y``: one batch for all, or a dict of batches by model name."""
    def batch(name):
        return (x[name], y[name]) if isinstance(x, dict) else (x, y)

    for name, net in nets.items():
        for _ in range(warmup):  # trace and warm up
            net.train_on_batch(*batch(name))
    times: dict[str, list[float]] = {k: [] for k in nets}
    for _ in range(repeats):
        for name, net in nets.items():
            xb, yb = batch(name)
            t = time.perf_counter()
            for _ in range(steps):
                net.train_on_batch(xb, yb)
            times[name].append((time.perf_counter() - t) / steps)
    return {k: float(np.median(v)) for k, v in times.items()}


def time_networks(cfg: TrainConfig, specs: list[str], steps: int,
                  repeats: int) -> dict[str, float]:
    """Median s/step of float32 networks ``"DEPTH,FIRST,KERNEL,BATCH"`` (interleaved)."""
    nets, xs, ys = {}, {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for spec in specs:
            d, f, k, b = (int(v) for v in spec.split(","))
            c = replace(cfg, unet_n_depth=d, unet_n_first=f, unet_kern_size=k, batch_size=b,
                        precision="float32")
            name = f"depth {d}, {f} filters, {k}x{k}, batch {b}"
            m = build_care(c, spec.replace(",", "_"), Path(tmp))
            m.prepare_for_training()
            nets[name], (xs[name], ys[name]) = m.keras_model, _batch(c)
        return _interleaved_steps(nets, xs, ys, steps, repeats)


def time_losses(cfg: TrainConfig, steps: int, repeats: int) -> dict[str, float]:
    """Median seconds per ``train_on_batch`` step for each loss (same net, same batch)."""
    x, y = _batch(cfg)
    nets = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in LossName:
            m = build_care(replace(cfg, loss=LossSpec.create(name)), name.value.replace("+", "_"),
                           Path(tmp))
            m.prepare_for_training()
            nets[name.value] = m.keras_model
        return _interleaved_steps(nets, x, y, steps, repeats, warmup=3)


VARIANTS = [(p, k) for p in ("float32", "bfloat16") for k in (3, 5)]


def time_variants(cfg: TrainConfig, steps: int, repeats: int) -> dict[str, float]:
    """Median s/step of plain CSBDeep (5x5 float32) and ours per (precision, kernel)."""
    from csbdeep.models import CARE

    x, y = _batch(cfg)
    nets = {}
    with tempfile.TemporaryDirectory() as tmp:
        plain = CARE(care_config(replace(cfg, unet_kern_size=5)), "plain", basedir=tmp)
        plain.prepare_for_training()
        nets["csbdeep 5x5 float32"] = plain.keras_model
        for prec, k in VARIANTS:
            c = replace(cfg, unet_kern_size=k, precision=prec)
            m = build_care(c, f"{prec}_{k}", Path(tmp))
            m.prepare_for_training()
            nets[f"ours {k}x{k} {prec}"] = m.keras_model
        return _interleaved_steps(nets, x, y, steps, repeats)


def time_prediction(cfg: TrainConfig, size: int, tile: int, repeats: int) -> dict[str, float]:
    """Seconds to restore one ``size``² frame with the same tiles: CSBDeep's ``predict`` on
    the study network (5x5, float32) against ours on the study network and on the fast
    preset's (``cfg``'s kernel), float32 and bfloat16."""
    import contextlib
    import io

    from csbdeep.data import PercentileNormalizer
    from csbdeep.models import CARE

    from napari_care_losses.restore.predict import auto_tiles

    img = np.random.default_rng(1).random((size, size), dtype=np.float32)
    tiles = auto_tiles(img.shape, tile)
    norm = PercentileNormalizer(cfg.norm_pmin, cfg.norm_pmax, do_after=True)
    k = cfg.unet_kern_size
    with tempfile.TemporaryDirectory() as tmp:
        for name, kern in (("study", 5), ("fast", k)):
            m = build_care(replace(cfg, precision="float32", unet_kern_size=kern), name,
                           Path(tmp))
            m.keras_model.save_weights(str(Path(tmp) / name / WEIGHTS_BEST))
        with contextlib.redirect_stdout(io.StringIO()):
            models = {"csbdeep predict, study network 5x5 float32": CARE(None, "study",
                                                                       basedir=tmp),
                      "ours, study network 5x5 float32": build_care(None, "study", Path(tmp)),
                      f"ours, fast preset {k}x{k} float32": build_care(None, "fast", Path(tmp)),
                      f"ours, fast preset {k}x{k} bfloat16": build_care(
                          None, "fast", Path(tmp), precision="bfloat16")}
        times: dict[str, list[float]] = {k: [] for k in models}
        for r in range(repeats + 1):
            for name, model in models.items():
                t = time.perf_counter()
                with contextlib.redirect_stderr(io.StringIO()):
                    model.predict(img, "YX", normalizer=norm, n_tiles=tiles)
                if r:  # the first round traces
                    times[name].append(time.perf_counter() - t)
    return {k: float(np.median(v)) for k, v in times.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=10, help="steps per timing")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--predict-size", type=int, default=2048)
    ap.add_argument("--tile-size", type=int, default=512)
    ap.add_argument("--per-loss", action="store_true", help="also time every loss")
    ap.add_argument("--predict-only", action="store_true", help="skip the training steps")
    ap.add_argument("--networks", nargs="+", metavar="DEPTH,FIRST,KERNEL,BATCH",
                    help="only time these float32 networks (s/step and per 16 patches)")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/train_step.json"))
    args = ap.parse_args()
    cfg = TrainConfig(loss=LossSpec.create("laplace"), patch_size=64, batch_size=16,
                      unet_n_first=32, unet_n_depth=2, steps_per_epoch=args.steps,
                      reduce_lr_patience=0)
    print(f"U-Net depth {cfg.unet_n_depth}, {cfg.unet_n_first} first filters; batch "
          f"{cfg.batch_size} of {cfg.patch_size}x{cfg.patch_size}; "
          f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs; "
          f"precision auto = {resolve_precision('auto')}\n", flush=True)
    if args.networks:
        nets = time_networks(cfg, args.networks, args.steps, args.repeats)
        print("| network | s/step | s per 16 patches |\n| --- | ---: | ---: |")
        for name, sec in nets.items():
            b = int(name.rsplit(" ", 1)[1])
            print(f"| {name} | {sec:.4f} | {sec * 16 / b:.4f} |", flush=True)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"seconds_per_step": nets, "steps": args.steps,
                                        "repeats": args.repeats, "cpus": os.cpu_count(),
                                        "versions": versions()}, indent=2))
        print(f"\nwrote {args.out}")
        return
    steps, ref = {}, float("nan")
    if not args.predict_only:
        steps = time_variants(cfg, args.steps, args.repeats)
        ref = steps["csbdeep 5x5 float32"]
        print("| network | s/step | speed-up vs CSBDeep 5x5 float32 |\n| --- | ---: | ---: |")
        for name, s in steps.items():
            print(f"| {name} | {s:.4f} | {ref / s:.2f}x |", flush=True)
    pred = time_prediction(cfg, args.predict_size, args.tile_size, max(1, args.repeats - 1))
    pref = pred["csbdeep predict, study network 5x5 float32"]
    print(f"\n| restore one {args.predict_size}² frame, tiles <= {args.tile_size} px "
          "| seconds | speed-up |\n| --- | ---: | ---: |")
    for name, s in pred.items():
        print(f"| {name} | {s:.2f} | {pref / s:.2f}x |")
    result = {"config": cfg.to_dict(), "steps": args.steps, "repeats": args.repeats,
              "cpus": os.cpu_count(), "versions": versions(),
              "precision_auto": resolve_precision("auto"),
              "seconds_per_step": steps, "speedup_vs_csbdeep": {k: ref / v for k, v in
                                                                steps.items()},
              "predict_speedup_vs_csbdeep": {k: pref / v for k, v in pred.items()},
              "predict_seconds": pred, "predict_size": args.predict_size,
              "tile_size": args.tile_size}
    if args.per_loss:
        per_loss = time_losses(replace(cfg, precision="float32"), args.steps, args.repeats)
        print("\n| loss | s/step |\n| --- | ---: |")
        for name, s in per_loss.items():
            print(f"| {name} | {s:.4f} |")
        result["seconds_per_step_per_loss"] = per_loss
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()

"""GPU benchmark of the CARE U-Net by precision: step time, 2048² prediction, equal-step quality.

TensorFlow, CSBDeep and this package cannot be installed on the GPU machine, so this is a plain
Keras 3 re-build of the same network (JAX backend by default, ``--backend torch`` as fallback):
CSBDeep's ``common_unet`` (depth 2, 32 first filters, two ReLU convolutions per level, max-pool
2, nearest up-sampling + concatenation, residual linear 1x1 head, softplus Laplace scale), with
the body in the Keras dtype policy and head and loss in float32 as ``models.network._unet`` does.

1. Seconds per training step (Adam 4e-4, Laplace loss, 64x64 patches) by precision x kernel x
   batch: one ``fit`` epoch per round (its logs are fetched at the end: a device sync), median
   of ``--rounds`` rounds after a warm-up round that includes compilation.
2. Seconds to restore one 2048x2048 frame (one tile) by precision x kernel, median of calls.
3. Equal-step quality (with ``--data``): the 3x3 network from the same seed on the same patch
   stream (CSBDeep ``create_patches`` normalisation, random flips/90° rotations), ``--steps``
   steps with a cosine learning-rate decay to 5 % in each precision, then CARE-style PSNR/SSIM
   (as ``metrics.score``) of whole validation frames.

Usage: python3 benchmarks/gpu_keras_unet.py --data DIR --out DIR [--backend jax|torch]
Prints Markdown tables and writes ``gpu_keras_unet.json`` to ``--out``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import platform
import sys
import time
from pathlib import Path

p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
p.add_argument("--data", type=Path, help="folder with the W2S ch0 stacks (quality part)")
p.add_argument("--out", type=Path, required=True, help="folder for gpu_keras_unet.json")
p.add_argument("--backend", default="jax", choices=("jax", "torch", "tensorflow"))
p.add_argument("--precisions", default="float32,mixed_bfloat16,mixed_float16")
p.add_argument("--kernels", default="3,5")
p.add_argument("--batches", default="16,128", help="batch sizes timed (first: the study's)")
p.add_argument("--allow-cpu", action="store_true", help="run even if no GPU is found")
p.add_argument("--arch", action="append", default=[], metavar="DEPTH,FIRST,KERNEL,STEPS",
               help="instead of the precisions: train these networks (first precision) for "
                    "STEPS steps each and score them (repeatable)")
p.add_argument("--no-timing", action="store_true", help="skip parts 1 and 2")
p.add_argument("--tag", default="", help="suffix of the JSON file name")
for flag, default in (("--rounds", 5), ("--round-steps", 50), ("--predict-size", 2048),
                      ("--predict-calls", 3), ("--steps", 3000), ("--batch", 16),
                      ("--train-fields", 0), ("--patches", 64), ("--fields", 8), ("--seed", 0),
                      ("--lr", 4e-4), ("--deadline", 330.0)):
    p.add_argument(flag, type=type(default), default=default)
ARGS = p.parse_args()
os.environ["KERAS_BACKEND"] = ARGS.backend  # before Keras is imported

import keras  # noqa: E402
import numpy as np  # noqa: E402
from keras import layers, ops  # noqa: E402

T0, PATCH = time.perf_counter(), 64
OUT_NAME = f"gpu_keras_unet{'_' + ARGS.tag if ARGS.tag else ''}.json"
PREC = [q for q in ARGS.precisions.split(",") if q]
KERNELS = [int(k) for k in ARGS.kernels.split(",") if k]
BATCHES = [int(b) for b in ARGS.batches.split(",") if b]
RESULTS: dict = {"args": {k: str(v) for k, v in vars(ARGS).items()}}


def log(*a) -> None:
    print(f"[{time.perf_counter() - T0:6.1f}s]", *a, flush=True)


def late() -> bool:
    return time.perf_counter() - T0 > ARGS.deadline


def save() -> None:
    RESULTS["total_s"] = time.perf_counter() - T0
    (ARGS.out / OUT_NAME).write_text(json.dumps(RESULTS, indent=1))


def build_unet(kernel: int, policy: str, n_depth: int = 2, n_first: int = 32) -> keras.Model:
    """CSBDeep's ``resunet2p_2_{kernel}_32`` (its layer names); the body in ``policy``."""
    def conv(n, name):
        return layers.Conv2D(n, kernel, padding="same", activation="relu", name=name)

    keras.config.set_dtype_policy(policy)  # layers take the global policy when created
    try:
        inp = x = layers.Input((None, None, 1), name="input")
        skips = []
        for n in range(n_depth):
            x = conv(n_first * 2 ** n, f"down_level_{n}_no_1")(
                conv(n_first * 2 ** n, f"down_level_{n}_no_0")(x))
            skips.append(x)
            x = layers.MaxPooling2D(2, name=f"max_{n}")(x)
        x = conv(n_first * 2 ** n_depth, "middle_0")(x)
        x = conv(n_first * 2 ** max(0, n_depth - 1), "middle_2")(x)
        for n in reversed(range(n_depth)):
            x = layers.Concatenate(axis=-1)([layers.UpSampling2D(2)(x), skips[n]])
            x = conv(n_first * 2 ** n, f"up_level_{n}_no_0")(x)
            x = conv(n_first * 2 ** max(0, n - 1), f"up_level_{n}_no_2")(x)
    finally:
        keras.config.set_dtype_policy("float32")
    f32 = "float32"
    mean = layers.Conv2D(1, 1, activation="linear", dtype=f32)(x)
    mean = layers.Activation("linear", dtype=f32)(layers.Add(dtype=f32)([mean, inp]))
    scale = layers.Conv2D(1, 1, activation="softplus", dtype=f32)(x)
    scale = layers.Lambda(lambda s: s + 1e-3, dtype=f32)(scale)
    return keras.Model(inp, layers.Concatenate(axis=-1, dtype=f32)([mean, scale]))


def laplace_loss(y_true, y_pred):
    """Laplace negative log-likelihood (no log 2 constant, as the repo's), in float32."""
    y_pred = ops.cast(y_pred, "float32")
    mu, sigma = y_pred[..., :1], y_pred[..., 1:]
    return ops.mean(ops.abs(ops.cast(y_true, "float32") - mu) / sigma + ops.log(sigma))


def make_model(kernel: int, policy: str, lr, n_depth: int = 2,
               n_first: int = 32) -> keras.Model:
    keras.utils.set_random_seed(ARGS.seed)  # the same initial weights in every precision
    model = build_unet(kernel, policy, n_depth, n_first)
    opt = keras.optimizers.Adam(learning_rate=lr)
    if policy == "mixed_float16":  # float16 gradients underflow: dynamic loss scaling
        opt = keras.optimizers.LossScaleOptimizer(opt)
    model.compile(optimizer=opt, loss=laplace_loss)
    return model


class Clock(keras.callbacks.Callback):
    """Wall time at each epoch end, after its logs were fetched (a sync); stops on NaN."""

    def __init__(self, label: str | None = None):
        super().__init__()
        self.label, self.t, self.loss = label, [], []

    def on_train_begin(self, logs=None):
        self.t.append(time.perf_counter())

    def on_epoch_end(self, epoch, logs=None):
        self.t.append(time.perf_counter())
        self.loss.append(float(logs["loss"]))
        if self.label:
            log(f"  {self.label} epoch {epoch + 1}: loss {self.loss[-1]:.4f}")
        if not math.isfinite(self.loss[-1]):
            self.model.stop_training = True


def percentile_norm(img, pmin=2.0, pmax=99.8):
    """``csbdeep.utils.normalize`` (clip=False)."""
    img = np.asarray(img, np.float32)
    lo, hi = np.percentile(img, (pmin, pmax))
    return (img - np.float32(lo)) / np.float32(hi - lo + 1e-20)


def care_scores(restored, gts) -> dict:
    """Mean of ``metrics.score(mode="care")``: GT 0.1/99.9 % normalised, affine fit, range 1."""
    from skimage.metrics import peak_signal_noise_ratio as psnr
    from skimage.metrics import structural_similarity as ssim
    out = []
    for x, gt in zip(restored, gts, strict=True):
        gt, x = percentile_norm(gt, 0.1, 99.9), np.asarray(x, np.float32)
        cov = np.cov(x.flatten(), gt.flatten())  # csbdeep.utils.normalize_minmse
        alpha = cov[0, 1] / (cov[0, 0] + 1e-10)
        fit = alpha * x + (gt.mean() - alpha * x.mean())
        out.append((psnr(gt, fit, data_range=1.0), ssim(gt, fit, data_range=1.0)))
    a = np.array(out, np.float64)
    return {"psnr": float(a[:, 0].mean()), "ssim": float(a[:, 1].mean()),
            "psnr_per_field": a[:, 0].tolist()}


def patch_pool(low, high, n_per: int, rng):
    """CSBDeep ``create_patches`` defaults: patches where the max-filtered target exceeds 0.4 x
    its 99.9th percentile; per patch, pmin ~ U(1, 3) and pmax ~ U(99.5, 99.9) percentiles of
    the whole frames map input and target to 0 and 1."""
    from scipy.ndimage import maximum_filter
    xs, ys, h = [], [], PATCH // 2
    for x, y in zip(low, high, strict=True):
        x, y = x.astype(np.float32), y.astype(np.float32)
        mask = maximum_filter(y, h, mode="constant") > 0.4 * np.percentile(y, 99.9)
        valid = np.argwhere(mask[h:y.shape[0] - h + 1, h:y.shape[1] - h + 1])  # = corners
        pick = valid[rng.choice(len(valid), n_per, replace=len(valid) < n_per)]
        pmin, pmax = rng.uniform(1, 3, n_per), rng.uniform(99.5, 99.9, n_per)
        for img, out in ((x, xs), (y, ys)):
            lo, hi = (np.percentile(img, q)[:, None, None].astype(np.float32) for q in (pmin, pmax))
            patches = np.stack([img[r:r + PATCH, c:c + PATCH] for r, c in pick])
            out.append((patches - lo) / (hi - lo))
    return np.concatenate(xs)[..., None], np.concatenate(ys)[..., None]


def augmented_batches(X, Y, batch: int, seed: int):
    """Endless random batches, each patch rotated by k x 90° and maybe flipped."""
    rng = np.random.default_rng(seed)
    while True:
        xy = np.concatenate([X[idx := rng.integers(0, len(X), batch)], Y[idx]], -1)
        for j in range(batch):
            t = np.rot90(xy[j], rng.integers(4))
            xy[j] = t[:, ::-1] if rng.integers(2) else t
        yield np.ascontiguousarray(xy[..., :1]), np.ascontiguousarray(xy[..., 1:])


def guarded(row: dict, what: str, fn) -> dict:
    """``fn(row)`` unless past the deadline; an error is recorded in the row, not raised."""
    if late():
        row["note"] = "skipped (deadline)"
        return row
    try:
        fn(row)
    except Exception as exc:  # noqa: BLE001 - report it and go on with the next variant
        row["note"] = f"{type(exc).__name__}: {exc}"[:300]
        log(f"{what} failed: {exc!r}")
    save()
    return row


def table(rows, cols) -> None:
    """A Markdown table of dict rows; ``cols``: header -> key."""
    def cell(v):
        return f"{v:.4g}" if isinstance(v, float) else str(v)
    print("\n| " + " | ".join(cols) + " |\n|" + "---|" * len(cols))
    for r in rows:
        print("| " + " | ".join(cell(r.get(k, "-")) for k in cols.values()) + " |")
    print(flush=True)


def quality(data) -> None:
    n = ARGS.train_fields or len(data["train_ch0_low"])
    X, Y = patch_pool(data["train_ch0_low"][:n], data["train_ch0_high"][:n], ARGS.patches,
                      np.random.default_rng(ARGS.seed))
    vl, vh = data["val_ch0_low"][:ARGS.fields], data["val_ch0_high"][:ARGS.fields]
    inp = np.stack([percentile_norm(v) for v in vl])[..., None]  # PercentileNormalizer(2, 99.8)
    log(f"quality: {len(X)} patches from {n} training fields")

    def run(r):
        steps = r.get("steps_asked", ARGS.steps)
        n_ep = min(10, steps)
        spe = max(1, steps // n_ep)
        lr = keras.optimizers.schedules.CosineDecay(ARGS.lr, spe * n_ep, alpha=0.05)
        model = make_model(r.get("kernel", 3), r["precision"], lr, r.get("depth", 2),
                           r.get("first", 32))
        clock = Clock(r["precision"])
        model.fit(augmented_batches(X, Y, ARGS.batch, ARGS.seed), steps_per_epoch=spe,
                  epochs=n_ep, verbose=0, callbacks=[clock])
        r.update(train_s=clock.t[-1] - clock.t[0], first_epoch_s=clock.t[1] - clock.t[0],
                 final_loss=clock.loss[-1], steps=spe * len(clock.loss))
        t = time.perf_counter()
        pred = np.asarray(model.predict(inp, batch_size=1, verbose=0), np.float32)[..., 0]
        r["predict_s"] = time.perf_counter() - t
        if math.isfinite(r["final_loss"]) and np.all(np.isfinite(pred)):
            r.update(care_scores(pred, vh))
        else:
            r["note"] = "NaN"

    rows = [{"precision": "input (low)", **care_scores(vl, vh)}]
    RESULTS["quality"] = {"fields": len(vl), "train_fields": n, "rows": rows}
    if ARGS.arch:  # networks compared in one precision
        for a in ARGS.arch:
            depth, first, kernel, steps = (int(v) for v in a.split(","))
            rows.append(guarded({"precision": PREC[0], "depth": depth, "first": first,
                                 "kernel": kernel, "steps_asked": steps}, f"arch {a}", run))
        table(rows, {"depth": "depth", "first filters": "first", "kernel": "kernel",
                     "steps": "steps", "PSNR dB": "psnr", "SSIM": "ssim",
                     "train s": "train_s", "note": "note"})
        return
    rows += [guarded({"precision": q}, f"quality {q}", run) for q in PREC]
    ref = [r["psnr"] for r in rows if r["precision"] == "float32" and "psnr" in r]
    for r in rows[1:]:
        if ref and "psnr" in r:
            r["dpsnr_vs_fp32"] = r["psnr"] - ref[0]
    table(rows, {"precision": "precision", "PSNR dB": "psnr", "SSIM": "ssim",
                 "Δ PSNR vs fp32 dB": "dpsnr_vs_fp32", "train s": "train_s",
                 "final loss": "final_loss", "note": "note"})


def step_times(X) -> None:
    """Part 1, and part 2 with the networks of the first batch size."""
    n = ARGS.predict_size
    img = np.random.default_rng(0).random((1, n, n, 1), np.float32)

    def run(r):
        b = r["batch"]
        x = X[:b] if X is not None and len(X) >= b else \
            np.random.default_rng(0).random((b, PATCH, PATCH, 1), np.float32)
        y = x + np.random.default_rng(1).normal(0, 0.1, x.shape).astype(np.float32)
        model, clock = make_model(r["kernel"], r["precision"], ARGS.lr), Clock()
        model.fit(((x, y) for _ in itertools.count()), steps_per_epoch=ARGS.round_steps,
                  epochs=ARGS.rounds + 1, verbose=0, callbacks=[clock])
        d = np.diff(clock.t)  # d[0]: the warm-up round, with compilation
        r.update(ms_per_step=1e3 * float(np.median(d[1:])) / ARGS.round_steps,
                 warmup_round_s=float(d[0]), loss=clock.loss[-1])
        r["samples_per_s"] = 1e3 * b / r["ms_per_step"]
        r["note"] = "" if math.isfinite(r["loss"]) else "NaN"
        log(f"train: batch {b} {r['precision']} {r['kernel']}x{r['kernel']}: "
            f"{r['ms_per_step']:.2f} ms/step")
        if b != BATCHES[0] or late():
            return
        ts = []
        for _ in range(ARGS.predict_calls + 1):  # the first call compiles
            t = time.perf_counter()
            out = model.predict(img, batch_size=1, verbose=0)  # a NumPy array: synced
            ts.append(time.perf_counter() - t)
        r.update(predict_s=float(np.median(ts[1:])), predict_first_s=ts[0],
                 predict_finite=bool(np.all(np.isfinite(out))))
        log(f"predict {n}²: {r['predict_s']:.3f} s")

    RESULTS["train_step"] = rows = []
    for b, q, k in itertools.product(BATCHES, PREC, KERNELS):
        rows.append({"batch": b, "precision": q, "kernel": k})
        guarded(rows[-1], f"train {b} {q} {k}", run)
    table(rows, {"batch": "batch", "precision": "precision", "kernel": "kernel",
                 "ms/step": "ms_per_step", "samples/s": "samples_per_s",
                 "warm-up round s": "warmup_round_s", "note": "note"})
    table([r for r in rows if r["batch"] == BATCHES[0]],
          {"precision": "precision", "kernel": "kernel",
           f"s per {n}² frame": "predict_s", "first call s": "predict_first_s"})


def environment() -> dict:
    env = {"backend": keras.backend.backend(), "keras": keras.__version__,
           "python": platform.python_version(), "numpy": np.__version__}
    try:
        if env["backend"] == "jax":
            import jax
            env.update(jax=jax.__version__, devices=[str(d) for d in jax.devices()],
                       gpu=jax.default_backend() == "gpu")
        elif env["backend"] == "torch":
            import torch
            env.update(torch=torch.__version__, gpu=torch.cuda.is_available())
            env["devices"] = torch.cuda.get_device_name() if env["gpu"] else "cpu"
    except Exception as exc:  # noqa: BLE001
        env["device_error"] = repr(exc)
    return env


def main() -> int:
    ARGS.out.mkdir(parents=True, exist_ok=True)
    RESULTS["env"] = environment()
    log("environment:", json.dumps(RESULTS["env"]))
    if not RESULTS["env"].get("gpu") and not ARGS.allow_cpu:
        log("no GPU found: stopping (--allow-cpu runs anyway)")
        return 3
    names = ("train_ch0_low", "train_ch0_high", "val_ch0_low", "val_ch0_high")
    X = None
    if ARGS.data and all((ARGS.data / f"{n}.tif").exists() for n in names):
        import tifffile
        data = {n: tifffile.imread(ARGS.data / f"{n}.tif") for n in names}
        X = patch_pool(data["train_ch0_low"][:4], data["train_ch0_high"][:4],
                       max(BATCHES, default=4) // 4 + 1, np.random.default_rng(1))[0]
        RESULTS["quality_status"] = guarded({}, "quality", lambda _: quality(data))
    else:
        log("no W2S stacks in --data: quality part skipped")
    if not ARGS.no_timing:
        step_times(X)
    save()
    log(f"done: {ARGS.out / OUT_NAME}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

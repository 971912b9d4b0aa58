"""Command line: ``napari-care-losses {demo,train,predict,evaluate,experiment}``."""

from __future__ import annotations

import argparse
import os
import signal
import sys
from dataclasses import replace
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TensorFlow's C++ chatter quiet

from .data import DataError  # noqa: E402
from .losses import DEFAULT_PARAMS, LossName, LossSpec  # noqa: E402

PARAM_FLAGS = ("sigma1", "sigma2", "weight", "alpha")


def _loss_specs(args, patch_size: int) -> list[LossSpec]:
    specs = []
    given = {k: getattr(args, k) for k in PARAM_FLAGS if getattr(args, k) is not None}
    for name in args.loss:
        spec = LossSpec.create(name, patch_size=patch_size)
        params = {k: v for k, v in given.items() if k in DEFAULT_PARAMS[spec.name]}
        specs.append(LossSpec.create(spec.name, params, patch_size))
    unused = [k for k in given if not any(k in DEFAULT_PARAMS[s.name] for s in specs)]
    if unused:
        print(f"note: {', '.join('--' + k for k in unused)} apply to none of the chosen "
              "losses; ignored")
    return specs


def cmd_train(args) -> int:
    from .config import TrainConfig
    from .data import make_patches
    from .demo import _print_event
    from .training import BatchEnd, Failed, StopFlag, train

    cfg = TrainConfig(patch_size=args.patch_size, patches_per_image=args.patches_per_image,
                      epochs=args.epochs, steps_per_epoch=args.steps, batch_size=args.batch_size,
                      learning_rate=args.lr, seed=args.seed, unet_n_depth=args.unet_depth,
                      unet_n_first=args.unet_first, unet_kern_size=args.unet_kernel)
    specs = _loss_specs(args, cfg.patch_size)
    print(f"Cutting {cfg.patch_size}px patches from {args.low} / {args.high} ...")
    patches = make_patches(args.low, args.high, cfg.patch_size, cfg.patches_per_image,
                           cfg.val_fraction, cfg.seed)
    stop = StopFlag()
    # First Ctrl+C: finish the current batch, keep the best model; second: abort.
    previous = signal.signal(signal.SIGINT, lambda *_: (
        print("\nStopping after this batch ..."), stop.set(),
        signal.signal(signal.SIGINT, signal.default_int_handler)))
    status = 0
    try:
        for spec in specs:
            data_info = {"low": str(args.low), "high": str(args.high)}
            for event in train(patches, replace(cfg, loss=spec), args.out, stop,
                               data_info=data_info):
                if isinstance(event, BatchEnd):
                    if args.verbose:
                        print(f"    step {event.step}/{event.steps_per_epoch} "
                              f"loss {event.loss:.4f}")
                    continue
                _print_event(event, print)
                if isinstance(event, Failed):
                    status = 1
            if stop.is_set():
                return 130  # interrupted; the model trained so far is saved
    finally:
        signal.signal(signal.SIGINT, previous)
    return status


def cmd_predict(args) -> int:
    import tifffile

    from .predict import load_model

    model = load_model(args.model)
    print(f"Restoring {args.input} with {model.name} ({model.loss.name.value}) ...")
    res = model.restore(args.input, tile_size=args.tile_size,
                        progress=lambda i, n: print(f"  frame {i}/{n}", flush=True))
    image = res.image[0] if res.image.shape[0] == 1 else res.image
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    tifffile.imwrite(args.output, image, compression="zlib")
    print(f"Wrote {args.output}")
    if args.scale_output:
        if res.scale is None:
            print(f"note: {model.loss.name.value} models have no uncertainty map; "
                  "--scale-output ignored")
        else:
            tifffile.imwrite(args.scale_output, res.scale, compression="zlib")
            print(f"Wrote {args.scale_output}")
    return 0


def cmd_evaluate(args) -> int:
    from .baselines import Baseline
    from .data import open_pair
    from .metrics import score_stack
    from .predict import load_model
    from .score_tables import to_markdown, write_csv

    if args.metric == "raw" and args.data_range is None:
        raise ValueError("--metric raw needs --data-range (e.g. 255 for 8-bit images)")
    low, high = open_pair(args.low, args.high)
    gt = high.to_array()
    methods = {"Input": low.to_array()}
    for model_dir in args.model or []:
        model = load_model(model_dir)
        print(f"Restoring with {model.name} ...", flush=True)
        methods[f"{model.label} ({model.name})"] = model.restore(low).image
    for name in args.baseline or []:
        base = Baseline.create(name)
        print(f"Restoring with {base.label} ...", flush=True)
        methods[base.label] = base.restore(low)
    for item in args.restored or []:
        label, _, path = item.partition("=")
        if not path:
            raise DataError(f"--restored expects NAME=FILE, got {item!r}")
        restored, _ = open_pair(path, args.high)
        methods[label] = restored.to_array()
    scores = {m: score_stack(img, gt, args.metric, args.data_range) for m, img in methods.items()}
    write_csv(args.output, scores)
    print(to_markdown(scores))
    print(f"Wrote per-image scores to {args.output}")
    return 0


def cmd_demo(args) -> int:
    from .demo import run_demo

    run_demo(args.out, "quick" if args.quick else "default", args.channel)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="napari-care-losses",
        description="CARE restoration with comparable training losses (headless).")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("demo", help="train 3 losses on the bundled W2S crops and compare")
    p.add_argument("--out", default="demo_output", help="output folder (default: demo_output)")
    p.add_argument("--quick", action="store_true", help="a few steps only (smoke test)")
    p.add_argument("--channel", type=int, default=0, choices=(0, 1, 2))
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("train", help="train one model per --loss on a low/high pair")
    p.add_argument("low", type=Path, help="low-exposure TIFF (YX or TYX)")
    p.add_argument("high", type=Path, help="high-exposure TIFF, same shape")
    p.add_argument("--loss", action="append", default=None,
                   help=f"loss (repeatable): {', '.join(n.value for n in LossName)}")
    p.add_argument("--out", type=Path, default=Path("runs"), help="models folder")
    p.add_argument("--patch-size", type=int, default=64, choices=(32, 64, 128))
    p.add_argument("--patches-per-image", type=int, default=64)
    p.add_argument("--epochs", type=int, default=50)
    p.add_argument("--steps", type=int, default=100, help="steps per epoch")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--lr", type=float, default=4e-4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--unet-depth", type=int, default=2)
    p.add_argument("--unet-first", type=int, default=32, help="filters in the first layer")
    p.add_argument("--unet-kernel", type=int, default=5)
    for k in PARAM_FLAGS:
        p.add_argument(f"--{k}", type=float, default=None, help=f"loss parameter {k}")
    p.add_argument("-v", "--verbose", action="store_true", help="print every batch")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("predict", help="restore a TIFF with a trained model")
    p.add_argument("model", type=Path, help="model folder written by 'train'")
    p.add_argument("input", type=Path)
    p.add_argument("-o", "--output", type=Path, required=True)
    p.add_argument("--scale-output", type=Path, help="Laplace models: write the scale map")
    p.add_argument("--tile-size", type=int, default=512, help="max tile side in pixels")
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("evaluate", help="per-image PSNR/SSIM of models and baselines (CSV)")
    p.add_argument("low", type=Path)
    p.add_argument("high", type=Path, help="ground truth")
    p.add_argument("--model", type=Path, action="append", help="model folder (repeatable)")
    p.add_argument("--baseline", action="append", help="tv, nlm or gaussian (repeatable)")
    p.add_argument("--restored", action="append", help="NAME=FILE of a saved restoration")
    p.add_argument("-o", "--output", type=Path, default=Path("scores.csv"))
    p.add_argument("--metric", choices=("care", "raw"), default="care")
    p.add_argument("--data-range", type=float, default=None, help="for --metric raw")
    p.set_defaults(func=cmd_evaluate)

    try:
        from .experiments.cli import add_parser
    except ImportError:  # pragma: no cover - experiments package not installed
        pass
    else:
        add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "loss", "unset") is None:
        args.loss = ["laplace"]
    try:
        return int(args.func(args) or 0)
    except (DataError, ValueError, OSError, RuntimeError) as exc:  # OSError: files
        print(f"napari-care-losses {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except MemoryError:
        print(f"napari-care-losses {args.command}: error: out of memory; use fewer patches "
              "per image, a smaller batch or smaller tiles", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

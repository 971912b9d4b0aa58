"""Command line: ``napari-care-losses {demo,train,predict,evaluate,experiment}``."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from dataclasses import replace
from pathlib import Path

# TensorFlow's C++ log: quiet, so that a user's error is the only line on stderr (oneDNN logs
# a spurious "E … oneDNN supports DT_INT32 only on platforms with AVX-512" at the first
# training step even on AVX-512 CPUs; real failures still reach us as Python exceptions).
# ``--debug`` shows it all. Its import notices are held back by ``_tf``.
_TF_LOG_OURS = "TF_CPP_MIN_LOG_LEVEL" not in os.environ
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from .config.settings import number  # noqa: E402 - the one argparse number parser
from .evaluate import cmd_evaluate  # noqa: E402
from .io.data import DataError  # noqa: E402
from .losses import LossName  # noqa: E402


def cmd_train(args) -> int:
    from .config.settings import BY_NAME, loss_specs
    from .config.train import config_from_args
    from .io.data import make_patches
    from .training.trainer import StopFlag

    cfg = config_from_args(args)
    specs = loss_specs(args, cfg.patch_size)
    n_seeds = getattr(args, "seeds", 1)
    seeds = range(cfg.seed, cfg.seed + n_seeds)
    if seeds[-1] > BY_NAME["seed"].hi:
        raise ValueError(f"--seed {cfg.seed} with --seeds {n_seeds} goes past the largest "
                         f"seed {BY_NAME['seed'].hi:g}")

    def cut(seed: int):
        where = f"{args.low} / {args.high}"
        print(f"Cutting {cfg.patch_size}px patches from {where} ..." if n_seeds == 1 else
              f"Seed {seed}: cutting {cfg.patch_size}px patches from {where} ...")
        return make_patches(args.low, args.high, cfg.patch_size, cfg.patches_per_image,
                            cfg.val_fraction, seed)

    patches = cut(seeds[0])
    stop = StopFlag()
    # First Ctrl+C or SIGTERM: finish the current batch, keep the best model; second: abort.
    received: list[int] = []

    def on_signal(signum, _frame) -> None:
        received.append(signum)
        print("\nStopping after this batch ...", flush=True)
        stop.set()
        signal.signal(signum, signal.default_int_handler if signum == signal.SIGINT
                      else signal.SIG_DFL)

    previous = {}
    if threading.current_thread() is threading.main_thread():
        previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    status = 0
    try:
        # seed by seed (each cuts its own patches, as `train --seed S` would), every loss in
        # turn: a stop leaves whole seeds of every loss
        for seed in seeds:
            if seed != seeds[0]:
                patches = cut(seed)
            status = max(status, _train_losses(args, patches, replace(cfg, seed=seed), specs,
                                               stop))
            if stop.is_set():  # interrupted; the model trained so far is saved
                return 143 if signal.SIGTERM in received else 130
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    return status


def _train_losses(args, patches, cfg, specs, stop) -> int:
    """Train one model per loss of ``specs`` with ``cfg`` on ``patches``, printing the
    events; 1 if one failed, else 0 (a stop ends the loop: the caller sees the flag)."""
    from .demo import _print_event
    from .models.weights import is_storage_failure
    from .training.budget import duration
    from .training.trainer import BatchEnd, Failed, Finished, Finishing, Planned, train

    status = 0
    for spec in specs:
        data_info = {"low": str(args.low), "high": str(args.high)}
        for event in train(patches, replace(cfg, loss=spec), args.out, stop,
                           data_info=data_info):
            if isinstance(event, BatchEnd):
                if args.verbose:
                    print(f"    step {event.step}/{event.steps_per_epoch} "
                          f"loss {event.loss:.4f}")
                continue
            if isinstance(event, Planned):
                e, n = event.epochs, event.steps_per_epoch
                print(f"  plan: {e} epoch{'s' * (e > 1)} x {n} step{'s' * (n > 1)} "
                      f"({event.seconds_per_step:.2f} s a step) to fill "
                      f"{duration(event.budget_s)}", flush=True)
                if event.note:  # one line: the budget cannot be met
                    print(f"napari-care-losses train: warning: {event.note}",
                          file=sys.stderr, flush=True)
                continue
            if isinstance(event, Finishing):
                print(f"    {event.what} …", flush=True)
                continue
            if isinstance(event, Failed) and is_storage_failure(event.error):
                # a full disk (or an unwritable folder): the folder says "failed" and
                # keeps its best weights; the next loss could not be saved either
                raise OSError(event.error)
            _print_event(event, print)
            if isinstance(event, Finished) and event.end_s:
                print("    end: " + ", ".join(f"{what} {s:.1f} s"
                                             for what, s in event.end_s.items()))
            if isinstance(event, Failed):
                status = 1
        if stop.is_set():
            break
    return status


def _check_finite(what: str, image, source, model) -> None:
    """Refuse to write a restoration (or scale map) with NaN/inf, naming the first frame."""
    import numpy as np

    stack = np.asarray(image)
    frames = stack.reshape(-1, *stack.shape[-2:]) if stack.ndim >= 2 else stack[None, None]
    for k, frame in enumerate(frames):
        if not np.all(np.isfinite(frame)):
            raise ValueError(f"{what} of {source} frame {k} with {model.name} contains NaN/inf;"
                             " nothing written")


def cmd_predict(args) -> int:
    from .io.tiff import refuse_existing, write_tiff
    from .restore.predict import load_model

    refuse_existing(args.output, args.scale_output, overwrite=args.overwrite)
    model = load_model(args.model)
    print(f"Restoring {args.input} with {model.name} ({model.loss.name.value}) ...")
    res = model.restore(args.input, tile_size=args.tile_size,
                        progress=lambda i, n: print(f"  frame {i}/{n}", flush=True))
    image = res.image[0] if res.image.shape[0] == 1 else res.image
    _check_finite("restoration", res.image, args.input, model)
    scale = res.scale if args.scale_output else None
    if scale is not None:
        _check_finite("uncertainty map", scale, args.input, model)
    # minisblack: a 3- or 4-frame stack must not be written (and read back) as RGB
    tiff = {"compression": "zlib", "photometric": "minisblack"}
    write_tiff(args.output, image, **tiff)  # atomic: complete or not there at all
    print(f"Wrote {args.output}")
    if args.scale_output:
        if scale is None:
            print(f"note: {model.loss.name.value} models have no uncertainty map; "
                  "--scale-output ignored")
        else:
            write_tiff(args.scale_output, scale, **tiff)
            print(f"Wrote {args.scale_output}")
    return 0


def cmd_demo(args) -> int:
    from .demo import run_demo

    run_demo(args.out, "quick" if args.quick else "default", args.channel)
    return 0


class _Parser(argparse.ArgumentParser):
    """Usage errors as one line on stderr (exit code 2), with a pointer to ``-h``."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} -h)\n")


def _add_channel(p: argparse.ArgumentParser) -> None:
    p.add_argument("--channel", type=number(int, 0), default=None, metavar="N",
                   help="read channel N of input files with channels (C or RGB axis); "
                        "files without channels are read as they are")


def _add_overwrite(p: argparse.ArgumentParser) -> None:
    p.add_argument("--overwrite", action="store_true",
                   help="replace output files that exist (default: refuse)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="napari-care-losses",
        description="CARE restoration with comparable training losses (headless).")
    parser.add_argument("--debug", action="store_true",
                        help="show Python tracebacks for errors (also accepted after the "
                             "command)")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("demo", help="train 3 losses on the bundled W2S crops and compare")
    p.add_argument("--out", default="demo_output", help="output folder (default: demo_output)")
    p.add_argument("--quick", action="store_true", help="a few steps only (smoke test)")
    p.add_argument("--channel", type=number(int, 0), default=0, choices=(0, 1, 2))
    p.set_defaults(func=cmd_demo)

    from .config.settings import add_train_arguments

    p = sub.add_parser("train", help="train one model per --loss (and seed) on a low/high pair")
    p.add_argument("low", type=Path, help="low-exposure TIFF (YX or TYX)")
    p.add_argument("high", type=Path, help="high-exposure TIFF, same shape")
    p.add_argument("--loss", action="append", default=None,
                   help=f"loss (repeatable): {', '.join(n.value for n in LossName)}")
    p.add_argument("--out", type=Path, default=Path("runs"), help="models folder")
    add_train_arguments(p)  # --preset, one flag per setting and per loss parameter
    _add_channel(p)
    p.add_argument("-v", "--verbose", action="store_true", help="print every batch")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("predict", help="restore a TIFF with a trained model")
    p.add_argument("model", type=Path, help="model folder written by 'train'")
    p.add_argument("input", type=Path)
    p.add_argument("-o", "--output", type=Path, required=True)
    p.add_argument("--scale-output", type=Path, help="Laplace models: write the scale map")
    _add_overwrite(p)
    p.add_argument("--tile-size", type=number(int, 16), default=512,
                   help="max tile side in pixels (>= 16)")
    _add_channel(p)
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("evaluate", help="per-image PSNR/SSIM of models and baselines (CSV)")
    p.add_argument("low", type=Path)
    p.add_argument("high", type=Path, help="ground truth")
    p.add_argument("--model", type=Path, action="append", help="model folder (repeatable)")
    p.add_argument("--baseline", action="append", help="tv, nlm or gaussian (repeatable)")
    p.add_argument("--calibrate", nargs=2, type=Path, metavar=("LOW", "HIGH"),
                   help="calibrate the baselines' strength on this pair (e.g. a training or "
                        "validation pair; never the test pair)")
    p.add_argument("--calibration-frames", type=number(int, 1), default=3, metavar="N",
                   help="frames of the calibration pair used (default 3)")
    p.add_argument("--strength", type=number(float, 0, inclusive=False), default=None,
                   help="fixed baseline strength factor (1 = noise-based default)")
    p.add_argument("--restored", action="append", help="NAME=FILE of a saved restoration")
    p.add_argument("-o", "--output", type=Path, default=Path("scores.csv"))
    p.add_argument("--metric", choices=("care", "raw"), default="care")
    p.add_argument("--data-range", type=number(float, 0, inclusive=False), default=None,
                   help="for --metric raw (> 0)")
    p.add_argument("--reference", metavar="NAME", default=None,
                   help="group the verdicts compare against: a loss label or name (e.g. FFT), "
                        "a baseline or a --restored NAME (default: the Laplace models)")
    _add_overwrite(p)
    _add_channel(p)
    p.set_defaults(func=cmd_evaluate)

    try:
        from .experiments.cli import add_parser
    except ImportError:  # pragma: no cover - experiments package not installed
        pass
    else:
        add_parser(sub)
    from .export.bioimageio import add_parser as add_export_parser  # no TensorFlow here

    add_export_parser(sub)
    return parser


#: errors that mean bad input, files or settings: one line, exit code 2
_USER_ERRORS: tuple[type[BaseException], ...] = (
    DataError, ValueError, OSError, RuntimeError, MemoryError, EOFError, KeyError)


def _user_errors() -> tuple[type[BaseException], ...]:
    """Also zlib's errors; tifffile's are ValueErrors and h5py's OSError/KeyError/ValueError."""
    import zlib

    return (*_USER_ERRORS, zlib.error)


class Terminated(BaseException):
    """SIGTERM, raised in the main thread so that the command unwinds like Ctrl+C: every
    ``finally`` runs and temporary files and folders are removed."""


#: commands whose SIGTERM unwinds (train stops after the batch instead; see cmd_train)
_TERMINABLE = ("predict", "evaluate", "export")


def _raise_terminated(signum, _frame) -> None:
    signal.signal(signum, signal.SIG_DFL)  # a second SIGTERM ends the process at once
    raise Terminated


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc.args[0] if isinstance(exc, KeyError) and exc.args else exc).split())
    if isinstance(exc, MemoryError):
        text = text or ("out of memory; use fewer patches per image, a smaller batch or "
                        "smaller tiles")
        return text if text.startswith("out of memory") else f"out of memory: {text}"
    return text or type(exc).__name__


def main(argv: list[str] | None = None) -> int:
    """Run one command; user errors end as one line on stderr and exit code 2.

    ``--debug`` (anywhere before ``--``) shows the Python traceback instead.
    """
    from .io.data import input_channel

    argv = list(sys.argv[1:] if argv is None else argv)
    end = argv.index("--") if "--" in argv else len(argv)
    debug = "--debug" in argv[:end]
    if debug:
        argv = [a for i, a in enumerate(argv) if i >= end or a != "--debug"]
        if _TF_LOG_OURS and "tensorflow" not in sys.modules:
            os.environ["TF_CPP_MIN_LOG_LEVEL"] = "0"
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # -h, or a usage error already printed as one line
        return exc.code if isinstance(exc.code, int) else 2
    if getattr(args, "loss", "unset") is None:
        args.loss = ["laplace"]
    name = f"napari-care-losses {args.command}"
    previous = None
    if args.command in _TERMINABLE and threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        with input_channel(getattr(args, "channel", None) if args.command != "demo" else None):
            return int(args.func(args) or 0)
    except Terminated:
        if debug:
            raise
        print(f"{name}: terminated (SIGTERM); unfinished output and temporary files removed",
              file=sys.stderr)
        return 143
    except KeyboardInterrupt:
        if debug:
            raise
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        if debug:
            raise
        if isinstance(exc, _user_errors()):
            print(f"{name}: error: {_one_line(exc)}", file=sys.stderr)
            return 2
        print(f"{name}: unexpected error: {type(exc).__name__}: {_one_line(exc)} (run with "
              "--debug for the traceback)", file=sys.stderr)
        return 1
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())

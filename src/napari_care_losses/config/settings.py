"""One record per training setting: default, bounds or choices, help text, CLI flag and dock
label. :class:`~napari_care_losses.config.train.TrainConfig` validates with these records, the CLI
``train`` flags (:func:`add_train_arguments`) and the training dock's controls are generated
from them, and experiment files are checked against them. Loss parameters are not settings: they
come from the loss records (:mod:`napari_care_losses.losses.records`), one flag per parameter
name (``--sigma1`` applies to every chosen loss that takes ``sigma1``).

TensorFlow-free (imported by napari and the CLI before any training starts).
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..losses import LossSpec, loss_params, loss_record, param_users

#: Numeric precisions of training and prediction (see :func:`resolve_precision`).
PRECISIONS = ("auto", "float32", "bfloat16", "float16")
#: Training-patch augmentations: none, or random flips and 90° rotations (the 8 symmetries
#: of the square; see :func:`napari_care_losses.io.data.dihedral_augmenter`).
AUGMENTS = ("none", "flips")


@dataclass(frozen=True)
class Setting:
    """A training setting as TrainConfig, the CLI and the dock know it."""

    name: str  # TrainConfig field
    type: type  # int, float or str
    default: Any
    help: str
    label: str  # dock label
    flag: str  # CLI flag
    lo: float | None = None  # inclusive bounds for numbers
    hi: float | None = None
    choices: tuple = ()  # the only allowed values (strings or numbers)
    suggestions: tuple = ()  # values offered in the dock's drop-down (any in range allowed)
    step: float = 1
    decimals: int = 2
    expert: bool = False  # in the dock's "Expert" section

    def problem(self, value: Any) -> str | None:
        """Why ``value`` is not allowed, or None."""
        if self.type in (int, float):
            if isinstance(value, bool) or not isinstance(value, int | float):
                return f"expected a number, got {value!r}"
            if self.type is int and value != int(value):
                return f"expected an integer, got {value!r}"
            if not math.isfinite(value):
                return f"expected a finite number, got {value!r}"
        elif not isinstance(value, self.type):
            return f"expected {self.type.__name__}, got {value!r}"
        if self.choices and value not in self.choices:
            return f"{value!r} is not one of {', '.join(map(str, self.choices))}"
        if self.lo is not None and value < self.lo:
            return f"{value!r} is below the minimum {self.lo:g}"
        if self.hi is not None and value > self.hi:
            return f"{value!r} is above the maximum {self.hi:g}"
        return None

    @property
    def dest(self) -> str:
        """argparse's attribute name for :attr:`flag`."""
        return self.flag.lstrip("-").replace("-", "_")


S = Setting
SETTINGS: tuple[Setting, ...] = (
    S("patch_size", int, 64, "square training patches (px); the study used 64", "Patch size",
      "--patch-size", 16, 1024, suggestions=(32, 64, 128)),
    S("patches_per_image", int, 64, "patches cut from every frame (a validation fraction of "
      "them is kept aside)", "Patches/image", "--patches-per-image", 1, 4096, step=8),
    S("epochs", int, 50, "passes of steps_per_epoch batches (with a time budget: the most "
      "epochs)", "Epochs", "--epochs", 1, 100_000),
    S("steps_per_epoch", int, 100, "batches per epoch (with a time budget: the most per "
      "epoch)", "Steps/epoch", "--steps", 1, 100_000, step=10),
    S("batch_size", int, 16, "patches per batch (study: 16)", "Batch size", "--batch-size",
      1, 4096),
    S("learning_rate", float, 4e-4, "Adam learning rate (study: 4e-4)", "Learning rate",
      "--lr", 1e-7, 0.5, step=1e-4, decimals=6),
    S("augment", str, "none", "random flips and 90° rotations of each training patch pair "
      "(8x more distinct patches at no cost; no gain measured on W2S with 2 or 80 training "
      "fields)", "Augment", "--augment", choices=AUGMENTS),
    S("seed", int, 0, "random seed for patches and initial weights", "Seed", "--seed",
      0, 2**31 - 1),
    S("minutes", float, 0.0, "time budget in minutes, warm-up included (0 = off): epochs x "
      "steps and a cosine learning-rate decay are fitted to it and the best model on "
      "validation is kept", "Train for", "--minutes", 0, 10_000, step=1, decimals=1),
    S("precision", str, "auto", "numeric precision of the U-Net (last layer and losses stay "
      "float32); auto = bfloat16 on CPUs with AVX512-BF16/AMX and on GPUs that support it, "
      "float16 on older GPUs, else float32", "Precision", "--precision", choices=PRECISIONS),
    S("unet_n_depth", int, 2, "U-Net depth (poolings); CSBDeep default 2", "U-Net depth",
      "--unet-depth", 1, 5, expert=True),
    S("unet_n_first", int, 32, "filters in the first U-Net layer (CSBDeep: 32)",
      "First-layer filters", "--unet-first", 4, 256, step=4, expert=True),
    S("unet_kern_size", int, 3, "convolution kernel size (CSBDeep and the study: 5; 3 trains "
      "~2x faster on a CPU)", "Kernel size", "--unet-kernel", choices=(3, 5, 7), expert=True),
    S("val_fraction", float, 0.2, "fraction of patches kept for validation",
      "Validation fraction", "--val-fraction", 0.01, 0.9, step=0.05, expert=True),
    S("reduce_lr_patience", int, 10, "halve the learning rate after this many epochs without "
      "improvement (0 = never; off with a time budget, which decays it)",
      "Reduce LR patience", "--reduce-lr-patience", 0, 1000, expert=True),
    S("norm_pmin", float, 2.0, "low percentile for normalising inputs", "Norm. low %",
      "--norm-pmin", 0, 100, step=0.5, expert=True),
    S("norm_pmax", float, 99.8, "high percentile for normalising inputs", "Norm. high %",
      "--norm-pmax", 0, 100, step=0.1, expert=True),
)
#: Settings of a training *run*, not of one model (not TrainConfig fields): ``seeds`` trains
#: that many models per loss, seeds ``seed`` … ``seed + seeds − 1``; each model's own config
#: records its seed. CLI only for now (the dock: "–" in the table).
SEEDS = S("seeds", int, 1, "models per loss, trained in turn with seeds seed … seed+N−1 "
          "(each folder records its seed); 2 or more let evaluate separate the loss from the "
          "seed", "Seeds", "--seeds", 1, 100)
RUN_SETTINGS: tuple[Setting, ...] = (SEEDS,)
del S
BY_NAME: dict[str, Setting] = {s.name: s for s in SETTINGS}

#: Named sets of settings. ``fast`` is the default (the records' defaults); ``study`` is the
#: paper's (batch 16, lr 4e-4, 64 px patches, 5x5 kernels, float32).
PRESETS: dict[str, dict[str, Any]] = {
    "fast": {},
    "study": {"batch_size": 16, "learning_rate": 4e-4, "patch_size": 64, "unet_kern_size": 5,
              "unet_n_first": 32, "unet_n_depth": 2, "precision": "float32",
              "augment": "none"},
}
DEFAULT_PRESET = "fast"
#: What each preset is for (its settings are listed from :data:`PRESETS`).
PRESET_PURPOSE = {"fast": "the records' defaults, quick on a CPU",
                  "study": "the paper's settings"}


def preset_summary(name: str) -> str:
    """``study: the paper's settings (batch size 16, …, precision float32)``: what the preset
    is for and every setting it sets."""
    def shown(key: str, value: Any) -> str:
        s = BY_NAME[key]
        text = f"{value:g}" if s.type is not str else value
        label = s.label if not s.label[1:2].islower() else s.label[0].lower() + s.label[1:]
        return f"{label} {text}"

    values = [shown(k, v) for k, v in PRESETS[name].items()]
    return f"{name}: {PRESET_PURPOSE[name]}" + (f" ({', '.join(values)})" if values else "")


def presets_help() -> str:
    """Every preset's :func:`preset_summary`, for the CLI's and the dock's help."""
    return "; ".join(preset_summary(p) + (" (default)" if p == DEFAULT_PRESET else "")
                     for p in PRESETS)


def defaults(preset: str = DEFAULT_PRESET) -> dict[str, Any]:
    """Every setting's value in ``preset``."""
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of: {', '.join(PRESETS)}")
    return {**{s.name: s.default for s in SETTINGS}, **PRESETS[preset]}


def problems(values: Mapping[str, Any]) -> dict[str, str]:
    """Per-setting problems of ``values`` (single settings, then combinations)."""
    out = {}
    for name, value in values.items():
        if name in BY_NAME and (p := BY_NAME[name].problem(value)) is not None:
            out[name] = p
    v = {**defaults(), **values}
    if ("patch_size" not in out and "unet_n_depth" not in out
            and v["patch_size"] % 2 ** v["unet_n_depth"]):
        out["patch_size"] = (f"{v['patch_size']} is not a multiple of 2**unet_n_depth = "
                             f"{2 ** v['unet_n_depth']}")
    if "norm_pmin" not in out and "norm_pmax" not in out and v["norm_pmin"] >= v["norm_pmax"]:
        out["norm_pmin"] = f"{v['norm_pmin']!r} must be below norm_pmax={v['norm_pmax']!r}"
    return out


# ----------------------------------------------------------------------------- docs


def settings_table() -> str:
    """The Markdown table of every setting (docs/settings.md is this, checked by a test;
    ``python -m napari_care_losses.config.settings`` prints it)."""
    def allowed(s: Setting) -> str:
        if s.choices:
            return ", ".join(f"`{c}`" for c in s.choices)
        fmt = (lambda v: f"{int(v)}") if s.type is int else (lambda v: f"{v:g}")
        return f"{fmt(s.lo)} – {fmt(s.hi)}"

    lines = ["| setting | CLI flag | dock | default (`fast`) | `study` | allowed | meaning |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for s in (*SETTINGS, *RUN_SETTINGS):
        study = PRESETS["study"].get(s.name, s.default)
        dock = "–" if s in RUN_SETTINGS else s.label + (" (expert)" if s.expert else "")
        lines.append(f"| `{s.name}` | `{s.flag}` | {dock} "
                     f"| {s.default} | {study} | {allowed(s)} | {s.help} |")
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------- CLI

#: Loss parameters shared by all losses that have them (``--sigma1`` etc.), at import
#: (:func:`napari_care_losses.losses.loss_params` is always current).
LOSS_PARAMS: tuple[str, ...] = tuple(loss_params())


def number(kind: type, minimum: float | None = None, inclusive: bool = True):
    """The one argparse ``type`` for numbers: ``kind`` (int or float), finite and, if
    ``minimum`` is given, >= (``inclusive``) or > it; else "must be …, got 'x'"."""
    noun = "an integer" if kind is int else "a number"
    text = noun if minimum is None else f"{noun} {'>=' if inclusive else '>'} {minimum:g}"

    def parse(value: str):
        try:
            out = kind(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {text}, got {value!r}") from None
        ok = math.isfinite(out) and (minimum is None or out > minimum
                                     or (inclusive and out == minimum))
        if not ok:
            raise argparse.ArgumentTypeError(f"must be {text}, got {value!r}")
        return out

    parse.__name__ = kind.__name__
    return parse


def _checked(s: Setting):
    """argparse ``type`` of a run setting: :func:`number`, then the record's bounds."""
    parse_number = number(s.type)

    def parse(value: str):
        out = parse_number(value)
        if (why := s.problem(out)) is not None:
            raise argparse.ArgumentTypeError(why)
        return out

    parse.__name__ = s.type.__name__
    return parse


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--preset``, one flag per setting and one per loss parameter to ``parser``.

    Flags default to None: unset flags take the preset's value (``config.config_from_args``);
    the run settings (``--seeds``) have their own default.
    """
    parser.add_argument("--preset", choices=tuple(PRESETS), default=DEFAULT_PRESET,
                        help=f"starting values of every setting: {presets_help()}")
    for s in SETTINGS:
        study = PRESETS["study"].get(s.name)
        extra = f"; study: {study}" if study is not None and study != s.default else ""
        kw: dict[str, Any] = {"default": None, "dest": s.name,
                              "help": f"{s.help} (default: {s.default}{extra})"}
        if s.choices:
            kw["choices"] = s.choices
        if s.type is str:
            kw["type"] = str
        else:
            kw["type"] = number(s.type)
            kw["metavar"] = "N" if s.type is int else "X"
        parser.add_argument(s.flag, **kw)
    for s in RUN_SETTINGS:  # not preset values: their own default
        parser.add_argument(s.flag, type=_checked(s), default=s.default, dest=s.name,
                            metavar="N", help=f"{s.help} (default: {s.default})")
    for p in loss_params().values():
        users = ", ".join(r.name for r in param_users(p.name))
        parser.add_argument(f"--{p.name}", type=number(float), default=None, metavar="X",
                            help=f"loss parameter of {users}: {p.tip.replace('%', '%%')} "
                                 f"(default: {p.default:g}, {p.lo:g} to {p.hi:g})")


def loss_specs(args: argparse.Namespace, patch_size: int, note: bool = True) -> list[LossSpec]:
    """One :class:`LossSpec` per ``--loss`` with the loss-parameter flags that apply to it;
    ``note``: say which given flags apply to none of them."""
    names = getattr(args, "loss", None) or ["laplace"]
    given = {k: getattr(args, k) for k in loss_params() if getattr(args, k, None) is not None}
    specs = []
    for name in names:
        takes = loss_record(name).defaults
        params = {k: v for k, v in given.items() if k in takes}
        specs.append(LossSpec.create(name, params, patch_size))
    unused = [k for k in given if not any(k in s.params for s in specs)]
    if unused and note:
        verb = "applies" if len(unused) == 1 else "apply"
        print(f"note: {', '.join('--' + k for k in unused)} {verb} to none of the chosen "
              "losses; ignored")
    return specs


# ----------------------------------------------------------------------------- precision


def _cpu_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def resolve_precision(precision: str) -> str:
    """``auto`` → bfloat16 on CPUs with AVX512-BF16/AMX-BF16 and on GPUs of compute capability
    8.0+, float16 on older GPUs (7.0+), float32 otherwise. Imports TensorFlow for ``auto``."""
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; choose one of: "
                         f"{', '.join(PRECISIONS)}")
    if precision != "auto":
        return precision
    from .._tf import ensure_tensorflow

    ensure_tensorflow()
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        try:
            cc = tf.config.experimental.get_device_details(gpus[0]).get("compute_capability")
        except (RuntimeError, ValueError):
            cc = None
        if cc and tuple(cc) >= (8, 0):
            return "bfloat16"
        return "float16" if cc and tuple(cc) >= (7, 0) else "float32"
    return "bfloat16" if _cpu_flags() & {"avx512_bf16", "amx_bf16"} else "float32"


#: Keras dtype policy of each precision.
KERAS_POLICY = {"float32": "float32", "bfloat16": "mixed_bfloat16", "float16": "mixed_float16"}


if __name__ == "__main__":
    print(settings_table(), end="")

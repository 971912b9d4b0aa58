"""One record per training loss: everything the rest of the package knows about a loss.

A :class:`LossRecord` holds a loss's name, labels, tips, parameters (default, bounds, tip),
whether it is probabilistic, its citation and its rank in the panels. From the records come
:class:`~napari_care_losses.losses.LossName`, the labels and default parameters, parameter
validation, the CLI's loss-parameter flags, the training dock's loss check boxes and
parameter boxes, the panel order of the compare dock and the loss table of the docs.
The Keras form and the NumPy reference of each loss are registered by name
(:class:`Implementations`) in :mod:`.keras_losses` and :mod:`.reference`.

Adding a loss: one :func:`register` call at the end of this module, one
``@KERAS_FORMS.register(name)`` function in :mod:`.keras_losses` and one
``@REFERENCES.register(name)`` function in :mod:`.reference`; then regenerate the docs'
tables (``python -m napari_care_losses.losses.table --write``). A loss with a 3D form
(volumes ``(B, Z, Y, X, C)``) says ``dims=(2, 3)`` and its ``definition_3d``; its functions
take ``grid`` (a :class:`Grid`: dimensions, patch per axis, voxel size) unless they are
elementwise, and lengths (``LossParam(per_axis=True)``) scale per axis with the voxel size.

TensorFlow-free (imported by napari and the CLI before any training starts).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .grid import Grid
from .kernels import SSIM_WINDOW


@dataclass(frozen=True)
class LossParam:
    """A number a loss is configured with. Parameters of the same name in several losses are
    one parameter (one CLI flag, one dock box): their records must hold equal ones."""

    name: str  # key in LossSpec.params, CLI flag --NAME
    default: float
    lo: float  # inclusive bounds
    hi: float
    tip: str  # CLI help and dock tooltip
    label: str  # dock label
    step: float | None = None  # dock spin-box step (None: 0.02 up to 1, else 0.1)
    #: a length in pixels along X; in 3D, ``value * dx / d`` pixels along an axis of voxel
    #: size ``d`` (:meth:`Grid.per_axis`): along Z ``value / anisotropy``
    per_axis: bool = False

    @property
    def spin_step(self) -> float:
        if self.step is not None:
            return self.step
        return 0.02 if self.hi <= 1 else 0.1

    def problem(self, value: float) -> str | None:
        """Why ``value`` is out of bounds, or None."""
        if not self.lo <= value <= self.hi:
            return f"{self.name} must lie in [{self.lo:g}, {self.hi:g}], got {value:g}"
        return None


#: ``check(params, grid) -> problem or None``: what bounds alone cannot say, given the
#: spatial :class:`Grid` (dimensions, patch shape, voxel size).
Check = Callable[[Mapping[str, float], Grid], str | None]


@dataclass(frozen=True)
class LossRecord:
    """A training loss as configs, the CLI, the docks and the docs know it."""

    name: str  # key in configs, CLI and model folders
    label: str  # full name (tooltips, docs)
    short: str  # table columns, panel titles, check boxes (LOSS_LABELS)
    tip: str  # what it does, one line (dock tooltip)
    definition: str  # what it computes (docs table; plain text)
    rank: int  # panel and check-box order (lowest first)
    params: tuple[LossParam, ...] = ()
    probabilistic: bool = False  # the network predicts a distribution (mean and scale)
    citation: str = ""
    check: Check | None = None
    dims: tuple[int, ...] = (2,)  # spatial dimensions it has a form for (2D, 3D)
    definition_3d: str = ""  # what it computes on volumes (docs table), when 3 in dims

    @property
    def member(self) -> str:
        """Its :class:`~napari_care_losses.losses.LossName` member name (``fft+bandpass``
        → ``FFT_BANDPASS``)."""
        return "".join(c if c.isalnum() else "_" for c in self.name).upper()

    @property
    def defaults(self) -> dict[str, float]:
        return {p.name: p.default for p in self.params}

    def grid(self, patch_size: int | Sequence[int] | None = None, ndim: int = 2,
             voxel_size: Sequence[float] | None = None) -> Grid:
        """The checked :class:`Grid` this loss is evaluated on; ``ValueError`` (one line,
        naming the loss) for a dimension it has no form for or a bad patch / voxel size."""
        try:
            grid = Grid.make(ndim, patch_size, voxel_size)
        except ValueError as exc:
            raise ValueError(f"loss {self.name!r}: {exc}") from None
        if grid.ndim not in self.dims:
            has = " and ".join(f"{d}D" for d in self.dims)
            raise ValueError(f"loss {self.name!r} has no {grid.ndim}D form (only {has})")
        return grid

    def validate(self, params: Mapping[str, Any] | None = None,
                 patch_size: int | Sequence[int] | None = None, *, ndim: int = 2,
                 voxel_size: Sequence[float] | None = None) -> dict[str, float]:
        """``params`` merged into the defaults and checked (bounds, then :attr:`check` on
        the :meth:`grid`); ``ValueError`` naming the loss and the parameter.
        ``patch_size``: one edge or one per spatial axis (``(Z, Y, X)`` in 3D)."""
        grid = self.grid(patch_size, ndim, voxel_size)
        merged = self.defaults
        for key, value in (params or {}).items():
            if key not in merged:
                allowed = ", ".join(merged) or "none"
                raise ValueError(f"loss {self.name!r} has no parameter {key!r} "
                                 f"(allowed: {allowed})")
            try:
                merged[key] = float(value)
            except (TypeError, ValueError):
                raise ValueError(f"loss {self.name!r}: parameter {key!r} must be a "
                                 "number") from None
        for p in self.params:
            if (why := p.problem(merged[p.name])) is not None:
                raise ValueError(f"loss {self.name!r}: {why}")
        if self.check is not None and (why := self.check(merged, grid)) is not None:
            raise ValueError(f"loss {self.name!r}: {why}")
        return merged


# ----------------------------------------------------------------------------- registry

#: Every registered loss by name, in registration order (use :func:`loss_records`).
LOSSES: dict[str, LossRecord] = {}


def loss_records() -> tuple[LossRecord, ...]:
    """The registered losses in panel order (rank, then name)."""
    return tuple(sorted(LOSSES.values(), key=lambda r: (r.rank, r.name)))


def loss_params() -> dict[str, LossParam]:
    """Every loss parameter by name (one per name), in panel order of the losses."""
    out: dict[str, LossParam] = {}
    for record in loss_records():
        for p in record.params:
            out.setdefault(p.name, p)
    return out


def param_users(name: str) -> tuple[LossRecord, ...]:
    """The losses that take parameter ``name``."""
    return tuple(r for r in loss_records() if name in r.defaults)


def loss_record(name: str) -> LossRecord:
    """The record of a user string: a name, its ``+`` written ``_``, a label (any case);
    ``ValueError`` listing the valid names."""
    key = str(name).strip().lower()
    for record in loss_records():
        if key in (record.name, record.name.replace("+", "_"), record.short.lower(),
                   record.label.lower()):
            return record
    valid = ", ".join(r.name for r in loss_records())
    raise ValueError(f"unknown loss {name!r}; choose one of: {valid}")


def register(record: LossRecord) -> LossRecord:
    """Add ``record`` to :data:`LOSSES`; its name must be new and each parameter equal to
    the registered parameters of the same name."""
    if record.name in LOSSES:
        raise ValueError(f"loss {record.name!r} is registered twice")
    if 2 not in record.dims or not set(record.dims) <= {2, 3}:
        raise ValueError(f"loss {record.name!r}: dims must hold 2 and may hold 3, got "
                         f"{record.dims}")
    if 3 in record.dims and not record.definition_3d:
        raise ValueError(f"loss {record.name!r} has a 3D form: give its definition_3d")
    known = loss_params()
    for p in record.params:
        if p.name in known and known[p.name] != p:
            users = ", ".join(r.name for r in param_users(p.name))
            raise ValueError(f"loss {record.name!r}: parameter {p.name!r} differs from the one "
                             f"of {users} (one name is one CLI flag and one dock box)")
    LOSSES[record.name] = record
    return record


class Implementations:
    """One kind of implementation of every loss (its Keras form, its NumPy reference),
    registered by loss name and found from the record.

    A function takes ``leading`` positional arguments (e.g. ``y_true, y_pred``), then the
    record's parameters by name (defaults, if given, must be the record's) and optionally
    ``patch_size`` (as given) and ``grid`` (the checked :class:`Grid`: dimensions, patch
    shape, voxel size). A function without ``grid`` works on any number of spatial axes.
    """

    def __init__(self, kind: str, leading: int = 0) -> None:
        self.kind, self.leading = kind, leading
        self.functions: dict[str, Callable] = {}

    def register(self, name: str) -> Callable[[Callable], Callable]:
        """Decorator: ``fn`` is the implementation of loss ``name``."""
        record = loss_record(name)

        def decorate(fn: Callable) -> Callable:
            self._check(record, fn)
            if record.name in self.functions:
                raise ValueError(f"loss {record.name!r} has two {self.kind}s")
            self.functions[record.name] = fn
            return fn

        return decorate

    def _check(self, record: LossRecord, fn: Callable) -> None:
        sig = inspect.signature(fn).parameters
        takes = set(list(sig)[self.leading:]) - {"patch_size", "grid"}
        if takes != set(record.defaults):
            raise TypeError(f"{self.kind} {fn.__name__} of loss {record.name!r} takes "
                            f"{sorted(takes)}, the record {sorted(record.defaults)}")
        for p in record.params:
            default = sig[p.name].default
            if default is not inspect.Parameter.empty and default != p.default:
                raise TypeError(f"{self.kind} {fn.__name__}: default {p.name}={default} is not "
                                f"the record's {p.default}")

    def call(self, name: str, params: Mapping[str, Any] | None,
             patch_size: int | Sequence[int] | None, *args: Any, ndim: int = 2,
             voxel_size: Sequence[float] | None = None) -> Any:
        """Validate ``params`` against the record of ``name`` on the grid (``ndim``,
        ``patch_size``, ``voxel_size``) and call its implementation with ``args``, the full
        parameters and, if it takes them, ``patch_size`` and ``grid``."""
        record = loss_record(name)
        kwargs: dict[str, Any] = record.validate(params, patch_size, ndim=ndim,
                                                 voxel_size=voxel_size)
        fn = self.functions.get(record.name)
        if fn is None:
            raise NotImplementedError(f"loss {record.name!r} has no {self.kind} registered")
        takes = inspect.signature(fn).parameters
        if "patch_size" in takes:
            kwargs["patch_size"] = patch_size
        if "grid" in takes:
            kwargs["grid"] = record.grid(patch_size, ndim, voxel_size)
        return fn(*args, **kwargs)


# ----------------------------------------------------------------------------- the losses


def _where(grid: Grid, need: tuple[int, ...], bad: list[str]) -> str:
    return ", ".join(f"{n} px along {a} (patch {p} px)"
                     for a, n, p in zip(grid.axes, need, grid.patch, strict=True) if a in bad)


def _z_hint(grid: Grid, bad: list[str]) -> str:
    if "Z" not in bad:
        return ""
    return (f"; along Z lengths are divided by the anisotropy dz/dx = {grid.anisotropy:g}"
            + (" (no voxel size given: isotropic)" if grid.voxel_size is None else ""))


def _square_2d(grid: Grid) -> bool:
    return grid.ndim == 2 and grid.patch is not None and len(set(grid.patch)) == 1


def _bandpass_problem(p: Mapping[str, float], grid: Grid) -> str | None:
    s1, s2 = p["sigma1"], p["sigma2"]
    if not 0 < s1 < s2:
        return f"need 0 < sigma1 < sigma2 for a bandpass, got {s1}, {s2}"
    radii = grid.gaussian_radii(s2)
    bad = grid.too_small(radii)
    if not bad:
        return None
    if _square_2d(grid):
        return (f"sigma2={s2} needs a kernel of radius {radii[0]} px, larger than "
                f"the {grid.patch[0]} px patches; lower sigma2 or use larger patches")
    return (f"sigma2={s2:g} needs a kernel radius below the patch: radius "
            f"{_where(grid, radii, bad)}; lower sigma2 or use larger patches along "
            f"{'/'.join(bad)}{_z_hint(grid, bad)}")


def _window_problem(p: Mapping[str, float], grid: Grid) -> str | None:
    taps = tuple(2 * r + 1 for r in grid.ssim_window()[1])
    bad = grid.too_small(grid.ssim_window()[1], taps=True)
    if not bad:
        return None
    if _square_2d(grid):
        return f"needs patches of at least {SSIM_WINDOW[0]} px, got {grid.patch[0]}"
    return (f"the SSIM window (σ {SSIM_WINDOW[1]:g} px, {SSIM_WINDOW[0]} taps along X) needs "
            f"{_where(grid, taps, bad)}; use larger patches along {'/'.join(bad)}"
            f"{_z_hint(grid, bad)}")


SIGMA1 = LossParam("sigma1", 0.5, 0.1, 20.0, "band-pass: inner Gaussian sigma (px), below "
                   "sigma2", "BP σ1", per_axis=True)
SIGMA2 = LossParam("sigma2", 5.0, 0.2, 30.0, "band-pass: outer Gaussian sigma (px)", "BP σ2",
                   per_axis=True)
BOTH = (2, 3)
PER_VOXEL = " over all voxels (the mean of its 2D values over the Z slices)"
CARE = "Weigert et al., Content-aware image restoration, Nature Methods 2018"
ZHAO = "Zhao et al., Loss functions for image restoration with neural networks, IEEE TCI 2017"

register(LossRecord(
    "laplace", "Laplace", "Laplace",
    "CARE's probabilistic loss (Laplace negative log-likelihood); also predicts a per-pixel "
    "uncertainty",
    "CARE's probabilistic loss: mean of |y − μ|/σ + log σ (2 output channels)",
    rank=10, probabilistic=True, citation=CARE, dims=BOTH,
    definition_3d="as in 2D: mean of |y − μ|/σ + log σ" + PER_VOXEL))
register(LossRecord(
    "fft", "Fourier (FFT)", "FFT", "L1 distance of the Fourier spectra",
    "mean |FFT2(restored) − FFT2(gt)| with orthonormal FFT (scale independent of patch size)",
    rank=20, dims=BOTH,
    definition_3d="mean |FFT3(restored) − FFT3(gt)|, orthonormal FFT over Z, Y and X"))
register(LossRecord(
    "bandpass", "Band-pass", "BP", "L1 after a difference-of-Gaussians band-pass (σ1 < σ2)",
    "mean |DoG(gt) − DoG(restored)|, DoG = G(σ1) − G(σ2)",
    rank=30, params=(SIGMA1, SIGMA2), check=_bandpass_problem, dims=BOTH,
    definition_3d="mean |DoG(gt) − DoG(restored)| with separable 3D Gaussians (reflect), σ "
    "along an axis of voxel size d: σ·dx/d (along Z σ/anisotropy, anisotropy = dz/dx, 1 "
    "without a voxel size); each kernel radius (4σ per axis) below the patch along its axis"))
register(LossRecord(
    "fft+bandpass", "FFT + band-pass", "FFT+BP", "weighted sum of the FFT and band-pass losses",
    "w·fft + (1 − w)·bandpass",
    rank=40, params=(LossParam("weight", 0.5, 0.0, 1.0, "FFT+BP: weight of the FFT term",
                               "FFT+BP w"), SIGMA1, SIGMA2),
    check=_bandpass_problem, dims=BOTH,
    definition_3d="w·fft + (1 − w)·bandpass, both in 3D"))
register(LossRecord(
    "mae", "Mean absolute error", "MAE", "mean absolute error (L1)", "mean |restored − gt|",
    rank=50, dims=BOTH, definition_3d="mean |restored − gt|" + PER_VOXEL))
register(LossRecord(
    "mse", "Mean squared error", "MSE", "mean squared error (L2)", "mean (restored − gt)²",
    rank=60, dims=BOTH, definition_3d="mean (restored − gt)²" + PER_VOXEL))
register(LossRecord(
    "ssim", "SSIM", "SSIM", "1 − SSIM", "1 − SSIM (Gaussian window 11, σ 1.5)", rank=70,
    citation="Wang et al., Image quality assessment: from error visibility to structural "
             "similarity, IEEE TIP 2004", check=_window_problem, dims=BOTH,
    definition_3d="1 − SSIM with a separable 3D Gaussian window: σ 1.5 px and radius 5 px "
    "along X, both ×dx/d along an axis of voxel size d (along Z ÷ anisotropy dz/dx; radius "
    "rounded half up); valid (unpadded) along every axis"))
register(LossRecord(
    "msssim_l1", "MS-SSIM + L1", "MS-SSIM+L1", "α·(1 − MS-SSIM) + (1 − α)·L1 (Zhao et al.)",
    "Zhao et al.'s mix α(1 − MS-SSIM) + (1 − α)·L1, with Wang et al.'s dyadic MS-SSIM (as "
    "many scales as fit the patch) and a plain L1 (Zhao et al. weight the L1 by a Gaussian)",
    rank=80, params=(LossParam("alpha", 0.84, 0.0, 1.0, "MS-SSIM+L1: weight of the MS-SSIM "
                               "term", "MS-SSIM α"),),
    citation=ZHAO, check=_window_problem, dims=BOTH,
    definition_3d="as in 2D with the 3D SSIM window; the scales follow from the Y/X patch; "
    "each scale halves Y and X (2×2 mean), and Z too (2×2×2 mean) only while the halved Z "
    "patch still holds the Z window, else Z is kept (short stacks are downsampled in Y/X "
    "only)"))

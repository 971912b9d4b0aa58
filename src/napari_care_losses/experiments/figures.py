"""Report figures, drawn with Matplotlib's Agg canvas (no pyplot state, no display, no Qt).

* :func:`loss_curves`: training and validation loss of every trained model;
* :func:`score_plot`: box + strip plot of per-image PSNR and SSIM per method;
* :func:`crop_panel`: the same crop of input, ground truth and every restoration;
* :func:`spectra_plot`: radially averaged power spectra (:mod:`napari_care_losses.restore.spectra`)
  of the restorations vs ground truth.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

GT_LABEL = "GT"


def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp.png")
    fig.savefig(tmp, bbox_inches="tight")
    tmp.replace(path)
    return path


def display_images(images: Mapping[str, np.ndarray], gt: np.ndarray) -> dict[str, np.ndarray]:
    """Put every image on the ground truth's normalised scale (affine fit), as scored."""
    from ..restore.metrics import affine_fit, normalize_gt

    gt_n = normalize_gt(gt)
    out = {label: affine_fit(img, gt_n) for label, img in images.items()}
    out[GT_LABEL] = gt_n
    return out


def loss_curves(models: Sequence[Mapping], path: Path, title: str = "") -> Path | None:
    """One panel per model (``title``, ``history`` with ``loss``/``val_loss``)."""
    models = [m for m in models if m.get("history", {}).get("loss")]
    if not models:
        return None
    ncol = min(4, len(models))
    nrow = math.ceil(len(models) / ncol)
    fig = _figure(3.2 * ncol, 2.4 * nrow)
    for i, m in enumerate(models):
        ax = fig.add_subplot(nrow, ncol, i + 1)
        h = m["history"]
        epochs = np.arange(1, len(h["loss"]) + 1)
        ax.plot(epochs, h["loss"], "o-", ms=3, label="train")
        if h.get("val_loss"):
            ax.plot(epochs, h["val_loss"], "s--", ms=3, label="validation")
        ax.set_title(m["title"], fontsize=9)
        ax.set_xlabel("epoch", fontsize=8)
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.tick_params(labelsize=7)
        if i == 0:
            ax.legend(fontsize=7)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, path)


def score_plot(scores: Mapping[str, Mapping[str, Sequence[float]]], path: Path,
               title: str = "") -> Path | None:
    """Box plots with the individual images overlaid (jittered), PSNR and SSIM side by side."""
    labels = [k for k, v in scores.items() if len(v["psnr"])]
    if not labels:
        return None
    fig = _figure(max(6.0, 1.1 * len(labels) * 2), 3.4)
    rng = np.random.default_rng(0)
    for j, (metric, name) in enumerate((("psnr", "PSNR (dB)"), ("ssim", "SSIM"))):
        ax = fig.add_subplot(1, 2, j + 1)
        data = [np.asarray(scores[k][metric], float) for k in labels]
        ax.boxplot(data, showfliers=False, widths=0.6)
        ax.set_xticks(range(1, len(labels) + 1), labels, rotation=45, ha="right", fontsize=8)
        for i, d in enumerate(data):
            ax.plot(i + 1 + rng.uniform(-0.15, 0.15, len(d)), d, "o", ms=3, alpha=0.7)
        ax.set_ylabel(name)
        ax.grid(axis="y", alpha=0.3)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, path)


def crop_window(shape: tuple[int, int], size: int = 128) -> tuple[slice, slice]:
    """A centred square window of at most ``size`` pixels a side."""
    s = min(size, *shape)
    y0, x0 = (shape[0] - s) // 2, (shape[1] - s) // 2
    return slice(y0, y0 + s), slice(x0, x0 + s)


def crop_panel(images: Mapping[str, np.ndarray], gt: np.ndarray, path: Path,
               psnr: Mapping[str, float] | None = None, title: str = "",
               size: int = 128) -> Path:
    """Input, GT and each restoration (same crop, GT-normalised display, PSNR in titles)."""
    shown = display_images(images, gt)
    order = [k for k in images if k == "Input"] + [GT_LABEL] + [k for k in images
                                                                 if k != "Input"]
    win = crop_window(gt.shape, size)
    ncol = min(len(order), 5)
    nrow = math.ceil(len(order) / ncol)
    fig = _figure(2.3 * ncol, 2.5 * nrow)
    for i, label in enumerate(order):
        ax = fig.add_subplot(nrow, ncol, i + 1)
        ax.imshow(np.clip(shown[label][win], 0, 1), cmap="magma", vmin=0, vmax=1,
                  interpolation="nearest")
        p = (psnr or {}).get(label)
        ax.set_title(label if p is None else f"{label}\n{p:.2f} dB", fontsize=9)
        ax.set_axis_off()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, path)


def mean_spectra(stacks: Mapping[str, np.ndarray], gt: np.ndarray, max_images: int = 8
                 ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Mean radial power spectrum per label (and GT) over up to ``max_images`` frames,
    each image first put on the GT's normalised scale (:func:`display_images`)."""
    from ..restore.spectra import radial_power_spectrum

    acc: dict[str, list] = {}
    for i in range(min(max_images, len(gt))):
        shown = display_images({k: v[i] for k, v in stacks.items()}, gt[i])
        for label, img in shown.items():
            spec = radial_power_spectrum(img)
            acc.setdefault(label, []).append((spec.freq, spec.power))
    return {k: (v[0][0], np.mean([p for _, p in v], axis=0)) for k, v in acc.items()}


def spectra_plot(spectra: Mapping[str, tuple[np.ndarray, np.ndarray]], path: Path,
                 title: str = "") -> Path | None:
    """Log-log spectra, with each method's ratio to the ground truth below."""
    if GT_LABEL not in spectra:
        return None
    fig = _figure(7.0, 5.5)
    ax, ax_r = fig.add_subplot(2, 1, 1), fig.add_subplot(2, 1, 2)
    f_gt, p_gt = spectra[GT_LABEL]
    for label, (f, p) in spectra.items():
        style = {"color": "k", "lw": 2, "ls": "--"} if label == GT_LABEL else {"lw": 1.2}
        ax.loglog(f, p, label=label, **style)
        if label != GT_LABEL and len(f) == len(f_gt):
            ax_r.semilogx(f, p / np.maximum(p_gt, 1e-30), label=label, lw=1.2)
    ax.set_ylabel("power")
    ax.legend(fontsize=7, ncol=2)
    ax.grid(alpha=0.3, which="both")
    ax_r.axhline(1, color="k", ls="--", lw=1)
    ax_r.set_yscale("log")
    ax_r.set_xlabel("spatial frequency (cycles/pixel)")
    ax_r.set_ylabel("power / GT power")
    ax_r.grid(alpha=0.3, which="both")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, path)

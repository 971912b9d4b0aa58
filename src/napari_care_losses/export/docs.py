"""What a bioimage.io model package says about its model, for people: the README
(documentation), the cover image and the citations (also used in ``rdf.yaml``)."""

from __future__ import annotations

from pathlib import Path, PureWindowsPath

import numpy as np

from ..models.folder import ModelFolder
from ..models.meta import DataInfo

CARE_CITE = ("Weigert et al., Content-aware image restoration: pushing the limits of "
             "fluorescence microscopy, Nature Methods 2018", "10.1038/s41592-018-0216-7")
LOSS_CITES = {
    "laplace": CARE_CITE,
    "ssim": ("Wang et al., Image quality assessment: from error visibility to structural "
             "similarity, IEEE TIP 2004", "10.1109/TIP.2003.819861"),
    "msssim_l1": ("Zhao et al., Loss functions for image restoration with neural networks, "
                  "IEEE TCI 2017", "10.1109/TCI.2016.2644865"),
}


#: the author of a package exported without one (the README says it is a placeholder)
PLACEHOLDER_AUTHOR = "unknown (placeholder)"


def file_names(data: DataInfo) -> DataInfo:
    """The training data's record with file names only: a path (``/home/me/low.tif``)
    becomes its name; anything else is kept."""
    def name(value):
        if isinstance(value, str) and ("/" in value or "\\" in value):
            return PureWindowsPath(value).name  # both separators
        return value

    return data.but(low=name(data.low), high=name(data.high),
                    extra={k: name(v) for k, v in data.extra.items()})


def cover_image(path: Path, low, restored, high, title: str) -> None:
    """Input, restoration and (when known) ground truth side by side, as a PNG."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    panels = [("input", low), ("restoration", restored)]
    if high is not None:
        panels.append(("ground truth", high))
    fig = Figure(figsize=(3 * len(panels) if len(panels) == 2 else 8, 4), dpi=80)
    for i, (name, img) in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), i + 1)
        lo, hi = np.percentile(img, [1, 99.8])
        ax.imshow(img, cmap="magma", vmin=lo, vmax=hi if hi > lo else lo + 1)
        ax.set_title(name)
        ax.axis("off")
    fig.suptitle(title)
    fig.savefig(path)


def documentation(folder: ModelFolder, test_source: str, probabilistic: bool,
                  authors: list[str] | None = None) -> str:
    """The package's README.md: inputs/outputs, training settings and data, validation
    history, software versions and citations."""
    cfg = folder.config
    settings = cfg.to_dict()
    loss = settings.pop("loss")
    lines = [f"# {folder.name}: CARE trained with the `{cfg.loss.name.value}` loss", "",
             "A 2D CARE U-Net (CSBDeep) for restoring low-light fluorescence images, trained "
             "with [napari-care-losses](https://github.com/CSBDeep/CSBDeep) "
             f"(status: {folder.status}).", "",
             "## Inputs and outputs", "",
             "* Input `input`: one 2D single-channel image, axes `batch, y, x, channel`; y and "
             f"x must be multiples of {2 ** cfg.unet_n_depth} (2^U-Net depth).",
             f"* Preprocessing: `scale_range` with percentiles {cfg.norm_pmin} / "
             f"{cfg.norm_pmax} over y and x, per sample (CSBDeep's PercentileNormalizer).",
             "* Outputs are in **normalised units** (the scale of the preprocessed input). "
             "napari-care-losses maps them back to the input's intensity scale as CSBDeep "
             "does: `restored = output * (p_hi - p_lo) + p_lo` (and `scale * (p_hi - p_lo)`), "
             "with `p_lo`, `p_hi` the input's percentiles above. This package does not do "
             "that step.", ""]
    if probabilistic:
        lines += ["* Laplace (probabilistic) model: output `mean` is the restoration, output "
                  "`scale` the per-pixel Laplace scale b (uncertainty), both normalised.", ""]
    else:
        lines += ["* Output `output`: the restoration.", ""]
    lines += ["## Training", "", f"* Loss: `{cfg.loss.name.value}` ({cfg.loss.label}), "
              f"parameters {loss.get('params') or {}}"]
    lines += [f"* `{k}`: {v}" for k, v in settings.items()]
    lines += ["", "## Training data", ""]
    lines += [f"* {k}: {v}" for k, v in file_names(folder.data_info).items()] or [
        "* not recorded"]
    lines += [f"* Test tensors: {test_source}."]
    hist = folder.history
    lines += ["", "## Validation", ""]
    if folder.best_val_loss is not None:
        lines.append(f"* Best validation loss: {folder.best_val_loss:.6g}")
    if hist:
        keys = list(hist)
        lines += ["", "| epoch | " + " | ".join(keys) + " |",
                  "| --- | " + " | ".join("---" for _ in keys) + " |"]
        for e in range(max(len(v) for v in hist.values())):
            row = [f"{hist[k][e]:.5g}" if e < len(hist[k]) else "" for k in keys]
            lines.append(f"| {e + 1} | " + " | ".join(row) + " |")
    versions = folder.versions
    if versions:
        lines += ["", "## Software", ""] + [f"* {k} {v}" for k, v in versions.items()]
    lines += ["", "## Authors", ""]
    if not authors or authors == [PLACEHOLDER_AUTHOR]:
        lines.append(f"* No author was given at export: \"{PLACEHOLDER_AUTHOR}\" in rdf.yaml "
                     "is a placeholder, not a person (napari-care-losses export --author "
                     "NAME names one).")
    else:
        lines += [f"* {a}" for a in authors]
    lines += ["", "## Citations", "", f"* CARE: {CARE_CITE[0]}, doi:{CARE_CITE[1]}"]
    cite = LOSS_CITES.get(cfg.loss.name.value)
    if cite and cite != CARE_CITE:
        lines.append(f"* Loss: {cite[0]}, doi:{cite[1]}")
    lines += ["* W2S data (if trained on it): Zhou et al., W2S: Microscopy Data with Joint "
              "Denoising and Super-Resolution for Widefield to SIM Mapping, ECCV Workshops "
              "2020.", ""]
    return "\n".join(lines)

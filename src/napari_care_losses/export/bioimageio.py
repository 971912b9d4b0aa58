"""Export a model folder as a bioimage.io model package (spec 0.5, ``keras_v3`` weights).

The package holds the network as a ``.keras`` file that loads with plain Keras 3 (CSBDeep's
``Lambda`` layer is replaced by a built-in ``Rescaling`` layer, and a Laplace network's
concatenated output is split into two outputs, ``mean`` and ``scale``), an ``rdf.yaml`` built
with :mod:`bioimageio.spec`, test tensors, a cover image and documentation (those two and
the citations come from :mod:`.docs`). Our own ``care_losses.json`` and CSBDeep's
``config.json`` travel as attachments, so
:func:`napari_care_losses.models.package_import.resolve_model_source` can turn the package back
into an ordinary model folder. TensorFlow and bioimageio are imported only inside functions.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import re
import shutil
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..io.tiff import atomic_path, refuse_existing
from ..models.folder import CSBDEEP_CONFIG, FINISHED, META_FILE, ModelFolder, write_meta
from ..models.meta import ModelMeta
from ..models.package_import import summary_errors
from .docs import (
    CARE_CITE,
    LOSS_CITES,
    PLACEHOLDER_AUTHOR,
    cover_image,
    documentation,
    file_names,
)

#: Marker in the package's ``config`` that says the package is ours.
MARKER = "napari-care-losses"
WEIGHTS_FILE = "weights.keras"
#: the author when none is given (``--author``); the package's README says it is a placeholder
DEFAULT_AUTHOR = PLACEHOLDER_AUTHOR
CROP = 256  # test tensor side (pixels), at most


class ExportError(ValueError):
    """An export that cannot be done; one clear line."""


@dataclass
class ExportResult:
    path: Path
    summary: Any  # bioimageio ValidationSummary of the package test
    test_source: str


def _need_bioimageio() -> None:
    # bioimageio.core's Keras backend defaults to torch; our networks are TensorFlow
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    from .._tf import ensure_tensorflow

    ensure_tensorflow()  # first, and quietly: bioimageio.core may import it otherwise
    try:
        import bioimageio.core  # noqa: F401
        import bioimageio.spec  # noqa: F401
    except ImportError:
        raise ExportError("bioimage.io packages need the optional extra: "
                          "pip install 'napari-care-losses[bioimageio]'") from None


# ---------------------------------------------------------------------------- network

def export_keras_model(care_keras_model, probabilistic: bool):
    """A copy of CSBDeep's network made of built-in Keras layers only (loads with
    ``keras.saving.load_model`` in safe mode); Laplace networks get two outputs."""
    import keras

    old = care_keras_model
    inp = keras.Input(shape=tuple(old.inputs[0].shape[1:]), name="input")
    new = {id(old.inputs[0]): inp}
    for layer in old.layers:
        if isinstance(layer, keras.layers.InputLayer):
            continue
        node = layer._inbound_nodes[0]
        if isinstance(layer, keras.layers.Lambda):  # CSBDeep: scale = softplus(...) + eps
            eps = float(np.asarray(layer.function(np.zeros(1, np.float32)))[0])
            clone = keras.layers.Rescaling(1.0, offset=eps, name=layer.name)
        else:
            clone = layer.__class__.from_config(layer.get_config())
        args = [new[id(t)] for t in node.input_tensors]
        out = clone(args if len(args) > 1 else args[0])
        clone.set_weights(layer.get_weights())
        new[id(node.output_tensors[0])] = out
    final = new[id(old.outputs[0])]
    if probabilistic:  # CSBDeep concatenates (mean, scale) on the channel axis
        last = old.layers[-1]
        if not isinstance(last, keras.layers.Concatenate):
            raise ExportError("unexpected Laplace network (no final Concatenate layer)")
        mean, scale = (new[id(t)] for t in last._inbound_nodes[0].input_tensors)
        return keras.Model(inp, [mean, scale], name="care_laplace")
    return keras.Model(inp, final, name="care")


def _save_and_check(model, path: Path, x: np.ndarray) -> None:
    import keras

    model.save(path)
    reloaded = keras.saving.load_model(path)
    a, b = model.predict(x, verbose=0), reloaded.predict(x, verbose=0)
    for u, v in zip(a if isinstance(a, list) else [a], b if isinstance(b, list) else [b],
                    strict=True):
        if not np.allclose(u, v, rtol=1e-5, atol=1e-6):
            raise ExportError(f"{path.name} does not reload to the same network")


# ---------------------------------------------------------------------------- test data

def test_crop(folder: ModelFolder) -> tuple[np.ndarray, np.ndarray | None, str]:
    """(low, high or None, description): a centre crop of frame 0 of the training file
    recorded with the model, else of the bundled W2S channel-0 test field 0."""
    from ..io.data import as_stack

    step = 2 ** folder.config.unet_n_depth
    low_file, high_file = folder.data_info.low, folder.data_info.high
    low = high = None
    if isinstance(low_file, str) and Path(low_file).is_file():
        try:
            stack = as_stack(low_file)
            low = np.asarray(stack.frame(0))
            stack.close()
            if isinstance(high_file, str) and Path(high_file).is_file():
                stack = as_stack(high_file)
                high = np.asarray(stack.frame(0))
                stack.close()
            source = f"frame 0 of the training data {Path(low_file).name}"
        except (OSError, ValueError):
            low = high = None
    if low is None or min(low.shape) < step or (high is not None and high.shape != low.shape):
        from ..sample_data import load_sample

        lows, highs = load_sample(0, "test")
        low, high = lows[0], highs[0]
        source = ("frame 0 of the bundled W2S channel-0 test sample (the training data "
                  "file was not available)")
    size = [min(CROP, s) // step * step for s in low.shape]
    y0, x0 = [(s - c) // 2 for s, c in zip(low.shape, size, strict=True)]
    sl = np.s_[y0:y0 + size[0], x0:x0 + size[1]]
    crop = f"centre crop {size[0]}x{size[1]} at y={y0}, x={x0}"
    return low[sl], (high[sl] if high is not None else None), f"{source}, {crop}"


def _percentiles(img: np.ndarray, pmin: float, pmax: float) -> tuple[float, float]:
    """CSBDeep's PercentileNormalizer: x_norm = (x - mi) / (ma - mi); after() maps back."""
    mi, ma = np.percentile(img, [pmin, pmax])
    return float(np.float32(mi)), float(np.float32(ma))


# ---------------------------------------------------------------------------- export

def _name(name: str | None, folder: ModelFolder) -> str:
    name = name or f"CARE {folder.config.loss.name.value} {folder.name}"
    name = re.sub(r"[^A-Za-z0-9_+\- ()]", "-", name)[:128]
    if len(name) < 5:
        raise ExportError(f"package name {name!r} is too short (5 characters at least)")
    return name


def export_package(model_dir: str | Path, output: str | Path, *, force: bool = False,
                   authors: list[str] | None = None, license: str = "BSD-3-Clause",
                   name: str | None = None, description: str | None = None) -> ExportResult:
    """Write ``output`` (a ``.zip`` bioimage.io model package) for a model folder, after
    bioimageio.core's own model test passed on it."""
    folder = ModelFolder.open(model_dir)
    if folder.status != FINISHED and not force:
        raise ExportError(f"model folder {folder.path}: status is '{folder.status}', not "
                          f"'finished'; use --force to export it anyway")
    folder.require_usable()
    output = Path(output)
    if output.suffix.lower() != ".zip":
        raise ExportError(f"{output}: the package name must end with .zip")
    if not output.parent.is_dir():
        raise ExportError(f"{output}: folder {output.parent} does not exist")
    _need_bioimageio()
    with tempfile.TemporaryDirectory(prefix="care-bioimageio-") as tmp:
        result = _build(folder, Path(tmp), output, authors=authors or [DEFAULT_AUTHOR],
                        license=license, name=_name(name, folder), description=description)
    return result


def _build(folder: ModelFolder, tmp: Path, output: Path, *, authors, license, name,
           description) -> ExportResult:
    import keras
    import tensorflow as tf
    import yaml
    from bioimageio.core import test_model
    from bioimageio.spec import ValidationContext, build_description

    from ..restore.predict import RestorationModel

    cfg = folder.config
    prob = cfg.loss.probabilistic
    model = RestorationModel(folder.path)
    low, high, test_source = test_crop(folder)
    restored, scale = model.restore_frame(low)
    mi, ma = _percentiles(low, cfg.norm_pmin, cfg.norm_pmax)
    alpha = np.float32(ma - mi)
    x = low.astype(np.float32)[None, ..., None]
    outs = {"mean" if prob else "output": ((restored - np.float32(mi)) / alpha)}
    if prob:
        outs["scale"] = scale / alpha
    # the network, as a .keras file that loads in safe mode
    net = export_keras_model(model.care.keras_model, prob)
    with contextlib.redirect_stdout(io.StringIO()):
        _save_and_check(net, tmp / WEIGHTS_FILE, (x - mi) / alpha)
    np.save(tmp / "test_input.npy", x)
    for key, arr in outs.items():
        np.save(tmp / f"test_{key}.npy", arr.astype(np.float32)[None, ..., None])
    cover_image(tmp / "cover.png", low, restored, high, f"{cfg.loss.label}: {folder.name}")
    meta_file, config_file = folder.record_files
    shutil.copy(config_file, tmp / config_file.name)
    record = ModelMeta.from_json(json.loads(meta_file.read_text()))
    write_meta(tmp, record.but(data=file_names(record.data)))  # names, not folders
    (tmp / "README.md").write_text(documentation(folder, test_source, prob, authors))

    content = _rdf(folder, tmp, list(outs), authors=authors, license=license, name=name,
                   description=description, test_source=test_source,
                   keras_version=keras.__version__, tf_version=tf.__version__)
    with contextlib.redirect_stdout(io.StringIO()):
        descr = build_description(content, context=ValidationContext(
            root=tmp, perform_io_checks=True))
    if descr.validation_summary.status == "failed":
        raise ExportError("bioimage.io rejects the description: "
                          + summary_errors(descr.validation_summary))
    (tmp / "rdf.yaml").write_text(yaml.safe_dump(content, sort_keys=False))
    staged = tmp / "package.zip"
    with zipfile.ZipFile(staged, "w", zipfile.ZIP_DEFLATED) as zf:
        for f in ["rdf.yaml", *_files(content)]:
            zf.write(tmp / f, f)
    with contextlib.redirect_stdout(io.StringIO()):
        summary = test_model(staged)
    if summary.status != "passed":
        raise ExportError(f"bioimage.io model test failed: {summary_errors(summary)}")
    publish(staged, output)
    return ExportResult(output, summary, test_source)


def publish(staged: Path, output: Path) -> None:
    """Copy the finished package to ``output`` through a hidden temporary file that is
    renamed, or removed on any failure (a full disk, a signal): never a partial package,
    never a temporary file left behind."""
    with atomic_path(output) as tmp_out:
        shutil.copyfile(staged, tmp_out)


def _file(tmp: Path, name: str) -> dict:
    return {"source": name, "sha256": hashlib.sha256((tmp / name).read_bytes()).hexdigest()}


def _files(content: dict) -> list[str]:
    """Every file the description names (relative to the package root)."""
    out = [content["documentation"]["source"], *(c["source"] for c in content["covers"]),
           *(a["source"] for a in content["attachments"]),
           content["weights"]["keras_v3"]["source"]]
    out += [t["test_tensor"]["source"] for t in (*content["inputs"], *content["outputs"])]
    return out


def _rdf(folder: ModelFolder, tmp: Path, out_ids: list[str], *, authors, license, name,
         description, test_source, keras_version, tf_version) -> dict:
    """The model description (bioimage.io spec 0.5) as YAML-ready content."""
    from bioimageio.spec.model.v0_5 import ModelDescr

    cfg = folder.config
    step = 2 ** cfg.unet_n_depth
    space = [{"type": "space", "id": a, "size": {"min": max(16, step), "step": step}}
             for a in ("y", "x")]
    inp = {"id": "input", "description": "low-light image (raw intensities)",
           "axes": [{"type": "batch"}, *space, {"type": "channel", "channel_names": ["raw"]}],
           "test_tensor": _file(tmp, "test_input.npy"),
           "data": {"type": "float32"},
           "preprocessing": [{"id": "scale_range", "kwargs": {
               "axes": ["y", "x"], "min_percentile": cfg.norm_pmin,
               "max_percentile": cfg.norm_pmax, "eps": 1e-20}}]}  # eps: CSBDeep's
    outputs = []
    for key in out_ids:
        text = ("Laplace scale (uncertainty), normalised units" if key == "scale"
                else "restoration, normalised units (see documentation)")
        outputs.append({
            "id": key, "description": text,
            "axes": [{"type": "batch"}, *[{"type": "space", "id": a, "size": {
                "tensor_id": "input", "axis_id": a}} for a in ("y", "x")],
                {"type": "channel", "channel_names": [key]}],
            "test_tensor": _file(tmp, f"test_{key}.npy"), "data": {"type": "float32"}})
    cites = [{"text": CARE_CITE[0], "doi": CARE_CITE[1]}]
    loss_cite = LOSS_CITES.get(cfg.loss.name.value)
    if loss_cite and loss_cite != CARE_CITE:
        cites.append({"text": loss_cite[0], "doi": loss_cite[1]})
    text = description or (
        f"CARE (CSBDeep 2D U-Net) restoration of low-light fluorescence images, trained with "
        f"the {cfg.loss.label} loss by napari-care-losses. Outputs are in normalised units.")
    return {
        "format_version": ModelDescr.implemented_format_version, "type": "model",
        "name": name, "description": text[:512],
        "authors": [{"name": a} for a in authors], "cite": cites, "license": license,
        "tags": ["denoising", "care", "csbdeep", "2d", "fluorescence-light-microscopy",
                 "napari-care-losses", f"loss-{cfg.loss.name.value}"],
        "documentation": _file(tmp, "README.md"), "covers": [_file(tmp, "cover.png")],
        "attachments": [_file(tmp, META_FILE), _file(tmp, CSBDEEP_CONFIG)],
        "inputs": [inp], "outputs": outputs,
        "weights": {"keras_v3": {**_file(tmp, WEIGHTS_FILE), "keras_version": keras_version,
                                 "backend": ["tensorflow", tf_version]}},
        "config": {
            "bioimageio": {"reproducibility_tolerance": [
                {"relative_tolerance": 1e-3, "absolute_tolerance": 1e-3}],
                "architecture_type": "2D U-Net (CARE)", "task": "denoising",
                "modality": "fluorescence microscopy"},
            MARKER: {"format": 1, "model_name": folder.name, "model_id": folder.model_id,
                     "meta_file": META_FILE,
                     "csbdeep_config": CSBDEEP_CONFIG, "weights": WEIGHTS_FILE,
                     "loss": cfg.loss.to_dict(), "probabilistic": cfg.loss.probabilistic,
                     "norm_pmin": cfg.norm_pmin, "norm_pmax": cfg.norm_pmax,
                     "test_data": test_source}},
    }


# ---------------------------------------------------------------------------- CLI

def add_parser(sub) -> None:
    p = sub.add_parser("export", help="write a bioimage.io model package (.zip) for a model")
    p.add_argument("model", type=Path, help="model folder written by 'train'")
    p.add_argument("-o", "--output", type=Path, required=True, help="package file NAME.zip")
    p.add_argument("--force", action="store_true",
                   help="export a model whose training did not finish (e.g. stopped)")
    p.add_argument("--author", action="append", default=None,
                   help="author name (repeatable); without it the package names the "
                        f"placeholder {DEFAULT_AUTHOR!r} and its README says so")
    p.add_argument("--license", default="BSD-3-Clause",
                   help="SPDX licence id (default BSD-3-Clause; e.g. CC-BY-4.0)")
    p.add_argument("--name", default=None, help="package name (default: from the model)")
    p.add_argument("--description", default=None, help="one-paragraph description")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the package file if it exists (default: refuse)")
    p.set_defaults(func=cmd_export)


def cmd_export(args) -> int:
    refuse_existing(args.output, overwrite=args.overwrite)
    result = export_package(args.model, args.output, force=args.force, authors=args.author,
                            license=args.license, name=args.name, description=args.description)
    if not args.author:
        print(f"note: no --author given; the package names the placeholder author "
              f"{DEFAULT_AUTHOR!r} (its README says so)")
    print(f"bioimage.io model test: {result.summary.status}")
    print(f"Wrote {result.path} (test tensors: {result.test_source})")
    return 0

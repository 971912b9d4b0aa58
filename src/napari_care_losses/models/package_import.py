"""Use a bioimage.io model package exported by napari-care-losses as a model folder.

:func:`resolve_model_source` returns a model folder unchanged; a package (``.zip``, or an
unpacked folder with ``rdf.yaml``) is validated with bioimageio.spec, checked to be ours,
and unpacked once into a cache folder that holds an ordinary model folder
(``care_losses.json``, CSBDeep's ``config.json`` and ``weights_best.h5`` re-created from the
package's ``.keras`` network), so it restores exactly as the model it was exported from.

This module imports only the standard library at import time (``predict`` imports it).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import shutil
import tempfile
import warnings
import zipfile
from pathlib import Path

from .folder import CSBDEEP_CONFIG, META_FILE, WEIGHTS_BEST, ModelFolder

MARKER = "napari-care-losses"  # same as export.bioimageio.MARKER
RDF_NAMES = ("rdf.yaml", "bioimageio.yaml")
CACHE_ENV = "NAPARI_CARE_LOSSES_CACHE"


class PackageError(ValueError):
    """A bioimage.io package that cannot be used as a model; one clear line."""


def cache_root() -> Path:
    root = os.environ.get(CACHE_ENV)
    return Path(root) if root else Path.home() / ".cache" / "napari-care-losses"


def is_package(path: str | Path) -> bool:
    """A ``.zip`` file, or a folder with ``rdf.yaml`` (and no CSBDeep weights: an unpacked
    package, not a model folder)."""
    p = Path(path)
    if p.is_file():
        return p.suffix.lower() == ".zip"
    return (p.is_dir() and not (p / WEIGHTS_BEST).is_file()
            and any((p / n).is_file() for n in RDF_NAMES))


def _digest(p: Path) -> str:
    h = hashlib.sha256()
    file = p if p.is_file() else next(p / n for n in RDF_NAMES if (p / n).is_file())
    with open(file, "rb") as fh:  # an rdf.yaml lists the sha256 of every file it uses
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


#: The cache may hold at most this many MB for one package, or 20 times the package's size
#: if more (a package of constant weights compresses a hundredfold); an environment variable
#: of that name overrides it.
MAX_UNPACK_ENV = "NAPARI_CARE_LOSSES_MAX_UNPACK_MB"
MAX_UNPACK_MB = 64
INDEX = "unpacked.json"  # beside the unpacked folder: its files and their sha256


def resolve_model_source(path: str | Path) -> Path:
    """A model folder for ``path``: a model folder (or anything not a package) is returned
    unchanged; a package is validated, checked to be ours and unpacked into the cache.

    A cached folder is used again only if its files are still those unpacked (else it is
    unpacked afresh); every error names ``path``, never the cache.
    """
    p = Path(path)
    if not is_package(p):
        return p
    target = cache_root() / "packages" / _digest(p)
    cached = _cached(target)
    if cached is not None:
        return cached
    if p.is_file() and not zipfile.is_zipfile(p):
        raise PackageError(f"{p}: not a zip file (expected a bioimage.io model package)")
    descr = _load(p)
    ours = (getattr(descr, "config", None) or {})
    ours = getattr(ours, "model_extra", None) or {}
    info = ours.get(MARKER)
    names = {Path(str(getattr(a.source, "path", a.source))).name
             for a in getattr(descr, "attachments", [])}
    if not isinstance(info, dict) or not {META_FILE, CSBDEEP_CONFIG} <= names:
        raise PackageError(f"{p}: a valid bioimage.io model ({descr.name!r}), but not one "
                           f"exported by napari-care-losses (no {META_FILE} / {CSBDEEP_CONFIG} "
                           "attachments); use bioimageio.core to run it")
    weights = getattr(descr.weights, "keras_v3", None)
    if weights is None:
        raise PackageError(f"{p}: the package has no keras_v3 weights")
    keras_name = Path(str(getattr(weights.source, "path", weights.source))).name
    name = Path(str(info.get("model_name") or "model")).name
    _check_size(p, keras_name)
    if target.is_dir():  # a damaged entry: unpack again (others' staging folders stay)
        for entry in target.iterdir():
            if entry.is_dir() and not entry.name.startswith(".unpack-"):
                shutil.rmtree(entry, ignore_errors=True)
            elif entry.is_file():
                entry.unlink(missing_ok=True)
    try:
        target.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".unpack-", dir=target))
    except OSError as exc:
        raise PackageError(f"{p}: cannot unpack into the cache {target} "
                           f"({exc.strerror or exc})") from None
    try:
        folder = staging / name
        folder.mkdir()
        for fname in (META_FILE, CSBDEEP_CONFIG):
            (folder / fname).write_bytes(_read(p, fname))
        keras_file = staging / "weights.keras"
        keras_file.write_bytes(_read(p, keras_name))
        _write_h5(folder, keras_file)
        ModelFolder.open(folder).require_usable()
        keras_file.unlink()
        index = {"folder": name, "sha256": {f.name: _sha256(f) for f in folder.iterdir()}}
        try:
            os.replace(folder, target / name)
        except OSError:
            if not (target / name / WEIGHTS_BEST).is_file():
                raise
            return target / name  # another process unpacked it first
        (target / INDEX).write_text(json.dumps(index))  # what a later use must find
        return target / name
    except Exception as exc:  # noqa: BLE001 - Keras, h5py, zip: the staging folder goes
        text = str(exc).replace(f"model folder {staging / name}: ", "")
        text = " ".join(text.replace(str(staging / name), "the model").replace(
            str(staging), "the package").split()) or type(exc).__name__
        if isinstance(exc, PackageError) and text.startswith(f"{p}: "):
            raise
        if isinstance(exc, OSError) and exc.strerror and exc.errno is not None:
            raise PackageError(f"{p}: cannot unpack it into the cache {target} "
                               f"({exc.strerror})") from None
        raise PackageError(f"{p}: cannot be used as a model ({text})") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _sha256(f: Path) -> str:
    return hashlib.sha256(f.read_bytes()).hexdigest()


def _cached(target: Path) -> Path | None:
    """The unpacked model folder in ``target`` if its files are exactly those recorded when
    it was unpacked (a damaged entry: None, and it is unpacked again)."""
    try:
        index = json.loads((target / INDEX).read_text())
        folder = target / Path(str(index["folder"])).name
        files = {f.name: f for f in folder.iterdir()}
        if set(files) != set(index["sha256"]) or any(
                _sha256(files[n]) != h for n, h in index["sha256"].items()):
            return None
        ModelFolder.open(folder).require_usable()
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    return folder


def _check_size(p: Path, keras_name: str) -> None:
    """Refuse before unpacking what would write more than the limit into the cache."""
    if p.is_file():
        with zipfile.ZipFile(p) as zf:
            sizes = {i.filename: i.file_size for i in zf.infolist()}
        packed = p.stat().st_size
    else:
        sizes = {f.name: f.stat().st_size for f in p.iterdir() if f.is_file()}
        packed = sum(sizes.values())
    planned = sum(sizes.get(n, 0) for n in (META_FILE, CSBDEEP_CONFIG, keras_name))
    with contextlib.suppress(zipfile.BadZipFile, ValueError, OSError), \
            zipfile.ZipFile(io.BytesIO(_read(p, keras_name))) as inner:  # checked later
        planned += sum(i.file_size for i in inner.infolist())  # the .h5: about as big
    try:
        limit = float(os.environ[MAX_UNPACK_ENV]) * 1e6
    except (KeyError, ValueError):
        limit = max(MAX_UNPACK_MB * 1e6, 20 * packed)
    if planned > limit:
        raise PackageError(f"{p}: unpacking this {packed / 1e6:.1f} MB package would write "
                           f"{planned / 1e6:.0f} MB into the cache ({cache_root()}), more than "
                           f"the {limit / 1e6:.0f} MB allowed; if you trust it, set "
                           f"{MAX_UNPACK_ENV}")


def _read(p: Path, name: str) -> bytes:
    if p.is_dir():
        return (p / name).read_bytes()
    with zipfile.ZipFile(p) as zf:
        try:
            return zf.read(name)
        except KeyError:
            raise PackageError(f"{p}: {name} missing from the package") from None


def _load(p: Path):
    """The package's model description, validated by bioimageio.spec (offline)."""
    try:
        from bioimageio.spec import InvalidDescr, load_description
    except ImportError:
        raise PackageError(f"{p}: reading bioimage.io packages needs the optional extra: "
                           "pip install 'napari-care-losses[bioimageio]'") from None
    if p.is_file():
        with zipfile.ZipFile(p) as zf:
            if not any(n in zf.namelist() for n in RDF_NAMES):
                raise PackageError(f"{p}: not a bioimage.io package (no rdf.yaml in the zip)")
    source = p if p.is_file() else next(p / n for n in RDF_NAMES if (p / n).is_file())
    with contextlib.redirect_stdout(io.StringIO()):
        try:
            descr = load_description(source, perform_io_checks=True)
        except Exception as exc:  # noqa: BLE001 - yaml, zip or io errors from bioimageio
            raise PackageError(f"{p}: not a valid bioimage.io package "
                               f"({_readable(' '.join(str(exc).split()))})") from None
    if isinstance(descr, InvalidDescr) or descr.validation_summary.status == "failed":

        raise PackageError(f"{p}: not a valid bioimage.io package: "
                           f"{summary_errors(descr.validation_summary)}")
    if descr.type != "model":
        raise PackageError(f"{p}: a bioimage.io {descr.type}, not a model")
    return descr


def _write_h5(folder: Path, keras_file: Path) -> None:
    """CSBDeep's ``weights_best.h5`` from the exported network (weights copied by layer)."""
    from .._tf import ensure_tensorflow

    ensure_tensorflow()  # before Keras imports it: quietly, and safely beside OpenGL
    import keras

    from .network import build_care
    from .weights import atomic_weight_saves

    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()), \
            warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # CSBDeep: "Couldn't find any weights"
        net = keras.saving.load_model(keras_file)
        care = build_care(None, folder.name, folder.parent)  # no weights yet: a warning
    # same network built by the same code: weighted layers match in order (names are
    # Keras' session counters, e.g. conv2d_7, so they may differ)
    theirs = [layer for layer in net.layers if layer.weights]
    ours = [layer for layer in care.keras_model.layers if layer.weights]
    shapes = [[tuple(w.shape) for w in layer.weights] for layer in theirs]
    if shapes != [[tuple(w.shape) for w in layer.weights] for layer in ours]:
        raise PackageError(f"{keras_file.name} does not match the network in "
                           f"{CSBDEEP_CONFIG}")
    for mine, their in zip(ours, theirs, strict=True):
        mine.set_weights(their.get_weights())
    atomic_weight_saves(care.keras_model)  # HDF5 never writes to a (possibly full) disk
    care.keras_model.save_weights(str(folder / WEIGHTS_BEST))


#: bioimageio's messages that say nothing to a user, and what they mean
RAW_MESSAGES = {
    "No functions provided to try": "a test tensor's size is not one the description "
                                    "allows for this axis",
}


def _readable(msg: str) -> str:
    for raw, meaning in RAW_MESSAGES.items():
        if raw in msg:
            return meaning
    return msg


def summary_errors(summary) -> str:
    """bioimageio's validation errors on one line, its internal messages replaced by what
    they mean."""
    errors = [f"{'.'.join(map(str, e.loc)) or 'package'}: {_readable(' '.join(e.msg.split()))}"
              for e in summary.errors]
    return "; ".join(dict.fromkeys(errors))[:800] or f"status {summary.status}"

"""bioimage.io model packages: export, bioimageio.core's own test, import round trip."""

from __future__ import annotations

import io
import json
import shutil
import zipfile

import numpy as np
import pytest
import yaml

pytest.importorskip("bioimageio.core")

from napari_care_losses.cli import main  # noqa: E402
from napari_care_losses.export import bioimageio as bexp  # noqa: E402
from napari_care_losses.models.folder import ModelFolder, ModelFolderError  # noqa: E402
from napari_care_losses.models.meta import Status  # noqa: E402
from napari_care_losses.models.package_import import (  # noqa: E402
    PackageError,
    resolve_model_source,
)

from ..conftest import tiny_config  # noqa: E402

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def models(tiny_patches, tmp_path_factory):
    from napari_care_losses.training.trainer import run_training

    out = tmp_path_factory.mktemp("models")
    return {loss: run_training(tiny_patches, tiny_config(loss), out).model_dir
            for loss in ("mae", "laplace")}


@pytest.fixture(scope="module")
def packages(models, tmp_path_factory):
    """mae exported through the CLI, laplace through the Python API."""
    out = tmp_path_factory.mktemp("packages")
    rc = main(["export", str(models["mae"]), "-o", str(out / "mae.zip"),
               "--author", "Ada Lovelace", "--license", "CC-BY-4.0"])
    result = bexp.export_package(models["laplace"], out / "laplace.zip")
    return {"mae": out / "mae.zip", "laplace": out / "laplace.zip", "rc": rc,
            "laplace_summary": result.summary}


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("NAPARI_CARE_LOSSES_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def _rdf(zip_path) -> dict:
    with zipfile.ZipFile(zip_path) as zf:
        return yaml.safe_load(zf.read("rdf.yaml"))


def _npy(zip_path, name) -> np.ndarray:
    with zipfile.ZipFile(zip_path) as zf:
        return np.load(io.BytesIO(zf.read(name)))


def _frame():
    from napari_care_losses.sample_data import load_sample

    return load_sample(0, "test")[0][1, 40:200, 24:224]  # not a multiple of 2**depth


def test_cli_export_writes_a_package(packages):
    assert packages["rc"] == 0
    rdf = _rdf(packages["mae"])
    assert rdf["format_version"].startswith("0.5")
    assert rdf["authors"] == [{"name": "Ada Lovelace"}] and rdf["license"] == "CC-BY-4.0"
    assert "keras_v3" in rdf["weights"]
    inp = rdf["inputs"][0]
    assert [a.get("id", a["type"]) for a in inp["axes"]] == ["batch", "y", "x", "channel"]
    assert inp["axes"][1]["size"] == {"min": 16, "step": 2}
    kwargs = inp["preprocessing"][0]["kwargs"]
    assert (kwargs["min_percentile"], kwargs["max_percentile"]) == (2.0, 99.8)
    assert kwargs["axes"] == ["y", "x"]
    with zipfile.ZipFile(packages["mae"]) as zf:
        names = set(zf.namelist())
        doc = zf.read("README.md").decode()
    assert {"care_losses.json", "config.json", "weights.keras", "cover.png"} <= names
    assert "10.1038/s41592-018-0216-7" in doc and "norm_pmax" in doc


def test_bioimageio_test_model_passes_and_matches_our_prediction(packages, models):
    from bioimageio.core import test_model

    from napari_care_losses.restore.predict import RestorationModel

    summary = test_model(packages["mae"])
    assert summary.status == "passed", summary.format()
    x = _npy(packages["mae"], "test_input.npy")[0, ..., 0]
    y = _npy(packages["mae"], "test_output.npy")[0, ..., 0]
    ours, _ = RestorationModel(models["mae"]).restore_frame(x)
    mi, ma = np.percentile(x, [2.0, 99.8])
    np.testing.assert_allclose(y * (ma - mi) + mi, ours, rtol=1e-4, atol=1e-4 * (ma - mi))


def test_laplace_package_has_mean_and_scale(packages):
    assert packages["laplace_summary"].status == "passed"
    rdf = _rdf(packages["laplace"])
    assert [o["id"] for o in rdf["outputs"]] == ["mean", "scale"]
    assert (_npy(packages["laplace"], "test_scale.npy") > 0).all()


@pytest.mark.parametrize("loss", ["mae", "laplace"])
def test_round_trip_restores_identically(loss, packages, models, cache):
    from napari_care_losses.restore.predict import RestorationModel

    folder = resolve_model_source(packages[loss])
    assert folder.parent.parent == cache / "packages"
    assert folder.name == models[loss].name
    assert ModelFolder.open(folder).config == ModelFolder.open(models[loss]).config
    assert resolve_model_source(folder) == folder  # a model folder: unchanged
    assert resolve_model_source(packages[loss]) == folder  # cached
    frame = _frame()
    a, sa = RestorationModel(models[loss]).restore_frame(frame)
    b, sb = RestorationModel(packages[loss]).restore_frame(frame)
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-6 * float(np.abs(a).max()))
    if loss == "laplace":
        np.testing.assert_allclose(sa, sb, rtol=0, atol=1e-6 * float(sa.max()))
    else:
        assert sa is None and sb is None


def test_predict_cli_accepts_a_package(packages, cache, tmp_path):
    import tifffile

    tifffile.imwrite(tmp_path / "in.tif", _frame())
    assert main(["predict", str(packages["mae"]), str(tmp_path / "in.tif"),
                 "-o", str(tmp_path / "out.tif")]) == 0
    assert tifffile.imread(tmp_path / "out.tif").shape[-2:] == _frame().shape


def test_unpacked_package_folder(packages, cache, tmp_path):
    with zipfile.ZipFile(packages["mae"]) as zf:
        zf.extractall(tmp_path / "unpacked")
    folder = resolve_model_source(tmp_path / "unpacked")
    assert ModelFolder.open(folder).require_usable()


def test_stopped_model_needs_force(models, tmp_path, monkeypatch, capsys):
    stopped = tmp_path / "stopped_model"
    shutil.copytree(models["mae"], stopped)
    folder = ModelFolder.open(stopped)
    folder.write_meta(folder.meta.but(status=Status.STOPPED))
    with pytest.raises(bexp.ExportError, match="--force"):
        bexp.export_package(stopped, tmp_path / "x.zip")
    assert main(["export", str(stopped), "-o", str(tmp_path / "x.zip")]) == 2
    assert "status is 'stopped'" in capsys.readouterr().err
    monkeypatch.setattr(bexp, "_build", lambda folder, *a, **k: folder.status)
    assert bexp.export_package(stopped, tmp_path / "x.zip", force=True) == "stopped"


def test_not_a_model_folder(tmp_path, capsys):
    with pytest.raises(ModelFolderError, match="not a napari-care-losses model"):
        bexp.export_package(tmp_path, tmp_path / "x.zip")
    assert main(["export", str(tmp_path), "-o", str(tmp_path / "x.zip")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "model folder" in err


def test_refuses_what_is_not_a_package(tmp_path, cache):
    from napari_care_losses.restore.predict import RestorationModel

    plain = tmp_path / "plain.zip"
    with zipfile.ZipFile(plain, "w") as zf:
        zf.writestr("hello.txt", "hi")
    with pytest.raises(PackageError, match="no rdf.yaml"):
        resolve_model_source(plain)
    notzip = tmp_path / "broken.zip"
    notzip.write_text("not a zip")
    with pytest.raises(PackageError, match="not a zip file"):
        RestorationModel(notzip)
    invalid = tmp_path / "invalid.zip"
    with zipfile.ZipFile(invalid, "w") as zf:
        zf.writestr("rdf.yaml", yaml.safe_dump({"type": "model", "format_version": "0.5.12",
                                                "name": "x"}))
    with pytest.raises(PackageError, match="not a valid bioimage.io package: .*inputs"):
        resolve_model_source(invalid)


def test_refuses_a_package_that_is_not_ours(packages, tmp_path, cache):
    rdf = _rdf(packages["mae"])
    del rdf["config"]["napari-care-losses"]
    rdf["attachments"] = []
    foreign = tmp_path / "foreign.zip"
    with zipfile.ZipFile(packages["mae"]) as src, zipfile.ZipFile(foreign, "w") as dst:
        for name in src.namelist():
            if name not in ("rdf.yaml", "care_losses.json", "config.json"):
                dst.writestr(name, src.read(name))
        dst.writestr("rdf.yaml", yaml.safe_dump(rdf))
    with pytest.raises(PackageError, match="not one exported by napari-care-losses"):
        resolve_model_source(foreign)
    assert json.loads(json.dumps(rdf))["weights"]  # still a model description


def test_a_package_carries_the_model_id_of_its_folder(models, packages, cache):
    """So the docks recognise a package of a listed model as that model."""
    original = ModelFolder.open(models["laplace"])
    unpacked = ModelFolder.open(resolve_model_source(packages["laplace"]))
    assert unpacked.model_id == original.model_id and unpacked.path != original.path
    assert _rdf(packages["laplace"])["config"]["napari-care-losses"]["model_id"] \
        == original.model_id

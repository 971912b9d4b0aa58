"""Issue 18, class 4: bioimage.io packages as models everywhere (``evaluate`` too), errors
that name the package, a damaged cache entry repaired, a size limit on unpacking, no raw
bioimageio messages, and exported packages that keep file names only and say when the
author is a placeholder."""

from __future__ import annotations

import hashlib
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
import tifffile
import yaml

pytest.importorskip("bioimageio.core")

from napari_care_losses.cli import main  # noqa: E402
from napari_care_losses.export.docs import PLACEHOLDER_AUTHOR  # noqa: E402
from napari_care_losses.models.folder import WEIGHTS_BEST  # noqa: E402
from napari_care_losses.models.package_import import (  # noqa: E402
    MAX_UNPACK_ENV,
    PackageError,
    resolve_model_source,
)

from ..conftest import tiny_config  # noqa: E402

pytestmark = pytest.mark.slow
PRIVATE = "/home/someone/private-project"


@pytest.fixture(scope="module")
def package(tiny_patches, tmp_path_factory):
    """A tiny mae model trained on files in a private folder, exported without --author."""
    from napari_care_losses.training.trainer import run_training

    out = tmp_path_factory.mktemp("pkg")
    data = {"low": f"{PRIVATE}/low.tif", "high": f"{PRIVATE}/high.tif"}
    model = run_training(tiny_patches, tiny_config("mae"), out / "models",
                         data_info=data).model_dir
    assert main(["export", str(model), "-o", str(out / "mae.zip")]) == 0
    return out / "mae.zip"


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("NAPARI_CARE_LOSSES_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture
def pair(sample_pair, tmp_path):
    low, high = tmp_path / "low.tif", tmp_path / "high.tif"
    tifffile.imwrite(low, sample_pair[0][:, :64, :64])
    tifffile.imwrite(high, sample_pair[1][:, :64, :64])
    return low, high


def repack(src: Path, dst: Path, **files: bytes) -> Path:
    """A copy of the package with ``files`` replaced, the rdf's sha256 updated."""
    with zipfile.ZipFile(src) as zf:
        content = {n: zf.read(n) for n in zf.namelist()}
    rdf = yaml.safe_load(content["rdf.yaml"])
    for name, data in files.items():
        content[name] = data
        sha = hashlib.sha256(data).hexdigest()
        for entry in [rdf["documentation"], *rdf["covers"], *rdf["attachments"],
                      rdf["weights"]["keras_v3"],
                      *(t["test_tensor"] for t in rdf["inputs"] + rdf["outputs"])]:
            if entry["source"] == name:
                entry["sha256"] = sha
    content["rdf.yaml"] = yaml.safe_dump(rdf, sort_keys=False).encode()
    with zipfile.ZipFile(dst, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in content.items():
            zf.writestr(name, data)
    return dst


def member(zip_path: Path, name: str) -> bytes:
    with zipfile.ZipFile(zip_path) as zf:
        return zf.read(name)


def test_evaluate_takes_a_package_and_its_unpacked_folder(package, cache, pair, tmp_path,
                                                          capsys):
    low, high = pair
    unpacked = tmp_path / "unpacked"
    with zipfile.ZipFile(package) as zf:
        zf.extractall(unpacked)
    for source in (package, unpacked):
        out = tmp_path / f"scores_{source.name}.csv"
        assert main(["evaluate", str(low), str(high), "--model", str(source), "-o",
                     str(out)]) == 0, capsys.readouterr().err
        assert "MAE (mae_" in out.read_text()


def test_errors_name_the_package_not_the_cache(package, cache, tmp_path, capsys):
    config = json.loads(member(package, "config.json"))
    config["unet_n_first"] *= 2  # a network the weights do not fit
    bad = repack(package, tmp_path / "bad.zip", **{"config.json": json.dumps(config).encode()})
    with pytest.raises(PackageError) as err:
        resolve_model_source(bad)
    assert str(err.value).startswith(f"{bad}: cannot be used as a model (weights.keras does "
                                     "not match the network in config.json")
    broken = repack(package, tmp_path / "broken.zip", **{"weights.keras": b"not a zip"})
    with pytest.raises(PackageError, match=rf"^{broken}: cannot be used as a model \("):
        resolve_model_source(broken)
    meta = json.loads(member(package, "care_losses.json"))
    meta["status"] = "training"
    unfinished = repack(package, tmp_path / "unfinished.zip",
                        **{"care_losses.json": json.dumps(meta).encode()})
    assert main(["predict", str(unfinished), "in.tif", "-o", str(tmp_path / "o.tif")]) == 2
    err = capsys.readouterr().err.strip()
    assert f"{unfinished}: cannot be used as a model (incomplete" in err, err
    assert ".unpack-" not in err and str(cache) not in err and "\n" not in err


def test_a_damaged_cache_entry_is_unpacked_again(package, cache):
    from napari_care_losses.restore.predict import RestorationModel

    frame = np.random.default_rng(0).random((32, 32)).astype(np.float32)
    folder = resolve_model_source(package)
    expected = RestorationModel(folder).restore_frame(frame)[0]
    weights = (folder / WEIGHTS_BEST).read_bytes()
    (folder / WEIGHTS_BEST).write_bytes(weights[:len(weights) // 2])  # truncated
    again = resolve_model_source(package)
    np.testing.assert_array_equal(RestorationModel(again).restore_frame(frame)[0], expected)
    (again / "care_losses.json").unlink()
    third = resolve_model_source(package)
    np.testing.assert_array_equal(RestorationModel(third).restore_frame(frame)[0], expected)


def test_unpacking_has_a_size_limit(package, cache, monkeypatch):
    monkeypatch.setenv(MAX_UNPACK_ENV, "0.01")
    with pytest.raises(PackageError, match=rf"^{package}: unpacking this 0\.\d MB package "
                                           r"would write \d+ MB into the cache"):
        resolve_model_source(package)
    assert not any(p.is_file() for p in cache.rglob("*"))  # nothing written


def test_bioimageio_internal_messages_do_not_reach_the_user(package, cache, tmp_path):
    x = np.load(__import__("io").BytesIO(member(package, "test_input.npy")))
    odd = x[:, :17, :17]  # not a multiple of the U-Net's step: the size does not fit
    buf = __import__("io").BytesIO()
    np.save(buf, odd)
    bad = repack(package, tmp_path / "odd.zip", **{"test_input.npy": buf.getvalue()})
    with pytest.raises(PackageError) as err:
        resolve_model_source(bad)
    assert "No functions provided" not in str(err.value)
    assert "a test tensor's size is not one the description allows" in str(err.value)


def test_an_exported_package_keeps_file_names_only_and_says_the_author_is_a_placeholder(
        package):
    meta = json.loads(member(package, "care_losses.json"))
    assert meta["data"]["low"] == "low.tif" and meta["data"]["high"] == "high.tif"
    everything = b"".join(member(package, n) for n in ("rdf.yaml", "README.md",
                                                       "care_losses.json"))
    assert PRIVATE.encode() not in everything
    rdf = yaml.safe_load(member(package, "rdf.yaml"))
    assert rdf["authors"] == [{"name": PLACEHOLDER_AUTHOR}]
    readme = member(package, "README.md").decode()
    assert f'"{PLACEHOLDER_AUTHOR}" in rdf.yaml is a placeholder' in readme


def test_a_full_disk_while_unpacking_is_one_line_naming_the_package(package, cache,
                                                                     monkeypatch):
    import errno

    def write_bytes(self, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Path, "write_bytes", write_bytes)
    with pytest.raises(PackageError, match=rf"^{package}: cannot unpack it into the cache "
                                           r".*\(No space left on device\)$"):
        resolve_model_source(package)
    assert not list(cache.rglob(".unpack-*"))  # the staging folder is gone

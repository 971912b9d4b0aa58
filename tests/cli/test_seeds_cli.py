"""Issue 20 on the command line: ``train --seeds N`` trains N models per loss, and
``evaluate`` groups models that differ only in their seed and prints one verdict line per
group against a reference group."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import tifffile

from napari_care_losses import cli
from napari_care_losses.models.folder import CSBDEEP_CONFIG, WEIGHTS_BEST, ModelFolder, write_meta
from napari_care_losses.models.meta import ModelMeta, Status
from napari_care_losses.restore.metrics import Score
from napari_care_losses.restore.verdict_text import CANNOT_SEPARATE

from ..conftest import tiny_config

N_FRAMES = 4
STACK = np.random.default_rng(0).integers(0, 200, (N_FRAMES, 32, 32)).astype(np.uint8)


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


# -- train --seeds --------------------------------------------------------------------------

@pytest.fixture
def fake_training(monkeypatch):
    """Record what ``train`` would train (loss, seed) and the seed each patch cut used."""
    seen = {"trained": [], "cut": []}

    def fake_patches(low, high, patch_size, per_image, val_fraction, seed):
        seen["cut"].append(seed)
        return f"patches of seed {seed}"

    def fake_train(patches, cfg, out, stop, data_info=None):
        seen["trained"].append((cfg.loss.name.value, cfg.seed, patches))
        yield from ()

    monkeypatch.setattr("napari_care_losses.io.data.make_patches", fake_patches)
    monkeypatch.setattr("napari_care_losses.training.trainer.train", fake_train)
    return seen


def test_train_seeds_trains_every_loss_with_each_seed(tmp_path, capsys, fake_training):
    """--seeds N: N models per loss; without it (N = 1) the run is the one of before."""
    for flags, seeds in (([], [0]), (["--seeds", "2"], [0, 1]),
                         (["--seed", "5", "--seeds", "3"], [5, 6, 7])):
        fake_training["cut"].clear()
        fake_training["trained"].clear()
        rc = cli.main(["train", "low.tif", "high.tif", "--loss", "mae", "--loss", "fft",
                       "--out", str(tmp_path), *flags])
        assert rc == 0
        assert fake_training["cut"] == seeds  # each seed cuts its own patches, as --seed S
        assert fake_training["trained"] == [(loss, s, f"patches of seed {s}")
                                            for s in seeds for loss in ("mae", "fft")]
        out = capsys.readouterr().out
        if len(seeds) == 1:  # one seed: the output of before
            assert out.startswith("Cutting 64px patches from low.tif / high.tif ...")
            assert "Seed " not in out
        else:
            assert all(f"Seed {s}: cutting 64px patches" in out for s in seeds)


@pytest.mark.parametrize("flags, message", [
    (["--seeds", "0"], "--seeds: 0 is below the minimum 1"),
    (["--seeds", "two"], "--seeds: must be an integer, got 'two'"),
    (["--seed", "2147483647", "--seeds", "2"], "goes past the largest seed"),
])
def test_bad_seeds_are_one_line(tmp_path, capsys, fake_training, flags, message):
    rc = cli.main(["train", "low.tif", "high.tif", "--out", str(tmp_path), *flags])
    assert rc == 2 and message in one_error_line(capsys)
    assert fake_training["trained"] == []


@pytest.mark.slow
def test_train_seeds_2_makes_two_models_per_loss(tmp_path, sample_pair, capsys):
    low, high = tmp_path / "low.tif", tmp_path / "high.tif"
    tifffile.imwrite(low, sample_pair[0])
    tifffile.imwrite(high, sample_pair[1])
    rc = cli.main(["train", str(low), str(high), "--loss", "mae", "--loss", "fft",
                   "--seeds", "2", "--out", str(tmp_path / "runs"), "--patch-size", "32",
                   "--patches-per-image", "8", "--epochs", "1", "--steps", "2",
                   "--batch-size", "4", "--unet-depth", "1", "--unet-first", "8",
                   "--precision", "float32"])
    assert rc == 0, capsys.readouterr().err
    folders = [ModelFolder.open(p) for p in sorted((tmp_path / "runs").iterdir())]
    assert len({f.name for f in folders}) == 4
    assert all(f.complete for f in folders)
    assert sorted((f.config.loss.name.value, f.config.seed) for f in folders) == [
        ("fft", 0), ("fft", 1), ("mae", 0), ("mae", 1)]
    capsys.readouterr()

    # what train wrote groups by seed in evaluate
    folders.sort(key=lambda f: (f.config.loss.name.value != "mae", f.config.seed))
    rc = cli.main(["evaluate", str(low), str(high), "-o", str(tmp_path / "scores.csv"),
                   "--reference", "MAE", *(a for f in folders for a in ("--model", str(f.path)))])
    out = capsys.readouterr().out
    assert rc == 0 and "Groups (same loss and settings; seeds): MAE 0, 1 · FFT 0, 1" in out
    (psnr, ssim) = verdict_lines(out)
    assert psnr.startswith("FFT vs MAE: ") and "2 seeds × 2 frames" in psnr


# -- evaluate: groups and verdicts ----------------------------------------------------------

#: per-image PSNR shared by every method; each model adds its loss's and its seed's offset
BASE = np.array([30.0, 31.0, 29.0, 30.5])
OFFSETS = {  # (loss, seed) -> dB
    ("laplace", 0): 0.0, ("laplace", 1): 0.1, ("laplace", 2): -0.1,
    ("fft", 0): 0.55, ("fft", 1): 0.45, ("fft", 2): 0.5,
    ("bandpass", 0): -0.5, ("bandpass", 1): -0.4, ("bandpass", 2): -0.6,
    ("mae", 0): 0.3,
}
TV_OFFSET = -1.0


def make_model(root: Path, loss: str, seed: int, **settings) -> Path:
    """A finished model folder (weights are never loaded: restoring is faked)."""
    cfg = tiny_config(loss, seed=seed, **settings)
    path = root / f"{loss}_s{seed}_{len(list(root.glob('*')))}"
    path.mkdir(parents=True)
    write_meta(path, ModelMeta.new(cfg).but(status=Status.FINISHED))
    network = {"n_dim": 2, "n_channel_in": 1, "n_channel_out": 1,
               "probabilistic": cfg.loss.probabilistic, "unet_n_depth": cfg.unet_n_depth,
               "unet_n_first": cfg.unet_n_first, "unet_kern_size": cfg.unet_kern_size}
    (path / CSBDEEP_CONFIG).write_text(json.dumps(network))
    (path / WEIGHTS_BEST).write_bytes(b"not loaded")
    return path


@pytest.fixture
def fake_restore(monkeypatch):
    """Each model scores BASE + its offset (SSIM: 0.8 + offset / 100); TV scores TV_OFFSET."""
    from napari_care_losses.restore import engine

    calls = []

    def restore_all_or_raise(specs, low, gt=None, **kwargs):
        calls.append(specs)
        out = {}
        for spec in specs:
            if spec.model_dir is not None:
                cfg = ModelFolder.open(spec.model_dir).config
                off = OFFSETS[cfg.loss.name.value, cfg.seed]
            else:
                off = TV_OFFSET
            scores = [Score(float(p), 0.8 + off / 100) for p in BASE + off]
            out[spec.name] = engine.MethodResult(spec, np.zeros((N_FRAMES, 32, 32)), None,
                                                 scores, "fixed strength")
        return out

    monkeypatch.setattr(engine, "restore_all_or_raise", restore_all_or_raise)
    return calls


@pytest.fixture
def pair(tmp_path):
    low, high = tmp_path / "low.tif", tmp_path / "high.tif"
    tifffile.imwrite(low, STACK, photometric="minisblack")
    tifffile.imwrite(high, STACK[:, ::-1], photometric="minisblack")
    return low, high


def evaluate(pair, tmp_path, models, *flags) -> int:
    argv = ["evaluate", *map(str, pair), "-o", str(tmp_path / "scores.csv"), *flags]
    for m in models:
        argv += ["--model", str(m)]
    return cli.main(argv)


def verdict_lines(out: str) -> list[str]:
    return [line.strip() for line in out.splitlines() if " vs " in line]


def sd(loss: str) -> float:
    return float(np.std([v for (name, _), v in OFFSETS.items() if name == loss], ddof=1))


def test_evaluate_groups_seeds_and_prints_verdicts(tmp_path, pair, fake_restore, capsys):
    root = tmp_path / "models"
    models = [make_model(root, loss, seed) for loss in ("laplace", "fft", "bandpass")
              for seed in range(3)]
    models += [make_model(root, "mae", 0),
               make_model(root, "fft", 0, learning_rate=1e-3)]  # other settings: own group
    assert evaluate(pair, tmp_path, models, "--baseline", "tv") == 0
    out = capsys.readouterr().out
    lines = verdict_lines(out)
    assert ("Groups (same loss and settings; seeds): Laplace 0, 1, 2 · FFT 0, 1, 2 · "
            "BP 0, 1, 2 · MAE 0 · FFT (2) 0") in out

    def effect(loss):
        return np.mean([v for (n, _), v in OFFSETS.items() if n == loss])

    fft = (f"FFT vs Laplace: {effect('fft'):+.2f} dB (SD between seeds {sd('fft'):.2f} vs "
           f"{sd('laplace'):.2f}; 3 seeds × {N_FRAMES} frames), p = ")
    bp = (f"BP vs Laplace: {effect('bandpass'):+.2f} dB (SD between seeds {sd('bandpass'):.2f}"
          f" vs {sd('laplace'):.2f}; 3 seeds × {N_FRAMES} frames), p = ")
    tv = (f"TV vs Laplace: {TV_OFFSET:+.2f} dB (TV fixed, SD between Laplace seeds "
          f"{sd('laplace'):.2f}; 3 seeds × {N_FRAMES} frames), p = ")
    psnr = [line for line in lines if "SSIM" not in line]
    assert [line[:len(fft)] for line in psnr if line.startswith("FFT vs")] == [fft]
    assert psnr[0].startswith(fft) and psnr[0].endswith("— better")
    assert psnr[1].startswith(bp) and psnr[1].endswith("— worse")
    assert f"MAE vs Laplace: one MAE model — {CANNOT_SEPARATE}" in lines
    assert f"FFT (2) vs Laplace: one FFT (2) model — {CANNOT_SEPARATE}" in lines
    assert any(line.startswith(tv) and line.endswith("— worse") for line in psnr)
    # SSIM verdicts too; the models that cannot be judged are said once
    assert any(line.startswith(f"FFT vs Laplace: SSIM {effect('fft') / 100:+.4f}")
               for line in lines)
    assert sum(CANNOT_SEPARATE in line for line in lines) == 2
    # the table still has one column per model: 11 models, TV and the input
    header = (tmp_path / "scores.csv").read_text().splitlines()[0].split(",")
    assert len(header) == 1 + 2 * (len(models) + 2)


def test_evaluate_reference_is_selectable(tmp_path, pair, fake_restore, capsys):
    root = tmp_path / "models"
    models = [make_model(root, loss, seed) for loss in ("fft", "bandpass") for seed in (0, 1)]
    assert evaluate(pair, tmp_path, models) == 0
    out = capsys.readouterr().out
    assert verdict_lines(out) == []
    assert "no verdicts: no Laplace models to compare against" in out

    assert evaluate(pair, tmp_path, models, "--reference", "fft", "--overwrite") == 0
    lines = verdict_lines(capsys.readouterr().out)
    effect = np.mean([OFFSETS["bandpass", s] - OFFSETS["fft", s] for s in (0, 1)])
    assert lines[0].startswith(f"BP vs FFT: {effect:+.2f} dB") and lines[0].endswith("— worse")
    assert not any(line.startswith("FFT vs") for line in lines)


def test_a_reference_that_is_not_there_is_one_line(tmp_path, pair, fake_restore, capsys):
    root = tmp_path / "models"
    models = [make_model(root, "laplace", s) for s in (0, 1)]
    rc = evaluate(pair, tmp_path, models, "--reference", "nope", "--baseline", "tv")
    line = one_error_line(capsys)
    assert rc == 2 and line.startswith("napari-care-losses evaluate: error: no group 'nope'")
    assert "Laplace, TV" in line  # says what there is
    assert fake_restore == [] and not (tmp_path / "scores.csv").exists()  # before any work


def test_the_same_model_twice_is_refused_before_any_work(tmp_path, pair, fake_restore,
                                                         capsys):
    model = make_model(tmp_path / "models", "laplace", 0)
    rc = evaluate(pair, tmp_path, [model, model])
    assert rc == 2 and "a second model with seed 0" in one_error_line(capsys)
    assert fake_restore == []


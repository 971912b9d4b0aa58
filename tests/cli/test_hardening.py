"""Issue 9: read whole or refuse, write finite or refuse; errors name the thing.

Bad files are built in ``tmp_path`` with tifffile; every class is checked through the
Python API and through ``napari-care-losses`` (exit code 2, one line, no traceback).
"""

from __future__ import annotations

import errno
import math
import os
import signal
import zlib
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import tifffile
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from napari_care_losses import cli
from napari_care_losses.io.data import DataError, FrameStack, as_stack, input_channel, make_patches
from napari_care_losses.restore import score_tables
from napari_care_losses.restore.metrics import (
    ConstantGroundTruthError,
    Score,
    affine_fit,
    normalize_gt,
    score,
    score_stack,
)

STACK = np.random.default_rng(0).integers(1, 60000, (5, 32, 32)).astype(np.uint16)
HYPO = settings(max_examples=40, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture])


def run_cli(capsys, *argv) -> tuple[int, str]:
    """Exit code and stderr of the CLI; stderr must be one line without a traceback."""
    rc = cli.main([str(a) for a in argv])
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err
    return rc, err


def good(tmp_path: Path, name: str = "good.tif", n: int = 5) -> Path:
    tifffile.imwrite(tmp_path / name, STACK[:n], photometric="minisblack")
    return tmp_path / name


# -- 1. damaged files are never read as less than they are ----------------------------------

WRITERS = {"plain": {}, "imagej": {"imagej": True, "metadata": {"axes": "TYX"}},
           "ome": {"ome": True, "metadata": {"axes": "TYX"}}}


@pytest.mark.parametrize("cut", [0.3, 0.6, 0.9, 0.99])
@pytest.mark.parametrize("kind", list(WRITERS))
@pytest.mark.parametrize("compression", [None, "zlib"])
def test_truncated_stack_is_refused(tmp_path, capsys, compression, kind, cut):
    whole = tmp_path / "whole.tif"
    tifffile.imwrite(whole, STACK, compression=compression, **WRITERS[kind])
    data = whole.read_bytes()
    cut_file = tmp_path / "cut.tif"
    cut_file.write_bytes(data[:int(len(data) * cut)])
    with pytest.raises(DataError, match="cut.tif: .*(truncated|damaged|not a readable)"):
        FrameStack.open(cut_file)
    rc, err = run_cli(capsys, "train", cut_file, good(tmp_path))
    assert rc == 2 and "cut.tif" in err


def test_zlib_stack_cut_short_is_not_read_as_one_frame(tmp_path):
    tifffile.imwrite(tmp_path / "z.tif", STACK, compression="zlib")
    data = (tmp_path / "z.tif").read_bytes()
    (tmp_path / "z.tif").write_bytes(data[:len(data) // 3])
    with pytest.raises(DataError, match=r"declares 5 frames but only 1 can be read"):
        FrameStack.open(tmp_path / "z.tif")


def test_damaged_zlib_frame_names_file_and_frame(tmp_path, capsys):
    path = tmp_path / "bad.tif"
    tifffile.imwrite(path, STACK, compression="zlib", photometric="minisblack")
    with tifffile.TiffFile(path) as tif:
        offset, count = tif.pages[2].dataoffsets[0], tif.pages[2].databytecounts[0]
    raw = bytearray(path.read_bytes())
    raw[offset:offset + count] = bytes(count)  # zeros: not a zlib stream
    path.write_bytes(bytes(raw))
    stack = FrameStack.open(path)  # headers and the last frame are fine
    np.testing.assert_array_equal(stack.frame(1), STACK[1])
    with pytest.raises(DataError, match=r"bad.tif: frame 2 cannot be read .*damaged"):
        stack.frame(2)
    with pytest.raises(DataError, match="frame 2"):
        stack.to_array()
    stack.close()
    rc, err = run_cli(capsys, "train", path, path, "--patch-size", "32")
    assert rc == 2 and "bad.tif: frame 2 cannot be read" in err


# -- 2. channels are never frames ------------------------------------------------------------

CHANNEL_FILES = {
    "planar_rgb": (np.arange(3 * 32 * 32, dtype=np.uint8).reshape(3, 32, 32), {},
                   lambda a, c: a[c][None]),
    "rgb_yxs": (np.arange(2 * 32 * 32 * 3, dtype=np.uint16).reshape(2, 32, 32, 3),
                {"photometric": "rgb"}, lambda a, c: a[..., c]),
    "imagej_tcyx": (np.arange(2 * 3 * 32 * 32, dtype=np.uint16).reshape(2, 3, 32, 32),
                    {"imagej": True, "metadata": {"axes": "TCYX"}}, lambda a, c: a[:, c]),
    "ome_cyx": (np.arange(3 * 32 * 32, dtype=np.float32).reshape(3, 32, 32),
                {"ome": True, "metadata": {"axes": "CYX"}}, lambda a, c: a[c][None]),
}


@pytest.mark.parametrize("kind", list(CHANNEL_FILES))
def test_channels_are_refused_or_picked(tmp_path, capsys, kind):
    array, kwargs, pick = CHANNEL_FILES[kind]
    path = tmp_path / f"{kind}.tif"
    tifffile.imwrite(path, array, **kwargs)
    with pytest.raises(DataError, match=rf"{kind}.tif: has 3 channels .*--channel N"):
        FrameStack.open(path)
    for c in range(3):
        np.testing.assert_array_equal(FrameStack.open(path, channel=c).to_array(),
                                      pick(array, c))
    with pytest.raises(DataError, match="channel 3 does not exist"):
        FrameStack.open(path, channel=3)
    with input_channel(1):  # what --channel does for every input file of a command
        np.testing.assert_array_equal(as_stack(path).to_array(), pick(array, 1))
        np.testing.assert_array_equal(as_stack(good(tmp_path)).to_array(), STACK)
    rc, err = run_cli(capsys, "train", path, path)
    assert rc == 2 and "has 3 channels" in err and "--channel" in err


@pytest.mark.parametrize("kwargs", [{"imagej": True, "metadata": {"axes": "TYX"}},
                                    {"imagej": True, "metadata": {"axes": "ZYX"}},
                                    {"ome": True, "metadata": {"axes": "TYX"}},
                                    {"photometric": "minisblack"},
                                    {"metadata": {"axes": "QYX"}}])
def test_plain_stacks_stay_frames(tmp_path, kwargs):
    tifffile.imwrite(tmp_path / "s.tif", STACK[:3], **kwargs)
    stack = FrameStack.open(tmp_path / "s.tif")
    assert stack.n_frames == 3
    np.testing.assert_array_equal(stack.to_array(), STACK[:3])
    with pytest.raises(DataError, match="has no channel axis"):
        FrameStack.open(tmp_path / "s.tif", channel=1)


def test_cli_channel_option_reaches_the_reader(tmp_path, capsys):
    path = tmp_path / "rgb.tif"
    tifffile.imwrite(path, CHANNEL_FILES["imagej_tcyx"][0], imagej=True,
                     metadata={"axes": "TCYX"})
    rc, err = run_cli(capsys, "train", path, good(tmp_path, n=3), "--channel", "2")
    assert rc == 2 and "2 and 3 frames" in err  # read as 2 frames of channel 2
    rc, err = run_cli(capsys, "train", path, path, "--channel", "-1")
    assert rc == 2 and "--channel: must be an integer >= 0" in err


# -- 3. pixel values of every kind work or are refused clearly -----------------------------

@pytest.mark.parametrize("dtype", [np.int8, np.int16, np.int32])
def test_negative_integers_train(dtype):
    rng = np.random.default_rng(1)
    low = rng.integers(-100, -10, (2, 40, 40)).astype(dtype)
    high = (low // 2 - 20).astype(dtype)
    p = make_patches(low, high, patch_size=16, patches_per_image=4, seed=0)
    assert len(p.X) + len(p.X_val) == 8 and np.isfinite(p.X).all() and np.isfinite(p.Y).all()


def test_float64_beyond_float32_is_refused(tmp_path, capsys):
    data = np.random.default_rng(5).random((2, 32, 32))
    data[1, 4, 4] = 1e300
    tifffile.imwrite(tmp_path / "huge.tif", data, photometric="minisblack")
    stack = FrameStack.open(tmp_path / "huge.tif")
    with pytest.raises(DataError, match=r"huge.tif: frame 1: values up to 1e\+300 do not fit"):
        stack.to_array()
    rc, err = run_cli(capsys, "train", tmp_path / "huge.tif", tmp_path / "huge.tif",
                      "--patch-size", "16")
    assert rc == 2 and "do not fit float32" in err


@pytest.mark.parametrize("side", ["low", "high"])
@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
def test_constant_training_frame_is_refused(side, dtype):
    rng = np.random.default_rng(2)
    pair = {"low": (rng.random((2, 32, 32)) * 50).astype(dtype),
            "high": (rng.random((2, 32, 32)) * 50).astype(dtype)}
    pair[side][1] = 7
    with pytest.raises(DataError, match=rf"^{side}: frame 1 is constant"):
        make_patches(pair["low"], pair["high"], patch_size=16, patches_per_image=4)


@pytest.mark.parametrize("mode", ["care", "raw"])
def test_scores_against_constant_ground_truth_are_refused(mode):
    restored = np.random.default_rng(3).random((2, 16, 16))
    gt = restored.copy()
    gt[1] = 0.5
    with pytest.raises(ConstantGroundTruthError, match="undefined against a constant"):
        score(restored[1], gt[1], mode, 1.0)
    with pytest.raises(ValueError, match="frame 1: PSNR/SSIM are undefined"):
        score_stack(restored, gt, mode, 1.0)
    assert math.isfinite(score(np.full((16, 16), 2.0), restored[0], mode, 1.0).psnr)


# -- 4. no non-finite result reported as success; parameters checked --------------------------

class FakeModel:
    name, label = "fake_model", "Fake"
    loss = SimpleNamespace(name=SimpleNamespace(value="laplace"))

    def __init__(self, image, scale=None):
        self.image, self.scale = image, scale

    def restore(self, stack, tile_size=512, progress=None):
        return SimpleNamespace(image=self.image, scale=self.scale)


@pytest.mark.parametrize(("image_bad", "scale_bad"), [(True, False), (False, True)])
def test_predict_refuses_nonfinite_restorations(tmp_path, capsys, monkeypatch, image_bad,
                                                scale_bad):
    image, scale = np.ones((3, 32, 32), np.float32), np.ones((3, 32, 32), np.float32)
    (image if image_bad else scale)[2, 5, 5] = np.nan if image_bad else np.inf
    monkeypatch.setattr("napari_care_losses.restore.predict.load_model",
                        lambda _: FakeModel(image, scale))
    out, out_s = tmp_path / "r.tif", tmp_path / "s.tif"
    rc, err = run_cli(capsys, "predict", tmp_path, good(tmp_path), "-o", out,
                      "--scale-output", out_s)
    what = "restoration" if image_bad else "uncertainty map"
    assert rc == 2 and f"{what} of {tmp_path / 'good.tif'} frame 2 with fake_model" in err
    assert "NaN/inf" in err and not out.exists() and not out_s.exists()


def test_predict_writes_a_three_frame_stack_as_frames(tmp_path, capsys, monkeypatch):
    image = np.random.default_rng(4).random((3, 32, 32)).astype(np.float32)
    monkeypatch.setattr("napari_care_losses.restore.predict.load_model", lambda _: FakeModel(image))
    assert cli.main(["predict", str(tmp_path), str(good(tmp_path)), "-o",
                     str(tmp_path / "r.tif")]) == 0
    np.testing.assert_array_equal(FrameStack.open(tmp_path / "r.tif").to_array(), image)


@pytest.mark.parametrize(("argv", "message"), [
    (["predict", "m", "x.tif", "-o", "o.tif", "--tile-size", "8"],
     "--tile-size: must be an integer >= 16, got '8'"),
    (["evaluate", "a.tif", "b.tif", "--data-range", "0"], "--data-range: must be a number > 0"),
    (["evaluate", "a.tif", "b.tif", "--data-range", "nan"], "--data-range: must be a number"),
    (["evaluate", "a.tif", "b.tif", "--channel", "x"], "--channel: must be an integer"),
    (["nonsense"], "invalid choice"),
])
def test_bad_parameters_are_one_line(capsys, argv, message):
    rc, err = run_cli(capsys, *argv)
    assert rc == 2 and message in err


# -- 6. SIGTERM during train; atomic outputs ----------------------------------------------

def test_sigterm_during_train_stops_after_the_batch(tmp_path, capsys, monkeypatch):
    seen = {}

    def fake_train(patches, cfg, out, stop, data_info=None):
        os.kill(os.getpid(), signal.SIGTERM)
        seen["stopped"] = stop.is_set()
        yield from ()

    monkeypatch.setattr("napari_care_losses.io.data.make_patches", lambda *a, **k: None)
    monkeypatch.setattr("napari_care_losses.training.trainer.train", fake_train)
    before = signal.getsignal(signal.SIGTERM)
    rc = cli.main(["train", "low.tif", "high.tif", "--out", str(tmp_path)])
    assert rc == 143 and seen["stopped"]
    assert "Stopping after this batch" in capsys.readouterr().out
    assert signal.getsignal(signal.SIGTERM) is before


def _disk_full(path, *args, **kwargs):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT)
    os.write(fd, b"partial")
    os.close(fd)
    raise OSError(errno.ENOSPC, "No space left on device")


def test_disk_full_leaves_no_partial_files(tmp_path, capsys, monkeypatch):
    scores = {"a": [Score(30.0, 0.9)]}
    target = tmp_path / "scores.csv"
    target.write_text("old\n")
    monkeypatch.setattr(score_tables.Path, "open", lambda self, *a, **k: _disk_full(self))
    with pytest.raises(OSError, match=f"could not write {target}: No space left") as err:
        score_tables.write_csv(target, scores)
    assert err.value.errno == errno.ENOSPC
    monkeypatch.undo()
    assert target.read_text() == "old\n" and os.listdir(tmp_path) == ["scores.csv"]
    score_tables.write_markdown(tmp_path / "scores.md", scores)
    assert "| a |" in (tmp_path / "scores.md").read_text()

    src = good(tmp_path, "in.tif")
    monkeypatch.setattr("napari_care_losses.restore.predict.load_model",
                        lambda _: FakeModel(np.ones((5, 32, 32), np.float32)))
    monkeypatch.setattr(tifffile, "imwrite", _disk_full)
    rc, err = run_cli(capsys, "predict", tmp_path, src, "-o", tmp_path / "r.tif")
    assert rc == 2 and f"could not write {tmp_path / 'r.tif'}: No space left" in err
    assert sorted(os.listdir(tmp_path)) == ["in.tif", "scores.csv", "scores.md"]


# -- 8. errors name the thing; CLI contract ------------------------------------------------

def test_directory_instead_of_file(tmp_path, capsys):
    with pytest.raises(DataError, match=f"{tmp_path}: is a directory, not a TIFF file"):
        FrameStack.open(tmp_path)
    rc, err = run_cli(capsys, "train", tmp_path, good(tmp_path))
    assert rc == 2 and "is a directory, not a TIFF file" in err and "no such file" not in err


def test_memory_errors_name_the_stack(capsys, monkeypatch):
    huge = FrameStack("huge.tif", 10**6, (10**4, 10**4), np.float64, lambda i: None)
    with pytest.raises(MemoryError, match=r"huge.tif: 1000000x10000x10000 float64 needs .*TiB"):
        huge.to_array()

    def oom(*args, **kwargs):
        huge.to_array()

    monkeypatch.setattr("napari_care_losses.io.data.make_patches", oom)
    rc, err = run_cli(capsys, "train", "a.tif", "b.tif")
    assert rc == 2 and "out of memory: huge.tif" in err


@pytest.mark.parametrize(("exc", "rc"), [(zlib.error("Error -3 while decompressing"), 2),
                                         (tifffile.TiffFileError("corrupted IFD"), 2),
                                         (OSError("Unable to open file (truncated file)"), 2),
                                         (TypeError("a bug"), 1)])
def test_any_error_is_one_line_unless_debug(capsys, monkeypatch, exc, rc):
    def fail(*args, **kwargs):
        raise exc

    monkeypatch.setattr("napari_care_losses.io.data.make_patches", fail)
    code, err = run_cli(capsys, "train", "a.tif", "b.tif")
    assert code == rc and str(exc) in err
    for argv in (["--debug", "train", "a.tif", "b.tif"], ["train", "a.tif", "b.tif", "--debug"]):
        with pytest.raises(type(exc)):
            cli.main(argv)


def test_experiment_goes_through_main(tmp_path, capsys):
    rc = cli.main(["experiment", "report", str(tmp_path)])
    assert rc == 2 and "not an experiment results folder" in capsys.readouterr().err


# -- property-based: read whole or refuse ---------------------------------------------------

DTYPES = [np.uint8, np.int8, np.int16, np.uint16, np.int32, np.float32, np.float64]


@HYPO
@given(n=st.integers(1, 4), y=st.integers(8, 24), x=st.integers(8, 24),
       dtype=st.sampled_from(DTYPES), compression=st.sampled_from([None, "zlib"]),
       seed=st.integers(0, 2**16), special=st.sampled_from([None, np.nan, np.inf, 1e300]),
       cut=st.one_of(st.none(), st.floats(0.0, 1.0)))
def test_property_tiff_reads_whole_or_refuses(tmp_path, n, y, x, dtype, compression, seed,
                                              special, cut):
    rng = np.random.default_rng(seed)
    info = np.iinfo(dtype) if np.dtype(dtype).kind in "iu" else None
    data = (rng.integers(info.min, info.max, (n, y, x), endpoint=True).astype(dtype) if info
            else (rng.standard_normal((n, y, x)) * 1e3).astype(dtype))
    if special is not None and info is None and (special != 1e300 or dtype == np.float64):
        data[rng.integers(n), rng.integers(y), rng.integers(x)] = special
    path = tmp_path / f"p{seed}_{n}.tif"
    tifffile.imwrite(path, data, compression=compression, photometric="minisblack")
    if cut is not None:
        raw = path.read_bytes()
        path.write_bytes(raw[:int(len(raw) * cut)])
    try:
        stack = FrameStack.open(path)
        out = stack.to_array()
        stack.close()
    except DataError as exc:
        assert path.name in str(exc)
        return
    np.testing.assert_array_equal(out, data)  # never less, never different
    assert out.dtype.kind in "iu" or np.isfinite(out).all()


@HYPO
@given(shape=st.tuples(st.integers(2, 20), st.integers(2, 20)),
       dtype=st.sampled_from(DTYPES), seed=st.integers(0, 2**16),
       kind=st.sampled_from(["random", "constant_gt", "constant_restored", "same", "special"]),
       mode=st.sampled_from(["care", "raw"]),
       data_range=st.one_of(st.floats(-1.0, 1e6), st.sampled_from([math.nan, 1e-300])))
def test_property_scores_are_finite_or_refused(shape, dtype, seed, kind, mode, data_range):
    rng = np.random.default_rng(seed)
    gt = (rng.random(shape) * 100).astype(dtype)
    restored = (rng.random(shape) * 100).astype(dtype)
    if kind == "constant_gt":
        gt[:] = gt.flat[0]
    elif kind == "constant_restored":
        restored[:] = 3
    elif kind == "same":
        restored = gt.copy()
    elif kind == "special" and np.dtype(dtype).kind == "f":
        restored.flat[0] = rng.choice([np.nan, np.inf, -np.inf, 1e300 if dtype == np.float64
                                       else 1e30])
    try:
        s = score(restored, gt, mode, data_range)
    except ValueError as exc:
        assert str(exc)
        return
    assert math.isfinite(s.ssim)
    if not math.isfinite(s.psnr):  # only a perfect restoration scores +inf
        fit = affine_fit(restored, normalize_gt(gt)) if mode == "care" else restored
        target = normalize_gt(gt) if mode == "care" else gt
        assert s.psnr == math.inf and np.array_equal(np.asarray(fit, np.float64),
                                                     np.asarray(target, np.float64))

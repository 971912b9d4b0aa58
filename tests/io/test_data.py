"""Paired data: loading, validation errors, normalisation and patch cutting."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

from napari_care_losses.io.data import DataError, FrameStack, make_patches, normalize, open_pair


def test_open_tiff_stack_and_2d(tmp_path):
    stack = np.arange(3 * 20 * 24, dtype=np.uint16).reshape(3, 20, 24)
    tifffile.imwrite(tmp_path / "s.tif", stack, photometric="minisblack")  # not RGB
    tifffile.imwrite(tmp_path / "i.tif", stack[0])
    s = FrameStack.open(tmp_path / "s.tif")
    assert (s.n_frames, s.frame_shape, s.dtype) == (3, (20, 24), np.uint16)
    np.testing.assert_array_equal(s.frame(2), stack[2])
    np.testing.assert_array_equal(s.to_array(), stack)
    i = FrameStack.open(tmp_path / "i.tif")
    assert i.n_frames == 1 and i.frame_shape == (20, 24)


def test_compressed_multipage_reads_frame_by_frame(tmp_path):
    stack = np.random.default_rng(0).integers(0, 255, (4, 32, 32), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "c.tif", stack, compression="zlib", photometric="minisblack")
    s = FrameStack.open(tmp_path / "c.tif")
    np.testing.assert_array_equal(s.frame(3), stack[3])


@pytest.mark.parametrize(
    ("shape_low", "shape_high", "message"),
    [((2, 32, 32), (3, 32, 32), "2 and 3 frames"),
     ((2, 32, 32), (2, 32, 40), "(32, 32) and (32, 40) pixels")],
)
def test_pair_mismatch_names_both_files(tmp_path, shape_low, shape_high, message):
    tifffile.imwrite(tmp_path / "low.tif", np.zeros(shape_low, np.uint8), photometric="minisblack")
    tifffile.imwrite(tmp_path / "high.tif", np.zeros(shape_high, np.uint8),
                     photometric="minisblack")
    with pytest.raises(DataError) as err:
        open_pair(tmp_path / "low.tif", tmp_path / "high.tif")
    assert "low.tif" in str(err.value) and "high.tif" in str(err.value)
    assert message in str(err.value)


def test_bad_files_give_clear_errors(tmp_path):
    (tmp_path / "x.tif").write_text("not a tiff")
    with pytest.raises(DataError, match="x.tif: not a readable TIFF"):
        FrameStack.open(tmp_path / "x.tif")
    with pytest.raises(DataError, match="no such file"):
        FrameStack.open(tmp_path / "missing.tif")
    tifffile.imwrite(tmp_path / "4d.tif", np.zeros((2, 5, 16, 16), np.uint8))
    with pytest.raises(DataError, match="4d.tif: expected a 2D image"):
        FrameStack.open(tmp_path / "4d.tif")


def test_patch_larger_than_frame_and_nan_frames():
    low = np.random.default_rng(0).random((2, 24, 24)).astype(np.float32)
    with pytest.raises(DataError, match="smaller than the 32x32"):
        open_pair(low, low, patch_size=32)
    bad = low.copy()
    bad[1, 3, 3] = np.nan
    with pytest.raises(DataError, match="frame 1 contains NaN"):
        make_patches(bad, low, patch_size=16, patches_per_image=4)


def test_normalize_percentiles():
    x = np.linspace(0, 1000, 10001, dtype=np.float32)
    n = normalize(x, 1, 99)
    assert n.dtype == np.float32
    assert abs(np.percentile(n, 1)) < 1e-3 and abs(np.percentile(n, 99) - 1) < 1e-3


def test_make_patches_split_seed_and_layout(sample_pair):
    low, high = sample_pair
    a = make_patches(low, high, patch_size=32, patches_per_image=10, seed=3)
    b = make_patches(low, high, patch_size=32, patches_per_image=10, seed=3)
    c = make_patches(low, high, patch_size=32, patches_per_image=10, seed=4)
    assert a.X.shape == (16, 32, 32, 1) and a.X_val.shape == (4, 32, 32, 1)  # 4:1 split
    assert a.X.dtype == np.float32
    np.testing.assert_array_equal(a.X, b.X)
    assert not np.array_equal(a.X, c.X)
    # targets are the high-SNR patches: smoother than the inputs
    assert np.abs(np.diff(a.Y, axis=1)).mean() < np.abs(np.diff(a.X, axis=1)).mean()


def test_make_patches_reads_each_frame_once():
    """Long stacks are fed lazily: each frame is read once, only patches are kept."""
    rng = np.random.default_rng(0)
    reads: list[int] = []

    def reader(i):
        reads.append(i)
        return rng.integers(0, 255, (128, 128), dtype=np.uint8)

    low = FrameStack("low", 12, (128, 128), np.uint8, reader)
    high = FrameStack("high", 12, (128, 128), np.uint8, reader)
    p = make_patches(low, high, patch_size=32, patches_per_image=2, seed=0)
    assert len(p.X) + len(p.X_val) == 24
    assert sorted(reads) == sorted(list(range(12)) * 2)


def test_dihedral_augmenter_moves_input_and_target_alike():
    from napari_care_losses.io.data import dihedral_augmenter

    x = np.arange(16, dtype=np.float32).reshape(4, 4, 1)
    augment = dihedral_augmenter(seed=3)
    seen = set()
    for _ in range(200):
        ax, ay = augment(x, 10 * x + 1)
        assert ax.shape == x.shape and np.array_equal(ay, 10 * ax + 1)
        seen.add(ax.tobytes())
    assert len(seen) == 8  # every flip/rotation of the square, and nothing else
    assert all(sorted(np.frombuffer(b, np.float32)) == list(range(16)) for b in seen)

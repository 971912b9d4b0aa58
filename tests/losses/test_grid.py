"""The spatial grid of a loss (TensorFlow-free): per-axis lengths from the voxel size,
window radii, the MS-SSIM pooling plan and the checks that name the axis."""

from __future__ import annotations

import numpy as np
import pytest

from napari_care_losses.losses import SSIM_WINDOW, Grid, gaussian_radius, msssim_scales


def test_lengths_per_axis_follow_the_voxel_size() -> None:
    grid = Grid.make(3, (16, 64, 64), (0.5, 0.2, 0.1))
    assert grid.axes == ("Z", "Y", "X")
    assert grid.anisotropy == pytest.approx(0.5 / 0.1)
    sz, sy, sx = grid.per_axis(3.0)
    assert (sz, sy, sx) == pytest.approx((3.0 / grid.anisotropy, 3.0 * 0.1 / 0.2, 3.0))
    assert grid.gaussian_radii(3.0) == tuple(gaussian_radius(s) for s in (sz, sy, sx))
    iso = Grid.make(3, 32)
    assert iso.patch == (32, 32, 32) and iso.per_axis(2.5) == (2.5, 2.5, 2.5)
    assert Grid.make(3, None, (1.0, 1.0, 1.0)).per_axis(2.5) == iso.per_axis(2.5)
    assert Grid.make(3, np.array([8, 32, 48]), np.array([2, 1, 1])) == Grid(
        3, (8, 32, 48), (2.0, 1.0, 1.0))


def test_2d_grid_is_the_old_behaviour() -> None:
    grid = Grid.make(2, 64)
    size, sigma = SSIM_WINDOW
    assert grid.patch == (64, 64) and grid.anisotropy == 1.0
    assert grid.ssim_window() == ((sigma, sigma), ((size - 1) // 2,) * 2)
    for patch in (None, 11, 32, 64, 176):
        steps = msssim_scales(patch) - 1
        assert Grid.make(2, patch).msssim_pools() == ((2, 2),) * steps


@pytest.mark.parametrize("dz", [0.1, 0.2, 0.35, 0.5, 1.0])
def test_ssim_window_scales_along_z(dz) -> None:
    grid = Grid.make(3, None, (dz, 0.1, 0.1))
    (sz, sy, sx), (rz, ry, rx) = grid.ssim_window()
    half = (SSIM_WINDOW[0] - 1) // 2
    assert (sy, sx, ry, rx) == (SSIM_WINDOW[1], SSIM_WINDOW[1], half, half)
    assert sz == pytest.approx(SSIM_WINDOW[1] * 0.1 / dz)
    assert abs(rz - half * 0.1 / dz) <= 0.5


def test_msssim_halves_z_while_the_halved_stack_holds_the_window() -> None:
    for z in (8, 16, 24, 32, 64, 128):
        for dz in (0.1, 0.2, 0.4):
            grid = Grid.make(3, (z, 128, 128), (dz, 0.1, 0.1))
            taps = 2 * grid.ssim_window()[1][0] + 1
            left = z
            for fz, fy, fx in grid.msssim_pools():
                assert (fy, fx) == (2, 2)
                assert fz == (2 if left // 2 >= taps else 1)
                left //= fz
            assert len(grid.msssim_pools()) == msssim_scales(128) - 1
    assert {p[0] for p in Grid.make(3).msssim_pools()} == {1}  # no patch: Z kept


def test_too_small_names_the_axes() -> None:
    grid = Grid.make(3, (8, 64, 20))
    assert grid.too_small((8, 3, 19)) == ["Z"]
    assert grid.too_small((7, 3, 20)) == ["X"]
    assert grid.too_small((4, 5, 10), taps=True) == ["Z", "X"]
    assert Grid.make(3).too_small((100, 100, 100)) == []


@pytest.mark.parametrize(
    "args, match",
    [((4,), "ndim 2 or 3"), ((1,), "ndim 2 or 3"),
     ((3, (8, 64)), r"patch size must be 3 positive numbers \(Z, Y, X\)"),
     ((3, (8, 0, 64)), "patch size must be 3 positive"),
     ((3, (8.5, 32, 32)), "patch size must be whole numbers of pixels"),
     ((2, 0), "patch size must be a positive whole number of pixels, got 0"),
     ((3, 7.5), "patch size must be a positive whole number of pixels, got 7.5"),
     ((2, 32, (1.0, 1.0)), "voxel size applies to 3D"),
     ((3, None, (1.0, -1.0, 1.0)), "voxel size must be 3 positive"),
     ((3, None, "abc"), "voxel size must be 3 numbers")])
def test_bad_grids_one_line(args, match) -> None:
    with pytest.raises(ValueError, match=match) as err:
        Grid.make(*args)
    assert "\n" not in str(err.value)

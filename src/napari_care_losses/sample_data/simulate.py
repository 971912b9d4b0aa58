"""Simulated widefield volumes: paired low/high-exposure Z-stacks of 3D structures.

No paired 3D data can be shipped with this package, so the 3D sample is simulated, seeded
and reproducible (``scripts/make_sample_volumes.py`` writes the bundled files). The model,
step by step:

1. **Object** on the voxel grid (``Z, Y, X``; default voxel 0.3 × 0.1 × 0.1 µm): curved
   filaments (persistent 3D random walks, ~25 nm thick, drawn as points and widened by a
   sub-voxel Gaussian), hollow vesicles (shells of 0.15–0.4 µm radius) and a few dim,
   smooth cytoplasm blobs, each with its own brightness. The object is simulated with
   :data:`AXIAL_MARGIN_UM` extra depth above and below, so that light from outside the
   stack reaches it as in a real sample, then cropped.
2. **Widefield PSF** (anisotropic, with out-of-focus light): in focus a Gaussian of
   ``σ_xy = 0.21 λ/NA`` (Zhang, Zerubia & Olivo-Marin, Appl. Opt. 2007). Within the depth
   of field (``2 z_R = 2 λ n / NA²``, the axial FWHM of the in-focus spot) the spot widens
   as ``σ_xy √(1 + (dz/z_R)²)``; beyond it a plane at defocus ``dz`` also gets the
   geometrical blur of a disc of radius ``(|dz| − z_R)·tan(asin(NA/n))`` (a widefield
   microscope gathers the light of every plane, spread ever wider), modelled as a Gaussian
   of half that radius; the weight of each plane falls off as ``exp(−dz²/2σ_w²)``
   (``σ_w = 0.66 λ n / NA²``, the same paper's axial width, times :data:`HAZE_FACTOR`).
   Each plane of the kernel is normalised, then the whole kernel, so the blur conserves
   photons. The in-focus spot is ~4× longer axially than wide (≈1 µm against ≈0.25 µm
   FWHM), the anisotropy real widefield Z-stacks have.
3. **Camera**: expected photons = blurred object × ``peak_photons`` + background; the
   low-exposure stack gets ``1/exposure_ratio`` of the photons (default 1/20, CARE's
   typical cut); both get Poisson shot noise, Gaussian read noise (sCMOS, 1.6 e⁻ rms),
   a gain and an offset, and are quantised to uint16 as a camera does.

:func:`simulate_pair` returns one pair, :func:`simulate_pairs` several (each its own
seed). Qt-free and TensorFlow-free.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage
from scipy.signal import fftconvolve

#: Extra depth (µm) simulated above and below the stack, then cropped.
AXIAL_MARGIN_UM = 2.0
#: Fluorophores per voxel along a filament, relative to a vesicle membrane's.
FILAMENT_DENSITY = 6.0
#: Width of the out-of-focus weight relative to the in-focus axial width.
HAZE_FACTOR = 3.0


@dataclass(frozen=True)
class Optics:
    """Objective, emission and sampling: the PSF follows from these."""

    na: float = 1.2
    immersion_index: float = 1.33  # water
    wavelength_um: float = 0.52  # emission (GFP-like)
    voxel_um: tuple[float, float, float] = (0.3, 0.1, 0.1)  # (z, y, x)

    @property
    def sigma_xy_um(self) -> float:
        return 0.21 * self.wavelength_um / self.na

    @property
    def sigma_axial_um(self) -> float:
        return 0.66 * self.wavelength_um * self.immersion_index / self.na ** 2

    @property
    def depth_of_field_um(self) -> float:
        """Axial FWHM of the in-focus spot, 2 λ n / NA²."""
        return 2 * self.wavelength_um * self.immersion_index / self.na ** 2

    @property
    def half_angle(self) -> float:
        return float(np.arcsin(min(self.na / self.immersion_index, 0.999)))


@dataclass(frozen=True)
class Camera:
    """Photon budget and detector (electrons and ADU)."""

    peak_photons: float = 600.0  # expected photons at the brightest voxel, high exposure
    background_photons: float = 8.0  # per voxel, high exposure (autofluorescence, stray light)
    exposure_ratio: float = 20.0  # high / low exposure time
    read_noise_e: float = 1.6
    gain_adu_per_e: float = 1.0
    offset_adu: float = 100.0


@dataclass(frozen=True)
class Structures:
    """How much of each kind of structure one volume holds (per 10⁴ µm² of field)."""

    filaments: float = 800.0
    vesicles: float = 1500.0
    blobs: float = 12.0
    extra: dict = field(default_factory=dict)


@dataclass(frozen=True)
class SimulatedPair:
    """One simulated acquisition: uint16 ``(Z, Y, X)`` stacks and the noise-free truth."""

    low: np.ndarray
    high: np.ndarray
    truth: np.ndarray  # blurred expected photons of the high exposure (float32), no noise
    voxel_um: tuple[float, float, float]
    seed: int


def widefield_psf(optics: Optics, shape_zyx: tuple[int, int, int] | None = None) -> np.ndarray:
    """The anisotropic widefield kernel on the voxel grid (float64, sums to 1, odd sides)."""
    dz, dy, dx = optics.voxel_um
    s_xy = optics.sigma_xy_um
    s_w = optics.sigma_axial_um * HAZE_FACTOR
    tan = np.tan(optics.half_angle)
    if shape_zyx is None:
        hz = int(np.ceil(3 * s_w / dz))
        hr = int(np.ceil((3 * s_w * tan / 2 + 4 * s_xy) / dy))
        shape_zyx = (2 * hz + 1, 2 * hr + 1, 2 * hr + 1)
    nz, ny, nx = shape_zyx
    z = (np.arange(nz) - nz // 2) * dz
    y = (np.arange(ny) - ny // 2) * dy
    x = (np.arange(nx) - nx // 2) * dx
    r2 = y[:, None] ** 2 + x[None, :] ** 2
    kernel = np.empty(shape_zyx)
    z_r = optics.depth_of_field_um / 2
    for i, zi in enumerate(z):
        s = np.sqrt(s_xy ** 2 * (1 + (zi / z_r) ** 2) + (max(abs(zi) - z_r, 0) * tan / 2) ** 2)
        plane = np.exp(-r2 / (2 * s * s))
        kernel[i] = plane / plane.sum() * np.exp(-zi * zi / (2 * s_w * s_w))
    return kernel / kernel.sum()


def _filaments(vol: np.ndarray, rng: np.random.Generator, n: int, voxel) -> None:
    nz, ny, nx = vol.shape
    step_um = 0.05
    for _ in range(n):
        pos = rng.uniform(0, 1, 3) * np.array([nz, ny, nx]) * voxel
        direction = rng.normal(size=3)
        direction[0] *= 0.3  # filaments lie mostly in the lateral plane (a cell's cortex)
        direction /= np.linalg.norm(direction)
        length = rng.uniform(4.0, 14.0)
        brightness = rng.uniform(0.4, 1.0)
        pts = []
        for _ in range(int(length / step_um)):
            direction += rng.normal(scale=0.08, size=3)  # persistence length ~ a few µm
            direction[0] *= 0.9
            direction /= np.linalg.norm(direction)
            pos = pos + direction * step_um
            pts.append(pos)
        idx = np.round(np.asarray(pts) / voxel).astype(int)
        ok = np.all((idx >= 0) & (idx < vol.shape), axis=1)
        np.add.at(vol, tuple(idx[ok].T), FILAMENT_DENSITY * brightness * step_um / voxel[1])


def _vesicles(vol: np.ndarray, rng: np.random.Generator, n: int, voxel) -> None:
    for _ in range(n):
        r = rng.uniform(0.15, 0.4)
        c = rng.uniform(0, 1, 3) * np.array(vol.shape)
        lo = np.maximum(np.floor(c - (r + 0.2) / voxel).astype(int), 0)
        hi = np.minimum(np.ceil(c + (r + 0.2) / voxel).astype(int) + 1, vol.shape)
        if np.any(hi <= lo):
            continue
        sl = tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))
        axes = [(np.arange(a, b) - ci) * v for a, b, ci, v in zip(lo, hi, c, voxel, strict=True)]
        d = np.sqrt(axes[0][:, None, None] ** 2 + axes[1][None, :, None] ** 2
                    + axes[2][None, None, :] ** 2)
        shell = np.exp(-((d - r) ** 2) / (2 * 0.04 ** 2))  # a membrane ~ 0.1 µm thick
        vol[sl] += rng.uniform(0.15, 0.5) * shell


def _blobs(vol: np.ndarray, rng: np.random.Generator, n: int, voxel) -> None:
    seeds = np.zeros(vol.shape, np.float32)
    idx = tuple(rng.integers(0, s, n) for s in vol.shape)
    seeds[idx] = rng.uniform(0.5, 1.0, n)
    sigma = [1.0 / v for v in voxel]  # ~1 µm wide, isotropic in µm
    blob = ndimage.gaussian_filter(seeds, sigma)
    if blob.max() > 0:
        vol += 0.08 * blob / blob.max()


def simulate_object(shape_zyx, voxel_um, structures: Structures, rng) -> np.ndarray:
    """Fluorophore density (float32, brightest voxel ~1) of one field."""
    vol = np.zeros(shape_zyx, np.float32)
    area = shape_zyx[1] * voxel_um[1] * shape_zyx[2] * voxel_um[2] / 1e4
    voxel = np.asarray(voxel_um)
    _filaments(vol, rng, max(1, round(structures.filaments * area)), voxel)
    _vesicles(vol, rng, max(1, round(structures.vesicles * area)), voxel)
    _blobs(vol, rng, max(1, round(structures.blobs * area)), voxel)
    vol = ndimage.gaussian_filter(vol, [0.3, 0.5, 0.5])  # sub-resolution thickness
    return vol / max(float(np.percentile(vol, 99.99)), 1e-6)


def _camera(expected: np.ndarray, cam: Camera, rng: np.random.Generator) -> np.ndarray:
    electrons = rng.poisson(np.maximum(expected, 0)).astype(np.float32)
    electrons += rng.normal(scale=cam.read_noise_e, size=expected.shape).astype(np.float32)
    adu = np.round(electrons * cam.gain_adu_per_e + cam.offset_adu)
    return np.clip(adu, 0, np.iinfo(np.uint16).max).astype(np.uint16)


def simulate_pair(shape_zyx: tuple[int, int, int] = (32, 128, 128), seed: int = 0,
                  optics: Optics | None = None, camera: Camera | None = None,
                  structures: Structures | None = None) -> SimulatedPair:
    """One seeded low/high pair of ``shape_zyx`` voxels (uint16)."""
    optics, camera = optics or Optics(), camera or Camera()
    structures = structures or Structures()
    rng = np.random.default_rng(seed)
    margin = int(round(AXIAL_MARGIN_UM / optics.voxel_um[0]))
    full = (shape_zyx[0] + 2 * margin, *shape_zyx[1:])
    obj = simulate_object(full, optics.voxel_um, structures, rng)
    psf = widefield_psf(optics)
    pad = [(k // 2, k // 2) for k in psf.shape]
    padded = np.pad(obj, [(0, 0), *pad[1:]], mode="reflect")  # lateral: the cell goes on
    blurred = fftconvolve(padded, psf, mode="same")
    blurred = blurred[margin:margin + shape_zyx[0], pad[1][0]:pad[1][0] + shape_zyx[1],
                      pad[2][0]:pad[2][0] + shape_zyx[2]]
    blurred = np.maximum(blurred, 0) / max(float(blurred.max()), 1e-9)
    high_photons = (blurred * camera.peak_photons + camera.background_photons).astype(np.float32)
    low_photons = high_photons / camera.exposure_ratio
    high = _camera(high_photons, camera, rng)
    low = _camera(low_photons, camera, rng)
    return SimulatedPair(low, high, high_photons, tuple(optics.voxel_um), seed)


def simulate_pairs(n: int, shape_zyx: tuple[int, int, int] = (32, 128, 128), seed: int = 0,
                   **kwargs) -> list[SimulatedPair]:
    """``n`` pairs with seeds ``seed … seed + n − 1`` (independent fields)."""
    return [simulate_pair(shape_zyx, seed + i, **kwargs) for i in range(n)]

"""Write the bundled simulated 3D sample (run by maintainers; the files are in the package).

Usage: python scripts/make_sample_volumes.py

Writes ``src/napari_care_losses/sample_data/sim3d_{train,test}_{low,high}.tif``: uint16
``(T, Z, Y, X)`` ImageJ hyperstacks of 32×128×128 voxels (0.3 × 0.1 × 0.1 µm), 3 training
volumes (seeds 0–2) and 1 held-out volume (seed 100), zlib-compressed, from
:mod:`napari_care_losses.sample_data.simulate`. ``tests/sample_data`` checks that the
generator still reproduces these files bit for bit.
"""

from __future__ import annotations

from napari_care_losses.sample_data import VOLUME_SPLITS, volume_sample_path, write_volume
from napari_care_losses.sample_data.simulate import simulate_pairs


def main() -> None:
    for split, (n, seed) in VOLUME_SPLITS.items():
        pairs = simulate_pairs(n, seed=seed)
        for kind in ("low", "high"):
            path = volume_sample_path(split, kind)
            write_volume(path, [getattr(p, kind) for p in pairs], pairs[0].voxel_um)
            print(f"wrote {path} ({path.stat().st_size / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()

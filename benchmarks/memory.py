"""Peak memory of patch cutting on a long stack and of tiled prediction on a large frame.

1. Writes a synthetic stack of ``--frames`` frames of ``--size``² uint16 to a temporary
   TIFF (default 200 x 2048², 1.6 GB) and measures the peak resident memory added while
   ``make_patches`` cuts ``--patches`` 64 px patches per frame: it should stay near the size
   of the patches, not the stack.
2. Restores one ``--size``² frame with an (untrained) CSBDeep-default U-Net, with 512 px
   tiles and without tiling, and reports the peak memory added by each.

Usage: python benchmarks/memory.py [--frames 200 --size 2048 --patches 8]
Prints a table and writes ``benchmarks/results/memory.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import psutil  # noqa: E402
import tifffile  # noqa: E402

from napari_care_losses.config.train import TrainConfig  # noqa: E402
from napari_care_losses.io.data import make_patches  # noqa: E402
from napari_care_losses.restore.predict import load_model  # noqa: E402
from napari_care_losses.training.trainer import run_training  # noqa: E402

MB = 1024**2


class PeakRSS:
    """Samples this process's resident memory every 5 ms; ``.peak_added`` in MB."""

    def __enter__(self):
        self.proc = psutil.Process()
        self.base = self.peak = self.proc.memory_info().rss
        self._run = True
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self):
        while self._run:
            self.peak = max(self.peak, self.proc.memory_info().rss)
            time.sleep(0.005)

    def __exit__(self, *exc):
        self._run = False
        self._thread.join()
        self.peak_added = (self.peak - self.base) / MB


def write_stack(path: Path, frames: int, size: int) -> None:
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:size, :size]
    base = (1000 + 800 * np.sin(xx / 37.0) * np.cos(yy / 23.0)).astype(np.float32)
    with tifffile.TiffWriter(path, bigtiff=True) as tif:
        for _ in range(frames):
            frame = base + rng.normal(0, 100, base.shape).astype(np.float32)
            tif.write(np.clip(frame, 0, 65535).astype(np.uint16), contiguous=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=200)
    ap.add_argument("--size", type=int, default=2048)
    ap.add_argument("--patches", type=int, default=8, help="patches per frame")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/memory.json"))
    args = ap.parse_args()
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        low, high = Path(tmp) / "low.tif", Path(tmp) / "high.tif"
        t = time.perf_counter()
        write_stack(low, args.frames, args.size)
        write_stack(high, args.frames, args.size)
        stack_mb = low.stat().st_size / MB
        print(f"wrote 2 x {stack_mb:.0f} MB in {time.perf_counter() - t:.0f} s", flush=True)
        with PeakRSS() as m:
            t = time.perf_counter()
            p = make_patches(low, high, 64, args.patches, seed=0)
            dt = time.perf_counter() - t
        patches_mb = 2 * (p.X.nbytes + p.X_val.nbytes) / MB
        rows["make_patches"] = {"stack_mb_each": stack_mb, "patches_mb": patches_mb,
                                "peak_added_mb": m.peak_added, "seconds": dt}
        # a CSBDeep-default U-Net saved after one step, then used to restore a big frame
        cfg = TrainConfig(loss=TrainConfig().loss, epochs=1, steps_per_epoch=1, batch_size=4)
        done = run_training(p, cfg, Path(tmp) / "models")
        del p
        model = load_model(done.model_dir)
        frame = tifffile.imread(low, key=0)
        model.restore(frame[:256, :256])  # load weights, build graph
        for tile in (512, args.size):
            with PeakRSS() as m:
                t = time.perf_counter()
                model.restore(frame, tile_size=tile)
                dt = time.perf_counter() - t
            rows[f"predict_tile_{tile}"] = {"frame": args.size, "peak_added_mb": m.peak_added,
                                            "seconds": dt}
    print("\n| step | peak memory added (MB) | seconds | note |\n| --- | ---: | ---: | --- |")
    mp = rows["make_patches"]
    print(f"| make_patches, {args.frames} x {args.size}² uint16 | {mp['peak_added_mb']:.0f} | "
          f"{mp['seconds']:.1f} | stacks {mp['stack_mb_each']:.0f} MB each, "
          f"patches {mp['patches_mb']:.0f} MB |")
    for tile in (512, args.size):
        r = rows[f"predict_tile_{tile}"]
        print(f"| restore one {args.size}² frame, tiles ≤ {tile} px | {r['peak_added_mb']:.0f} | "
              f"{r['seconds']:.1f} | |")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(rows, indent=2))
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()

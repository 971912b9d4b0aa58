"""Per-image PSNR/SSIM tables (CSV and Markdown) for the CLI and the demo."""

from __future__ import annotations

import csv
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from ..io.tiff import atomic_path
from .metrics import Score


def score_rows(scores: Mapping[str, Sequence[Score]]) -> tuple[list[str], list[list[str]]]:
    """Header and rows: one row per image (plus ``mean``), PSNR and SSIM per method."""
    methods = list(scores)
    n = {len(v) for v in scores.values()}
    if len(n) != 1:
        raise ValueError(f"methods scored different numbers of images: {sorted(n)}")
    header = ["image"] + [f"{m} {k}" for m in methods for k in ("PSNR", "SSIM")]
    rows = []
    for i in range(n.pop()):
        rows.append([str(i)] + [f"{v:.4f}" for m in methods
                                for v in (scores[m][i].psnr, scores[m][i].ssim)])
    rows.append(["mean"] + [f"{v:.4f}" for m in methods
                            for v in (np.mean([s.psnr for s in scores[m]]),
                                      np.mean([s.ssim for s in scores[m]]))])
    return header, rows


def write_csv(path: str | Path, scores: Mapping[str, Sequence[Score]]) -> Path:
    """Write the table atomically: ``path`` is complete or untouched (see ``atomic_path``)."""
    header, rows = score_rows(scores)
    path = Path(path)
    with atomic_path(path) as tmp, tmp.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def write_markdown(path: str | Path, scores: Mapping[str, Sequence[Score]]) -> Path:
    """Write :func:`to_markdown`'s table atomically."""
    text = to_markdown(scores)
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return path


def to_markdown(scores: Mapping[str, Sequence[Score]]) -> str:
    """Markdown table; the best mean PSNR and SSIM are in bold."""
    methods = list(scores)
    means = {m: (np.mean([s.psnr for s in v]), np.mean([s.ssim for s in v]))
             for m, v in scores.items()}
    best_p = max(methods, key=lambda m: means[m][0])
    best_s = max(methods, key=lambda m: means[m][1])
    lines = ["| method | PSNR (dB) | SSIM |", "| --- | ---: | ---: |"]
    for m in methods:
        p = f"{means[m][0]:.2f}"
        s = f"{means[m][1]:.4f}"
        lines.append(f"| {m} | {'**' + p + '**' if m == best_p else p} | "
                     f"{'**' + s + '**' if m == best_s else s} |")
    return "\n".join(lines) + "\n"

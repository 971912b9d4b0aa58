"""The words of a grouped comparison: one verdict line per group and metric, and the
per-image mean ± SD across seeds, for the compare dock, ``evaluate`` and reports.

::

  FFT vs Laplace: +0.32 dB (SD between seeds 0.10 vs 0.12; 3 seeds × 14 frames), p = 0.004 — better
  TV vs Laplace: -1.20 dB (TV fixed, SD between Laplace seeds 0.12; 3 seeds × 14 frames), p …
  Bandpass vs Laplace: one model each — cannot separate the loss from the seed

Other metrics read ``FFT vs Laplace: SSIM +0.0040 (…)`` with four decimals.
The effect is the mean difference over images and seeds; p and the word come from the test
across seeds (:mod:`.verdicts`). ``per_image=True`` adds the per-image paired test's p.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from .verdicts import GroupVerdict, MethodGroup

CANNOT_SEPARATE = "cannot separate the loss from the seed"
METRIC_NAMES = {"psnr": "PSNR", "ssim": "SSIM", "microssim": "MicroSSIM"}


def metric_name(metric: str) -> str:
    return METRIC_NAMES.get(metric, metric.upper())


def digits(metric: str) -> int:
    """Decimals shown: 2 for PSNR (dB), 4 for SSIM-like scores."""
    return 2 if metric == "psnr" else 4


def _effect(diff: float, metric: str) -> str:
    d = digits(metric)
    return f"{diff:+.{d}f} dB" if metric == "psnr" else f"{metric_name(metric)} {diff:+.{d}f}"


def format_p(p: float) -> str:
    """``p = 0.004``, ``p < 0.001``, ``p = –`` (no test)."""
    if p is None or math.isnan(p):
        return "p = –"
    return "p < 0.001" if p < 0.001 else f"p = {p:.3f}"


def verdict_line(v: GroupVerdict, metric: str = "psnr", unit: str = "frames",
                 per_image: bool = False) -> str:
    """The line a microscopist reads for ``v`` on ``metric`` (module doc).

    ``unit`` names the test images ("frames", "images", "fields"); ``per_image`` adds the
    per-image paired test's p in brackets (secondary: it does not see the seed spread).
    """
    head = f"{v.label} vs {v.reference}"
    if not v.separable:
        if v.seeds == 1 and v.ref_seeds == 1:
            who = "one model each"
        else:
            who = f"one {v.label if v.seeds == 1 else v.reference} model"
        return f"{head}: {who} — {CANNOT_SEPARATE}"
    m = v.metrics[metric]
    d = digits(metric)
    if v.seeds == 0 and v.ref_seeds == 0:  # two deterministic methods: only (a) applies
        word = {"n.s.": "no difference"}.get(m.image_result, m.image_result)
        return (f"{head}: {_effect(m.diff, metric)} (both fixed; {v.n_images} {unit}), "
                f"per-image {format_p(m.image_p)} — {word}")
    if v.seeds == 0:
        spread = f"{v.label} fixed, SD between {v.reference} seeds {m.ref_sd:.{d}f}"
    elif v.ref_seeds == 0:
        spread = f"SD between {v.label} seeds {m.sd:.{d}f}, {v.reference} fixed"
    else:
        spread = f"SD between seeds {m.sd:.{d}f} vs {m.ref_sd:.{d}f}"
    counts = [k for k in (v.seeds, v.ref_seeds) if k]
    seeds = (f"{counts[0]}" if len(set(counts)) == 1 else f"{counts[0]} vs {counts[1]}")
    text = f"{head}: {_effect(m.diff, metric)} ({spread}; {seeds} seeds × {v.n_images} {unit})"
    if m.seed_result == "n/a":  # every model scored the same: no spread to test against
        return f"{text} — no spread between seeds to test against"
    text += f", {format_p(m.seed_p)}"
    if per_image:
        text += f" (per image: {format_p(m.image_p)})"
    return f"{text} — {m.seed_result}"


def verdict_lines(verdicts: Sequence[GroupVerdict], metrics: Sequence[str] | None = None,
                  unit: str = "frames", per_image: bool = False) -> list[str]:
    """:func:`verdict_line` for each verdict and metric (default: all the verdicts have, in
    order), metric by metric; a group that cannot be judged (one model) gets its line once."""
    if metrics is None:
        metrics = list(dict.fromkeys(m for v in verdicts for m in v.metrics))
    lines = []
    for metric in metrics:
        for v in verdicts:
            if not v.separable:
                if metric == metrics[0]:
                    lines.append(verdict_line(v, metric, unit))
            elif metric in v.metrics:
                lines.append(verdict_line(v, metric, unit, per_image))
    return lines


def mean_sd_text(mean: float, sd: float, metric: str) -> str:
    """``30.12 ± 0.10``; just ``30.12`` without an SD (one model, or a fixed method)."""
    d = digits(metric)
    if mean is None or math.isnan(mean):
        return "–"
    return f"{mean:.{d}f}" + ("" if sd is None or math.isnan(sd) else f" ± {sd:.{d}f}")


def image_table(groups: Sequence[MethodGroup], metric: str, unit: str = "frame"
                ) -> tuple[list[str], list[list[str]]]:
    """Header ``frame, FFT, Laplace, …`` and one row per image: mean over seeds ± SD across
    seeds; the last row, ``mean``, is the mean over images and seeds ± the SD between the
    seed means. A group without ``metric`` gets ``–``."""
    groups = list(groups)
    n = max((g.n_images for g in groups), default=0)
    cols = []
    for g in groups:
        if metric not in g.metrics:
            cols.append(["–"] * (n + 1))
            continue
        mean, sd = g.image_mean_sd(metric)
        cols.append([mean_sd_text(float(a), float(b), metric) for a, b in zip(mean, sd,
                                                                               strict=True)]
                    + ["–"] * (n - g.n_images) + [mean_sd_text(*g.mean_sd(metric), metric)])
    rows = [[str(i), *(c[i] for c in cols)] for i in range(n)]
    rows.append(["mean", *(c[n] for c in cols)])
    return [unit, *(g.label for g in groups)], rows


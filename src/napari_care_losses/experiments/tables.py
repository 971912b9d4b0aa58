"""Per-image score tables, paired t-tests against the reference method, gains over the input.

All functions take ``scores``: an ordered mapping ``column label -> {"psnr": [...],
"ssim": [...]}`` (one value per test image, the first column being ``Input``), as read by
:func:`load_case_scores` from a results folder.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .jobs import read_scores

METRICS = ("psnr", "ssim")
METRIC_LABELS = {"psnr": "PSNR (dB)", "ssim": "SSIM"}
ALPHA = 0.05
Scores = Mapping[str, Mapping[str, Sequence[float]]]


def load_case_scores(outdir: str | Path, case: Mapping[str, Any]) -> dict[str, dict[str, list]]:
    """Scores of one case (table) from its jobs' JSON files; missing jobs are left out."""
    out = {}
    for col in case["columns"]:
        data = read_scores(outdir, col["scores_file"], col["key"])
        if data is not None:
            out[col["label"]] = {m: list(map(float, data[m])) for m in METRICS}
    return out


def per_image_rows(scores: Scores, metric: str) -> tuple[list[str], list[list[Any]]]:
    """Header ``image, Input, Laplace, ...`` and one row per image plus ``mean`` (NaN = missing)."""
    labels = list(scores)
    n = max((len(v[metric]) for v in scores.values()), default=0)
    header = ["image", *labels]
    rows: list[list[Any]] = []
    for i in range(n):
        rows.append([str(i), *(scores[c][metric][i] if i < len(scores[c][metric]) else math.nan
                               for c in labels)])
    rows.append(["mean", *(float(np.mean(scores[c][metric])) if len(scores[c][metric])
                           else math.nan for c in labels)])
    return header, rows


def _cell(value: Any, digits: int) -> str:
    if isinstance(value, str):
        return value
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return f"{value:.{digits}f}"


def to_csv(header: Sequence[str], rows: Sequence[Sequence[Any]], digits: int = 6) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    for r in rows:
        w.writerow([_cell(v, digits) for v in r])
    return buf.getvalue()


def to_markdown(header: Sequence[str], rows: Sequence[Sequence[Any]], digits: int = 2,
                bold_max_row: str | None = "mean", first: int = 2) -> str:
    """A Markdown table; in the row ``bold_max_row`` the largest value from column ``first``
    on is bold (by default the Input column, 1, is not a candidate)."""
    lines = ["| " + " | ".join(header) + " |",
             "| --- |" + " ---: |" * (len(header) - 1)]
    for r in rows:
        cells = [_cell(v, digits) or "–" for v in r]
        if r[0] == bold_max_row:
            nums = [v for v in r[first:] if isinstance(v, float) and not math.isnan(v)]
            if nums:
                best = max(nums)
                cells = [f"**{c}**" if j >= first and r[j] == best else c
                         for j, c in enumerate(cells)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def verdict(diff: float, p: float, alpha: float = ALPHA) -> str:
    """``better``/``worse`` than the reference if significant at ``alpha``, else ``n.s.``."""
    if p is None or math.isnan(p):
        return "n/a"
    if p < alpha:
        return "better" if diff > 0 else "worse"
    return "n.s."


def ttests(scores: Scores, reference: str, alpha: float = ALPHA) -> list[dict[str, Any]]:
    """Paired t-test (``scipy.stats.ttest_rel``) of every other column against ``reference``.

    One dict per column: ``method``, ``n`` and for each metric the mean difference
    (column - reference), ``t``, ``p`` and the verdict (better/worse/n.s., or n/a).
    """
    from scipy.stats import ttest_rel

    if reference not in scores:
        return []
    ref = scores[reference]
    out = []
    for label, vals in scores.items():
        if label == reference:
            continue
        row: dict[str, Any] = {"method": label}
        for m in METRICS:
            a, b = np.asarray(vals[m], float), np.asarray(ref[m], float)
            n = min(len(a), len(b))
            a, b = a[:n], b[:n]
            row["n"] = n
            diff = float(np.mean(a - b)) if n else math.nan
            if n >= 2 and np.any(a != b):
                res = ttest_rel(a, b)
                t, p = float(res.statistic), float(res.pvalue)
            else:
                t, p = math.nan, math.nan
            row.update({f"{m}_diff": diff, f"{m}_t": t, f"{m}_p": p,
                        f"{m}_result": verdict(diff, p, alpha)})
        out.append(row)
    return out


TTEST_HEADER = ["method", "n", "ΔPSNR", "t (PSNR)", "p (PSNR)", "PSNR",
                "ΔSSIM", "t (SSIM)", "p (SSIM)", "SSIM"]


def ttest_rows(tests: Sequence[Mapping[str, Any]]) -> list[list[Any]]:
    return [[r["method"], str(r["n"]),
             *(r[f"{m}_{k}"] for m in METRICS for k in ("diff", "t", "p", "result"))]
            for r in tests]


def ttest_markdown(tests: Sequence[Mapping[str, Any]], reference: str,
                   alpha: float = ALPHA) -> str:
    def p(v: float) -> str:
        return "–" if math.isnan(v) else (f"{v:.2e}" if v < 1e-3 else f"{v:.3f}")

    lines = [f"Paired t-test against **{reference}** (α = {alpha}); Δ = method − {reference}.",
             "", "| method | ΔPSNR (dB) | p (PSNR) | PSNR | ΔSSIM | p (SSIM) | SSIM |",
             "| --- | ---: | ---: | --- | ---: | ---: | --- |"]
    for r in tests:
        lines.append(f"| {r['method']} | {r['psnr_diff']:+.2f} | {p(r['psnr_p'])} | "
                     f"{r['psnr_result']} | {r['ssim_diff']:+.4f} | {p(r['ssim_p'])} | "
                     f"{r['ssim_result']} |")
    return "\n".join(lines) + "\n"


def gains(scores: Scores, base: str = "Input") -> dict[str, dict[str, float]]:
    """Mean per-image gain of every column over ``base``: ``{label: {"psnr": dB, "ssim": Δ}}``."""
    if base not in scores:
        return {}
    out = {}
    for label, vals in scores.items():
        if label == base:
            continue
        out[label] = {}
        for m in METRICS:
            a, b = np.asarray(vals[m], float), np.asarray(scores[base][m], float)
            n = min(len(a), len(b))
            out[label][m] = float(np.mean(a[:n] - b[:n])) if n else math.nan
    return out


def gain_rows(all_gains: Mapping[str, Mapping[str, Mapping[str, float]]], metric: str,
              methods: Sequence[str]) -> tuple[list[str], list[list[Any]]]:
    """Rows = cases (experiments), columns = methods, cells = mean gain in ``metric``."""
    header = ["experiment", *methods]
    rows = [[case, *(g.get(m, {}).get(metric, math.nan) for m in methods)]
            for case, g in all_gains.items()]
    if rows:
        rows.append(["mean", *(float(np.nanmean(col)) if not all(map(math.isnan, col))
                               else math.nan
                               for col in ([r[j] for r in rows] for j in range(1, len(header))))])
    return header, rows

"""Verdicts that see training noise: every method against the reference, per image and per model.

Two models trained with the same loss and settings but different seeds differ by a few tenths
of a dB (``docs/w2s_results.md``), as much as some loss effects. A paired t-test over the test
images compares two *trained models*; it cannot see that model-to-model variation. So each
method is compared with the reference two ways, on ``SeedScores``: ``{column label: {seed:
{"psnr": [...], "ssim": [...]}}}`` (one value per test image; seed ``None`` for a
deterministic column, i.e. ``Input`` and the baselines, which are scored once):

(a) **per image** (the study's test): ``scipy.stats.ttest_rel`` over the test images of the
    per-image score averaged over the column's seeds, against the reference's likewise. With
    one seed this is exactly the per-case t-test.
(b) **across seeds**: one number per trained model (its mean over the test images);
    ``scipy.stats.ttest_ind(equal_var=False)`` (Welch) of the column's seed means against the
    reference's. A deterministic column is one fixed value: ``ttest_1samp`` of the other
    side's seed means against it. Δ ± its standard error; the verdict (better / worse /
    no difference) comes from (b) alone; a trained side with fewer than 2 seeds gives
    ``needs ≥ 2 seeds``.

The statistics are ``restore.verdicts.compare_runs`` and ``seed_test`` (re-exported here),
the same the docks and ``evaluate`` use for their grouped verdicts; this module reads the
runner's results and writes its tables.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..restore.verdicts import NEEDS_SEEDS, NO_DIFFERENCE, compare_runs, seed_test
from ..restore.verdicts import seed_sd as _sd
from . import tables as tab
from .jobs import atomic_write_text, read_scores

__all__ = ["ALPHA", "MARKS", "NEEDS_SEEDS", "NO_DIFFERENCE", "VERDICT_HEADER", "SeedScores",
           "case_groups", "compare", "load_seed_scores", "report_section",
           "seed_means_markdown", "seed_test", "summary_markdown", "verdict_markdown",
           "verdict_rows"]
ALPHA = tab.ALPHA
SeedScores = Mapping[str, Mapping[int | None, Mapping[str, Sequence[float]]]]
MARKS = {"better": "▲", "worse": "▼", "n.s.": "·", NO_DIFFERENCE: "·", NEEDS_SEEDS: "?",
         "n/a": "–"}


def case_groups(plan: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The plan's cases grouped by (experiment, patch size): one group = all seeds."""
    multi_ps = len(plan.get("patch_sizes", [])) > 1
    groups: dict[tuple, dict[str, Any]] = {}
    for case in plan["cases"]:
        ps = case["patch_size"]
        g = groups.setdefault((case["experiment"], ps), {
            "id": case["experiment"] + (f"__p{ps}" if multi_ps else ""),
            "title": case["title"] + (f" (p{ps})" if multi_ps else ""),
            "experiment": case["experiment"], "patch_size": ps, "cases": []})
        g["cases"].append(case)
    return list(groups.values())


def load_seed_scores(outdir: str | Path, cases: Sequence[Mapping[str, Any]]
                     ) -> dict[str, dict[int | None, dict[str, list[float]]]]:
    """Per-seed scores of one group; deterministic columns once (seed None), missing left out."""
    out: dict[str, dict[int | None, dict[str, list[float]]]] = {}
    for case in cases:
        for col in case["columns"]:
            seed = case["seed"] if col["kind"] == "model" else None
            if seed in out.get(col["label"], {}):
                continue
            data = read_scores(outdir, col["scores_file"], col["key"])
            if data is not None:
                out.setdefault(col["label"], {})[seed] = {
                    m: list(map(float, data[m])) for m in tab.METRICS}
    return out


def compare(scores: SeedScores, reference: str, alpha: float = ALPHA) -> list[dict[str, Any]]:
    """Every column against ``reference``, (a) per image and (b) across seeds (module doc).

    One dict per column: ``method``, ``n`` (images), ``seeds`` and ``ref_seeds`` (0 = a
    deterministic column), and per metric ``M_diff``, ``M_image_t``, ``M_image_p``,
    ``M_image_result`` (better/worse/n.s./n/a), ``M_se``, ``M_seed_t``, ``M_seed_p``,
    ``M_seed_result`` (better/worse/no difference/needs ≥ 2 seeds/n/a), ``M_sd`` (the
    column's model-to-model SD) and ``M_ref_sd`` (the reference's).
    """
    if reference not in scores or not scores[reference]:
        return []
    ref = scores[reference]
    out = []
    for label, runs in scores.items():
        if label == reference or not runs:
            continue
        both = [*runs.values(), *ref.values()]
        n = min(len(r[m]) for r in both for m in tab.METRICS)
        a_fixed, b_fixed = None in runs, None in ref
        row: dict[str, Any] = {"method": label, "n": n, "seeds": 0 if a_fixed else len(runs),
                               "ref_seeds": 0 if b_fixed else len(ref)}
        for m in tab.METRICS:
            a = np.array([r[m][:n] for r in runs.values()], float).reshape(len(runs), n)
            b = np.array([r[m][:n] for r in ref.values()], float).reshape(len(ref), n)
            row.update({f"{m}_{k}": v for k, v in
                        compare_runs(a, b, a_fixed, b_fixed, alpha).items()})
        out.append(row)
    return out


# ----------------------------------------------------------------------------- tables

_FIELDS = ("diff", "image_p", "image_result", "se", "seed_p", "seed_result", "sd", "ref_sd")
VERDICT_HEADER = ["method", "n", "seeds", "reference seeds",
                  *(f"{k} ({m.upper()})" for m in tab.METRICS for k in _FIELDS)]


def verdict_rows(rows: Sequence[Mapping[str, Any]]) -> list[list[Any]]:
    """CSV rows (header :data:`VERDICT_HEADER`)."""
    return [[r["method"], str(r["n"]), str(r["seeds"]), str(r["ref_seeds"]),
             *(r[f"{m}_{k}"] for m in tab.METRICS for k in _FIELDS)] for r in rows]


def _p(v: float) -> str:
    return "–" if math.isnan(v) else (f"{v:.2e}" if v < 1e-3 else f"{v:.3f}")


def _num(v: float, digits: int, sign: str = "") -> str:
    return "–" if v is None or math.isnan(v) else f"{v:{sign}.{digits}f}"


def _seeds(k: int) -> str:
    return "fixed" if k == 0 else str(k)


def verdict_markdown(rows: Sequence[Mapping[str, Any]], reference: str,
                     alpha: float = ALPHA) -> str:
    """One table per metric: Δ, (a) per image, (b) across seeds, seed SDs."""
    if not rows:
        return ""
    lines = [f"Each method against **{reference}** (α = {alpha}); Δ = method − {reference}, "
             f"mean over {rows[0]['n']} test images and all seeds. *Per image*: paired t-test "
             "over the images of the per-image mean over seeds. *Across seeds* (the verdict): "
             "Welch t-test of the per-model mean scores, ± = standard error; *seed SD*: "
             "standard deviation between the models of different seeds (fixed = "
             "deterministic, no training).", ""]
    for m in tab.METRICS:
        d = 2 if m == "psnr" else 4
        lines += [f"**{tab.METRIC_LABELS[m]}**", "",
                  f"| method | seeds | Δ{m.upper()} | p (per image) | per image | ± SE "
                  f"(seeds) | p (seeds) | across seeds | seed SD | {reference} seed SD |",
                  "| --- | ---: | ---: | ---: | --- | ---: | ---: | --- | ---: | ---: |"]
        for r in rows:
            lines.append(
                f"| {r['method']} | {_seeds(r['seeds'])} | {_num(r[f'{m}_diff'], d, '+')} | "
                f"{_p(r[f'{m}_image_p'])} | {r[f'{m}_image_result']} | "
                f"{_num(r[f'{m}_se'], d)} | {_p(r[f'{m}_seed_p'])} | "
                f"**{r[f'{m}_seed_result']}** | {_num(r[f'{m}_sd'], d)} | "
                f"{_num(r[f'{m}_ref_sd'], d)} |")
        lines.append("")
    return "\n".join(lines)


def summary_markdown(groups: Mapping[str, Sequence[Mapping[str, Any]]], metric: str,
                     methods: Sequence[str], reference: str) -> str:
    """Rows = experiments, columns = methods; cell ``Δ ± SE`` + (b) mark / (a) mark."""
    d = 2 if metric == "psnr" else 4
    cols = [m for m in methods if m != reference]
    lines = [f"| experiment | {reference} seed SD | " + " | ".join(cols) + " |",
             "| --- | ---: |" + " ---: |" * len(cols)]
    for title, rows in groups.items():
        by = {r["method"]: r for r in rows}
        ref_sd = next((r[f"{metric}_ref_sd"] for r in rows), math.nan)
        cells = []
        for c in cols:
            r = by.get(c)
            if r is None:
                cells.append("–")
                continue
            se = r[f"{metric}_se"]
            cells.append(f"{r[f'{metric}_diff']:+.{d}f}"
                         + ("" if math.isnan(se) else f" ± {se:.{d}f}")
                         + f" {MARKS[r[f'{metric}_seed_result']]}"
                         + f" / {MARKS[r[f'{metric}_image_result']]}")
        lines.append(f"| {title} | {_num(ref_sd, d)} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def seed_means_markdown(outdir: Path, plan: Mapping[str, Any], metric: str,
                        labels: Sequence[str]) -> str:
    """Rows = experiments, columns = methods: mean over seeds of each model's mean score,
    ± the SD between seeds (none for deterministic columns)."""
    d = 2 if metric == "psnr" else 4
    lines = ["| experiment | " + " | ".join(labels) + " |", "| --- |" + " ---: |" * len(labels)]
    for g in case_groups(plan):
        scores = load_seed_scores(outdir, g["cases"])
        cells = []
        for label in labels:
            runs = scores.get(label, {})
            means = np.array([np.mean(r[metric]) for r in runs.values() if len(r[metric])])
            cell = _num(float(means.mean()), d) if len(means) else "–"
            cells.append(cell + (f" ± {_sd(means):.{d}f}" if len(means) > 1 else ""))
        lines.append(f"| {g['title']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def report_section(outdir: Path, plan: Mapping[str, Any], reference: str | None,
                   methods: Sequence[str]) -> tuple[list[str], list[str], dict[str, Any]]:
    """Write ``tables/<group>_verdict.csv|.md`` and ``tables/verdict_{psnr,ssim}.md``.

    Returns the summary lines, the per-experiment lines and the verdicts for ``summary.json``.
    """
    if not reference:
        return [], [], {}
    by_title: dict[str, list[dict[str, Any]]] = {}
    detail: list[str] = []
    seeds: set[int] = set()
    for g in case_groups(plan):
        scores = load_seed_scores(outdir, g["cases"])
        rows = compare(scores, reference)
        if not rows:
            continue
        seeds |= {c["seed"] for c in g["cases"]}
        by_title[g["title"]] = rows
        atomic_write_text(outdir / "tables" / f"{g['id']}_verdict.csv",
                          tab.to_csv(VERDICT_HEADER, verdict_rows(rows)))
        text = verdict_markdown(rows, reference)
        atomic_write_text(outdir / "tables" / f"{g['id']}_verdict.md", text)
        detail += [f"### {g['title']}", "", text]
    if not by_title:
        return [], [], {}
    summary = [f"**Verdicts against {reference}** ({len(seeds)} seed"
               f"{'s' if len(seeds) != 1 else ''} per loss, α = {ALPHA}). Cell: Δ (method − "
               f"{reference}) ± standard error across seeds, then the verdict across seeds "
               "(Welch t-test of the per-model means) / the per-image paired t-test: "
               f"▲ better, ▼ worse, · no difference, ? {NEEDS_SEEDS}, – n/a. Only the first "
               f"mark accounts for model-to-model variation; compare Δ with {reference}'s "
               f"seed SD. Details per experiment under *Verdicts against {reference}*.", ""]
    for metric in tab.METRICS:
        text = summary_markdown(by_title, metric, methods, reference)
        atomic_write_text(outdir / "tables" / f"verdict_{metric}.md", text)
        summary += [f"*{tab.METRIC_LABELS[metric]}*", "", text]
    return summary, [f"## Verdicts against {reference}", "", *detail], by_title

"""Assemble a results folder into tables, figures, ``report.md`` and ``report.html``.

Works from the folder alone (``plan.json``, the jobs' score JSON files, restorations and
model folders), so it can be re-run at any time, also on a partial run.
"""

from __future__ import annotations

import html
import json
import math
import re
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from . import figures as figs
from . import tables as tab
from . import verdicts as ver
from .jobs import atomic_write_text, read_scores
from .spec import PLAN_FILE, resolve_path


def _versions() -> dict[str, str]:
    from ..config.train import versions

    return versions(("scipy", "scikit-image", "matplotlib", "dask", "distributed", "pyyaml"))


def _load_models(outdir: Path, models: list[dict]) -> list[dict]:
    """The plan's model rows with what each model folder records (status ``missing`` for a
    folder that is not there, ``damaged`` for one whose record does not check)."""
    from ..models.folder import ModelFolder

    out = []
    for m in models:
        path = outdir / m["model_dir"]
        try:
            folder = ModelFolder.open(path)
        except (OSError, ValueError):
            out.append({**m, "status": "damaged" if path.exists() else "missing",
                        "history": {}, "best_val_loss": math.nan})
            continue
        best = folder.best_val_loss
        out.append({**m, "status": folder.status.value, "history": folder.history,
                    "best_val_loss": math.nan if best is None else best})
    return out


def _case_images(outdir: Path, case: dict, n: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Input and restorations (first ``n`` test images) by column label, and the GT."""
    import tifffile

    from ..io.data import as_stack

    low_s = as_stack(resolve_path(case["test_pair"]["low"]))
    high_s = as_stack(resolve_path(case["test_pair"]["high"]))
    gt = np.stack([high_s.frame(i) for i in range(n)]).astype(np.float32)
    images = {"Input": np.stack([low_s.frame(i) for i in range(n)]).astype(np.float32)}
    for col in case["columns"]:
        data = read_scores(outdir, col["scores_file"], col["key"])
        if data and data.get("restoration"):
            images[col["label"]] = tifffile.imread(outdir / data["restoration"])[:n]
    return images, gt


def _write_table(outdir: Path, stem: str, header, rows, digits: int, **md) -> str:
    atomic_write_text(outdir / "tables" / f"{stem}.csv", tab.to_csv(header, rows))
    text = tab.to_markdown(header, rows, digits, **md)
    atomic_write_text(outdir / "tables" / f"{stem}.md", text)
    return text


def build_report(outdir: str | Path, log: Callable[[str], None] = print,
                 figures: bool = True) -> Path:
    """Write ``tables/``, ``figures/``, ``summary.json``, ``report.md`` and ``report.html``."""
    outdir = Path(outdir).resolve()
    plan = json.loads((outdir / PLAN_FILE).read_text())
    ref = plan.get("reference")
    methods = [m["label"] for m in plan["methods"]]
    models = _load_models(outdir, plan["models"])
    md: list[str] = [f"# Experiment report: {plan['name']} (budget `{plan['budget']}`)", ""]
    if plan.get("description"):
        md += [plan["description"].strip(), ""]
    md += [f"Generated {datetime.now():%Y-%m-%d %H:%M} from `{outdir}`"
           + (f" (experiment file `{plan['source']}`)." if plan.get("source") else "."), ""]
    body: list[str] = []
    all_gains: dict[str, dict] = {}
    means: dict[str, dict[str, dict[str, float]]] = {"psnr": {}, "ssim": {}}
    summary: dict[str, Any] = {"name": plan["name"], "budget": plan["budget"],
                               "reference": ref, "cases": {}}
    missing = 0
    for case in plan["cases"]:
        cid, scores = case["id"], tab.load_case_scores(outdir, case)
        missing += len(case["columns"]) - len(scores)
        title = f"{case['title']} ({case['kind']}"
        title += f", patch {case['patch_size']}, seed {case['seed']})"
        body += [f"### {title}", ""]
        if len(scores) < len(case["columns"]):
            gone = [c["label"] for c in case["columns"] if c["label"] not in scores]
            body += [f"*Not (yet) computed: {', '.join(gone)}.*", ""]
        if not scores:
            continue
        for metric in tab.METRICS:
            header, rows = tab.per_image_rows(scores, metric)
            text = _write_table(outdir, f"{cid}_{metric}", header, rows,
                                2 if metric == "psnr" else 4)
            body += [f"**{tab.METRIC_LABELS[metric]} per image** "
                     f"([csv](tables/{cid}_{metric}.csv))", "", text]
            means[metric][case["label"]] = dict(zip(header[1:], rows[-1][1:], strict=True))
        tests = tab.ttests(scores, ref) if ref else []
        if tests:
            atomic_write_text(outdir / "tables" / f"{cid}_ttest.csv",
                              tab.to_csv(tab.TTEST_HEADER, tab.ttest_rows(tests)))
            text = tab.ttest_markdown(tests, ref)
            atomic_write_text(outdir / "tables" / f"{cid}_ttest.md", text)
            body += [text]
        all_gains[case["label"]] = tab.gains(scores)
        summary["cases"][cid] = {"title": case["title"], "kind": case["kind"],
                                 "train": case["train"], "test": case["test"],
                                 "patch_size": case["patch_size"], "seed": case["seed"],
                                 "scores": scores, "ttests": tests,
                                 "gains": all_gains[case["label"]]}
        if figures:
            body += _case_figures(outdir, case, scores)
    # ----------------------------------------------------------------- summary tables
    md += ["## Summary", ""]
    if missing:
        md += [f"**Incomplete:** {missing} method/experiment results are missing; run the "
               "experiment again to finish it (finished jobs are not recomputed).", ""]
    labels = ["Input", *methods]
    for metric in tab.METRICS:
        rows = [[c, *(means[metric][c].get(m, math.nan) for m in labels)]
                for c in means[metric]]
        if rows:
            text = _write_table(outdir, f"mean_{metric}", ["experiment", *labels], rows,
                                2 if metric == "psnr" else 4, bold_max_row=None)
            md += [f"**Mean {tab.METRIC_LABELS[metric]} per experiment**", "", text]
    if len(plan.get("seeds", [])) > 1:
        for metric in tab.METRICS:
            text = ver.seed_means_markdown(outdir, plan, metric, labels)
            atomic_write_text(outdir / "tables" / f"seed_mean_{metric}.md", text)
            md += [f"**Mean {tab.METRIC_LABELS[metric]} over seeds** (mean of each model's "
                   "mean over the test images ± the SD between seeds)", "", text]
    for metric, unit in (("psnr", "dB"), ("ssim", "")):
        header, rows = tab.gain_rows(all_gains, metric, methods)
        if len(rows) > 1:
            text = _write_table(outdir, f"gain_{metric}", header, rows,
                                2 if metric == "psnr" else 4, first=1)
            md += [f"**Average gain over the input, Δ{metric.upper()}"
                   f"{' (' + unit + ')' if unit else ''}** (mean over images of method − "
                   "input; last row: mean over experiments)", "", text]
    v_summary, v_detail, summary["verdicts"] = ver.report_section(outdir, plan, ref, methods)
    md += [*v_summary, *v_detail]
    md += ["## Experiments", "", *body]
    md += _training_section(outdir, models, figures)
    md += _config_section(outdir, plan)
    summary["models"] = [{k: m[k] for k in ("title", "model_dir", "status", "best_val_loss")}
                         for m in models]
    atomic_write_text(outdir / "summary.json", json.dumps(summary, indent=1, default=float))
    text = "\n".join(md) + "\n"
    atomic_write_text(outdir / "report.md", text)
    atomic_write_text(outdir / "report.html", markdown_to_html(text, f"{plan['name']} report"))
    return outdir / "report.md"


def _case_figures(outdir: Path, case: dict, scores: dict) -> list[str]:
    cid, out = case["id"], []
    fig_dir = outdir / "figures"
    if figs.score_plot(scores, fig_dir / f"{cid}_scores.png", case["title"]):
        out += [f"![per-image scores, {case['title']}](figures/{cid}_scores.png)", ""]
    n = min(len(v["psnr"]) for v in scores.values())
    try:
        images, gt = _case_images(outdir, case, n)
    except Exception as exc:  # noqa: BLE001 - the data may have moved; tables still stand
        return [*out, f"*Figures skipped: cannot read the test images ({exc}).*", ""]
    psnr0 = {k: v["psnr"][0] for k, v in scores.items()}
    figs.crop_panel({k: v[0] for k, v in images.items()}, gt[0], fig_dir / f"{cid}_panel.png",
                    psnr0, f"{case['title']}: test image 0 (centre crop)")
    out += [f"![crops, {case['title']}](figures/{cid}_panel.png)", ""]
    spectra = figs.mean_spectra(images, gt)
    if figs.spectra_plot(spectra, fig_dir / f"{cid}_spectra.png",
                         f"{case['title']}: radially averaged power spectra"):
        out += [f"![power spectra, {case['title']}](figures/{cid}_spectra.png)", ""]
    return out


def _training_section(outdir: Path, models: list[dict], figures: bool) -> list[str]:
    if not models:
        return []
    out = ["## Training", "", "| model | status | epochs | best val. loss | folder |",
           "| --- | --- | ---: | ---: | --- |"]
    for m in models:
        ep = len(m["history"].get("loss", []))
        out.append(f"| {m['title']} | {m['status']} | {ep} | {m['best_val_loss']:.4g} | "
                   f"`{m['model_dir']}` |")
    out.append("")
    if figures:
        for ds in dict.fromkeys(m["dataset"] for m in models):
            group = [m for m in models if m["dataset"] == ds]
            path = figs.loss_curves(group, outdir / "figures" / f"loss_curves_{ds}.png",
                                    f"trained on {ds}")
            if path:
                out += [f"![loss curves, trained on {ds}](figures/{path.name})", ""]
    return out


def _config_section(outdir: Path, plan: dict) -> list[str]:
    out = ["## Configuration", "", f"Budget `{plan['budget']}`: patch sizes "
           f"{plan['patch_sizes']}, seeds {plan['seeds']}, test images "
           f"{plan.get('test_images') or 'all'}."]
    if plan.get("budget_description"):
        out += ["", " ".join(plan["budget_description"].split())]
    if plan.get("variables"):
        out += ["", "Variables: " + ", ".join(f"`{k}` = `{v}`"
                                               for k, v in plan["variables"].items()) + "."]
    out += ["", "| training setting | value |", "| --- | --- |"]
    out += [f"| {k} | {v} |" for k, v in plan["training"].items()]
    out += ["", "| method | column | definition |", "| --- | --- | --- |"]
    for m in plan["methods"]:
        d = (f"loss {m['loss']['name']} {m['loss']['params'] or ''}" if "loss" in m else
             f"baseline {m['baseline']}, factor {m['factor'] or 'calibrated'}")
        out.append(f"| {m['id']} | {m['label']} | {d} |")
    exp = outdir / "experiment.yaml"
    if exp.is_file():
        out += ["", "Experiment file as run:", "", "```yaml", exp.read_text().rstrip(), "```"]
    out += ["", "## Versions", "", "| package | version |", "| --- | --- |"]
    out += [f"| {k} | {v} |" for k, v in _versions().items()]
    return [*out, ""]


# ----------------------------------------------------------------------------- markdown


def _inline(text: str) -> str:
    text = html.escape(text, quote=False)
    text = re.sub(r"`([^`]+)`", r"<code>\1</code>", text)
    text = re.sub(r"\*\*([^*]+)\*\*", r"<strong>\1</strong>", text)
    text = re.sub(r"(?<![\w*])\*([^*]+)\*(?![\w*])", r"<em>\1</em>", text)
    text = re.sub(r"!\[([^\]]*)\]\(([^)]+)\)", r'<img src="\2" alt="\1">', text)
    return re.sub(r"\[([^\]]+)\]\(([^)]+)\)", r'<a href="\2">\1</a>', text)


def markdown_to_html(text: str, title: str = "report") -> str:
    """The subset of Markdown the report uses: headings, paragraphs, tables, lists, code
    blocks, images, links, bold/italic/code. No network, no dependencies."""
    out: list[str] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("```"):
            j = i + 1
            while j < len(lines) and not lines[j].startswith("```"):
                j += 1
            out.append("<pre><code>" + html.escape("\n".join(lines[i + 1:j])) + "</code></pre>")
            i = j + 1
        elif m := re.match(r"^(#{1,6})\s+(.*)$", line):
            n = len(m.group(1))
            out.append(f"<h{n}>{_inline(m.group(2))}</h{n}>")
            i += 1
        elif line.startswith("|"):
            block = []
            while i < len(lines) and lines[i].startswith("|"):
                block.append([c.strip() for c in lines[i].strip().strip("|").split("|")])
                i += 1
            aligns = block[1] if len(block) > 1 and all(set(c) <= set(":- ") for c in block[1]) \
                else None
            rows = [block[0], *block[2:]] if aligns else block
            style = ["right" if a.endswith(":") else "left" for a in (aligns or [])]
            out.append("<table>")
            for r, row in enumerate(rows):
                tag = "th" if r == 0 and aligns else "td"
                cells = "".join(
                    f'<{tag} style="text-align:{style[k] if k < len(style) else "left"}">'
                    f"{_inline(c)}</{tag}>" for k, c in enumerate(row))
                out.append(f"<tr>{cells}</tr>")
            out.append("</table>")
        elif re.match(r"^\s*[-*] ", line):
            out.append("<ul>")
            while i < len(lines) and re.match(r"^\s*[-*] ", lines[i]):
                out.append(f"<li>{_inline(lines[i].strip()[2:])}</li>")
                i += 1
            out.append("</ul>")
        elif not line.strip():
            i += 1
        else:
            para = []
            while i < len(lines) and lines[i].strip() and not re.match(
                    r"^(#|\||```|\s*[-*] )", lines[i]):
                para.append(lines[i])
                i += 1
            out.append(f"<p>{_inline(' '.join(para))}</p>")
    css = ("body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}"
           "table{border-collapse:collapse;margin:0.5em 0}td,th{border:1px solid #ccc;"
           "padding:2px 8px;font-size:90%}th{background:#f3f3f3}img{max-width:100%}"
           "pre{background:#f6f6f6;padding:0.5em;overflow-x:auto}")
    return (f"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{html.escape(title)}"
            f"</title><style>{css}</style></head><body>\n" + "\n".join(out) +
            "\n</body></html>\n")

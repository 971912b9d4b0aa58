"""Experiment files, job grid, resume, tables/t-tests/gains, report, Dask (issue #5)."""

from __future__ import annotations

import argparse
import copy
import csv
import json
import math
import os
import re
import uuid
from pathlib import Path

import numpy as np
import pytest
import tifffile
import yaml
from scipy.stats import ttest_rel

from napari_care_losses.config.train import TrainConfig
from napari_care_losses.experiments import SpecError, jobs, load_spec, parse_spec, runner
from napari_care_losses.experiments import cli as exp_cli
from napari_care_losses.experiments import tables as tab
from napari_care_losses.experiments import verdicts as ver
from napari_care_losses.experiments.report import build_report, markdown_to_html
from napari_care_losses.experiments.spec import find_example, resolve_path
from napari_care_losses.models.folder import read_meta, write_meta
from napari_care_losses.restore.metrics import score

W2S_SHARED = Path(__file__).resolve().parents[3] / "shared" / "data" / "w2s"

TINY_TRAINING = {"epochs": 1, "steps_per_epoch": 2, "patches_per_image": 8, "batch_size": 4,
                 "unet_n_depth": 1, "unet_n_first": 8, "unet_kern_size": 3,
                 "reduce_lr_patience": 0}


def base_raw() -> dict:
    """A small valid experiment mapping on the bundled crops."""
    return {
        "name": "small",
        "datasets": {"ch0": {"sample": {"channel": 0}}, "ch1": {"sample": {"channel": 1}}},
        "methods": [{"loss": "laplace"}, {"loss": "fft"},
                    {"loss": "bandpass", "params": {"sigma1": 0.5, "sigma2": 3}},
                    {"baseline": "tv", "factor": 1.0}],
        "patch_sizes": [32],
        "experiments": [{"train": "ch0", "test": "ch0"}, {"train": "ch0", "test": "ch1"}],
        "budgets": {"tiny": {"training": dict(TINY_TRAINING)}},
    }


# ----------------------------------------------------------------------------- spec


def test_bundled_examples_validate():
    spec = load_spec("w2s_mismatch")
    tiny = spec.grid("tiny")
    assert [e.id for e in tiny.experiments] == ["ch0__ch0", "ch0__ch1", "ch1__ch0", "ch1__ch1"]
    assert [m.label for m in tiny.methods] == ["Laplace", "FFT", "BP", "TV"]
    assert tiny.patch_sizes == (32,) and tiny.reference == "laplace"
    full = spec.grid("full")
    assert len(full.experiments) == 9 and len(full.methods) == 10
    assert {e.kind for e in full.experiments} == {"same", "mismatch"}
    assert spec.grid().budget.name == "tiny"  # default budget
    with pytest.raises(SpecError, match=r"variables\.data_root: not set"):
        load_spec(find_example("w2s_full"))


@pytest.mark.skipif(not W2S_SHARED.is_dir(), reason="real W2S stacks not available")
def test_w2s_full_validates_with_data_root():
    spec = load_spec("w2s_full", {"data_root": str(W2S_SHARED)})
    grid = spec.grid("full")
    assert len(grid.experiments) == 9
    assert grid.datasets["ch1"].test.low == str(W2S_SHARED / "val_ch1_low.tif")
    assert grid.datasets["ch1"].validation is None


def _mutate(path: str, value):
    raw = base_raw()
    keys = path.split(".")
    target = raw
    for k in keys[:-1]:
        target = target[int(k)] if isinstance(target, list) else target[k]
    last = keys[-1]
    if value is KeyError:
        del target[last]
    elif isinstance(target, list):
        target[int(last)] = value
    else:
        target[last] = value
    return raw


@pytest.mark.parametrize(("path", "value", "message"), [
    ("experiments", [{"train": "ch0", "test": "ch0"}, {"train": "ch1", "test": "ch0"},
                     {"train": "ch0", "test": "ch5"}],
     "experiments[2].test: unknown dataset 'ch5' (defined: ch0, ch1)"),
    ("experiments.0.train", "nope", "experiments[0].train: unknown dataset 'nope'"),
    ("experiments", [{"cross": ["ch0", "chX"]}], "experiments[0].cross[1]: unknown dataset"),
    ("experiments", [{"train": "ch0", "test": "ch0"}, {"train": "ch0", "test": "ch0"}],
     "experiments[1]: duplicate experiment ch0 → ch0"),
    ("methods.1", {"loss": "fancy"}, "methods[1].loss: unknown loss 'fancy'"),
    ("methods.2", {"loss": "bandpass", "params": {"sigma3": 1}},
     "methods[2].params: loss 'bandpass' has no parameter 'sigma3'"),
    ("methods.2", {"loss": "bandpass", "params": {"sigma1": 0.5, "sigma2": 10}},
     "methods[2]: bandpass with patch size 32 (budget tiny)"),
    ("methods.3", {"baseline": "median"}, "methods[3].baseline: unknown baseline 'median'"),
    ("methods.3", {"baseline": "tv", "factor": -1}, "methods[3].factor: expected a number > 0"),
    ("methods.1", {"loss": "laplace"}, "methods[1].id: duplicate method id 'laplace'"),
    ("methods.1", {"loss": "fft", "baseline": "tv"}, "methods[1]: give exactly one of"),
    ("datasets.ch1", {"sample": {"channel": 7}}, "datasets.ch1.sample.channel: expected 0, 1"),
    ("datasets.ch1", {"train": {"low": "missing_low.tif"}},
     "datasets.ch1.train.high: missing: give the path"),
    ("datasets.ch1", {"test": {"low": "a.tif", "high": "b.tif"}, "extra": 1},
     "datasets.ch1.extra: unknown key"),
    ("datasets", KeyError, "datasets: missing (required)"),
    ("patch_sizes", [15], "patch_sizes[0]: expected an integer >= 16, got 15"),
    ("seeds", "zero", "seeds: expected a non-empty list of integers"),
    ("seeds", 0, "seeds: expected a number of seeds >= 1 (3 = seeds 0, 1, 2)"),
    ("seeds", [0, -1], "seeds[1]: not a valid seed: -1 is below the minimum 0"),
    ("seeds", [1, True], "seeds[1]: not a valid seed: expected a number, got True"),
    ("seeds", [2, 2], "seeds: duplicate values"),
    ("budgets.tiny.seeds", [], "budgets.tiny.seeds: expected a non-empty list of integers"),
    ("budgets.tiny.training.epochz", 3, "budgets.tiny.training.epochz: unknown key"),
    ("budgets.tiny.training.epochs", 0, "budgets.tiny.training: invalid training settings"),
    ("budgets.tiny.methods", ["laplace", "xyz"],
     "budgets.tiny.methods[1]: unknown method 'xyz'"),
    ("budgets.tiny.test_images", 0, "budgets.tiny.test_images: expected an integer >= 1"),
    ("default_budget", "huge", "default_budget: unknown budget 'huge' (defined: tiny)"),
    ("budgets.my budget/x", {"training": {}}, "budgets.my budget/x: budget names must be"),
    ("reference", "mse", "reference: unknown method 'mse'"),
    ("experimentz", [], "experimentz: unknown key"),
])
def test_spec_errors_name_the_key(path, value, message):
    with pytest.raises(SpecError) as info:
        parse_spec(_mutate(path, value))
    assert any(message in e for e in info.value.errors), info.value.errors


def test_spec_errors_are_collected_and_files_checked(tmp_path):
    raw = base_raw()
    raw["experiments"].append({"train": "ch0", "test": "ch9"})
    raw["methods"].append({"loss": "nope"})
    with pytest.raises(SpecError) as info:
        parse_spec(raw)
    assert len(info.value.errors) == 2
    raw = base_raw()
    raw["datasets"]["mine"] = {"test": {"low": "${root}/low.tif", "high": "${root}/high.tif"}}
    raw["experiments"].append({"train": "ch0", "test": "mine"})
    (tmp_path / "exp.yaml").write_text(yaml.safe_dump(raw))
    with pytest.raises(SpecError, match=r"variables\.root: not set"):
        load_spec(tmp_path / "exp.yaml")
    with pytest.raises(SpecError, match=r"datasets\.mine\.test: .*data.low\.tif: no such file"):
        load_spec(tmp_path / "exp.yaml", {"root": "data"})  # relative to the file
    (tmp_path / "data").mkdir()
    low, high = (tifffile.imread(p) for p in (resolve_path("sample://0/test/low"),
                                              resolve_path("sample://0/test/high")))
    tifffile.imwrite(tmp_path / "data" / "low.tif", low)
    tifffile.imwrite(tmp_path / "data" / "high.tif", high[:1])
    with pytest.raises(SpecError, match=r"datasets\.mine\.test: .* do not pair: 2 and 1"):
        load_spec(tmp_path / "exp.yaml", {"root": "data"})
    tifffile.imwrite(tmp_path / "data" / "high.tif", high)
    spec = load_spec(tmp_path / "exp.yaml", {"root": "data"})
    assert spec.datasets["mine"].test.low == str(tmp_path / "data" / "low.tif")


def test_budget_restrictions():
    raw = base_raw()
    raw["budgets"]["small"] = {"training": dict(TINY_TRAINING), "datasets": ["ch0"],
                               "methods": ["fft", "tv"], "seeds": [1, 2]}
    grid = parse_spec(raw).grid("small")
    assert [e.id for e in grid.experiments] == ["ch0__ch0"]
    assert [m.id for m in grid.methods] == ["fft", "tv"] and grid.seeds == (1, 2)
    assert grid.reference is None  # laplace is not part of this budget
    with pytest.raises(SpecError, match="no budget 'big'"):
        parse_spec(raw).grid("big")


def test_seeds_setting_count_or_list():
    assert parse_spec(base_raw()).seeds == (0,)  # default: one seed, as before
    for value, seeds in ((3, (0, 1, 2)), (1, (0,)), ([0], (0,)), ([4, 7], (4, 7))):
        raw = base_raw()
        raw["seeds"] = value
        assert parse_spec(raw).seeds == seeds, value
    raw = base_raw()
    raw["seeds"] = 3
    raw["budgets"]["few"] = {"training": dict(TINY_TRAINING), "seeds": 2}
    raw["budgets"]["one"] = {"training": dict(TINY_TRAINING), "seeds": [5]}
    spec = parse_spec(raw)
    assert spec.grid("tiny").seeds == (0, 1, 2) and spec.grid("few").seeds == (0, 1)
    assert spec.grid("one").seeds == (5,)
    for name in ("w2s_mismatch", "w2s_full"):  # the examples train 3 seeds per loss
        spec = load_spec(name, {"data_root": "/nonexistent"}, check_files=False)
        assert spec.seeds == (0, 1, 2)
        assert spec.grid("tiny").seeds == (0,)  # the smoke test stays cheap
    full = runner.plan(load_spec("w2s_mismatch").grid("full"), "/tmp/unused")
    assert len(full.train_jobs) == 72  # 3 channels x 8 losses x 3 seeds


def _model_key(grid, dataset, method, ps, seed) -> str:
    """The model key's documented payload (pins its format, not TrainConfig's fields)."""
    cfg = grid.train_config(method, ps, seed)
    ds = grid.datasets[dataset]
    return jobs.make_key({"train": dataset, "data": [ds.train.low, ds.train.high],
                          "loss": cfg.loss.to_dict(), "patch_size": ps, "seed": seed,
                          "budget": grid.budget.name, "config": cfg.to_dict()})


def test_job_keys_per_seed_and_unchanged_without_seeds(tmp_path):
    def plan_of(seeds):
        raw = base_raw()
        if seeds is not None:
            raw["seeds"] = seeds
        return runner.plan(parse_spec(raw).grid(), tmp_path / "out")

    old = plan_of(None)
    # a seed-less file: the keys and file names of the results folders written before seeds
    # could vary (these keys do not depend on TrainConfig's fields, so they are pinned)
    by_file = {j.scores_file: j.key for j in old.score_jobs}
    assert by_file["scores/ch0__ch0/input.json"] == "6bb283de6d0c"
    assert by_file["scores/ch0__ch0/tv.json"] == "9f3ccd37cb0c"
    assert by_file["scores/ch0__ch1/tv.json"] == "284fdd11eb87"
    assert sorted(by_file) == sorted(f"scores/{e}/{m}.json" for e in ("ch0__ch0", "ch0__ch1")
                                     for m in ("input", "tv", "laplace", "fft", "bandpass"))
    grid = parse_spec(base_raw()).grid()
    for j, m in zip(old.train_jobs, [m for m in grid.methods if m.learned], strict=True):
        key = _model_key(grid, "ch0", m, 32, 0)
        assert j.key == key and j.model_dir == f"models/ch0__{m.id}__p32_s0__tiny__{key[:8]}"
    for same in (1, [0]):  # `seeds: 1` and `seeds: [0]` are the seed-less file
        p = plan_of(same)
        assert [j.key for j in p.train_jobs] == [j.key for j in old.train_jobs]
        assert [j.key for j in p.score_jobs] == [j.key for j in old.score_jobs]

    p = plan_of(3)
    assert len(p.train_jobs) == 9 and len({j.key for j in p.train_jobs}) == 9
    assert len({j.model_dir for j in p.train_jobs}) == 9
    for seed in (0, 1, 2):
        mine = [j for j in p.train_jobs if f"_s{seed}__" in j.model_dir]
        assert len(mine) == 3 and all(j.config["seed"] == seed for j in mine)
    # seed 0's models are the seed-less file's: an old results folder trains only seeds 1, 2
    assert {j.key for j in old.train_jobs} < {j.key for j in p.train_jobs}
    model_scores = [j for j in p.score_jobs if j.kind == "model"]
    assert len(model_scores) == 2 * 3 * 3  # experiments x losses x seeds: one job per model
    assert len({j.key for j in p.score_jobs}) == len(p.score_jobs) == 18 + 4
    assert "scores/ch0__ch1/fft__p32_s2.json" in {j.scores_file for j in model_scores}
    assert {j.model_key for j in model_scores} == {j.key for j in p.train_jobs}
    assert [(c["id"], c["seed"]) for c in p.cases[:3]] == [
        ("ch0__ch0__p32_s0", 0), ("ch0__ch0__p32_s1", 1), ("ch0__ch0__p32_s2", 2)]
    groups = ver.case_groups(p.to_dict())
    assert [(g["id"], len(g["cases"])) for g in groups] == [("ch0__ch0", 3), ("ch0__ch1", 3)]


def test_job_keys_follow_the_resolved_data(tmp_path):
    """Other data behind the same ``${var}`` means new jobs; a new test file rescoring only."""
    low, high = (resolve_path(f"sample://0/test/{k}") for k in ("low", "high"))
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        for f in (low, high):
            (tmp_path / name / f.name).write_bytes(f.read_bytes())
    raw = base_raw()
    pair = {"low": f"${{root}}/{low.name}", "high": f"${{root}}/{high.name}"}
    raw["datasets"] = {"mine": {"train": dict(pair), "test": dict(pair)}}
    raw["experiments"] = [{"train": "mine", "test": "mine"}]
    (tmp_path / "exp.yaml").write_text(yaml.safe_dump(raw))

    def keys(root: str, test_root: str | None = None) -> tuple[set, set]:
        spec = load_spec(tmp_path / "exp.yaml", {"root": root})
        if test_root is not None:  # the same file, another test pair
            raw2 = copy.deepcopy(raw)
            raw2["datasets"]["mine"]["test"] = {"low": f"{test_root}/{low.name}",
                                                "high": f"{test_root}/{high.name}"}
            spec = parse_spec(raw2, tmp_path, variables={"root": root})
        p = runner.plan(spec.grid(), tmp_path / "out")
        return {j.key for j in p.train_jobs}, {j.key for j in p.score_jobs}

    train_a, score_a = keys("a")
    train_b, score_b = keys("b")
    assert not train_a & train_b and not score_a & score_b
    train_t, score_t = keys("a", test_root="b")
    assert train_t == train_a and not score_t & score_a


def test_cli_errors_return_2_without_traceback(tmp_path, capsys):
    parser = argparse.ArgumentParser(prog="napari-care-losses")
    sub = parser.add_subparsers(dest="command", required=True)
    exp_cli.add_parser(sub)
    bad = tmp_path / "bad.yaml"
    raw = base_raw()
    raw["experiments"][1]["test"] = "ch5"
    bad.write_text(yaml.safe_dump(raw))
    args = parser.parse_args(["experiment", "run", str(bad), "--out", str(tmp_path / "o")])
    assert args.func(args) == 2
    err = capsys.readouterr().err
    assert "experiments[1].test: unknown dataset 'ch5'" in err and "Traceback" not in err
    bad.write_text("datasets: [unclosed")
    assert exp_cli.main(["run", str(bad)]) == 2
    assert "not valid YAML" in capsys.readouterr().err
    assert exp_cli.main(["run", "no_such_example"]) == 2
    assert exp_cli.main(["report", str(tmp_path)]) == 2
    assert exp_cli.main(["run", "w2s_mismatch", "--dry-run", "--out", str(tmp_path / "o")]) == 0
    out = capsys.readouterr().out
    assert "6 trainings and 20 scoring jobs to run" in out
    assert not (tmp_path / "o").exists()


# ----------------------------------------------------------------------------- tables


@pytest.fixture
def synthetic_scores():
    rng = np.random.default_rng(1)
    n = 8
    lap = 28 + rng.normal(0, 1, n)
    s = {"Input": {"psnr": list(lap - 8 + rng.normal(0, .2, n)),
                   "ssim": list(0.3 + rng.normal(0, .02, n))},
         "Laplace": {"psnr": list(lap), "ssim": list(0.8 + rng.normal(0, .02, n))},
         "FFT": {"psnr": list(lap + 0.5 + rng.normal(0, .1, n)),
                 "ssim": list(0.8 + rng.normal(0, .02, n))},
         "TV": {"psnr": list(lap - 2 + rng.normal(0, .1, n)),
                "ssim": list(0.7 + rng.normal(0, .02, n))}}
    return s


def test_tables_ttests_and_gains_match_scipy(synthetic_scores):
    s = synthetic_scores
    header, rows = tab.per_image_rows(s, "psnr")
    assert header == ["image", "Input", "Laplace", "FFT", "TV"]
    assert len(rows) == 9 and rows[-1][0] == "mean"
    assert rows[-1][3] == pytest.approx(np.mean(s["FFT"]["psnr"]))
    parsed = list(csv.reader(tab.to_csv(header, rows).splitlines()))
    assert float(parsed[3][4]) == pytest.approx(s["TV"]["psnr"][2], abs=1e-6)
    md = tab.to_markdown(header, rows)
    assert f"**{np.mean(s['FFT']['psnr']):.2f}**" in md  # best mean among the methods

    tests = {r["method"]: r for r in tab.ttests(s, "Laplace")}
    assert set(tests) == {"Input", "FFT", "TV"}
    for m, r in tests.items():
        for metric in ("psnr", "ssim"):
            ref = ttest_rel(s[m][metric], s["Laplace"][metric])
            assert r[f"{metric}_p"] == pytest.approx(ref.pvalue)
            assert r[f"{metric}_t"] == pytest.approx(ref.statistic)
            assert r[f"{metric}_diff"] == pytest.approx(
                np.mean(np.subtract(s[m][metric], s["Laplace"][metric])))
    assert tests["FFT"]["psnr_result"] == "better" and tests["TV"]["psnr_result"] == "worse"
    assert tests["FFT"]["ssim_result"] == "n.s."
    assert tab.verdict(1.0, 0.2) == "n.s." and tab.verdict(-1, 0.01) == "worse"
    assert tab.verdict(0.0, math.nan) == "n/a"
    assert "| FFT | +0.5" in tab.ttest_markdown(tab.ttests(s, "Laplace"), "Laplace")

    g = tab.gains(s)
    assert set(g) == {"Laplace", "FFT", "TV"}
    assert g["FFT"]["psnr"] == pytest.approx(np.mean(np.subtract(s["FFT"]["psnr"],
                                                                 s["Input"]["psnr"])))
    header, rows = tab.gain_rows({"a → a": g, "a → b": g}, "ssim", ["Laplace", "FFT", "TV"])
    assert rows[-1][0] == "mean" and rows[-1][1] == pytest.approx(g["Laplace"]["ssim"])


def test_ttest_degenerate_cases():
    s = {"Laplace": {"psnr": [20.0], "ssim": [0.5]}, "FFT": {"psnr": [21.0], "ssim": [0.6]},
         "Same": {"psnr": [20.0], "ssim": [0.5]}}
    r = {x["method"]: x for x in tab.ttests(s, "Laplace")}
    assert r["FFT"]["psnr_result"] == "n/a" and r["FFT"]["n"] == 1
    assert tab.ttests(s, "Missing") == []


def _seed_runs(base, offsets, rng, noise=0.05):
    """One run per seed: ``base`` shifted by the model's offset plus a little image noise."""
    n = len(base)
    return {seed: {"psnr": list(base + o + rng.normal(0, noise, n)),
                   "ssim": list(0.8 + o / 30 + rng.normal(0, 0.002, n))}
            for seed, o in enumerate(offsets)}


def test_verdicts_see_training_noise():
    from scipy.stats import ttest_1samp, ttest_ind

    rng = np.random.default_rng(0)
    base = 30 + rng.normal(0, 1.5, 20)  # images differ a lot, models by a few tenths of a dB
    scores = {"Input": {None: {"psnr": list(base - 10), "ssim": [0.3] * 20}},
              "Laplace": _seed_runs(base, [0.0, 0.3, -0.2], rng),
              "MAE": _seed_runs(base, [0.35, 0.1, 0.45], rng),  # within the seed noise
              "FFT": _seed_runs(base, [1.2, 1.3, 1.1], rng),  # large and consistent
              "TV": {None: {"psnr": list(base - 1), "ssim": [0.75] * 20}}}
    rows = {r["method"]: r for r in ver.compare(scores, "Laplace")}
    assert set(rows) == {"Input", "MAE", "FFT", "TV"}
    mae, fft, tv = rows["MAE"], rows["FFT"], rows["TV"]
    # (a) the per-image paired t-test calls MAE better; (b) sees the seed spread
    assert mae["psnr_image_result"] == "better" and mae["psnr_image_p"] < 1e-6
    assert mae["psnr_seed_result"] == ver.NO_DIFFERENCE
    assert fft["psnr_image_result"] == "better" and fft["psnr_seed_result"] == "better"
    assert fft["ssim_seed_result"] == "better" and tv["psnr_seed_result"] == "worse"
    assert (mae["n"], mae["seeds"], mae["ref_seeds"], tv["seeds"]) == (20, 3, 3, 0)

    def seed_means(label, m):
        return [np.mean(v[m]) for v in scores[label].values()]

    lap = seed_means("Laplace", "psnr")
    welch = ttest_ind(seed_means("MAE", "psnr"), lap, equal_var=False)
    assert mae["psnr_seed_p"] == pytest.approx(welch.pvalue)
    assert mae["psnr_seed_t"] == pytest.approx(welch.statistic)
    assert mae["psnr_diff"] == pytest.approx(np.mean(seed_means("MAE", "psnr")) - np.mean(lap))
    assert mae["psnr_se"] == pytest.approx(np.sqrt(np.var(seed_means("MAE", "psnr"), ddof=1) / 3
                                                   + np.var(lap, ddof=1) / 3))
    assert mae["psnr_ref_sd"] == pytest.approx(np.std(lap, ddof=1))
    per_image = [np.mean([v["psnr"][i] for v in scores[k].values()]) for k in ("MAE", "Laplace")
                 for i in range(20)]
    assert mae["psnr_image_p"] == pytest.approx(ttest_rel(per_image[:20], per_image[20:]).pvalue)
    assert tv["psnr_seed_p"] == pytest.approx(ttest_1samp(lap, np.mean(base - 1)).pvalue)
    assert tv["psnr_sd"] == 0.0 and tv["psnr_se"] == pytest.approx(np.std(lap, ddof=1) / 3**.5)

    md = ver.verdict_markdown(list(rows.values()), "Laplace")
    assert "| MAE | 3 | +0.24 | 2.35e-15 | better | 0.18 | 0.252 | **no difference** |" in md
    assert "| TV | fixed |" in md and "Laplace seed SD |" in md
    summary = ver.summary_markdown({"ch0 → ch0": list(rows.values())}, "psnr",
                                   ["Laplace", "MAE", "FFT", "TV"], "Laplace")
    assert "| ch0 → ch0 | 0.26 | +0.24 ± 0.18 · / ▲ | +1.16 ± 0.16 ▲ / ▲ |" in summary
    header = ver.VERDICT_HEADER
    assert ver.verdict_rows([mae])[0][header.index("seed_result (PSNR)")] == ver.NO_DIFFERENCE

    # fewer than 2 seeds: (a) as the study, (b) says so instead of a verdict
    one = {k: ({0: v[0]} if None not in v else v) for k, v in scores.items()}
    rows1 = {r["method"]: r for r in ver.compare(one, "Laplace")}
    assert all(r["psnr_seed_result"] == ver.NEEDS_SEEDS for r in rows1.values())
    assert rows1["MAE"]["psnr_image_result"] == "better"
    single = tab.ttests({k: v[0] if 0 in v else v[None] for k, v in one.items()}, "Laplace")
    for r in single:  # with one seed, (a) is exactly the per-case t-test
        assert rows1[r["method"]]["psnr_image_p"] == pytest.approx(r["psnr_p"])
    assert ver.seed_test([1.0, 2.0], [1.5, 1.5])["result"] == ver.NO_DIFFERENCE
    assert ver.seed_test([1.0], [1.0], True, True)["result"] == "n/a"
    assert ver.seed_test([1.0, 1.0], [0.0, 0.0])["result"] == "n/a"  # no spread at all
    assert ver.compare(scores, "Missing") == []


def test_markdown_to_html():
    text = ("# Title\n\nSome **bold** and `code` <x>.\n\n| a | b |\n| --- | ---: |\n"
            "| 1 | **2** |\n\n![fig](figures/x.png)\n\n- item\n\n```yaml\nk: <v>\n```\n")
    out = markdown_to_html(text)
    assert "<h1>Title</h1>" in out and "<strong>bold</strong>" in out
    assert "&lt;x&gt;" in out and "<code>code</code>" in out
    assert '<th style="text-align:right">b</th>' in out
    assert '<td style="text-align:right"><strong>2</strong></td>' in out
    assert '<img src="figures/x.png" alt="fig">' in out and "<li>item</li>" in out
    assert "k: &lt;v&gt;" in out and "http" not in out


# ----------------------------------------------------------------------------- resume


class FakeJobs:
    """Training replaced by a finished metadata file; model restorations by a blur.

    Input and TV scoring jobs run for real (fast), through the real file writing."""

    def __init__(self, monkeypatch):
        self.trained, self.scored = [], []
        real_restore = jobs._restore

        def restore(job, low, high):
            if job.kind != "model":
                return real_restore(job, low, high)
            from scipy.ndimage import gaussian_filter

            from napari_care_losses.restore.metrics import score_stack

            run = jobs.model_run_id(Path(job.outdir) / job.model_dir)
            seed = int(re.search(r"_s(\d+)__", job.model_dir).group(1))
            sigma = 1 + 0.1 * seed  # seed 0: sigma 1, as before seeds were varied
            blurred = gaussian_filter(low.astype(np.float32), (0, sigma, sigma))
            return (blurred, score_stack(blurred, high),
                    {"model_dir": job.model_dir, "model_run": run})

        def train(job):
            self.trained.append(job.key)
            job.path.mkdir(parents=True, exist_ok=True)
            (job.path / "weights_best.h5").write_bytes(b"fake weights")
            cfg = TrainConfig.from_dict(job.config)  # the network CSBDeep would describe
            (job.path / "config.json").write_text(json.dumps({
                "n_dim": 2, "n_channel_in": 1, "n_channel_out": 1,
                "probabilistic": cfg.loss.probabilistic, "unet_n_depth": cfg.unet_n_depth,
                "unet_n_first": cfg.unet_n_first, "unet_kern_size": cfg.unet_kern_size}))
            write_meta(job.path, {"status": "finished", "train": job.config,
                                  "data": {"run_id": uuid.uuid4().hex},
                                  "history": {"loss": [0.3, 0.2], "val_loss": [0.35, 0.3]},
                                  "best_val_loss": 0.3})
            return {"job": job.key, "type": "train", "status": "ran", "title": job.title}

        def score_job(job, *deps):
            self.scored.append(job.key)
            return jobs.run_score_job(job, *deps)

        monkeypatch.setattr(jobs, "_restore", restore)
        monkeypatch.setattr(runner, "run_train_job", train)
        monkeypatch.setattr(runner, "run_score_job", score_job)

    def reset(self):
        self.trained.clear()
        self.scored.clear()


def test_resume_computes_nothing_twice(tmp_path, monkeypatch):
    fake = FakeJobs(monkeypatch)
    spec = parse_spec(base_raw())
    out = tmp_path / "res"
    lines: list[str] = []
    s1 = runner.run_experiment(spec, out, log=lines.append, report=False)
    assert (s1.trained, s1.scored, s1.failed) == (3, 10, [])  # 3 models; 2 exps x 5 columns
    assert len(set(fake.trained)) == 3 and len(fake.scored) == 10
    assert any("[13/13]" in x for x in lines)

    fake.reset()
    s2 = runner.run_experiment(spec, out, log=lines.append, report=False)
    assert s2.executed == 0 and fake.trained == fake.scored == []
    assert any("13 jobs already done, 0 to run" in x for x in lines)

    # an interrupted run: one model still "training", one score file lost, one half-written
    p = runner.plan(spec.grid(), out)
    fft = next(j for j in p.train_jobs if "fft" in j.model_dir)
    meta = read_meta(fft.path)
    write_meta(fft.path, {**meta, "status": "training"})
    tv = next(j for j in p.score_jobs if j.method == "tv" and j.experiment == "ch0__ch1")
    (out / tv.scores_file).unlink()
    lap = next(j for j in p.score_jobs if j.method == "laplace" and j.experiment == "ch0__ch0")
    (out / lap.restoration_file).unlink()  # JSON without its restoration does not count
    inp = next(j for j in p.score_jobs if j.kind == "input" and j.experiment == "ch0__ch0")
    data = json.loads((out / inp.scores_file).read_text())
    (out / inp.scores_file).write_text(json.dumps({**data, "key": "stale"}))
    fake.reset()
    s3 = runner.run_experiment(spec, out, log=lines.append, report=False)
    fft_scores = {j.key for j in p.score_jobs if j.model_key == fft.key}
    assert fake.trained == [fft.key]
    assert set(fake.scored) == fft_scores | {tv.key, lap.key, inp.key}
    assert (s3.trained, s3.scored) == (1, 5)

    # changing a training setting makes new models; baselines and input are kept
    raw = base_raw()
    raw["budgets"]["tiny"]["training"]["epochs"] = 2
    fake.reset()
    s4 = runner.run_experiment(parse_spec(raw), out, log=lines.append, report=False)
    assert (s4.trained, s4.scored) == (3, 6)

    # a model retrained by a run that stopped before re-scoring: its old scores are stale
    p = runner.plan(parse_spec(raw).grid(), out)
    m = p.train_jobs[0]
    write_meta(m.path, {**read_meta(m.path), "data": {"run_id": "another run"}})
    train, score_jobs = p.pending()
    assert train == []
    assert {j.key for j in score_jobs} == {j.key for j in p.score_jobs if j.model_key == m.key}


def test_failed_training_skips_its_scores(tmp_path, monkeypatch):
    fake = FakeJobs(monkeypatch)
    real_train = runner.run_train_job

    def train(job):
        if "fft" in job.model_dir:
            raise RuntimeError("boom")
        return real_train(job)

    monkeypatch.setattr(runner, "run_train_job", train)
    spec = parse_spec(base_raw())
    s = runner.run_experiment(spec, tmp_path / "res", log=lambda _: None, report=False)
    assert s.trained == 2 and s.scored == 8 and len(s.failed) == 3
    assert any("boom" in f for f in s.failed)
    assert sum("its model failed" in f for f in s.failed) == 2
    assert len(fake.scored) == 8
    path = build_report(tmp_path / "res", log=lambda _: None, figures=False)
    assert "Not (yet) computed: FFT" in path.read_text()


def test_report_from_fake_results(tmp_path, monkeypatch):
    FakeJobs(monkeypatch)
    out = tmp_path / "res"
    runner.run_experiment(parse_spec(base_raw()), out, log=lambda _: None)
    for name in ("report.md", "report.html", "summary.json", "plan.json", "experiment.yaml",
                 "tables/ch0__ch1_psnr.csv", "tables/ch0__ch1_ssim.md",
                 "tables/ch0__ch1_ttest.csv", "tables/gain_psnr.csv", "tables/mean_ssim.md",
                 "figures/ch0__ch1_scores.png", "figures/ch0__ch1_panel.png",
                 "figures/ch0__ch1_spectra.png", "figures/loss_curves_ch0.png"):
        assert (out / name).is_file(), name
    md = (out / "report.md").read_text()
    assert "| image | Input | Laplace | FFT | BP | TV |" in md
    assert "Paired t-test against **Laplace**" in md and "## Versions" in md
    assert "csbdeep" in md and "![crops, ch0 → ch1](figures/ch0__ch1_panel.png)" in md
    assert "| learning_rate | 0.0004 |" in md  # settings the budget left at their default
    html = (out / "report.html").read_text()
    assert '<img src="figures/ch0__ch0_spectra.png"' in html
    assert "## Verdicts against Laplace" in md and ver.NEEDS_SEEDS in md  # one seed
    assert (out / "tables" / "ch0__ch1_verdict.csv").is_file()


def test_report_with_seeds(tmp_path, monkeypatch):
    """Two seeds per loss: one table per model, one verdict table per experiment."""
    fake = FakeJobs(monkeypatch)
    raw = base_raw()
    raw["seeds"] = 2
    out = tmp_path / "res"
    s = runner.run_experiment(parse_spec(raw), out, log=lambda _: None, report=False)
    assert (s.trained, s.scored) == (6, 16) and len(set(fake.trained)) == 6
    build_report(out, log=lambda _: None, figures=False)
    md = (out / "report.md").read_text()
    for seed in (0, 1):  # per-image scores are kept per seed
        assert (out / "tables" / f"ch0__ch1__p32_s{seed}_psnr.csv").is_file()
        assert f"### ch0 → ch1 (mismatch, patch 32, seed {seed})" in md
    with (out / "tables" / "ch0__ch1_verdict.csv").open() as fh:
        rows = {r["method"]: r for r in csv.DictReader(fh)}
    assert set(rows) == {"Input", "FFT", "BP", "TV"}
    # the fake models of one seed restore alike, whatever the loss: no difference to Laplace
    assert rows["FFT"]["seeds"] == "2" and rows["TV"]["seeds"] == "0"
    assert rows["FFT"]["seed_result (PSNR)"] == ver.NO_DIFFERENCE
    assert float(rows["FFT"]["diff (PSNR)"]) == pytest.approx(0, abs=1e-9)
    assert float(rows["FFT"]["ref_sd (PSNR)"]) > 0  # the two seeds' models differ
    assert "**Verdicts against Laplace** (2 seeds per loss" in md
    assert "| ch0 → ch0 | 18.25 | 27.72 ± 0.44 |" in md  # mean over seeds ± seed SD
    assert "### ch0 → ch0\n" in md and (out / "tables" / "verdict_ssim.md").is_file()
    summary = json.loads((out / "summary.json").read_text())
    assert {r["method"] for r in summary["verdicts"]["ch0 → ch1"]} == set(rows)


# ----------------------------------------------------------------------------- end to end


def _recompute_check(out: Path) -> int:
    """Reload restorations and GT, recompute every score, compare with the CSV tables."""
    plan = json.loads((out / "plan.json").read_text())
    checked = 0
    for case in plan["cases"]:
        recomputed = {}
        gt = tifffile.imread(resolve_path(case["test_pair"]["high"]))
        low = tifffile.imread(resolve_path(case["test_pair"]["low"]))
        for metric in ("psnr", "ssim"):
            with (out / "tables" / f"{case['id']}_{metric}.csv").open() as fh:
                rows = list(csv.DictReader(fh))
            for col in case["columns"]:
                data = json.loads((out / col["scores_file"]).read_text())
                restored = (low if col["kind"] == "input"
                            else tifffile.imread(out / data["restoration"]))
                values = [getattr(score(r, g), metric) for r, g in zip(restored, gt, strict=True)]
                table = [float(r[col["label"]]) for r in rows[:-1]]
                np.testing.assert_allclose(table, values, atol=2e-6)
                recomputed[col["label"], metric] = values
                assert float(rows[-1][col["label"]]) == pytest.approx(np.mean(values), abs=2e-6)
                checked += len(values)
        with (out / "tables" / f"{case['id']}_ttest.csv").open() as fh:
            for r in csv.DictReader(fh):
                for metric, name in (("psnr", "PSNR"), ("ssim", "SSIM")):
                    ref = ttest_rel(recomputed[r["method"], metric],
                                    recomputed["Laplace", metric])
                    assert float(r[f"p ({name})"]) == pytest.approx(ref.pvalue, abs=1e-5)
    return checked


@pytest.mark.slow
def test_bundled_example_end_to_end(tmp_path, capsys):
    """The bundled example's tiny budget (cut to 2 epochs x 4 steps) through the CLI."""
    raw = yaml.safe_load(find_example("w2s_mismatch").read_text())
    raw["budgets"]["tiny"]["training"].update(epochs=2, steps_per_epoch=4,
                                              patches_per_image=16)
    path = tmp_path / "w2s_mismatch_ci.yaml"
    path.write_text(yaml.safe_dump(raw))
    out = tmp_path / "results"
    assert exp_cli.main(["run", str(path), "--budget", "tiny", "--out", str(out)]) == 0
    log = capsys.readouterr().out
    assert "ran 6 trainings and 20 scoring jobs" in log
    models = sorted((out / "models").iterdir())
    assert len(models) == 6 and all(read_meta(m)["status"] == "finished" for m in models)
    assert len(list((out / "restorations").rglob("*.tif"))) == 16  # 4 exps x (3 + TV)
    assert _recompute_check(out) == 4 * 5 * 2 * 2  # cases x columns x images x metrics
    md = (out / "report.md").read_text()
    for case in ("ch0 → ch0", "ch0 → ch1", "ch1 → ch0", "ch1 → ch1"):
        assert f"### {case}" in md
    assert (out / "figures" / "loss_curves_ch1.png").is_file()
    # second run: nothing is recomputed
    assert exp_cli.main(["run", str(path), "--budget", "tiny", "--out", str(out),
                         "--no-report"]) == 0
    assert "ran 0 trainings and 0 scoring jobs (26 already done" in capsys.readouterr().out
    assert exp_cli.main(["report", str(out), "--no-figures"]) == 0


@pytest.mark.slow
def test_dask_local_cluster_two_processes(tmp_path):
    from distributed import Client, LocalCluster

    raw = copy.deepcopy(base_raw())
    raw["methods"] = [{"loss": "fft"}, {"loss": "mae"}, {"baseline": "tv", "factor": 1.0}]
    raw["experiments"] = [{"train": "ch0", "test": "ch0"}, {"train": "ch0", "test": "ch1"}]
    spec = parse_spec(raw)
    out = tmp_path / "res"
    lines: list[str] = []
    with LocalCluster(n_workers=2, processes=True, threads_per_worker=1,
                      dashboard_address=None) as cluster, Client(cluster) as client:
        worker_pids = set(client.run(os.getpid).values())
        s = runner.run_experiment(spec, out, client=client, log=lines.append)
        assert (s.trained, s.scored, s.failed) == (2, 8, [])
        again = runner.run_experiment(spec, out, client=client, log=lines.append, report=False)
    assert again.executed == 0
    assert len(worker_pids) == 2 and os.getpid() not in worker_pids
    p = runner.plan(spec.grid(), out)
    assert all(j.done() for j in p.train_jobs) and all(j.done() for j in p.score_jobs)
    lines_ = (out / "run_log.jsonl").read_text().splitlines()
    log = {r["job"]: r for r in map(json.loads, lines_)}
    assert {r["pid"] for r in log.values()} <= worker_pids  # all jobs ran on the workers
    for j in p.score_jobs:  # each training finished before the scoring jobs that need it
        if j.model_key:
            assert log[j.model_key]["finished"] <= log[j.key]["started"]
    assert (out / "report.html").is_file()

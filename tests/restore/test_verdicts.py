"""Grouped verdicts: groups built with known per-seed offsets give the constructed effect,
SD between seeds and significance; one model per group gives no verdict."""

from __future__ import annotations

import math
import subprocess
import sys
from dataclasses import dataclass

import numpy as np
import pytest
from scipy import stats

from napari_care_losses.experiments import verdicts as exp_verdicts
from napari_care_losses.restore import verdicts as ver
from napari_care_losses.restore.metrics import Score
from napari_care_losses.restore.verdict_text import (
    CANNOT_SEPARATE,
    image_table,
    verdict_line,
    verdict_lines,
)
from napari_care_losses.restore.verdicts import (
    MethodGroup,
    ModelScores,
    group_models,
    group_verdicts,
)

N = 14
BASE = np.random.default_rng(0).normal(0, 1.5, N)  # the frames differ a lot from each other


def _run(level: float, rng, noise: float) -> dict[str, list[float]]:
    """One model: PSNR = frame difficulty + ``level`` + per-frame noise of mean exactly 0,
    so the model's mean over the frames is exactly ``level + mean(BASE)``."""
    e = rng.normal(0, noise, N) if noise else np.zeros(N)
    e -= e.mean()
    return {"psnr": list(BASE + level + e), "ssim": list(0.8 + (level - 30) / 100 + e / 100)}


def _group(label, levels, seed=0, noise=0.03, method=None):
    rng = np.random.default_rng(seed)
    return MethodGroup(label, method or label.lower(),
                       {s: _run(lv, rng, noise) for s, lv in enumerate(levels)})


def _welch_p(d, sd_a, k_a, sd_b, k_b):
    """Welch's two-sided p from its formula (not from scipy's ttest_ind)."""
    va, vb = sd_a**2 / k_a, sd_b**2 / k_b
    df = (va + vb) ** 2 / (va**2 / (k_a - 1) + vb**2 / (k_b - 1))
    return 2 * stats.t.sf(abs(d) / math.sqrt(va + vb), df)


LAPLACE = (30.0, 30.1, 29.9)  # mean 30.0, SD between seeds 0.1


def test_effect_sd_and_p_come_out_as_constructed():
    lap = _group("Laplace", LAPLACE, seed=1)
    fft = _group("FFT", (30.6, 30.5, 30.4), seed=2)  # +0.5 dB, SD between seeds 0.1
    (v,) = group_verdicts([fft, lap])  # reference: Laplace by default
    assert (v.label, v.reference, v.seeds, v.ref_seeds, v.n_images) == ("FFT", "Laplace",
                                                                        3, 3, N)
    m = v.metrics["psnr"]
    assert m.diff == pytest.approx(0.5) and m.sd == pytest.approx(0.1)
    assert m.ref_sd == pytest.approx(0.1) and m.se == pytest.approx(math.sqrt(0.02 / 3))
    p = _welch_p(0.5, 0.1, 3, 0.1, 3)
    assert m.seed_p == pytest.approx(p) and 0.001 < p < 0.05 and m.seed_result == "better"
    # the per-frame test (secondary) sees only the frame noise: far smaller p
    assert m.image_result == "better" and m.image_p < p / 100
    s = v.metrics["ssim"]
    assert s.diff == pytest.approx(0.005) and s.sd == pytest.approx(0.001)
    assert s.seed_result == "better"
    assert verdict_line(v) == (f"FFT vs Laplace: +0.50 dB (SD between seeds 0.10 vs 0.10; "
                               f"3 seeds × {N} frames), p = {p:.3f} — better")
    assert verdict_line(v, "ssim").startswith("FFT vs Laplace: SSIM +0.0050 (SD between "
                                              "seeds 0.0010 vs 0.0010; 3 seeds")
    assert "(per image: p < 0.001) — better" in verdict_line(v, per_image=True)


def test_a_small_effect_within_the_seed_spread_is_no_difference():
    lap = _group("Laplace", LAPLACE, seed=1)
    mae = _group("MAE", (30.35, 30.05, 29.75), seed=3)  # +0.05 dB, SD between seeds 0.3
    (v,) = group_verdicts([lap, mae])
    m = v.metrics["psnr"]
    assert m.diff == pytest.approx(0.05) and m.sd == pytest.approx(0.3)
    assert m.seed_p == pytest.approx(_welch_p(0.05, 0.3, 3, 0.1, 3)) and m.seed_p > 0.5
    assert m.seed_result == ver.NO_DIFFERENCE
    assert m.image_result == "better"  # a per-frame t-test alone would crown MAE
    assert verdict_line(v).endswith("— no difference")
    assert "SD between seeds 0.30 vs 0.10" in verdict_line(v)


def test_one_model_per_group_gives_no_verdict():
    lap1, bp1 = _group("Laplace", (30.0,)), _group("Bandpass", (31.0,), seed=4)
    (v,) = group_verdicts([lap1, bp1])
    assert not v.separable and v.metrics["psnr"].seed_result == ver.NEEDS_SEEDS
    assert math.isnan(v.metrics["psnr"].seed_p)
    assert verdict_line(v) == f"Bandpass vs Laplace: one model each — {CANNOT_SEPARATE}"
    assert verdict_line(v, "ssim") == verdict_line(v)
    lap3 = _group("Laplace", LAPLACE, seed=1)
    (v3,) = group_verdicts([lap3, bp1])
    assert not v3.separable
    assert verdict_line(v3) == f"Bandpass vs Laplace: one Bandpass model — {CANNOT_SEPARATE}"
    fft = _group("FFT", (30.6, 30.5, 30.4), seed=2)
    lines = verdict_lines(group_verdicts([lap1, fft, bp1]))
    assert lines.count(f"Bandpass vs Laplace: one model each — {CANNOT_SEPARATE}") == 1
    assert lines == [f"FFT vs Laplace: one Laplace model — {CANNOT_SEPARATE}",
                     f"Bandpass vs Laplace: one model each — {CANNOT_SEPARATE}"]


def test_a_fixed_baseline_against_seeded_groups():
    lap = _group("Laplace", LAPLACE, seed=1)
    tv = MethodGroup.fixed("TV", "tv", [Score(float(b + 29.0), 0.7) for b in BASE])
    assert tv.is_fixed and tv.n_models == 0 and tv.metrics == ("psnr", "ssim")
    (v,) = group_verdicts([lap, tv])
    m = v.metrics["psnr"]
    assert (v.seeds, v.ref_seeds) == (0, 3) and v.separable
    assert m.diff == pytest.approx(-1.0) and m.sd == 0 and m.ref_sd == pytest.approx(0.1)
    t = 1.0 / (0.1 / math.sqrt(3))  # Laplace's 3 seed means against TV's one value
    p = 2 * stats.t.sf(t, 2)
    assert m.seed_p == pytest.approx(p) and m.seed_result == "worse"
    assert verdict_line(v) == (f"TV vs Laplace: -1.00 dB (TV fixed, SD between Laplace "
                               f"seeds 0.10; 3 seeds × {N} frames), p = {p:.3f} — worse")
    (w,) = group_verdicts([lap, tv], reference="TV")  # a fixed reference works too
    assert w.metrics["psnr"].seed_result == "better" and w.metrics["psnr"].seed_p == m.seed_p
    assert "SD between Laplace seeds 0.10, TV fixed" in verdict_line(w)


def test_two_fixed_methods_and_seeds_without_spread():
    tv = MethodGroup.fixed("TV", "tv", {"psnr": BASE + 29.0, "ssim": [0.7] * N})
    e = np.random.default_rng(5).normal(0, 0.05, N)
    nlm = MethodGroup.fixed("NL-means", "nlm", {"psnr": BASE + 29.1 + e - e.mean(),
                                                "ssim": [0.7] * N})
    (v,) = group_verdicts([tv, nlm], reference="tv")
    m = v.metrics["psnr"]
    assert m.seed_result == "n/a" and m.diff == pytest.approx(0.1)  # no seeds to test across
    p = stats.ttest_rel(nlm.scores("psnr")[0], tv.scores("psnr")[0]).pvalue
    assert m.image_p == pytest.approx(p) and p < 0.05
    assert verdict_line(v) == (f"NL-means vs TV: +0.10 dB (both fixed; {N} frames), "
                               f"per-image p {'< 0.001' if p < 0.001 else f'= {p:.3f}'}"
                               " — better")
    same = [_group("Laplace", (30.0, 30.0), noise=0), _group("FFT", (30.2, 30.2), noise=0)]
    (w,) = group_verdicts(same)
    assert w.metrics["psnr"].seed_result == "n/a" and verdict_line(w).endswith(
        "— no spread between seeds to test against")


def test_mean_and_sd_per_frame_across_seeds():
    lap = _group("Laplace", LAPLACE, noise=0)  # every frame: the three levels exactly
    tv = MethodGroup.fixed("TV", "tv", {"psnr": BASE + 29.0, "ssim": [0.7] * N})
    mean, sd = lap.image_mean_sd("psnr")
    assert mean == pytest.approx(BASE + 30.0) and sd == pytest.approx(np.full(N, 0.1))
    header, rows = image_table([lap, tv], "psnr")
    assert header == ["frame", "Laplace", "TV"] and len(rows) == N + 1
    for i in range(N):
        assert rows[i] == [str(i), f"{BASE[i] + 30:.2f} ± 0.10", f"{BASE[i] + 29:.2f}"]
    assert rows[-1] == ["mean", f"{BASE.mean() + 30:.2f} ± 0.10", f"{BASE.mean() + 29:.2f}"]
    assert lap.mean_sd("psnr") == pytest.approx((BASE.mean() + 30.0, 0.1))


def test_models_are_grouped_by_their_key_and_any_metric_is_compared():
    @dataclass(frozen=True)
    class Scores3:  # a score record with a third metric (absent where None)
        psnr: float
        ssim: float
        microssim: float | None = None

    def recs(level, micro=True):
        return [Scores3(float(b + level), 0.8, 0.9 + level / 1000 if micro else None)
                for b in BASE]

    models = [*(ModelScores("FFT", "fft", s, recs(30.5 + d), key=("fft", 15))
                for s, d in enumerate((0.1, 0.0, -0.1))),
              ModelScores("FFT", "fft", 0, recs(31.0), key=("fft", 30)),  # other settings
              *(ModelScores("Laplace", "laplace", s, recs(lv), key=("laplace", 15))
                for s, lv in enumerate(LAPLACE)),
              ModelScores("TV", "tv", None, recs(29.0, micro=False), key=("tv", 1.0))]
    groups = group_models(models)
    assert [(g.label, g.n_models) for g in groups] == [("FFT", 3), ("FFT (2)", 1),
                                                       ("Laplace", 3), ("TV", 0)]
    assert groups[0].metrics == ("psnr", "ssim", "microssim") and groups[3].metrics == (
        "psnr", "ssim")
    v = {x.label: x for x in group_verdicts(groups)}
    assert v["FFT"].metrics["microssim"].diff == pytest.approx(0.0005)
    assert v["FFT"].metrics["microssim"].seed_result == "better"
    assert set(v["TV"].metrics) == {"psnr", "ssim"} and not v["FFT (2)"].separable
    assert "MicroSSIM +0.0005" in verdict_line(v["FFT"], "microssim")
    _, rows = image_table(groups, "microssim")
    assert rows[-1][-1] == "–"
    with pytest.raises(ValueError, match=r"^FFT: a second model with seed 1 "):
        group_models([*models, ModelScores("FFT", "fft", 1, recs(30), key=("fft", 15))])
    with pytest.raises(ValueError, match=r"^TV: a second deterministic result"):
        group_models([*models, ModelScores("TV", "tv", None, recs(29), key=("tv", 1.0))])


def test_bad_groups_are_refused_in_one_line():
    lap = _group("Laplace", LAPLACE)
    short = MethodGroup("FFT", "fft", {0: {"psnr": [30.0] * 5, "ssim": [0.8] * 5}})
    with pytest.raises(ValueError, match=rf"^FFT was scored on 5 images, Laplace on {N}"):
        group_verdicts([lap, short])
    with pytest.raises(ValueError, match=r"^no group 'laplace' to compare against "
                                         r"\(groups: FFT\)$"):
        group_verdicts([short])
    two = [MethodGroup(f"Laplace {x}", "laplace", lap.runs) for x in "AB"]
    with pytest.raises(ValueError, match=r"^reference 'laplace' matches several groups "
                                         r"\(Laplace A, Laplace B\): pick one by its label$"):
        group_verdicts([*two, short])
    assert group_verdicts([*two, lap], reference="laplace")[0].reference == "Laplace"
    with pytest.raises(ValueError, match=r"^FFT: seed 1 scored 3 images, seed 0 5$"):
        MethodGroup("FFT", "fft", {0: {"psnr": [1.0] * 5}, 1: {"psnr": [1.0] * 3}})
    with pytest.raises(ValueError, match="mixes a deterministic result with seeded models"):
        MethodGroup("TV", "tv", {None: {"psnr": [1.0]}, 0: {"psnr": [1.0]}})


def test_the_experiment_runner_uses_the_same_statistics():
    assert exp_verdicts.seed_test is ver.seed_test
    groups = [_group("Laplace", LAPLACE, 1), _group("MAE", (30.35, 30.05, 29.75), 3),
              _group("Bandpass", (31.0,), 4),
              MethodGroup.fixed("TV", "tv", {"psnr": BASE + 29.0, "ssim": [0.7] * N})]
    rows = {r["method"]: r for r in exp_verdicts.compare(
        {g.label: g.runs for g in groups}, "Laplace")}
    for v in group_verdicts(groups):
        for metric, m in v.metrics.items():
            for k in ver.RUN_FIELDS:
                got, want = getattr(m, k), rows[v.label][f"{metric}_{k}"]
                assert got == want or (got != got and want != want), (v.label, metric, k)


def test_importing_the_verdicts_loads_no_tensorflow_or_qt():
    code = ("import sys; import napari_care_losses.restore.verdicts, "
            "napari_care_losses.restore.verdict_text; "
            "print(sorted(m for m in ('tensorflow', 'keras', 'csbdeep', 'qtpy', 'napari') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=120)
    assert out.stdout.strip() == "[]"

"""Grouped verdicts: which loss restores better, seen through the spread between seeds.

Two models trained with the same loss and settings but different seeds differ by a few
tenths of a dB on W2S, as much as some loss effects. So models are compared in **groups**:
a :class:`MethodGroup` is every model of one loss and one set of training settings (all
but the seed), each with one score per test image and metric (``psnr``, ``ssim``, and any
other metric present, e.g. ``microssim``); a deterministic method (a baseline, the input)
is a group with one fixed run (seed ``None``). Each group is compared with a reference
group (Laplace by default) two ways, per metric (:func:`compare_runs`):

(a) **per image** (secondary): ``scipy.stats.ttest_rel`` over the test images of each
    image's score averaged over the group's seeds, against the reference's likewise. It
    compares the trained models at hand and cannot see that retraining moves a model.
(b) **across seeds** (the verdict): one number per trained model, its mean over the test
    images; ``scipy.stats.ttest_ind(equal_var=False)`` (Welch) of one group's seed means
    against the other's. A deterministic side is one fixed value: ``ttest_1samp`` of the
    other side's seed means against it. A trained side with a single model gives no
    verdict (:data:`NEEDS_SEEDS`): one model cannot separate the loss from the seed.

The experiment runner (``experiments/verdicts.py``) and the docks and ``evaluate`` use
these same functions. Lines for a microscopist and the mean ± SD table are in
:mod:`.verdict_text`. NumPy/SciPy only: safe to import in napari's process.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

ALPHA = 0.05
NEEDS_SEEDS = "needs ≥ 2 seeds"
NO_DIFFERENCE = "no difference"
#: the fields :func:`compare_runs` returns, in this order
RUN_FIELDS = ("diff", "image_t", "image_p", "image_result", "se", "seed_t", "seed_p",
              "seed_result", "sd", "ref_sd")


def significance(diff: float, p: float, alpha: float = ALPHA) -> str:
    """``better``/``worse`` if ``p < alpha`` (by the sign of ``diff``), else ``n.s.``;
    ``n/a`` without a p-value."""
    if p is None or math.isnan(p):
        return "n/a"
    if p < alpha:
        return "better" if diff > 0 else "worse"
    return "n.s."


def seed_sd(x: Sequence[float] | np.ndarray) -> float:
    """Sample SD (``ddof=1``) of per-model means; NaN with fewer than two."""
    x = np.asarray(x, float)
    return float(np.std(x, ddof=1)) if len(x) >= 2 else math.nan


def seed_test(a: Sequence[float], b: Sequence[float], a_fixed: bool = False,
              b_fixed: bool = False, alpha: float = ALPHA) -> dict[str, Any]:
    """(b): per-model means ``a`` (method) against ``b`` (reference).

    ``*_fixed``: that side is deterministic (one value, no model-to-model variation).
    Returns ``diff`` (mean a − mean b), ``se``, ``t``, ``p`` and ``result`` (``better``,
    ``worse``, :data:`NO_DIFFERENCE`, :data:`NEEDS_SEEDS`, or ``n/a``: both sides fixed,
    nothing to compare, or no spread between models at all).
    """
    from scipy.stats import ttest_1samp, ttest_ind

    a, b = np.asarray(a, float), np.asarray(b, float)
    diff = float(np.mean(a) - np.mean(b)) if len(a) and len(b) else math.nan
    out = {"diff": diff, "se": math.nan, "t": math.nan, "p": math.nan, "result": "n/a"}
    if not (len(a) and len(b)) or (a_fixed and b_fixed):
        return out
    if (not a_fixed and len(a) < 2) or (not b_fixed and len(b) < 2):
        return {**out, "result": NEEDS_SEEDS}
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        if a_fixed:  # diff = a - mean(b): test b's mean against the fixed value
            res, se = ttest_1samp(b, a[0]), seed_sd(b) / math.sqrt(len(b))
            t = -float(res.statistic)
        elif b_fixed:
            res, se = ttest_1samp(a, b[0]), seed_sd(a) / math.sqrt(len(a))
            t = float(res.statistic)
        else:
            res = ttest_ind(a, b, equal_var=False)
            se = math.sqrt(seed_sd(a) ** 2 / len(a) + seed_sd(b) ** 2 / len(b))
            t = float(res.statistic)
    p = float(res.pvalue)
    if math.isnan(p) or not se > 0:  # no model-to-model spread seen: nothing to test against
        return {**out, "se": se}
    result = significance(diff, p, alpha)
    return {"diff": diff, "se": se, "t": t, "p": p,
            "result": NO_DIFFERENCE if result == "n.s." else result}


def compare_runs(a: np.ndarray, b: np.ndarray, a_fixed: bool = False, b_fixed: bool = False,
                 alpha: float = ALPHA) -> dict[str, Any]:
    """One metric, method ``a`` against reference ``b``: (a) per image and (b) across seeds.

    ``a``, ``b``: ``(models, images)`` scores on the same images (one row for a fixed side).
    Returns :data:`RUN_FIELDS`: ``diff`` (mean over images and seeds), the per-image test's
    ``image_t``, ``image_p``, ``image_result`` (better/worse/n.s./n/a), the seed test's
    ``se``, ``seed_t``, ``seed_p``, ``seed_result`` (:func:`seed_test`), and the SD between
    seed means of each side, ``sd`` and ``ref_sd`` (0 for a fixed side, NaN for one model).
    """
    from scipy.stats import ttest_rel

    a, b = np.asarray(a, float), np.asarray(b, float)
    n = a.shape[1]
    a_img, b_img = a.mean(axis=0), b.mean(axis=0)
    t = p = math.nan
    if n >= 2 and np.any(a_img != b_img):
        with warnings.catch_warnings():  # e.g. identical differences on every image
            warnings.simplefilter("ignore", RuntimeWarning)
            res = ttest_rel(a_img, b_img)
        t, p = float(res.statistic), float(res.pvalue)
    diff = float(np.mean(a_img - b_img)) if n else math.nan
    s = seed_test(a.mean(axis=1), b.mean(axis=1), a_fixed, b_fixed, alpha)
    return {"diff": diff, "image_t": t, "image_p": p,
            "image_result": significance(diff, p, alpha) if n else "n/a",
            "se": s["se"], "seed_t": s["t"], "seed_p": s["p"], "seed_result": s["result"],
            "sd": 0.0 if a_fixed else seed_sd(a.mean(axis=1)),
            "ref_sd": 0.0 if b_fixed else seed_sd(b.mean(axis=1))}


# ----------------------------------------------------------------------------- groups

Metrics = Mapping[str, Sequence[float]]


def _as_metrics(scores: Metrics | Sequence[Any], where: str) -> dict[str, np.ndarray]:
    """``{metric: per-image scores}`` from a mapping or from one record per image (e.g.
    ``restore.metrics.Score``: each field a metric; a field that is ``None`` is absent)."""
    if isinstance(scores, Mapping):
        out = {str(k): np.asarray(v, float).ravel() for k, v in scores.items()}
    else:
        records = list(scores)
        if records and not dataclasses.is_dataclass(records[0]):
            raise ValueError(f"{where}: scores must be {{metric: values}} or one score "
                             f"record per image, not {type(records[0]).__name__}")
        names = [f.name for f in dataclasses.fields(records[0])] if records else []
        out = {m: np.asarray([getattr(r, m) for r in records], float) for m in names
               if all(getattr(r, m, None) is not None for r in records)}
    if not out:
        raise ValueError(f"{where}: no scores")
    lengths = {m: len(v) for m, v in out.items()}
    if len(set(lengths.values())) != 1:
        raise ValueError(f"{where}: the metrics cover different numbers of images {lengths}")
    return out


@dataclass(frozen=True, eq=False)
class MethodGroup:
    """All models of one method: ``runs`` maps a seed to per-image scores per metric.

    ``label`` is what a microscopist reads ("FFT"), ``method`` the loss or baseline name
    ("fft", "tv"), ``key`` the caller's grouping key (loss + every training setting but the
    seed; for a baseline its name and strength). A deterministic group has one run, seed
    ``None``. Each run is ``{metric: per-image scores}`` or one score record per image
    (e.g. ``restore.metrics.Score``), stored as ``{metric: float array}``; every run scores
    the same images with the same metrics (checked, one ``ValueError`` line).
    """

    label: str
    method: str
    runs: Mapping[int | None, Mapping[str, np.ndarray]]  # as given: Metrics | records
    key: Hashable = None
    metrics: tuple[str, ...] = field(init=False)
    n_images: int = field(init=False)

    def __post_init__(self) -> None:
        if not self.runs:
            raise ValueError(f"{self.label}: no models")
        if None in self.runs and len(self.runs) > 1:
            raise ValueError(f"{self.label}: mixes a deterministic result with seeded models")
        runs = {s: _as_metrics(r, f"{self.label} (seed {s})") for s, r in self.runs.items()}
        first_seed, first = next(iter(runs.items()))
        for s, r in runs.items():
            if set(r) != set(first):
                raise ValueError(f"{self.label}: seed {s} has metrics {sorted(r)}, seed "
                                 f"{first_seed} {sorted(first)}")
            n = len(next(iter(r.values())))
            if n != len(next(iter(first.values()))):
                raise ValueError(f"{self.label}: seed {s} scored {n} images, seed "
                                 f"{first_seed} {len(next(iter(first.values())))}")
        object.__setattr__(self, "runs", runs)
        object.__setattr__(self, "metrics", tuple(first))
        object.__setattr__(self, "n_images", len(next(iter(first.values()))))

    @classmethod
    def fixed(cls, label: str, method: str, scores: Metrics | Sequence[Any],
              key: Hashable = None) -> MethodGroup:
        """A deterministic method (a baseline, the input): one run, no seed."""
        return cls(label, method, {None: scores}, key)

    @property
    def is_fixed(self) -> bool:
        return None in self.runs

    @property
    def seeds(self) -> tuple[int | None, ...]:
        return tuple(self.runs)

    @property
    def n_models(self) -> int:
        """Trained models in the group; 0 for a deterministic group."""
        return 0 if self.is_fixed else len(self.runs)

    def scores(self, metric: str) -> np.ndarray:
        """``(models, images)``: one row per seed (one row for a fixed group)."""
        return np.stack([r[metric] for r in self.runs.values()])

    def seed_means(self, metric: str) -> np.ndarray:
        """Each model's mean over the images."""
        return self.scores(metric).mean(axis=1)

    def image_mean_sd(self, metric: str) -> tuple[np.ndarray, np.ndarray]:
        """Per image: mean over seeds and SD across seeds (``ddof=1``; NaN with one run)."""
        s = self.scores(metric)
        sd = s.std(axis=0, ddof=1) if len(s) >= 2 else np.full(s.shape[1], math.nan)
        return s.mean(axis=0), sd

    def mean_sd(self, metric: str) -> tuple[float, float]:
        """Mean over images and seeds, and the SD between the seed means (NaN with one)."""
        means = self.seed_means(metric)
        return float(means.mean()), seed_sd(means)


@dataclass(frozen=True)
class ModelScores:
    """One scored model (or deterministic method, ``seed=None``), to be grouped.

    ``label``: the group's label (the same for every seed, e.g. "FFT"); ``key``: hashable,
    loss + all training settings but the seed, as the caller's model record defines them.
    """

    label: str
    method: str
    seed: int | None
    scores: Metrics | Sequence[Any]
    key: Hashable = None


def group_models(models: Iterable[ModelScores]) -> list[MethodGroup]:
    """Models with the same ``(method, key)`` form a group, in first-seen order.

    A group takes its first model's label; groups that would share a label get
    `` (2)``, `` (3)``, … in order. Two models with one seed in one group (the same model
    twice) are refused in one line.
    """
    runs: dict[tuple[str, Hashable], dict[int | None, Any]] = {}
    labels: dict[tuple[str, Hashable], str] = {}
    for m in models:
        try:
            gkey = (m.method, m.key)
            hash(gkey)
        except TypeError:
            raise ValueError(f"{m.label}: the grouping key must be hashable, got "
                             f"{type(m.key).__name__}") from None
        group = runs.setdefault(gkey, {})
        labels.setdefault(gkey, m.label)
        if m.seed in group:
            what = "deterministic result" if m.seed is None else f"model with seed {m.seed}"
            raise ValueError(f"{labels[gkey]}: a second {what} with the same settings "
                             "(the same model twice?)")
        group[m.seed] = m.scores
    used: dict[str, int] = {}
    out = []
    for gkey, group in runs.items():
        label = labels[gkey]
        used[label] = used.get(label, 0) + 1
        if used[label] > 1:
            label = f"{label} ({used[label]})"
        out.append(MethodGroup(label, gkey[0], group, gkey[1]))
    return out


# ----------------------------------------------------------------------------- verdicts

@dataclass(frozen=True)
class MetricVerdict:
    """One metric of a :class:`GroupVerdict`; fields as :func:`compare_runs` names them."""

    metric: str
    diff: float
    image_t: float
    image_p: float
    image_result: str
    se: float
    seed_t: float
    seed_p: float
    seed_result: str
    sd: float
    ref_sd: float


@dataclass(frozen=True)
class GroupVerdict:
    """A group against the reference: ``seeds``/``ref_seeds`` count trained models (0 =
    deterministic), ``n_images`` the images both were scored on, one
    :class:`MetricVerdict` per metric both have."""

    label: str
    reference: str
    seeds: int
    ref_seeds: int
    n_images: int
    metrics: Mapping[str, MetricVerdict]

    @property
    def separable(self) -> bool:
        """False when a trained side has one model: no verdict (loss and seed confounded)."""
        return self.seeds != 1 and self.ref_seeds != 1


def find_group(groups: Sequence[MethodGroup], name: str) -> MethodGroup:
    """The group called ``name``: its label (exactly, then ignoring case), else its method
    name if that is unique. A missing or ambiguous name is one ``ValueError`` line."""
    for same in (lambda g: g.label == name, lambda g: g.label.lower() == name.lower(),
                 lambda g: g.method.lower() == name.lower()):
        hits = [g for g in groups if same(g)]
        if len(hits) == 1:
            return hits[0]
        if len(hits) > 1:
            raise ValueError(f"reference '{name}' matches several groups "
                             f"({', '.join(g.label for g in hits)}): pick one by its label")
    raise ValueError(f"no group '{name}' to compare against (groups: "
                     f"{', '.join(g.label for g in groups) or 'none'})")


def group_verdicts(groups: Sequence[MethodGroup], reference: str = "laplace",
                   alpha: float = ALPHA) -> list[GroupVerdict]:
    """One :class:`GroupVerdict` per group other than ``reference`` (see :func:`find_group`),
    for every metric the group shares with the reference, in the reference's order.

    Groups scored on a different number of images than the reference are refused (one
    ``ValueError`` line naming both).
    """
    ref = find_group(groups, reference)
    out = []
    for g in groups:
        if g is ref:
            continue
        if g.n_images != ref.n_images:
            raise ValueError(f"{g.label} was scored on {g.n_images} images, {ref.label} on "
                             f"{ref.n_images}: compare scores of the same images")
        metrics = {m: MetricVerdict(m, **compare_runs(g.scores(m), ref.scores(m), g.is_fixed,
                                                      ref.is_fixed, alpha))
                   for m in ref.metrics if m in g.metrics}
        out.append(GroupVerdict(g.label, ref.label, g.n_models, ref.n_models, ref.n_images,
                                metrics))
    return out

"""Experiment files: schema, validation (errors name the key path) and the active grid.

An experiment file (YAML) names datasets, methods, patch sizes, seeds, training budgets and
(train dataset -> test dataset) experiments; see ``docs/experiments.md`` for an annotated
example. :func:`load_spec` parses and validates one; :meth:`ExperimentSpec.grid` picks a
budget and returns the :class:`Grid` the runner executes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from ..config.train import TrainConfig
from ..losses import LossSpec

#: The plan a results folder keeps (written by the runner, read by the report).
PLAN_FILE = "plan.json"

#: Prefix of the bundled sample crops in pair paths (resolved where the job runs).
SAMPLE_SCHEME = "sample://"
EXAMPLES_DIR = Path(__file__).resolve().parent.parent / "examples"
ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")
VAR_PATTERN = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
#: TrainConfig fields a budget may set (loss, patch size and seed come from the grid).
TRAIN_KEYS = tuple(f.name for f in fields(TrainConfig)
                   if f.name not in ("loss", "patch_size", "seed"))
TOP_KEYS = ("name", "description", "variables", "datasets", "methods", "reference",
            "patch_sizes", "seeds", "budgets", "default_budget", "experiments")
BUDGET_KEYS = ("description", "training", "datasets", "methods", "patch_sizes", "seeds",
               "test_images", "calibration_frames")


class SpecError(ValueError):
    """Invalid experiment file; ``errors`` lists every problem as ``key.path: message``."""

    def __init__(self, source: str, errors: list[str]) -> None:
        self.source, self.errors = source, list(errors)
        super().__init__(f"{source}: invalid experiment file\n" +
                         "\n".join(f"  {e}" for e in self.errors))


def resolve_path(path: str) -> Path:
    """A pair path as a file: ``sample://C/split/kind`` or a plain (absolute) path."""
    if path.startswith(SAMPLE_SCHEME):
        from ..sample_data import sample_path

        channel, split, kind = path[len(SAMPLE_SCHEME):].split("/")
        return sample_path(int(channel), split, kind)
    return Path(path)


@dataclass(frozen=True)
class Pair:
    """Paired low/high stacks (paths as strings, see :func:`resolve_path`)."""

    low: str
    high: str

    def paths(self) -> tuple[Path, Path]:
        return resolve_path(self.low), resolve_path(self.high)


@dataclass(frozen=True)
class Dataset:
    name: str
    train: Pair | None = None
    validation: Pair | None = None
    test: Pair | None = None


@dataclass(frozen=True)
class Method:
    id: str
    label: str
    loss: LossSpec | None = None
    baseline: str | None = None
    factor: float | None = None  # fixed baseline strength; None = calibrate

    @property
    def learned(self) -> bool:
        return self.loss is not None

    def to_dict(self) -> dict[str, Any]:
        if self.loss is not None:
            return {"id": self.id, "label": self.label, "loss": self.loss.to_dict()}
        return {"id": self.id, "label": self.label, "baseline": self.baseline,
                "factor": self.factor}


@dataclass(frozen=True)
class Experiment:
    train: str
    test: str
    name: str = ""

    @property
    def id(self) -> str:
        return f"{self.train}__{self.test}"

    @property
    def title(self) -> str:
        return self.name or f"{self.train} → {self.test}"

    @property
    def kind(self) -> str:
        return "same" if self.train == self.test else "mismatch"


@dataclass(frozen=True)
class Budget:
    name: str
    training: dict[str, Any] = field(default_factory=dict)
    datasets: tuple[str, ...] | None = None
    methods: tuple[str, ...] | None = None
    patch_sizes: tuple[int, ...] | None = None
    seeds: tuple[int, ...] | None = None
    test_images: int | None = None
    calibration_frames: int = 3
    description: str = ""


@dataclass(frozen=True)
class Grid:
    """What one run executes: the spec restricted by a budget."""

    name: str
    budget: Budget
    datasets: dict[str, Dataset]
    methods: tuple[Method, ...]
    experiments: tuple[Experiment, ...]
    patch_sizes: tuple[int, ...]
    seeds: tuple[int, ...]
    reference: str | None

    def training_settings(self) -> dict[str, Any]:
        """Every training setting of the budget, defaults included (not loss/patch/seed)."""
        cfg = TrainConfig(patch_size=self.patch_sizes[0], **self.budget.training).to_dict()
        return {k: v for k, v in cfg.items() if k in TRAIN_KEYS}

    def train_config(self, method: Method, patch_size: int, seed: int) -> TrainConfig:
        return TrainConfig(loss=LossSpec.create(method.loss.name, method.loss.params, patch_size),
                           patch_size=patch_size, seed=seed, **self.budget.training)


@dataclass(frozen=True)
class ExperimentSpec:
    name: str
    description: str
    source: str
    datasets: dict[str, Dataset]
    methods: tuple[Method, ...]
    experiments: tuple[Experiment, ...]
    patch_sizes: tuple[int, ...]
    seeds: tuple[int, ...]
    budgets: dict[str, Budget]
    default_budget: str
    reference: str | None
    raw: dict[str, Any] = field(default_factory=dict, repr=False)
    variables: dict[str, str | None] = field(default_factory=dict)  # file + command line

    def grid(self, budget: str | None = None) -> Grid:
        name = budget or self.default_budget
        if name not in self.budgets:
            raise SpecError(self.source, [f"budgets: no budget {name!r} (defined: "
                                          f"{', '.join(self.budgets)})"])
        b = self.budgets[name]
        keep_d = set(b.datasets) if b.datasets is not None else set(self.datasets)
        keep_m = set(b.methods) if b.methods is not None else {m.id for m in self.methods}
        methods = tuple(m for m in self.methods if m.id in keep_m)
        exps = tuple(e for e in self.experiments if e.train in keep_d and e.test in keep_d)
        if not exps:
            raise SpecError(self.source, [f"budgets.{name}.datasets: no experiment has both "
                                          f"its datasets in {sorted(keep_d)}"])
        used = {e.train for e in exps} | {e.test for e in exps}
        ref = self.reference if self.reference in keep_m else None
        return Grid(self.name, b, {k: v for k, v in self.datasets.items() if k in used},
                    methods, exps, b.patch_sizes or self.patch_sizes, b.seeds or self.seeds, ref)


# ----------------------------------------------------------------------------- loading


def find_example(name: str) -> Path | None:
    """A bundled example by name (``w2s_mismatch`` or ``w2s_mismatch.yaml``)."""
    stem = Path(name).name.removesuffix(".yaml").removesuffix(".yml")
    path = EXAMPLES_DIR / f"{stem}.yaml"
    return path if path.is_file() else None

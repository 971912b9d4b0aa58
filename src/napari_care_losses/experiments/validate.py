"""Validation of experiment files: every problem is reported with its key path.

Used by :func:`parse_spec` (below); errors read like
``experiments[2].test: unknown dataset 'ch5' (defined: ch0, ch1)``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..config.settings import BY_NAME, problems
from ..config.train import TrainConfig
from ..losses import LOSS_LABELS, LossSpec, parse_loss_name
from ..restore.baselines import BASELINE_LABELS, parse_baseline
from .spec import (
    BUDGET_KEYS,
    ID_PATTERN,
    SAMPLE_SCHEME,
    TOP_KEYS,
    TRAIN_KEYS,
    VAR_PATTERN,
    Budget,
    Dataset,
    Experiment,
    ExperimentSpec,
    Method,
    Pair,
    SpecError,
    find_example,
)


class Validator:
    """Collects errors (``key.path: message``) while building an :class:`ExperimentSpec`."""

    def __init__(self, source: str, base_dir: Path) -> None:
        self.source, self.base_dir, self.errors = source, base_dir, []
        self.broken: set[str] = set()  # datasets with errors (no follow-up errors for them)

    def err(self, key: str, msg: str) -> None:
        line = f"{key}: {msg}" if key else msg
        if line not in self.errors:
            self.errors.append(line)

    def mapping(self, value, key, allowed=None) -> dict:
        if not isinstance(value, dict):
            self.err(key, f"expected a mapping, got {type(value).__name__}")
            return {}
        for k in value:
            if allowed is not None and k not in allowed:
                self.err(f"{key}.{k}" if key else str(k),
                         f"unknown key (allowed: {', '.join(allowed)})")
        return value

    def int_list(self, value, key, minimum=0) -> tuple[int, ...] | None:
        value = [value] if isinstance(value, int) and not isinstance(value, bool) else value
        if not isinstance(value, list) or not value:
            self.err(key, "expected a non-empty list of integers")
            return None
        out = []
        for i, x in enumerate(value):
            if not isinstance(x, int) or isinstance(x, bool) or x < minimum:
                self.err(f"{key}[{i}]", f"expected an integer >= {minimum}, got {x!r}")
            else:
                out.append(x)
        if len(set(out)) != len(out):
            self.err(key, "duplicate values")
        return tuple(out)

    def seed_list(self, value, key) -> tuple[int, ...] | None:
        """``seeds``: a count N (seeds 0 .. N-1) or a list of seeds (the ``seed`` record's
        range). One seed, ``[0]``, is the default and today's behaviour."""
        if isinstance(value, int) and not isinstance(value, bool):
            if value < 1:
                self.err(key, f"expected a number of seeds >= 1 (3 = seeds 0, 1, 2) or a list "
                              f"of seeds, got {value!r}")
                return None
            value = list(range(value))
        if not isinstance(value, list) or not value:
            self.err(key, "expected a non-empty list of integers (the seeds) or a number of "
                          f"seeds (3 = seeds 0, 1, 2), got {value!r}")
            return None
        out = []
        for i, x in enumerate(value):
            why = BY_NAME["seed"].problem(x)
            if why:
                self.err(f"{key}[{i}]", f"not a valid seed: {why}")
            else:
                out.append(int(x))
        if len(set(out)) != len(out):
            self.err(key, "duplicate values")
        return tuple(out)

    def name_list(self, value, key, known, what) -> tuple[str, ...] | None:
        if not isinstance(value, list) or not value:
            self.err(key, f"expected a non-empty list of {what} names")
            return None
        for i, x in enumerate(value):
            if x not in known:
                self.err(f"{key}[{i}]", f"unknown {what} {x!r} (defined: {', '.join(known)})")
        return tuple(str(x) for x in value)

    # --------------------------------------------------------------------- sections

    def spec(self, raw, variables, check_files) -> ExperimentSpec | None:
        if not isinstance(raw, dict):
            self.err("", "the file must contain a mapping (name:, datasets:, methods:, ...)")
            return None
        self.mapping(raw, "", TOP_KEYS)
        for key in ("datasets", "methods", "experiments", "budgets"):
            if key not in raw:
                self.err(key, "missing (required)")
        stem = Path(self.source).stem
        name = str(raw.get("name") or (stem if ID_PATTERN.match(stem) else "experiment"))
        if not ID_PATTERN.match(name):
            self.err("name", f"{name!r} must be a file-safe name (letters, digits, _ . + -)")
        file_vars = self.mapping(raw.get("variables") or {}, "variables")
        variables = {**{k: (None if x is None else str(x)) for k, x in file_vars.items()},
                     **variables}
        datasets = self.datasets(raw.get("datasets") or {}, variables)
        methods = self.methods(raw.get("methods") or [])
        method_ids = [m.id for m in methods]
        patch_sizes = self.int_list(raw.get("patch_sizes", [64]), "patch_sizes", 16) or ()
        seeds = self.seed_list(raw.get("seeds", 1), "seeds") or ()
        experiments = self.experiments(raw.get("experiments") or [], datasets)
        budgets = {}
        for bname, braw in self.mapping(raw.get("budgets") or {}, "budgets").items():
            budgets[str(bname)] = self.budget(str(bname), braw, list(datasets), method_ids)
        default = raw.get("default_budget") or next(iter(budgets), "")
        if budgets and default not in budgets:
            self.err("default_budget", f"unknown budget {default!r} (defined: "
                                       f"{', '.join(budgets)})")
        reference = raw.get("reference")
        if reference is None:
            reference = "laplace" if "laplace" in method_ids else None
        elif reference not in method_ids:
            self.err("reference", f"unknown method {reference!r} (defined: "
                                  f"{', '.join(method_ids)})")
        if not self.errors:
            self.check_combinations(methods, patch_sizes, budgets)
        if check_files and not self.errors:
            self.check_data(datasets, experiments, patch_sizes, budgets)
        return ExperimentSpec(name, str(raw.get("description") or ""), self.source, datasets,
                              tuple(methods), tuple(experiments), patch_sizes, seeds, budgets,
                              default, reference, raw, variables)

    def datasets(self, raw, variables) -> dict[str, Dataset]:
        out = {}
        for name, d in self.mapping(raw, "datasets").items():
            key = f"datasets.{name}"
            if not ID_PATTERN.match(str(name)):
                self.err(key, "dataset names must be file-safe (letters, digits, _ . + -)")
            d = self.mapping(d, key, ("sample", "train", "validation", "test"))
            pairs: dict[str, Pair | None] = {"train": None, "validation": None, "test": None}
            if "sample" in d:
                if set(d) - {"sample"}:
                    self.err(key, "'sample' cannot be combined with train/validation/test")
                s = self.mapping(d["sample"], f"{key}.sample", ("channel",))
                ch = s.get("channel")
                if isinstance(ch, bool) or ch not in (0, 1, 2):
                    self.err(f"{key}.sample.channel", f"expected 0, 1 or 2, got {ch!r}")
                else:
                    pairs["train"], pairs["test"] = (
                        Pair(*(f"{SAMPLE_SCHEME}{ch}/{split}/{k}" for k in ("low", "high")))
                        for split in ("train", "test"))
            else:
                failed = False
                for split in pairs:
                    if split in d:
                        pairs[split] = self.pair(d[split], f"{key}.{split}", variables)
                        failed = failed or pairs[split] is None
                if failed:
                    self.broken.add(str(name))
                elif not (pairs["train"] or pairs["test"]):
                    self.err(key, "needs a train and/or test pair (or sample: {channel: C})")
            out[str(name)] = Dataset(str(name), **pairs)
        if not out and isinstance(raw, dict):
            self.err("datasets", "no datasets defined")
        return out

    def pair(self, raw, key, variables) -> Pair | None:
        raw = self.mapping(raw, key, ("low", "high"))
        paths = []
        for kind in ("low", "high"):
            value = raw.get(kind)
            if not isinstance(value, str) or not value:
                self.err(f"{key}.{kind}", "missing: give the path of a TIFF stack")
                return None
            missing = [n for n in VAR_PATTERN.findall(value) if variables.get(n) is None]
            if missing:
                var = missing[0]
                if any(e.startswith(f"variables.{var}:") for e in self.errors):
                    return None
                self.err(f"variables.{var}", f"not set, but used in the dataset paths (e.g. "
                         f"{key}.{kind}); set it in the file or on the command line with "
                         + ("--data-root DIR or " if var == "data_root" else "")
                         + f"--var {var}=VALUE")
                return None
            value = VAR_PATTERN.sub(lambda m: variables[m.group(1)], value)
            p = Path(value).expanduser()
            paths.append(str((p if p.is_absolute() else self.base_dir / p).resolve()))
        return Pair(*paths)

    def methods(self, raw) -> list[Method]:
        if not isinstance(raw, list) or not raw:
            self.err("methods", "expected a non-empty list of {loss: NAME} or {baseline: NAME}")
            return []
        out: list[Method] = []
        for i, m in enumerate(raw):
            key = f"methods[{i}]"
            m = {"loss": m} if isinstance(m, str) else m
            m = self.mapping(m, key, ("loss", "params", "baseline", "factor", "id", "label"))
            if ("loss" in m) == ("baseline" in m):
                self.err(key, "give exactly one of 'loss' or 'baseline'")
                continue
            where = f"{key}.loss" if "loss" in m else f"{key}.baseline"
            try:
                if "loss" in m:
                    if "factor" in m:
                        self.err(f"{key}.factor", "only baselines have a strength factor")
                    name = parse_loss_name(m["loss"])
                    where = f"{key}.params"
                    loss = LossSpec.create(name, self.mapping(m.get("params") or {}, where))
                    method = Method(str(m.get("id") or loss.name.value.replace("+", "_")),
                                    str(m.get("label") or LOSS_LABELS[loss.name]), loss=loss)
                else:
                    if "params" in m:
                        self.err(f"{key}.params", "baselines take 'factor', not 'params'")
                    b = parse_baseline(m["baseline"])
                    factor = m.get("factor")
                    if factor is not None and not (isinstance(factor, int | float) and factor > 0):
                        self.err(f"{key}.factor", f"expected a number > 0, got {factor!r}")
                        continue
                    method = Method(str(m.get("id") or b.value), str(m.get("label") or
                                    BASELINE_LABELS[b]), baseline=b.value,
                                    factor=None if factor is None else float(factor))
            except ValueError as exc:
                self.err(where, str(exc))
                continue
            if not ID_PATTERN.match(method.id) or method.id == "input":
                self.err(f"{key}.id", f"{method.id!r} is not a usable method id")
            elif any(o.id == method.id for o in out):
                self.err(f"{key}.id", f"duplicate method id {method.id!r}; give each variant "
                                      "its own 'id' (and 'label')")
            elif any(o.label == method.label for o in out) or method.label == "Input":
                self.err(f"{key}.label", f"duplicate column label {method.label!r}")
            out.append(method)
        return out

    def experiments(self, raw, datasets) -> list[Experiment]:
        if not isinstance(raw, list) or not raw:
            self.err("experiments", "expected a non-empty list of {train: A, test: B} "
                                    "(or {cross: [A, B, ...]})")
            return []
        out: list[Experiment] = []
        for i, e in enumerate(raw):
            key = f"experiments[{i}]"
            e = self.mapping(e, key, ("train", "test", "name", "cross"))
            if "cross" in e:
                if set(e) - {"cross"}:
                    self.err(key, "'cross' cannot be combined with train/test/name")
                names = self.name_list(e["cross"], f"{key}.cross", datasets, "dataset") or ()
                found = [Experiment(a, b) for a in names for b in names]
            else:
                ok = True
                for role in ("train", "test"):
                    if role not in e:
                        self.err(f"{key}.{role}", "missing (a dataset name)")
                        ok = False
                    elif e[role] not in datasets:
                        self.err(f"{key}.{role}", f"unknown dataset {e[role]!r} (defined: "
                                                  f"{', '.join(datasets)})")
                        ok = False
                if not ok:
                    continue
                found = [Experiment(str(e["train"]), str(e["test"]), str(e.get("name") or ""))]
            for x in found:
                if x.train in self.broken or x.test in self.broken:
                    continue
                if x.train in datasets and datasets[x.train].train is None:
                    self.err(f"{key}.train", f"dataset {x.train!r} has no train pair")
                if x.test in datasets and datasets[x.test].test is None:
                    self.err(f"{key}.test", f"dataset {x.test!r} has no test pair")
                if any(o.id == x.id for o in out):
                    self.err(key, f"duplicate experiment {x.train} → {x.test}")
                out.append(x)
        return out

    def budget(self, name, raw, dataset_names, method_ids) -> Budget:
        key = f"budgets.{name}"
        if not ID_PATTERN.match(name):
            self.err(key, "budget names must be file-safe (letters, digits, _ . + -): they "
                          "name the results and model folders")
        raw = self.mapping(raw, key, BUDGET_KEYS)
        training = self.mapping(raw.get("training") or {}, f"{key}.training", TRAIN_KEYS)
        training = {k: x for k, x in training.items() if k in TRAIN_KEYS}
        bad = problems(training)  # each value against its setting's record
        if bad:
            self.err(f"{key}.training", "invalid training settings: " + ", ".join(
                f"{k}={training.get(k)!r} ({why})" for k, why in bad.items()))
        else:
            try:
                TrainConfig(patch_size=64, **training)
            except (TypeError, ValueError) as exc:
                self.err(f"{key}.training", str(exc))
        kw: dict[str, Any] = {}
        if "datasets" in raw:
            kw["datasets"] = self.name_list(raw["datasets"], f"{key}.datasets", dataset_names,
                                            "dataset")
        if "methods" in raw:
            kw["methods"] = self.name_list(raw["methods"], f"{key}.methods", method_ids, "method")
        if "patch_sizes" in raw:
            kw["patch_sizes"] = self.int_list(raw["patch_sizes"], f"{key}.patch_sizes", 16)
        if "seeds" in raw:
            kw["seeds"] = self.seed_list(raw["seeds"], f"{key}.seeds")
        for k, lo in (("test_images", 1), ("calibration_frames", 1)):
            x = raw.get(k)
            if x is not None and (not isinstance(x, int) or isinstance(x, bool) or x < lo):
                self.err(f"{key}.{k}", f"expected an integer >= {lo}, got {x!r}")
            elif x is not None:
                kw[k] = x
        return Budget(name, training, description=str(raw.get("description") or ""), **kw)

    def check_combinations(self, methods, patch_sizes, budgets) -> None:
        """Every (method, patch size, budget) must make a valid TrainConfig."""
        for b in budgets.values():
            for i, m in enumerate(methods):
                if not m.learned or (b.methods is not None and m.id not in b.methods):
                    continue
                for ps in b.patch_sizes or patch_sizes:
                    try:
                        TrainConfig(loss=LossSpec.create(m.loss.name, m.loss.params, ps),
                                    patch_size=ps, **b.training)
                    except ValueError as exc:
                        self.err(f"methods[{i}]", f"{m.id} with patch size {ps} "
                                                  f"(budget {b.name}): {exc}")

    def check_data(self, datasets, experiments, patch_sizes, budgets) -> None:
        """Open every pair that an experiment uses (lazily: headers only)."""
        from ..io.data import DataError, open_pair

        min_patch = min([*patch_sizes, *(p for b in budgets.values() for p in b.patch_sizes or ())])
        roles = {(e.train, "train") for e in experiments} | {(e.test, "test") for e in experiments}
        roles |= {(e.train, "validation") for e in experiments}
        for name, split in sorted(roles):
            pair = getattr(datasets[name], split)
            if pair is None:
                continue
            try:
                low, high = open_pair(*pair.paths(), min_patch if split == "train" else None)
                low.close(), high.close()
            except DataError as exc:
                self.err(f"datasets.{name}.{split}", str(exc))


def load_spec(path: str | Path, variables: dict[str, str] | None = None,
              check_files: bool = True) -> ExperimentSpec:
    """Read and validate an experiment file; raise :class:`SpecError` listing all problems."""
    import yaml

    path = Path(path)
    if not path.is_file():
        example = find_example(str(path)) if not path.suffix or path.parent == Path(".") else None
        if example is None:
            raise SpecError(str(path), ["no such file (and no bundled example of that name)"])
        path = example
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise SpecError(str(path), [f"not valid YAML: {exc}"]) from None
    return parse_spec(raw, path.parent, str(path), variables, check_files)


def parse_spec(raw: Any, base_dir: str | Path = ".", source: str = "<spec>",
               variables: dict[str, str] | None = None, check_files: bool = False
               ) -> ExperimentSpec:
    """Validate an already parsed experiment mapping (paths relative to ``base_dir``)."""
    v = Validator(source, Path(base_dir))
    spec = v.spec(raw, dict(variables or {}), check_files)
    if v.errors:
        raise SpecError(source, v.errors)
    return spec

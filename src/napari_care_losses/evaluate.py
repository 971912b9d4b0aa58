"""The ``evaluate`` command: per-image PSNR/SSIM of models and baselines against a ground
truth, and seed-aware verdicts of the models grouped by loss and settings
(:mod:`.restore.verdicts`)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from .io.data import DataError
from .losses import LossName


def cmd_evaluate(args) -> int:
    from functools import partial

    from .io.data import open_pair, release
    from .io.tiff import refuse_existing
    from .models.package_import import resolve_model_source
    from .restore.engine import Calibration, MethodSpec, restore_all_or_raise
    from .restore.metrics import ConstantGroundTruthError, score, score_stack
    from .restore.score_tables import to_markdown, write_csv

    if args.metric == "raw" and args.data_range is None:
        raise ValueError("--metric raw needs --data-range (e.g. 255 for 8-bit images)")
    refuse_existing(args.output, overwrite=args.overwrite)
    scorer = partial(score, mode=args.metric, data_range=args.data_range)
    # a bioimage.io package (.zip or its unpacked folder) is unpacked into the cache first
    specs = [MethodSpec.for_model(resolve_model_source(m)) for m in args.model or []]
    specs += [MethodSpec.for_baseline(b, args.strength) for b in args.baseline or []]
    restored = [_restored_item(item) for item in args.restored or []]
    # the groups (and the reference) are checked before any work
    members = _group_members(specs, [label for label, _ in restored])
    reference = _reference(members, args.reference)
    calibration = None
    if args.calibrate and args.strength is None and args.baseline:
        calibration = Calibration.first_frames(*args.calibrate, args.calibration_frames,
                                               Path(args.calibrate[0]).name)
    low, high = open_pair(args.low, args.high)
    try:
        try:
            methods = {"Input": score_stack(low.to_array(), high.to_array(), args.metric,
                                            args.data_range)}
        except ConstantGroundTruthError as exc:  # the metric's error: name the file
            raise DataError(f"{high.name}: {exc}") from None
        except DataError:  # names its file already (a bad low file is not the high one's)
            raise
        except ValueError as exc:
            raise DataError(f"{low.name} scored against {high.name}: {exc}") from None
        results = restore_all_or_raise(specs, low, high, calibration=calibration,
                                       scorer=scorer, log=lambda m: print(m, flush=True))
    finally:
        release((low, None), (high, None))
    for name, res in results.items():  # baselines: the table says which strength
        methods[f"{name} ({res.note})" if res.spec.baseline else name] = res.scores
    for label, path in restored:
        restored, truth = open_pair(path, args.high)
        try:
            methods[label] = score_stack(restored.to_array(), truth.to_array(), args.metric,
                                         args.data_range)
        finally:
            release((restored, None), (truth, None))
    write_csv(args.output, methods)
    print(to_markdown(methods))
    _print_verdicts(members, reference,  # baselines' table names carry their strength
                    lambda name: results[name].scores if name in results else methods[name])
    if args.baseline and calibration is None and args.strength is None:
        print("note: baselines ran at their noise-based strength; --calibrate LOW HIGH picks "
              "the strength with the best PSNR on a separate pair (fairer)")
    print(f"Wrote per-image scores to {args.output}")
    return 0


def _restored_item(item: str) -> tuple[str, str]:
    label, _, path = item.partition("=")
    if not path:
        raise DataError(f"--restored expects NAME=FILE, got {item!r}")
    return label, path


def _group_members(specs, restored_labels) -> list[tuple[str, object]]:
    """``(table name, ModelScores without scores)`` of each method: a model's group key is
    its loss and every training setting but the seed; a baseline or a saved restoration is a
    fixed group of its own."""
    import json

    from .models.folder import ModelFolder
    from .restore.verdicts import ModelScores

    out = []
    for spec in specs:
        if spec.model_dir is None:  # a baseline (its strength is the same for all)
            out.append((spec.name, ModelScores(spec.name, spec.baseline, None, {}, spec.key)))
            continue
        cfg = ModelFolder.open(spec.model_dir).config
        key = json.dumps({k: v for k, v in cfg.to_dict().items() if k != "seed"},
                         sort_keys=True)
        out.append((spec.name, ModelScores(cfg.loss.label, cfg.loss.name.value, cfg.seed, {},
                                           key)))
    out += [(label, ModelScores(label, f"restored:{label}", None, {}, label))
            for label in restored_labels]
    return out


def _groups(members, scores_of):
    from .restore.verdicts import group_models

    return group_models(replace(m, scores=scores_of(name)) for name, m in members)


def _reference(members, wanted: str | None) -> str | None:
    """The reference group's label: ``wanted`` (refused in one line if there is no such
    group), else the Laplace group's if there is one, else None."""
    from .restore.verdicts import find_group

    groups = _groups(members, lambda _name: {"psnr": [0.0]})  # refuses a model given twice
    if wanted is not None:
        return find_group(groups, wanted).label
    laplace = [g for g in groups if g.method == LossName.LAPLACE.value]
    return laplace[0].label if laplace else None


def _print_verdicts(members, reference: str | None, scores_of) -> None:
    """One verdict line per group against ``reference`` (restore/verdict_text.py)."""
    from .restore.verdict_text import verdict_lines
    from .restore.verdicts import group_verdicts

    if not any(m.seed is not None for _, m in members):
        return  # no trained models: nothing about seeds to say
    groups = _groups(members, scores_of)
    if len(groups) < 2:
        return
    if reference is None:
        print("note: no verdicts: no Laplace models to compare against; pick a reference "
              "group with --reference NAME")
        return
    seeds = [f"{g.label} {', '.join(map(str, g.seeds))}" for g in groups if not g.is_fixed]
    print(f"Groups (same loss and settings; seeds): {' · '.join(seeds)}")
    print(f"Verdicts against {reference} (effect: mean over frames and seeds; p: test "
          "across seeds):")
    for line in verdict_lines(group_verdicts(groups, reference)):
        print(f"  {line}")

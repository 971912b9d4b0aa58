"""``napari-care-losses experiment run|report``: reproduce the study from an experiment file.

The main CLI calls :func:`add_parser` with its subparsers; ``python -m
napari_care_losses.experiments`` runs the same commands on their own.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..config.settings import number


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``experiment`` (with ``run`` and ``report``) on an argparse subparsers object."""
    p = subparsers.add_parser(
        "experiment", help="run a grid of trainings/evaluations from an experiment file",
        description="Reproduce the loss study headlessly: train every model of an experiment "
                    "file once, restore and score every test set, write tables, figures and "
                    "a report. Interrupted runs resume where they stopped.")
    _add_subcommands(p)
    return p


def _add_subcommands(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="experiment_command", metavar="{run,report}")
    sub.required = True
    run = sub.add_parser("run", help="run (or resume) an experiment file",
                         description="Run or resume an experiment file.")
    run.add_argument("file", help="experiment YAML file, or the name of a bundled example "
                                  "(w2s_mismatch, w2s_full)")
    run.add_argument("--out", type=Path, default=None,
                     help="results folder (default: results/NAME-BUDGET)")
    run.add_argument("--budget", default=None,
                     help="training budget defined in the file, e.g. tiny or full "
                          "(default: the file's default_budget)")
    where = run.add_mutually_exclusive_group()
    where.add_argument("--workers", type=number(int, 0), default=0, metavar="N",
                       help="local Dask worker processes (one thread each); 0 = run "
                            "serially in this process (default)")
    where.add_argument("--scheduler", default=None, metavar="ADDRESS",
                       help="address of a running Dask scheduler (e.g. tcp://host:8786); "
                            "workers must see the results folder and the data")
    run.add_argument("--data-root", default=None, metavar="DIR",
                     help="sets the variable data_root used in the file's paths "
                          "(relative to the current directory)")
    run.add_argument("--var", action="append", default=[], metavar="NAME=VALUE",
                     help="set a variable used as ${NAME} in the file's paths (repeatable)")
    run.add_argument("--dry-run", action="store_true",
                     help="validate the file and list the jobs still to run; run nothing")
    run.add_argument("--no-report", action="store_true",
                     help="only run the jobs; build the report later with 'experiment report'")
    run.set_defaults(func=cmd_run)
    rep = sub.add_parser("report", help="rebuild tables, figures and report of a results folder")
    rep.add_argument("folder", type=Path, help="results folder of 'experiment run'")
    rep.add_argument("--no-figures", action="store_true", help="tables and report only")
    rep.set_defaults(func=cmd_report)


def _variables(args) -> dict[str, str]:
    out = {}
    for item in args.var:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise ValueError(f"--var {item!r}: expected NAME=VALUE")
        out[name.strip()] = value
    if args.data_root:
        out["data_root"] = str(Path(args.data_root).expanduser().resolve())
    return out


def cmd_run(args) -> int:
    from .runner import plan, run_experiment
    from .spec import SpecError
    from .validate import load_spec

    try:
        spec = load_spec(args.file, _variables(args))
        grid = spec.grid(args.budget)
    except (SpecError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    out = args.out or Path("results") / f"{spec.name}-{grid.budget.name}"
    if args.dry_run:
        p = plan(grid, out)
        train, score = p.pending()
        print(f"{spec.name} ({grid.budget.name}): {len(grid.experiments)} experiments, "
              f"{len(p.train_jobs)} models, {len(p.score_jobs)} scoring jobs -> {p.outdir}")
        for j in train:
            print(f"  to train: {j.title}")
        for j in score:
            print(f"  to score: {j.title}")
        print(f"{len(train)} trainings and {len(score)} scoring jobs to run")
        return 0
    try:
        summary = run_experiment(spec, out, args.budget, workers=args.workers,
                                 scheduler=args.scheduler, report=not args.no_report)
    except KeyboardInterrupt:
        print("interrupted: finished jobs are kept; run the same command again to resume",
              file=sys.stderr)
        return 130
    for line in summary.failed:
        print(f"failed: {line}", file=sys.stderr)
    return 1 if summary.failed else 0


def cmd_report(args) -> int:
    from .report import build_report
    from .spec import PLAN_FILE

    if not (args.folder / PLAN_FILE).is_file():
        print(f"error: {args.folder}: not an experiment results folder (no {PLAN_FILE})",
              file=sys.stderr)
        return 2
    path = build_report(args.folder, figures=not args.no_figures)
    print(f"report: {path}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Stand-alone entry point: ``python -m napari_care_losses.experiments run FILE``."""
    parser = argparse.ArgumentParser(prog="python -m napari_care_losses.experiments",
                                     description="Run experiment files (see 'run -h').")
    _add_subcommands(parser)
    args = parser.parse_args(argv)
    return args.func(args)

"""Reproduce the loss study headlessly: experiment files, job grids on Dask, tables, report.

Qt-free. ``load_spec(path)`` validates an experiment file, ``run_experiment(spec, outdir)``
trains, restores and scores everything not yet done and writes the report;
``build_report(outdir)`` rebuilds tables, figures and report from a results folder.
See ``docs/experiments.md``.
"""

from .spec import ExperimentSpec, Grid, SpecError, find_example
from .validate import load_spec, parse_spec

__all__ = ["ExperimentSpec", "Grid", "SpecError", "build_report", "find_example", "load_spec",
           "parse_spec", "plan", "run_experiment"]


def __getattr__(name: str):
    if name in ("plan", "run_experiment"):
        from . import runner

        return getattr(runner, name)
    if name == "build_report":
        from .report import build_report

        return build_report
    raise AttributeError(name)

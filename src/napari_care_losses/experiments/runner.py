"""Plan an experiment grid into jobs, skip what is already done, run the rest.

A model is keyed by (train dataset and its resolved file paths, loss + parameters, patch
size, seed, budget and every training setting) and shared by every experiment that trains on
that dataset; scoring jobs are keyed by (method or model, test files, calibration files).
The plan is written to ``plan.json`` before anything runs, so ``experiment report`` can
rebuild tables and figures from the folder alone.

Execution is serial in-process (``workers=0``) or on Dask distributed: a ``LocalCluster``
(processes, one thread each) or any scheduler address. Training futures are passed as
arguments to the scoring jobs that need them, so Dask runs them in order.
"""

from __future__ import annotations

import json
import logging
import os
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .jobs import ScoreJob, TrainJob, atomic_write_text, make_key, run_score_job, run_train_job
from .spec import PLAN_FILE, ExperimentSpec, Grid

Log = Callable[[str], None]


@dataclass
class Plan:
    grid: Grid
    outdir: Path
    train_jobs: list[TrainJob]
    score_jobs: list[ScoreJob]
    cases: list[dict[str, Any]]
    models: list[dict[str, Any]]

    def pending(self) -> tuple[list[TrainJob], list[ScoreJob]]:
        """Jobs still to run. A score job of a model that must be (re)trained is pending too."""
        train = [j for j in self.train_jobs if not j.done()]
        retrain = {j.key for j in train}
        score = [j for j in self.score_jobs if j.model_key in retrain or not j.done()]
        return train, score

    def to_dict(self, spec: ExperimentSpec | None = None) -> dict[str, Any]:
        g = self.grid
        ref = next((m.label for m in g.methods if m.id == g.reference), None)
        return {
            "name": g.name, "budget": g.budget.name, "reference": ref,
            "source": spec.source if spec else None,
            "description": spec.description if spec else "",
            "budget_description": g.budget.description,
            "variables": dict(spec.variables) if spec else {},
            "training": g.training_settings(), "patch_sizes": list(g.patch_sizes),
            "seeds": list(g.seeds), "test_images": g.budget.test_images,
            "methods": [m.to_dict() for m in g.methods],
            "datasets": {k: {s: (asdict(p) if (p := getattr(d, s)) else None)
                             for s in ("train", "validation", "test")}
                         for k, d in g.datasets.items()},
            "cases": self.cases, "models": self.models,
        }


def plan(grid: Grid, outdir: str | Path) -> Plan:
    """Every job of the grid, with file names under ``outdir``."""
    outdir = Path(outdir).resolve()
    out = str(outdir)
    multi = len(grid.patch_sizes) > 1 or len(grid.seeds) > 1
    b = grid.budget
    train_jobs: dict[str, TrainJob] = {}
    models: list[dict[str, Any]] = []
    score_jobs: dict[str, ScoreJob] = {}
    cases = []

    def model_for(dataset: str, method, ps: int, seed: int) -> TrainJob:
        cfg = grid.train_config(method, ps, seed)
        ds = grid.datasets[dataset]
        key = make_key({"train": dataset, "data": [ds.train.low, ds.train.high],
                        "loss": cfg.loss.to_dict(),
                        "patch_size": ps, "seed": seed, "budget": b.name,
                        "config": cfg.to_dict()})
        if key not in train_jobs:
            rel = f"models/{dataset}__{method.id}__p{ps}_s{seed}__{b.name}__{key[:8]}"
            title = f"{dataset} · {method.label} · p{ps} · s{seed}"
            train_jobs[key] = TrainJob(key, out, rel, ds.train, cfg.to_dict(), title)
            models.append({"key": key, "model_dir": rel, "title": title, "dataset": dataset,
                           "method": method.id, "label": method.label, "patch_size": ps,
                           "seed": seed})
        return train_jobs[key]

    def score_job(exp, method_id, label, kind, suffix="", **kw) -> ScoreJob:
        test = grid.datasets[exp.test]
        payload = {"experiment": exp.id, "method": method_id, "test": exp.test,
                   "data": [test.test.low, test.test.high],
                   "test_images": b.test_images, "suffix": suffix,
                   "kind": kind, **{k: v for k, v in kw.items() if k != "calibration"}}
        if kind == "baseline" and kw.get("factor") is None:
            cal = kw["calibration"]
            payload.update(calibrated_on=exp.train, cal_data=[cal.low, cal.high],
                           cal_frames=b.calibration_frames)
        key = make_key(payload)
        name = f"{method_id}{suffix}"
        job = ScoreJob(
            key, out, exp.id, method_id, label, kind, test.test, f"scores/{exp.id}/{name}.json",
            None if kind == "input" else f"restorations/{exp.id}/{name}.tif",
            calibration_frames=b.calibration_frames, test_images=b.test_images,
            title=f"{exp.title} · {label}{suffix.replace('__', ' ')}", **kw)
        score_jobs.setdefault(job.scores_file, job)
        return job

    for exp in grid.experiments:
        ds_train = grid.datasets[exp.train]
        shared = [score_job(exp, "input", "Input", "input")]
        for m in grid.methods:
            if not m.learned:
                shared.append(score_job(
                    exp, m.id, m.label, "baseline", baseline=m.baseline, factor=m.factor,
                    calibration=ds_train.validation or ds_train.train))
        for ps in grid.patch_sizes:
            for seed in grid.seeds:
                suffix = f"__p{ps}_s{seed}" if multi else ""
                columns = []
                for m in grid.methods:
                    if m.learned:
                        tj = model_for(exp.train, m, ps, seed)
                        columns.append(score_job(exp, m.id, m.label, "model", suffix,
                                                 model_dir=tj.model_dir, model_key=tj.key))
                    else:
                        columns.append(next(j for j in shared if j.method == m.id))
                cols = [shared[0], *columns]
                cases.append({
                    "id": f"{exp.id}{suffix}", "experiment": exp.id, "title": exp.title,
                    "label": exp.title + (f" (p{ps}, s{seed})" if multi else ""),
                    "kind": exp.kind, "train": exp.train, "test": exp.test,
                    "patch_size": ps, "seed": seed,
                    "test_pair": asdict(grid.datasets[exp.test].test),
                    "columns": [{"label": j.label, "method": j.method, "kind": j.kind,
                                 "key": j.key, "scores_file": j.scores_file,
                                 "model_dir": j.model_dir} for j in cols],
                })
    return Plan(grid, outdir, list(train_jobs.values()), list(score_jobs.values()), cases,
                models)


@dataclass
class RunSummary:
    trained: int = 0
    scored: int = 0
    skipped_train: int = 0
    skipped_score: int = 0
    failed: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def executed(self) -> int:
        return self.trained + self.scored


class _Recorder:
    """Counts outcomes, prints progress lines and appends them to ``run_log.jsonl``."""

    def __init__(self, outdir: Path, total: int, log: Log) -> None:
        self.path, self.total, self.log, self.n = outdir / "run_log.jsonl", total, log, 0
        self.summary = RunSummary()

    def done(self, record: dict[str, Any]) -> None:
        self.n += 1
        s = self.summary
        if record["status"] == "ran":
            if record["type"] == "train":
                s.trained += 1
            else:
                s.scored += 1
            extra = f" ({record.get('seconds', 0):.1f} s)"
            if "mean_psnr" in record:
                extra += f", mean PSNR {record['mean_psnr']:.2f} dB"
            verb = "trained" if record["type"] == "train" else "scored"
        elif record["status"] == "skipped":
            s.skipped_train += record["type"] == "train"
            s.skipped_score += record["type"] == "score"
            verb, extra = "already done", ""
        else:
            s.failed.append(f"{record['title']}: {record.get('error', '?')}")
            verb, extra = "FAILED", f": {record.get('error', '?')}"
        self.log(f"[{self.n}/{self.total}] {verb} {record['title']}{extra}")
        with self.path.open("a") as fh:
            fh.write(json.dumps({**record, "time": time.time()}, default=str) + "\n")


def _failed(job, error: str) -> dict[str, Any]:
    kind = "train" if isinstance(job, TrainJob) else "score"
    return {"job": job.key, "type": kind, "status": "failed", "title": job.title,
            "error": error}


def _run_serial(train: list[TrainJob], score: list[ScoreJob], rec: _Recorder) -> None:
    """In-process: ready scoring jobs first, then each model followed by its scoring jobs."""
    pending_models = {j.key for j in train}
    by_model: dict[str | None, list[ScoreJob]] = {}
    for j in score:
        by_model.setdefault(j.model_key if j.model_key in pending_models else None, []).append(j)

    def attempt(fn, job) -> bool:
        try:
            rec.done(fn(job))
            return True
        except Exception as exc:  # noqa: BLE001 - one failed job must not end the grid
            rec.done(_failed(job, f"{type(exc).__name__}: {exc}"))
            return False

    for j in by_model.pop(None, []):
        attempt(run_score_job, j)
    for tj in train:
        ok = attempt(run_train_job, tj)
        for j in by_model.get(tj.key, []):
            if ok:
                attempt(run_score_job, j)
            else:
                rec.done(_failed(j, "not run: its model failed to train"))


def _dask_client(scheduler: str | None, workers: int):
    from distributed import Client, LocalCluster

    if scheduler:
        return Client(scheduler), None
    threads = max(1, (os.cpu_count() or 1) // workers)
    cluster = LocalCluster(n_workers=workers, processes=True, threads_per_worker=1,
                           dashboard_address=None, silence_logs=logging.ERROR,
                           env={"CARE_LOSSES_THREADS": str(threads)})
    return Client(cluster), cluster


def _run_dask(train: list[TrainJob], score: list[ScoreJob], rec: _Recorder,
              client) -> None:
    from distributed import as_completed

    token = uuid.uuid4().hex[:6]
    futures: dict[Any, Any] = {}
    train_futs = {}
    for i, j in enumerate(train):
        f = client.submit(run_train_job, j, key=f"train-{i}-{j.key}-{token}", pure=False,
                          priority=0)
        train_futs[j.key], futures[f] = f, j
    for i, j in enumerate(score):
        deps = [train_futs[j.model_key]] if j.model_key in train_futs else []
        f = client.submit(run_score_job, j, *deps, key=f"score-{i}-{j.key}-{token}",
                          pure=False, priority=10)  # ready scoring jobs go before trainings
        futures[f] = j
    for f in as_completed(list(futures)):
        job = futures[f]
        if f.status == "finished":
            rec.done(f.result())
            continue
        exc = f.exception()
        dep = (isinstance(job, ScoreJob) and job.model_key in train_futs
               and train_futs[job.model_key].status != "finished")
        rec.done(_failed(job, "not run: its model failed to train" if dep
                         else f"{type(exc).__name__}: {exc}"))
        f.release()


def run_plan(p: Plan, workers: int = 0, scheduler: str | None = None,
             log: Log = print, client=None, spec: ExperimentSpec | None = None) -> RunSummary:
    """Run the pending jobs of a plan (see module docstring); return what happened."""
    t0 = time.perf_counter()
    p.outdir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(p.outdir / PLAN_FILE, json.dumps(p.to_dict(spec), indent=1))
    train, score = p.pending()
    n_done = len(p.train_jobs) + len(p.score_jobs) - len(train) - len(score)
    log(f"{p.grid.name} ({p.grid.budget.name}): {len(p.train_jobs)} models, "
        f"{len(p.score_jobs)} scoring jobs, {len(p.cases)} tables; "
        f"{n_done} jobs already done, {len(train) + len(score)} to run -> {p.outdir}")
    rec = _Recorder(p.outdir, len(train) + len(score), log)
    rec.summary.skipped_train = len(p.train_jobs) - len(train)
    rec.summary.skipped_score = len(p.score_jobs) - len(score)
    if train or score:
        if client is None and not scheduler and workers <= 0:
            _run_serial(train, score, rec)
        else:
            own = client is None
            cluster = None
            if own:
                client, cluster = _dask_client(scheduler, workers)
            if scheduler:
                log(f"dask: scheduler {scheduler}, dashboard {client.dashboard_link}")
            else:
                log(f"dask: {f'LocalCluster, {workers} worker processes' if cluster else client}")
            try:
                _run_dask(train, score, rec, client)
            finally:
                if own:
                    client.close()
                    if cluster is not None:
                        cluster.close()
    rec.summary.seconds = time.perf_counter() - t0
    return rec.summary


def run_experiment(spec: ExperimentSpec, outdir: str | Path, budget: str | None = None,
                   workers: int = 0, scheduler: str | None = None, log: Log = print,
                   client=None, report: bool = True) -> RunSummary:
    """Plan, run and (by default) write tables, figures and the report."""
    import yaml

    p = plan(spec.grid(budget), outdir)
    p.outdir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(p.outdir / "experiment.yaml",
                      yaml.safe_dump(spec.raw, sort_keys=False, allow_unicode=True))
    summary = run_plan(p, workers, scheduler, log, client, spec)
    log(f"ran {summary.trained} trainings and {summary.scored} scoring jobs "
        f"({summary.skipped_train + summary.skipped_score} already done, "
        f"{len(summary.failed)} failed) in {summary.seconds:.0f} s")
    if report:
        from .report import build_report

        path = build_report(p.outdir, log=log)
        log(f"report: {path}")
    return summary

"""One record per setting: TrainConfig, the CLI flags, the dock's controls and experiment
validation agree with it; precision and the time budget work end to end."""

from __future__ import annotations

import json
import time
from dataclasses import fields

import numpy as np
import pytest

from napari_care_losses.cli import build_parser
from napari_care_losses.config.settings import (
    BY_NAME,
    PRESETS,
    RUN_SETTINGS,
    SETTINGS,
    defaults,
    number,
    preset_summary,
    presets_help,
    problems,
    resolve_precision,
)
from napari_care_losses.config.train import TrainConfig, config_from_args
from napari_care_losses.losses import DEFAULT_PARAMS, LOSS_PARAM_INFO, LossName
from napari_care_losses.models.folder import META_FILE

from ..conftest import tiny_config


def _train_args(*flags: str):
    return build_parser().parse_args(["train", "low.tif", "high.tif", *flags])


def _bad_values(s):
    if s.choices:
        return ["nonsense" if s.type is str else 4]
    return [s.lo - 1, s.hi + 1] if s.type is int else [s.lo - 1e-3, s.hi * 2 + 1]


def test_trainconfig_fields_and_defaults_are_the_records():
    names = [f.name for f in fields(TrainConfig) if f.name != "loss"]
    assert sorted(names) == sorted(BY_NAME)
    cfg = TrainConfig()
    assert {n: getattr(cfg, n) for n in names} == {s.name: s.default for s in SETTINGS}
    study = TrainConfig.preset("study")
    assert (study.batch_size, study.learning_rate, study.patch_size, study.unet_kern_size,
            study.precision) == (16, 4e-4, 64, 5, "float32")


@pytest.mark.parametrize("s", SETTINGS, ids=lambda s: s.name)
def test_validation_follows_each_record(s):
    from napari_care_losses.experiments.spec import TRAIN_KEYS
    from napari_care_losses.experiments.validate import Validator

    TrainConfig(**{s.name: s.default})
    for bad in _bad_values(s):
        with pytest.raises(ValueError, match=f"{s.name}="):
            TrainConfig(**{s.name: bad})
        assert s.name in problems({s.name: bad})
        if s.name not in TRAIN_KEYS:  # patch size and seed come from the experiment grid
            continue
        v = Validator("x.yaml", None)
        v.budget("b", {"training": {s.name: bad}}, [], [])
        assert any(e.startswith("budgets.b.training:") and s.name in e for e in v.errors)


def test_cli_flags_are_generated_from_the_records():
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command").choices["train"]
    actions = {a.dest: a for a in sub._actions}
    for s in SETTINGS:
        a = actions[s.name]
        assert s.flag in a.option_strings and a.default is None
        assert tuple(a.choices or ()) == s.choices
        assert str(s.default) in a.help
    for key in LOSS_PARAM_INFO:
        assert f"--{key}" in actions[key].option_strings
    assert config_from_args(_train_args()) == TrainConfig()
    assert config_from_args(_train_args("--preset", "study")) == TrainConfig.preset("study")
    cfg = config_from_args(_train_args("--preset", "study", "--minutes", "3", "--unet-kernel",
                                       "3", "--precision", "bfloat16", "--loss", "bandpass",
                                       "--sigma2", "3"))
    assert (cfg.minutes, cfg.unet_kern_size, cfg.precision, cfg.batch_size) == (
        3.0, 3, "bfloat16", 16)
    assert cfg.loss.params == {**DEFAULT_PARAMS[LossName.BANDPASS], "sigma2": 3.0}
    with pytest.raises(SystemExit):
        _train_args("--precision", "float64")


def test_dock_controls_are_generated_from_the_records(qtbot):
    pytest.importorskip("qtpy")
    from qtpy.QtWidgets import QComboBox, QLineEdit

    from napari_care_losses._widgets._training_form import SPECIAL, TrainingForm

    form = TrainingForm()
    qtbot.addWidget(form)
    for s in SETTINGS:
        box = form.controls[s.name]
        if s.choices or s.suggestions:
            assert isinstance(box, QComboBox)
            items = [box.itemText(i) for i in range(box.count())]
            assert items == [str(c) for c in (s.choices or s.suggestions)]
        elif not isinstance(box, QLineEdit) and s.name not in SPECIAL:
            assert (box.minimum(), box.maximum()) == (s.lo, s.hi)
    for key, ((lo, hi), _) in LOSS_PARAM_INFO.items():
        assert (form.param_boxes[key].minimum(), form.param_boxes[key].maximum()) == (lo, hi)
    assert form.values() == defaults()
    assert form.configs()[0] == TrainConfig()
    form.preset.setCurrentText("study")
    assert form.values() == defaults("study")
    form.minutes.setValue(2.5)
    assert form.configs()[0] == TrainConfig.preset("study", minutes=2.5)
    assert set(PRESETS) == {form.preset.itemText(i) for i in range(form.preset.count())}


def test_precision_resolves():
    assert resolve_precision("float32") == "float32"
    assert resolve_precision("auto") in ("float32", "bfloat16", "float16")
    with pytest.raises(ValueError, match="unknown precision"):
        resolve_precision("fp8")


@pytest.mark.slow
def test_bfloat16_model_reloads_and_predicts_in_float32(tiny_patches, sample_pair, tmp_path):
    import keras

    from napari_care_losses.models.network import build_care
    from napari_care_losses.restore.predict import load_model
    from napari_care_losses.training.trainer import Finished, run_training

    cfg = tiny_config("laplace", precision="bfloat16", epochs=2, steps_per_epoch=4)
    policy = keras.config.dtype_policy().name
    done = run_training(tiny_patches, cfg, tmp_path)
    assert isinstance(done, Finished) and keras.config.dtype_policy().name == policy
    meta = json.loads((done.model_dir / META_FILE).read_text())
    assert meta["train"]["precision"] == "bfloat16" and meta["precision_used"] == "bfloat16"
    model = load_model(done.model_dir)  # builds the network in float32
    assert model.config == cfg and model.care.keras_model.output.dtype == "float32"
    frame = sample_pair[0][:1]
    res32 = model.restore(frame)
    assert np.all(np.isfinite(res32.image)) and np.all(res32.scale > 0)
    bf = build_care(None, done.model_dir.name, done.model_dir.parent, precision="bfloat16")
    assert bf.keras_model.output.dtype == "float32"  # head and output stay float32
    assert keras.config.dtype_policy().name == policy
    model._care = bf
    res16 = model.restore(frame)
    err = np.abs(res16.image - res32.image).mean() / (np.abs(res32.image).mean() + 1e-6)
    assert err < 0.05, err


@pytest.mark.slow
def test_minutes_budget_stops_within_ten_percent(tiny_patches, tmp_path):
    from napari_care_losses.training.trainer import EpochEnd, Finished, Planned, Started, train

    cfg = tiny_config("mae", minutes=0.3, epochs=1000, steps_per_epoch=20)
    t0 = time.perf_counter()
    events, at = [], []
    for ev in train(tiny_patches, cfg, tmp_path):
        events.append(ev)
        at.append(time.perf_counter() - t0)
    elapsed = time.perf_counter() - t0
    assert isinstance(events[0], Planned) and isinstance(events[1], Started), events[:2]
    assert isinstance(events[-1], Finished) and not events[-1].stopped, events[-1]
    last_epoch = max(t for t, e in zip(at, events, strict=True) if isinstance(e, EpochEnd))
    timeline = (f"started at {at[0]:.1f} s, last epoch ended at {last_epoch:.1f} s, "
                f"finished at {at[-1]:.1f} s")
    # training (warm-up, epochs, validations) stops within 10 % of the 18 s budget ...
    assert 0.75 * 18 <= last_epoch <= 1.1 * 18, timeline
    # ... then the weights are saved and memory released; on a busy shared 2-core CI host
    # that tail was seen to take up to 7 s (usually < 1 s): bounded, not timed to 10 %
    assert elapsed <= 18 + 10, timeline
    epochs = [e for e in events if isinstance(e, EpochEnd)]
    assert len(epochs) >= 2 and epochs[-1].learning_rate < epochs[0].learning_rate
    meta = json.loads((events[-1].model_dir / META_FILE).read_text())
    assert meta["status"] == "finished" and meta["budget"]["step_s"] > 0
    assert events[-1].best_val_loss == min(e.val_loss for e in epochs)


def test_docs_settings_table_is_the_records():
    from pathlib import Path

    from napari_care_losses.config.settings import settings_table

    doc = (Path(__file__).resolve().parents[2] / "docs" / "settings.md").read_text()
    table = settings_table()
    assert table in doc, "docs/settings.md is stale: python -m napari_care_losses.config.settings"
    assert table.count("\n") == len(SETTINGS) + len(RUN_SETTINGS) + 2
    assert all(f"| `{s.name}` | `{s.flag}` |" in table for s in (*SETTINGS, *RUN_SETTINGS))


def test_one_number_parser_for_every_flag(capsys):
    import argparse

    from napari_care_losses import cli
    from napari_care_losses.experiments import cli as experiments_cli

    assert cli.number is number and experiments_cli.number is number
    assert number(int, 0)("3") == 3 and number(float, 0, inclusive=False)("0.5") == 0.5
    for parse, text, says in ((number(int, 0), "-1", "must be an integer >= 0, got '-1'"),
                              (number(float), "nan", "must be a number, got 'nan'"),
                              (number(float, 0, inclusive=False), "0", "a number > 0"),
                              (number(int), "2.5", "must be an integer, got '2.5'")):
        with pytest.raises(argparse.ArgumentTypeError, match=says):
            parse(text)
    # the settings' flags, the loss parameters and the experiment runner use it too
    for argv, says in ((["train", "a.tif", "b.tif", "--minutes", "inf"], "--minutes: must be"),
                       (["train", "a.tif", "b.tif", "--sigma1", "nan"], "--sigma1: must be"),
                       (["experiment", "run", "x.yaml", "--workers", "-1"],
                        "--workers: must be an integer >= 0, got '-1'")):
        assert cli.main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and says in err, err


def test_presets_are_described_from_their_records(qtbot):
    from napari_care_losses._widgets._training_form import TrainingForm

    for name, values in PRESETS.items():
        summary = preset_summary(name)
        assert summary.startswith(f"{name}: ")
        for key, value in values.items():  # every setting the preset sets, with its value
            label = BY_NAME[key].label
            assert f"{label[0].lower()}{label[1:]}" in summary or label in summary
            assert (f"{value:g}" if BY_NAME[key].type is not str else value) in summary
    sub = next(a for a in build_parser()._actions if a.dest == "command").choices["train"]
    preset_flag = next(a for a in sub._actions if a.dest == "preset")
    form = TrainingForm()
    qtbot.addWidget(form)
    assert presets_help() in preset_flag.help and presets_help() in form.preset.toolTip()


def test_dock_defaults_are_the_settings_defaults(qtbot, tmp_path, monkeypatch):
    from napari_care_losses._widgets._training_form import TrainingForm
    from napari_care_losses._widgets.model_registry import home, models_folder

    monkeypatch.setenv("NAPARI_CARE_LOSSES_HOME", str(tmp_path / "care home"))
    form = TrainingForm()
    qtbot.addWidget(form)
    # "Train for" is off, as the setting's default, and says so
    assert form.minutes.value() == BY_NAME["minutes"].default == 0
    assert form.values()["minutes"] == 0 and "off" in form.minutes.text()
    assert form.configs()[0].minutes == 0
    form.minutes.setValue(1.5)
    assert form.configs()[0].minutes == 1.5
    # the models folder honours NAPARI_CARE_LOSSES_HOME, also when the field is emptied
    folder = tmp_path / "care home" / "models"
    assert form.output_dir() == models_folder() == home() / "models" == folder
    form.outdir.setText("")
    assert form.output_dir() == folder

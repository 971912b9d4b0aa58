"""One record per loss: names, labels, defaults, validation, CLI flags, the training dock's
loss boxes, the panel order and the docs' loss table all come from the records. A fake loss
added to the registry (and nowhere else) shows up in each of them."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from napari_care_losses.config.train import TrainConfig
from napari_care_losses.losses import (
    DEFAULT_PARAMS,
    LOSS_LABELS,
    LOSS_PARAM_INFO,
    LOSSES,
    LossName,
    LossParam,
    LossRecord,
    LossSpec,
    loss_params,
    loss_record,
    loss_records,
    parse_loss_name,
    register,
    validate_params,
)
from napari_care_losses.losses.records import SIGMA1, Implementations
from napari_care_losses.losses.table import DOCS, loss_table, stale_docs, write_docs

ROOT = Path(__file__).resolve().parents[2]

GAMMA = LossParam("gamma", 2.0, 0.5, 8.0, "fake: exponent of the error", "Fake γ")
FAKE = LossRecord(
    "fake_pow", "Fake power", "FakePow", "a made-up loss for the tests",
    "mean |restored − gt|^γ", rank=35, params=(GAMMA,), citation="Nobody et al. 2026",
    check=lambda p, patch: "gamma 3 is unlucky" if p["gamma"] == 3 else None)


@pytest.fixture
def fake(monkeypatch) -> LossRecord:
    """The fake record in the registry (only there) for one test."""
    monkeypatch.setitem(LOSSES, FAKE.name, FAKE)
    return FAKE


def _train_args(*flags: str):
    from napari_care_losses.cli import build_parser

    return build_parser().parse_args(["train", "low.tif", "high.tif", *flags])


def test_loss_name_labels_and_defaults_are_the_records() -> None:
    records = loss_records()
    assert [n.value for n in LossName] == [r.name for r in records]
    assert LossName.FFT_BANDPASS.value == "fft+bandpass" and LossName.MSSSIM_L1 == "msssim_l1"
    assert dict(LOSS_LABELS) == {LossName(r.name): r.short for r in records}
    assert dict(DEFAULT_PARAMS) == {LossName(r.name): r.defaults for r in records}
    assert {k: v[0] for k, v in LOSS_PARAM_INFO.items()} == {
        p.name: (p.lo, p.hi) for p in loss_params().values()}
    for r in records:
        assert LossSpec.create(r.name).probabilistic is r.probabilistic
        assert parse_loss_name(r.short.upper()) is LossName(r.name)


def test_fake_record_in_names_validation_specs_cli_order_and_docs(fake) -> None:
    from napari_care_losses.config.settings import loss_specs
    from napari_care_losses.restore.engine import MethodSpec

    name = LossName("fake_pow")
    assert (name.name, parse_loss_name(" fakepow ")) == ("FAKE_POW", name)
    # validation: defaults, bounds, the record's own check, unknown keys
    assert validate_params("fake_pow") == {"gamma": 2.0}
    with pytest.raises(ValueError, match=r"'fake_pow': gamma must lie in \[0.5, 8\], got 9"):
        validate_params("fake_pow", {"gamma": 9})
    with pytest.raises(ValueError, match="gamma 3 is unlucky"):
        LossSpec.create("fake_pow", {"gamma": 3})
    with pytest.raises(ValueError, match="no parameter 'sigma1'"):
        validate_params("fake_pow", {"sigma1": 1.0})
    spec = LossSpec.create("FakePow", {"gamma": 4})
    assert (spec.name, spec.params, spec.label, spec.probabilistic) == (
        name, {"gamma": 4.0}, "FakePow", False)
    assert TrainConfig(loss=spec).loss == spec
    assert (DEFAULT_PARAMS[name], LOSS_LABELS[name]) == ({"gamma": 2.0}, "FakePow")
    assert LOSS_PARAM_INFO["gamma"] == ((0.5, 8.0), GAMMA.tip)
    # panel order: by rank, between bandpass (30) and fft+bandpass (40), in the engine too
    names = [r.name for r in loss_records()]
    assert names.index("fake_pow") == names.index("bandpass") + 1
    specs = [MethodSpec(f"k{n}", n, n, loss=n) for n in reversed(names)]
    assert [s.loss for s in sorted(specs, key=lambda s: s.rank)] == names
    # CLI: a --gamma flag that applies to the fake loss only
    args = _train_args("--loss", "fake_pow", "--loss", "bandpass", "--gamma", "4")
    assert [s.params for s in loss_specs(args, 64)] == [{"gamma": 4.0}, DEFAULT_PARAMS["bandpass"]]
    with pytest.raises(ValueError, match="gamma must lie"):
        loss_specs(_train_args("--loss", "fake_pow", "--gamma", "9"), 64)
    # the docs' table: a row for it, so the committed docs are now stale
    row = next(line for line in loss_table().splitlines() if "`fake_pow`" in line)
    assert row.startswith("| `fake_pow` | FakePow | mean \\|restored − gt\\|^γ |")
    assert "`gamma` 2 (0.5 – 8)" in row and "Nobody et al. 2026" in row
    assert stale_docs(ROOT) == [ROOT / d for d in DOCS]


def test_fake_record_gone_with_its_registration(monkeypatch) -> None:
    with monkeypatch.context() as m:
        m.setitem(LOSSES, FAKE.name, FAKE)
        assert LossName("fake_pow") is LossName("fake_pow")
    with pytest.raises(ValueError):
        LossName("fake_pow")
    with pytest.raises(ValueError, match="unknown loss 'fake_pow'"):
        parse_loss_name("fake_pow")
    assert "fake_pow" not in DEFAULT_PARAMS and "gamma" not in loss_params()


def test_fake_record_in_the_training_dock(fake, qtbot) -> None:
    pytest.importorskip("qtpy")
    from qtpy.QtWidgets import QLabel

    from napari_care_losses._widgets._training_form import TrainingForm

    form = TrainingForm()
    qtbot.addWidget(form)
    assert list(form.loss_boxes) == [r.name for r in loss_records()]
    box = form.loss_boxes[LossName("fake_pow")]
    assert box.text() == "FakePow" and fake.tip in box.toolTip() and not box.isChecked()
    gamma = form.param_boxes["gamma"]
    assert (gamma.minimum(), gamma.maximum(), gamma.value()) == (0.5, 8.0, 2.0)
    assert GAMMA.tip in gamma.toolTip() and form.gamma is gamma
    assert "Fake γ" in [w.text() for w in form.findChildren(QLabel)]
    assert not gamma.isEnabled()
    form.set_losses("fake_pow")
    assert gamma.isEnabled() and not form.param_boxes["sigma1"].isEnabled()
    gamma.setValue(4.0)
    assert [c.loss for c in form.configs()] == [LossSpec.create("fake_pow", {"gamma": 4.0})]


def test_dock_and_compare_panels_share_one_order(qtbot) -> None:
    pytest.importorskip("qtpy")
    from napari_care_losses._widgets._training_form import TrainingForm
    from napari_care_losses.restore.engine import MethodSpec

    form = TrainingForm()
    qtbot.addWidget(form)
    specs = [MethodSpec(f"k{n.value}", n.value, n.value, loss=n.value) for n in LossName]
    panels = [s.loss for s in sorted(reversed(specs), key=lambda s: s.rank)]
    assert [n.value for n in form.loss_boxes] == panels == [r.name for r in loss_records()]
    for record in loss_records():  # every parameter of every loss has its box and bounds
        for p in record.params:
            box = form.param_boxes[p.name]
            assert (box.minimum(), box.maximum(), box.value()) == (p.lo, p.hi, p.default)


def test_register_refuses_a_second_name_and_a_disagreeing_parameter(monkeypatch) -> None:
    monkeypatch.setattr("napari_care_losses.losses.records.LOSSES", dict(LOSSES))
    from napari_care_losses.losses import records

    with pytest.raises(ValueError, match="'bandpass' is registered twice"):
        register(loss_record("bandpass"))
    wide = LossParam("sigma1", 1.0, SIGMA1.lo, SIGMA1.hi, SIGMA1.tip, SIGMA1.label)
    with pytest.raises(ValueError, match="parameter 'sigma1' differs .*bandpass, fft\\+bandpass"):
        register(LossRecord("wide", "Wide", "W", "t", "d", rank=99, params=(wide,)))
    assert "wide" not in records.LOSSES
    register(LossRecord("narrow", "Narrow", "N", "t", "d", rank=99, params=(SIGMA1,)))
    assert records.LOSSES["narrow"].defaults == {"sigma1": SIGMA1.default}


def test_implementations_are_checked_against_their_record(fake) -> None:
    forms = Implementations("test form", leading=2)

    with pytest.raises(TypeError, match=r"takes \['beta'\], the record \['gamma'\]"):
        forms.register("fake_pow")(lambda y_true, y_pred, beta: 0.0)
    with pytest.raises(TypeError, match="default gamma=1.0 is not the record's 2.0"):
        forms.register("fake_pow")(lambda y_true, y_pred, gamma=1.0: 0.0)
    with pytest.raises(NotImplementedError, match="'fake_pow' has no test form"):
        forms.call("fake_pow", None, None, 1, 2)

    @forms.register("FakePow")
    def fake_form(y_true, y_pred, gamma, patch_size=None):
        return (y_true, y_pred, gamma, patch_size)

    assert forms.call("fake_pow", {"gamma": 5}, 64, "t", "p") == ("t", "p", 5.0, 64)
    with pytest.raises(ValueError, match="gamma must lie"):  # validated before the call
        forms.call("fake_pow", {"gamma": 0.1}, 64, "t", "p")
    with pytest.raises(ValueError, match="two test forms"):
        forms.register("fake_pow")(fake_form)


def test_docs_loss_tables_are_the_records() -> None:
    assert stale_docs(ROOT) == [], (
        "the loss table is stale: python -m napari_care_losses.losses.table --write")
    assert loss_table().count("\n") == len(loss_records()) + 2


def test_write_docs_regenerates_the_tables(fake, tmp_path) -> None:
    for rel in DOCS:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / rel, tmp_path / rel)
    assert stale_docs(tmp_path) == [tmp_path / d for d in DOCS]
    assert write_docs(tmp_path) == [tmp_path / d for d in DOCS]
    assert stale_docs(tmp_path) == [] and write_docs(tmp_path) == []
    readme = (tmp_path / "README.md").read_text()
    assert "`fake_pow`" in readme and "## Losses" in readme and "## Metrics" in readme
    (tmp_path / "README.md").write_text("# no table here\n")
    with pytest.raises(ValueError, match="README.md: needs exactly one loss table"):
        write_docs(tmp_path)


def test_every_loss_has_a_3d_form_in_its_record_and_the_table() -> None:
    rows = loss_table().splitlines()
    assert "3D form" in rows[0]
    for r in loss_records():
        assert r.dims == (2, 3) and r.definition_3d
        row = next(line for line in rows if line.startswith(f"| `{r.name}` |"))
        assert row.split(" | ")[3] == r.definition_3d.replace("|", "\\|")
        LossSpec.create(r.name, None, (64, 128, 128), ndim=3, voxel_size=(0.5, 0.16, 0.16))
    assert [p.name for p in loss_params().values() if p.per_axis] == ["sigma1", "sigma2"]


def test_a_loss_without_a_3d_form_says_so(fake) -> None:
    assert fake.dims == (2,)
    with pytest.raises(ValueError, match="loss 'fake_pow' has no 3D form \\(only 2D\\)"):
        validate_params("fake_pow", None, (16, 64, 64), ndim=3)
    row = next(line for line in loss_table().splitlines() if "`fake_pow`" in line)
    assert row.split(" | ")[3] == "2D only"
    with pytest.raises(ValueError, match="no 3D form"):
        Implementations("test form", leading=2).call("fake_pow", None, None, 1, 2, ndim=3)


def test_register_refuses_3d_without_a_definition(monkeypatch) -> None:
    monkeypatch.setattr("napari_care_losses.losses.records.LOSSES", dict(LOSSES))
    with pytest.raises(ValueError, match="'vol' has a 3D form: give its definition_3d"):
        register(LossRecord("vol", "Vol", "V", "t", "d", rank=99, dims=(2, 3)))
    with pytest.raises(ValueError, match="dims must hold 2"):
        register(LossRecord("vol", "Vol", "V", "t", "d", rank=99, dims=(3,),
                            definition_3d="d3"))


def test_implementations_get_the_grid(monkeypatch) -> None:
    from dataclasses import replace

    monkeypatch.setitem(LOSSES, FAKE.name, replace(FAKE, dims=(2, 3), definition_3d="d3"))
    forms = Implementations("test form", leading=2)

    @forms.register("fake_pow")
    def fake_form(y_true, y_pred, gamma, grid=None):
        return y_true, y_pred, gamma, grid

    *_, grid = forms.call("fake_pow", None, 32, "t", "p")
    assert (grid.ndim, grid.patch, grid.voxel_size) == (2, (32, 32), None)
    got = forms.call("fake_pow", {"gamma": 4}, (8, 32, 32), "t", "p", ndim=3,
                     voxel_size=(0.3, 0.1, 0.1))
    assert got[:3] == ("t", "p", 4.0)
    assert (got[3].ndim, got[3].patch, got[3].voxel_size) == (3, (8, 32, 32), (0.3, 0.1, 0.1))
    assert got[3].anisotropy == pytest.approx(3.0)

"""The training dock's settings: losses, hyper-parameters and an "Expert" section.

``TrainingForm.configs()`` turns the fields into one validated :class:`TrainConfig` per
selected loss; nothing here knows about layers or threads.
"""

from __future__ import annotations

from pathlib import Path

from qtpy.QtCore import Qt, Signal
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)
from superqt import QCollapsible

from ..config.settings import BY_NAME, DEFAULT_PRESET, PRESETS, SETTINGS, Setting, defaults
from ..config.train import TrainConfig
from ..losses import LossName, LossSpec, loss_record, loss_records, param_users
from ..losses import loss_params as all_loss_params

DEFAULT_OUTDIR = Path.home() / "napari-care-losses" / "models"
#: Attribute names of the generated controls, where they differ from the setting's name.
ATTRS = {"steps_per_epoch": "steps", "unet_n_depth": "unet_depth",
         "unet_kern_size": "unet_kernel", "reduce_lr_patience": "reduce_lr"}
#: Settings with their own control (not a plain field of the grid).
SPECIAL = ("minutes",)


def _label(text: str) -> QLabel:
    """A right-aligned field label."""
    label = QLabel(text)
    label.setAlignment(Qt.AlignRight | Qt.AlignVCenter)
    return label


def _spin(value: int, lo: int, hi: int, tip: str, step: int = 1) -> QSpinBox:
    box = QSpinBox()
    box.setRange(lo, hi)
    box.setValue(value)
    box.setSingleStep(step)
    box.setToolTip(tip)
    return box


def _dspin(value: float, lo: float, hi: float, step: float, tip: str,
           decimals: int = 2) -> QDoubleSpinBox:
    box = QDoubleSpinBox()
    box.setDecimals(decimals)
    box.setRange(lo, hi)
    box.setSingleStep(step)
    box.setValue(value)
    box.setToolTip(tip)
    return box


def make_control(s: Setting, value=None) -> QWidget:
    """The dock control of setting ``s`` (drop-down, spin box or text field)."""
    value = s.default if value is None else value
    if s.choices or s.suggestions:
        box = QComboBox()
        box.addItems([str(c) for c in (s.choices or s.suggestions)])
        box.setCurrentText(str(value))
    elif s.name == "learning_rate":
        box = QLineEdit(f"{value:g}")
    elif s.type is int:
        box = _spin(int(value), int(s.lo), int(s.hi), s.help, int(s.step))
    else:
        box = _dspin(float(value), s.lo, s.hi, s.step, s.help, s.decimals)
    box.setToolTip(s.help)
    return box


def control_value(s: Setting, box: QWidget):
    """The value of a control made by :func:`make_control` (``ValueError`` if unreadable)."""
    if isinstance(box, QComboBox):
        return s.type(box.currentText())
    if isinstance(box, QLineEdit):
        try:
            return s.type(box.text())
        except ValueError:
            raise ValueError(f"{s.label} {box.text()!r} is not a number "
                             f"(e.g. {s.default:g}).") from None
    return s.type(box.value())


def set_control(box: QWidget, value) -> None:
    if isinstance(box, QComboBox):
        box.setCurrentText(str(value))
    elif isinstance(box, QLineEdit):
        box.setText(f"{value:g}")
    else:
        box.setValue(value)


class TrainingForm(QWidget):
    """Loss choice and training settings; emits ``changed`` whenever a field changes.

    Every setting's control is generated from its record in :mod:`..settings` (kept in
    :attr:`controls`, also as attributes: ``epochs``, ``steps``, ``unet_kernel`` ...).
    """

    changed = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        # ---- losses: check boxes and parameter boxes generated from the loss records
        losses = QGroupBox("Losses (one model each, trained in turn)")
        lay = QVBoxLayout(losses)
        lay.addLayout(self._make_loss_boxes())
        lay.addLayout(self._make_param_boxes())
        # ---- settings, generated from their records
        self.controls: dict[str, QWidget] = {}
        for s in SETTINGS:
            self.controls[s.name] = box = make_control(s)
            setattr(self, ATTRS.get(s.name, s.name), box)
        self.preset = QComboBox()
        self.preset.addItems(list(PRESETS))
        self.preset.setCurrentText(DEFAULT_PRESET)
        self.preset.setToolTip("set every field to a preset: fast (default) or study (the "
                               "paper's: batch 16, lr 4e-4, 64 px, 5x5 kernels, float32)")
        self.budget = QCheckBox("Train for")
        self.budget.setToolTip(BY_NAME["minutes"].help)
        self.minutes.setRange(0.1, BY_NAME["minutes"].hi)
        self.minutes.setValue(10.0)
        self.minutes.setSuffix(" minutes")
        self.minutes.setEnabled(False)
        self.outdir = QLineEdit(str(DEFAULT_OUTDIR))
        self.outdir.setToolTip("each run writes a model folder <loss>_<time> in here")
        browse = QPushButton("…")
        browse.setFixedWidth(28)
        browse.setToolTip("choose the output folder")
        browse.clicked.connect(self._browse)
        out_row = QHBoxLayout()
        out_row.setContentsMargins(0, 0, 0, 0)
        out_row.addWidget(self.outdir, 1)
        out_row.addWidget(browse)
        self.preview = QCheckBox("Live preview every")
        self.preview.setChecked(True)
        self.preview.setToolTip("restore the current frame of the low layer with the best "
                                "weights so far into a 'CARE preview' layer")
        self.preview_every = _spin(5, 1, 1000, "epochs between previews")
        self.preview_every.setSuffix(" epochs")
        settings = QGroupBox("Training")
        form = QGridLayout(settings)
        main = [s for s in SETTINGS if not s.expert and s.name not in SPECIAL]
        cells = [(QLabel("Preset"), self.preset), (self.budget, self.minutes)]
        cells += [(_label(s.label), self.controls[s.name]) for s in main]
        for i, (label, widget) in enumerate(cells):
            form.addWidget(label, i // 2, 2 * (i % 2))
            form.addWidget(widget, i // 2, 2 * (i % 2) + 1)
        row = (len(cells) + 1) // 2
        form.addWidget(_label("Output"), row, 0)
        form.addLayout(out_row, row, 1, 1, 3)
        form.addWidget(self.preview, row + 1, 0, 1, 2)
        form.addWidget(self.preview_every, row + 1, 2, 1, 2)
        form.setColumnStretch(1, 1)
        form.setColumnStretch(3, 1)
        # ---- expert
        self.expert = QCollapsible("Expert")
        inner = QWidget()
        ex = QFormLayout(inner)
        ex.setContentsMargins(4, 0, 0, 0)
        for s in SETTINGS:
            if s.expert:
                ex.addRow(s.label, self.controls[s.name])
        self.expert.addWidget(inner)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        for widget in (losses, settings, self.expert):
            layout.addWidget(widget)
        self._connect()
        self._sync_enabled()

    def _make_loss_boxes(self) -> QGridLayout:
        """One check box per loss record, four a row in panel order; the default loss
        (TrainConfig's) is ticked."""
        self.loss_boxes: dict[LossName, QCheckBox] = {}
        default = TrainConfig().loss.name
        grid = QGridLayout()
        grid.setContentsMargins(0, 0, 0, 0)
        for i, record in enumerate(loss_records()):
            box = QCheckBox(record.short)
            box.setToolTip(f"{record.label}: {record.tip}")
            box.setChecked(record.name == default)
            self.loss_boxes[LossName(record.name)] = box
            grid.addWidget(box, i // 4, i % 4)
        return grid

    def _make_param_boxes(self) -> QGridLayout:
        """One spin box per loss parameter (one per name: shared by the losses that take
        it), two a row; also set as attributes (``sigma1``, ``alpha`` ...) where free."""
        self.param_boxes: dict[str, QDoubleSpinBox] = {}
        grid = QGridLayout()
        grid.setContentsMargins(0, 0, 0, 0)
        for i, p in enumerate(all_loss_params().values()):
            users = ", ".join(r.short for r in param_users(p.name))
            box = _dspin(p.default, p.lo, p.hi, p.spin_step, f"{p.tip} ({users})")
            self.param_boxes[p.name] = box
            if not hasattr(self, p.name):
                setattr(self, p.name, box)
            grid.addWidget(_label(p.label), i // 2, 2 * (i % 2))
            grid.addWidget(box, i // 2, 2 * (i % 2) + 1)
        grid.setColumnStretch(1, 1)
        grid.setColumnStretch(3, 1)
        return grid

    # ------------------------------------------------------------------ values

    def selected_losses(self) -> list[LossName]:
        return [name for name, box in self.loss_boxes.items() if box.isChecked()]

    def set_losses(self, *names: str) -> None:
        wanted = {loss_record(n).name for n in names}
        for name, box in self.loss_boxes.items():
            box.setChecked(name in wanted)

    def loss_params(self, name: LossName) -> dict[str, float]:
        return {k: self.param_boxes[k].value() for k in loss_record(name).defaults}

    def output_dir(self) -> Path:
        return Path(self.outdir.text().strip() or DEFAULT_OUTDIR).expanduser()

    def values(self) -> dict:
        """Every setting's value (``minutes`` is 0 unless "Train for" is ticked)."""
        out = {s.name: control_value(s, self.controls[s.name]) for s in SETTINGS}
        out["minutes"] = out["minutes"] if self.budget.isChecked() else 0.0
        return out

    def apply_preset(self, name: str) -> None:
        """Set every setting's control to preset ``name`` (the time budget is kept)."""
        for key, value in defaults(name).items():
            if key not in SPECIAL:
                set_control(self.controls[key], value)

    def configs(self) -> list[TrainConfig]:
        """One config per selected loss; raises ``ValueError`` with a readable message."""
        names = self.selected_losses()
        if not names:
            raise ValueError("Pick at least one loss.")
        base = self.values()
        out = []
        for name in names:
            loss = LossSpec.create(name, self.loss_params(name), base["patch_size"])
            out.append(TrainConfig(loss=loss, **base))
        return out

    def preview_every_n(self) -> int:
        return self.preview_every.value() if self.preview.isChecked() else 0

    # ------------------------------------------------------------------ wiring

    def _connect(self) -> None:
        for box in self.loss_boxes.values():
            box.toggled.connect(self._sync_enabled)
        for w in [*self.controls.values(), *self.param_boxes.values(), self.outdir]:
            for signal in ("currentIndexChanged", "valueChanged", "textChanged"):
                if hasattr(w, signal):
                    getattr(w, signal).connect(self.changed)
                    break
        self.preset.currentTextChanged.connect(self.apply_preset)
        self.budget.toggled.connect(self.minutes.setEnabled)
        self.budget.toggled.connect(self.changed)
        self.preview.toggled.connect(self.preview_every.setEnabled)

    def _sync_enabled(self, *_args) -> None:
        chosen = set(self.selected_losses())
        for key, box in self.param_boxes.items():
            box.setEnabled(any(key in loss_record(n).defaults for n in chosen))
        self.changed.emit()

    def _browse(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Folder for trained models",
                                                str(self.output_dir()))
        if path:
            self.outdir.setText(path)

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

from ..config import TrainConfig
from ..losses import DEFAULT_PARAMS, LOSS_LABELS, LossName, LossSpec

#: Order of the loss check boxes (the study's main losses first).
LOSS_ORDER = (LossName.LAPLACE, LossName.FFT, LossName.BANDPASS, LossName.FFT_BANDPASS,
              LossName.MAE, LossName.MSE, LossName.SSIM, LossName.MSSSIM_L1)
LOSS_TIPS = {
    LossName.LAPLACE: "CARE's probabilistic loss (Laplace negative log-likelihood); also "
                      "predicts a per-pixel uncertainty",
    LossName.FFT: "L1 distance of the Fourier spectra",
    LossName.BANDPASS: "L1 after a difference-of-Gaussians band-pass (σ1 < σ2)",
    LossName.FFT_BANDPASS: "weighted sum of the FFT and band-pass losses",
    LossName.MAE: "mean absolute error (L1)",
    LossName.MSE: "mean squared error (L2)",
    LossName.SSIM: "1 − SSIM",
    LossName.MSSSIM_L1: "α·(1 − MS-SSIM) + (1 − α)·L1 (Zhao et al.)",
}
DEFAULT_OUTDIR = Path.home() / "napari-care-losses" / "models"


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


class TrainingForm(QWidget):
    """Loss choice and training settings; emits ``changed`` whenever a field changes."""

    changed = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        bp, fbp = DEFAULT_PARAMS[LossName.BANDPASS], DEFAULT_PARAMS[LossName.FFT_BANDPASS]
        # ---- losses
        self.loss_boxes: dict[LossName, QCheckBox] = {}
        grid = QGridLayout()
        grid.setContentsMargins(0, 0, 0, 0)
        for i, name in enumerate(LOSS_ORDER):
            box = QCheckBox(LOSS_LABELS[name])
            box.setToolTip(LOSS_TIPS[name])
            box.setChecked(name is LossName.LAPLACE)
            self.loss_boxes[name] = box
            grid.addWidget(box, i // 4, i % 4)
        self.sigma1 = _dspin(bp["sigma1"], 0.1, 20, 0.1, "band-pass: inner Gaussian σ (px)")
        self.sigma2 = _dspin(bp["sigma2"], 0.2, 30, 0.5, "band-pass: outer Gaussian σ (px)")
        self.weight = _dspin(fbp["weight"], 0, 1, 0.05, "FFT+BP: weight of the FFT term")
        params = QHBoxLayout()
        params.setContentsMargins(0, 0, 0, 0)
        for text, box in (("BP σ1", self.sigma1), ("σ2", self.sigma2), ("FFT+BP w", self.weight)):
            params.addWidget(_label(text))
            params.addWidget(box, 1)
        losses = QGroupBox("Losses (one model each, trained in turn)")
        lay = QVBoxLayout(losses)
        lay.addLayout(grid)
        lay.addLayout(params)
        # ---- training
        self.patch_size = QComboBox()
        self.patch_size.addItems(["32", "64", "128"])
        self.patch_size.setCurrentText("64")
        self.patch_size.setToolTip("square training patches (px); the study used 64")
        self.patches_per_image = _spin(64, 1, 4096, "patches cut from every frame (20 % "
                                       "of all patches are kept for validation)", 8)
        self.epochs = _spin(20, 1, 10000, "passes over the training set (study: more; "
                            "20 is a CPU-friendly start)")
        self.steps = _spin(50, 1, 100000, "batches per epoch", 10)
        self.batch_size = _spin(16, 1, 1024, "patches per batch (study: 16)")
        self.learning_rate = QLineEdit("4e-4")
        self.learning_rate.setToolTip("Adam learning rate (study: 4e-4)")
        self.seed = _spin(0, 0, 2**31 - 1, "random seed for patches and weights")
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
        rows = [("Patch size", self.patch_size, "Patches/image", self.patches_per_image),
                ("Epochs", self.epochs, "Steps/epoch", self.steps),
                ("Batch size", self.batch_size, "Learning rate", self.learning_rate),
                ("Seed", self.seed, None, None)]
        for r, (l1, w1, l2, w2) in enumerate(rows):
            form.addWidget(_label(l1), r, 0)
            form.addWidget(w1, r, 1)
            if l2:
                form.addWidget(_label(l2), r, 2)
                form.addWidget(w2, r, 3)
        form.addWidget(_label("Output"), len(rows), 0)
        form.addLayout(out_row, len(rows), 1, 1, 3)
        form.addWidget(self.preview, len(rows) + 1, 0, 1, 2)
        form.addWidget(self.preview_every, len(rows) + 1, 2, 1, 2)
        form.setColumnStretch(1, 1)
        form.setColumnStretch(3, 1)
        # ---- expert
        self.unet_depth = _spin(2, 1, 4, "U-Net depth (poolings); CSBDeep default 2")
        self.unet_n_first = _spin(16, 4, 128, "filters in the first U-Net layer (CSBDeep: "
                                  "32; 16 trains ~3× faster on a CPU)", 4)
        self.unet_kernel = QComboBox()
        self.unet_kernel.addItems(["3", "5", "7"])
        self.unet_kernel.setToolTip("convolution kernel size (CSBDeep: 5)")
        self.val_fraction = _dspin(0.2, 0.05, 0.5, 0.05, "fraction of patches for validation")
        self.reduce_lr = _spin(10, 0, 1000, "halve the learning rate after this many epochs "
                               "without improvement (0 = never)")
        self.alpha = _dspin(DEFAULT_PARAMS[LossName.MSSSIM_L1]["alpha"], 0, 1, 0.02,
                            "MS-SSIM+L1: weight α of the MS-SSIM term")
        self.expert = QCollapsible("Expert")
        inner = QWidget()
        ex = QFormLayout(inner)
        ex.setContentsMargins(4, 0, 0, 0)
        for text, widget in (("U-Net depth", self.unet_depth),
                             ("First-layer filters", self.unet_n_first),
                             ("Kernel size", self.unet_kernel),
                             ("Validation fraction", self.val_fraction),
                             ("Reduce LR patience", self.reduce_lr),
                             ("MS-SSIM+L1 α", self.alpha)):
            ex.addRow(text, widget)
        self.expert.addWidget(inner)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        for widget in (losses, settings, self.expert):
            layout.addWidget(widget)
        self._connect()
        self._sync_enabled()

    # ------------------------------------------------------------------ values

    def selected_losses(self) -> list[LossName]:
        return [name for name, box in self.loss_boxes.items() if box.isChecked()]

    def set_losses(self, *names: str) -> None:
        wanted = {LossName(n) for n in names}
        for name, box in self.loss_boxes.items():
            box.setChecked(name in wanted)

    def loss_params(self, name: LossName) -> dict[str, float]:
        bp = {"sigma1": self.sigma1.value(), "sigma2": self.sigma2.value()}
        return {LossName.BANDPASS: bp, LossName.FFT_BANDPASS: {**bp, "weight":
                self.weight.value()}, LossName.MSSSIM_L1: {"alpha": self.alpha.value()}
                }.get(name, {})

    def output_dir(self) -> Path:
        return Path(self.outdir.text().strip() or DEFAULT_OUTDIR).expanduser()

    def configs(self) -> list[TrainConfig]:
        """One config per selected loss; raises ``ValueError`` with a readable message."""
        names = self.selected_losses()
        if not names:
            raise ValueError("Pick at least one loss.")
        try:
            lr = float(self.learning_rate.text())
        except ValueError:
            raise ValueError(f"Learning rate {self.learning_rate.text()!r} is not a "
                             "number (e.g. 4e-4).") from None
        base = dict(patch_size=int(self.patch_size.currentText()),
                    patches_per_image=self.patches_per_image.value(),
                    val_fraction=self.val_fraction.value(), epochs=self.epochs.value(),
                    steps_per_epoch=self.steps.value(), batch_size=self.batch_size.value(),
                    learning_rate=lr, seed=self.seed.value(),
                    unet_n_depth=self.unet_depth.value(), unet_n_first=self.unet_n_first.value(),
                    unet_kern_size=int(self.unet_kernel.currentText()),
                    reduce_lr_patience=self.reduce_lr.value())
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
        for w in (self.patch_size, self.unet_kernel):
            w.currentIndexChanged.connect(self.changed)
        for w in (self.patches_per_image, self.epochs, self.steps, self.batch_size, self.seed,
                  self.unet_depth, self.unet_n_first, self.reduce_lr, self.sigma1,
                  self.sigma2, self.weight, self.val_fraction, self.alpha):
            w.valueChanged.connect(self.changed)
        for w in (self.learning_rate, self.outdir):
            w.textChanged.connect(self.changed)
        self.preview.toggled.connect(self.preview_every.setEnabled)

    def _sync_enabled(self, *_args) -> None:
        chosen = set(self.selected_losses())
        uses_bp = bool(chosen & {LossName.BANDPASS, LossName.FFT_BANDPASS})
        self.sigma1.setEnabled(uses_bp)
        self.sigma2.setEnabled(uses_bp)
        self.weight.setEnabled(LossName.FFT_BANDPASS in chosen)
        self.alpha.setEnabled(LossName.MSSSIM_L1 in chosen)
        self.changed.emit()

    def _browse(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Folder for trained models",
                                                str(self.output_dir()))
        if path:
            self.outdir.setText(path)

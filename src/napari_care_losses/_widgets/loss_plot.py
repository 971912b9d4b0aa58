"""Live training curves (one colour per loss), drawn with matplotlib in napari's theme."""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field

from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from qtpy.QtCore import QTimer
from qtpy.QtWidgets import QCheckBox, QComboBox, QHBoxLayout, QLabel, QVBoxLayout, QWidget

#: Curve colours (matplotlib's tab10, readable on dark and light backgrounds).
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
           "#7f7f7f", "#bcbd22", "#17becf")

#: View modes: combo text → y-axis label.
MODES = {
    "Normalised per loss": "loss (0 = lowest, per loss)",
    "Log scale": "loss (log)",
    "Linear": "loss",
}


@dataclass
class _Series:
    label: str
    color: str
    batch_x: list[float] = field(default_factory=list)
    batch_y: list[float] = field(default_factory=list)
    epoch_x: list[float] = field(default_factory=list)
    train: list[float] = field(default_factory=list)
    val: list[float] = field(default_factory=list)

    def span(self) -> tuple[float, float]:
        """(low, range) used to normalise: epoch losses once there are two, else batches."""
        ref = [v for v in self.train + self.val if math.isfinite(v)]
        if len(self.epoch_x) < 2:
            ref += [v for v in self.batch_y if math.isfinite(v)]
        if not ref:
            return 0.0, 1.0
        lo, hi = min(ref), max(ref)
        return lo, (hi - lo) or abs(hi) or 1.0


@dataclass
class PlotColors:
    background: str = "#23242b"
    panel: str = "#2e333e"
    text: str = "#f0f1f2"
    grid: str = "#565f6c"


class LossPlot(QWidget):
    """Train (solid), validation (dashed, dots) and batch (faint) loss against epochs."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.colors = PlotColors()
        self._series: dict[str, _Series] = {}
        self.figure = Figure(figsize=(4.0, 2.8), dpi=100, layout="constrained")
        self.ax = self.figure.add_subplot()
        self.canvas = FigureCanvasQTAgg(self.figure)
        self.canvas.setMinimumHeight(230)
        self.mode = QComboBox()
        self.mode.addItems(list(MODES))
        self.mode.setToolTip("Losses have different scales: 'Normalised per loss' maps each "
                             "loss's epoch curves onto 0–1 so their shapes compare.")
        self.show_batches = QCheckBox("batch loss")
        self.show_batches.setChecked(True)
        self.note = QLabel()
        self.note.setWordWrap(True)
        self.note.setVisible(False)
        top = QHBoxLayout()
        top.setContentsMargins(0, 0, 0, 0)
        top.addWidget(QLabel("View:"))
        top.addWidget(self.mode, 1)
        top.addWidget(self.show_batches)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(top)
        layout.addWidget(self.canvas, 1)
        layout.addWidget(self.note)
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(150)  # coalesce redraws: batches may arrive every few ms
        self._timer.timeout.connect(self.redraw)
        self.mode.currentIndexChanged.connect(self.schedule)
        self.show_batches.toggled.connect(self.schedule)
        self.redraw()

    # ------------------------------------------------------------------ data

    def clear(self) -> None:
        self._series.clear()
        self.redraw()

    def add_series(self, key: str, label: str) -> str:
        """Start a curve set for one training run; returns its colour."""
        color = PALETTE[len(self._series) % len(PALETTE)]
        self._series[key] = _Series(label, color)
        self.schedule()
        return color

    def add_batch(self, key: str, x: float, loss: float) -> None:
        s = self._series[key]
        s.batch_x.append(x)
        s.batch_y.append(loss)
        self.schedule()

    def add_epoch(self, key: str, epoch: int, loss: float, val_loss: float) -> None:
        s = self._series[key]
        s.epoch_x.append(epoch)
        s.train.append(loss)
        s.val.append(val_loss)
        self.schedule()

    def epoch_counts(self) -> list[int]:
        """Epochs drawn so far for each curve set, in the order they were added."""
        return [len(s.epoch_x) for s in self._series.values()]

    def n_points(self) -> int:
        """Number of epoch points drawn (train + validation), for tests and status."""
        return sum(len(s.train) + len(s.val) for s in self._series.values())

    # ------------------------------------------------------------------ theme

    def set_theme(self, theme) -> None:
        """Take colours from a napari ``Theme`` (``background``, ``foreground``, ``text``…)."""
        hexes = {k: getattr(theme, k).as_hex() for k in
                 ("background", "foreground", "text", "secondary")}
        self.colors = PlotColors(hexes["background"], hexes["foreground"], hexes["text"],
                                 hexes["secondary"])
        self.redraw()

    # ------------------------------------------------------------------ drawing

    def schedule(self, *_args) -> None:
        if not self._timer.isActive():
            self._timer.start()

    def redraw(self) -> None:
        c, ax = self.colors, self.ax
        mode = self.mode.currentText()
        ax.clear()
        self.figure.set_facecolor(c.background)
        ax.set_facecolor(c.panel)
        for spine in ax.spines.values():
            spine.set_color(c.grid)
        ax.tick_params(colors=c.text, labelsize=8)
        ax.grid(True, color=c.grid, alpha=0.5, linewidth=0.6)
        ax.set_xlabel("epoch", color=c.text, fontsize=9)
        ax.set_ylabel(MODES[mode], color=c.text, fontsize=8)
        hidden = False
        for s in self._series.values():
            lo, span = s.span() if mode.startswith("Normalised") else (0.0, 1.0)
            f = lambda vals, lo=lo, span=span: [(v - lo) / span for v in vals]
            if self.show_batches.isChecked() and s.batch_x:
                ax.plot(s.batch_x, f(s.batch_y), color=s.color, alpha=0.3, linewidth=0.8)
            if s.epoch_x:
                ax.plot(s.epoch_x, f(s.train), color=s.color, linewidth=1.8, marker=".")
                ax.plot(s.epoch_x, f(s.val), color=s.color, linewidth=1.4, linestyle="--",
                        marker="o", markersize=3.5)
            if mode.startswith("Log"):
                hidden |= any(v <= 0 for v in s.batch_y + s.train + s.val)
        if mode.startswith("Log") and self._series:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ax.set_yscale("log")
        if mode.startswith("Normalised") and any(len(s.epoch_x) > 1 for s in self._series.values()):
            ax.set_ylim(-0.12, 1.25)
        if not self._series:
            ax.text(0.5, 0.5, "Train curves appear here", ha="center", va="center",
                    transform=ax.transAxes, color=c.text, alpha=0.6, fontsize=9)
            ax.set_xticks([])
            ax.set_yticks([])
        else:
            ax.xaxis.get_major_locator().set_params(integer=True)
            self._legend(ax)
        self.note.setText("Non-positive losses (e.g. Laplace NLL) are hidden on a log axis.")
        self.note.setVisible(hidden)
        self.canvas.draw_idle()

    def _legend(self, ax) -> None:
        c = self.colors
        handles = [Line2D([], [], color=s.color, linewidth=2, label=s.label)
                   for s in self._series.values()]
        handles += [Line2D([], [], color=c.text, linewidth=1.5, label="train"),
                    Line2D([], [], color=c.text, linestyle="--", marker="o", markersize=3,
                           label="validation")]
        if self.show_batches.isChecked():
            handles.append(Line2D([], [], color=c.text, alpha=0.35, label="batch"))
        legend = ax.legend(handles=handles, fontsize=7, loc="upper right", ncols=2,
                           framealpha=0.75, facecolor=c.background, edgecolor=c.grid)
        for text in legend.get_texts():
            text.set_color(c.text)

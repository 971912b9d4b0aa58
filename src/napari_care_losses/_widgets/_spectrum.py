"""Small matplotlib canvas: radially averaged power spectra, themed like napari."""

from __future__ import annotations

from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
from matplotlib.figure import Figure
from qtpy.QtWidgets import QSizePolicy, QVBoxLayout, QWidget

from ..restore.spectra import RadialSpectrum

#: Line colours per method (cycled); the ground truth is drawn dashed in the text colour.
PALETTE = ("#4e9bd9", "#f28e2b", "#59a14f", "#e15759", "#b07aa1", "#edc948", "#76b7b2",
           "#ff9da7", "#9c755f")


class SpectrumPlot(QWidget):
    """Log-log plot of power versus spatial frequency for each method on one frame."""

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.figure = Figure(figsize=(4, 2.6), dpi=90, layout="constrained")
        self.canvas = FigureCanvasQTAgg(self.figure)
        self.canvas.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.canvas.setMinimumHeight(200)
        self.ax = self.figure.add_subplot()
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.canvas)
        self._colors = {"background": "#262930", "foreground": "#414851", "text": "#f0f1f2"}
        self.lines: dict[str, RadialSpectrum] = {}

    def set_theme(self, theme_name: str) -> None:
        """Use the napari theme's colours (``viewer.theme``)."""
        from napari.utils.theme import get_theme

        theme = get_theme(theme_name)
        self._colors = {"background": theme.canvas.as_hex(),
                        "foreground": theme.foreground.as_hex(),
                        "text": theme.text.as_hex()}
        self.plot(self.lines, getattr(self, "_title", ""))

    def plot(self, spectra: dict[str, RadialSpectrum], title: str = "",
             reference: str | None = None) -> None:
        """Draw ``spectra`` (name → spectrum); ``reference`` (the ground truth) is dashed."""
        self.lines, self._title = dict(spectra), title
        c = self._colors
        ax = self.ax
        ax.clear()
        self.figure.set_facecolor(c["background"])
        ax.set_facecolor(c["background"])
        k = 0
        for name, spec in spectra.items():
            if name == reference:
                ax.loglog(spec.freq, spec.power, "--", color=c["text"], lw=1.6, label=name)
            else:
                ax.loglog(spec.freq, spec.power, color=PALETTE[k % len(PALETTE)], lw=1.2,
                          label=name)
                k += 1
        ax.set_xlabel("spatial frequency (cycles/pixel)", color=c["text"], fontsize=8)
        ax.set_ylabel("power", color=c["text"], fontsize=8)
        ax.set_title(title, color=c["text"], fontsize=9)
        ax.tick_params(colors=c["text"], labelsize=7, which="both")
        for spine in ax.spines.values():
            spine.set_color(c["foreground"])
        if spectra:
            legend = ax.legend(fontsize=7, frameon=False, labelcolor=c["text"])
            legend.set_draggable(True)
        self.canvas.draw_idle()

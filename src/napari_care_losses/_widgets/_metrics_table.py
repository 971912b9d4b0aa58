"""Table of PSNR/SSIM per method: mean and per-frame columns, best value per column marked."""

from __future__ import annotations

import csv
from pathlib import Path

from qtpy.QtCore import Qt, Signal
from qtpy.QtGui import QBrush, QColor, QFont
from qtpy.QtWidgets import QAbstractItemView, QHeaderView, QTableWidget, QTableWidgetItem

from ..restore.metrics import Score
from ._compare_jobs import mean_score

NO_GT = "no ground truth"
#: Widest the method column gets by itself (pixels); the user can drag it wider.
METHOD_COLUMN_MAX = 170
#: Background of the best cell in each column (green, readable on dark and light themes).
BEST_COLOR = QColor(46, 139, 87, 170)
#: Item data role holding True on the best cell of a column.
BEST_ROLE = Qt.ItemDataRole.UserRole + 1
#: Text colour of a failed method's row.
FAILED_COLOR = QColor(224, 96, 90)


class MetricsTable(QTableWidget):
    """Rows: methods. Columns: name, error-map toggle, mean PSNR/SSIM, then per frame.

    ``set_scores`` fills it; ``export_csv`` writes a tidy ``method,frame,psnr_db,ssim`` file.
    """

    #: (method name, checked) when a method's error-map checkbox is toggled.
    error_map_toggled = Signal(str, bool)

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.setSelectionMode(QAbstractItemView.SelectionMode.NoSelection)
        self.verticalHeader().setVisible(False)
        self.setTextElideMode(Qt.TextElideMode.ElideMiddle)
        self.setWordWrap(False)
        self.setMinimumHeight(120)
        self._methods: list[str] = []
        self._scores: dict[str, list[Score] | None] = {}
        self._n_frames = 0
        self._has_gt = False
        self._notes: dict[str, str] = {}
        self._filling = False
        self.itemChanged.connect(self._on_item_changed)

    # ------------------------------------------------------------------ content

    def set_scores(self, methods: list[str], scores: dict[str, list[Score] | None],
                   n_frames: int, has_gt: bool, error_maps: set[str] | frozenset = frozenset(),
                   notes: dict[str, str] | None = None) -> None:
        """Show ``scores[method]`` (per frame; missing or ``None`` = not computed yet);
        a row with a note (e.g. "failed: …") shows the note across its metric columns."""
        self._methods, self._scores = list(methods), dict(scores)
        self._notes = dict(notes or {})
        self._n_frames, self._has_gt = int(n_frames), bool(has_gt)
        self._filling = True
        self.setUpdatesEnabled(False)  # one repaint for the whole fill
        try:
            self.clearSpans()
            headers = ["Method", "Error map"]
            if has_gt:
                headers += ["PSNR mean", "SSIM mean"]
                for t in range(n_frames):
                    headers += [f"PSNR t{t}", f"SSIM t{t}"]
            else:
                headers += ["PSNR / SSIM"]
            self.setColumnCount(len(headers))
            self.setHorizontalHeaderLabels(headers)
            self.setRowCount(len(methods))
            for row, name in enumerate(methods):
                item = QTableWidgetItem(name)
                item.setToolTip(name)
                self.setItem(row, 0, item)
                toggle = QTableWidgetItem()
                toggle.setFlags(Qt.ItemFlag.ItemIsUserCheckable | Qt.ItemFlag.ItemIsEnabled
                                if has_gt and name not in self._notes
                                else Qt.ItemFlag.NoItemFlags)
                toggle.setCheckState(Qt.CheckState.Checked if name in error_maps
                                     else Qt.CheckState.Unchecked)
                toggle.setToolTip("show |restoration (affine fit) - ground truth|")
                self.setItem(row, 1, toggle)
                note = self._notes.get(name)
                if note is not None or not has_gt:
                    cell = QTableWidgetItem(NO_GT if note is None else note)
                    cell.setToolTip(note or NO_GT)
                    if note is not None and note.startswith("failed"):
                        cell.setForeground(QBrush(FAILED_COLOR))
                        item.setForeground(QBrush(FAILED_COLOR))
                    self.setItem(row, 2, cell)
                    if self.columnCount() > 3:
                        self.setSpan(row, 2, 1, self.columnCount() - 2)
                    continue
                for col, value in enumerate(self._row_values(name), start=2):
                    item = QTableWidgetItem("…" if value is None else self._fmt(col, value))
                    item.setTextAlignment(Qt.AlignmentFlag.AlignRight
                                          | Qt.AlignmentFlag.AlignVCenter)
                    self.setItem(row, col, item)
            if has_gt:
                self._mark_best()
            # sized once per fill (a ResizeToContents mode re-measures every cell on every
            # change); long model names are elided in the middle (full name in the tooltip)
            # so the mean columns stay in view
            self.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
            self.resizeColumnsToContents()
            self.setColumnWidth(0, min(self.columnWidth(0), METHOD_COLUMN_MAX))
        finally:
            self._filling = False
            self.setUpdatesEnabled(True)

    def _row_values(self, name: str) -> list[float | None]:
        """``[psnr_mean, ssim_mean, psnr_t0, ssim_t0, ...]`` (None where not computed)."""
        scores = self._scores.get(name)
        if not scores or len(scores) != self._n_frames:
            return [None] * (2 + 2 * self._n_frames)
        mean = mean_score(scores)
        values: list[float | None] = [mean.psnr, mean.ssim]
        for s in scores:
            values += [s.psnr, s.ssim]
        return values

    @staticmethod
    def _fmt(col: int, value: float) -> str:
        return f"{value:.2f}" if col % 2 == 0 else f"{value:.4f}"  # PSNR even, SSIM odd

    def _mark_best(self) -> None:
        """Bold + green background on the highest value of each metric column."""
        rows = {name: self._row_values(name) for name in self._methods
                if name not in self._notes}
        index = {name: r for r, name in enumerate(self._methods)}
        for k in range(2 + 2 * self._n_frames):
            values = [(v[k], index[n]) for n, v in rows.items() if v[k] is not None]
            if not values:
                continue
            best = max(v for v, _ in values)
            for v, row in values:
                if v == best:
                    item = self.item(row, k + 2)
                    font = QFont(item.font())
                    font.setBold(True)
                    item.setFont(font)
                    item.setBackground(QBrush(BEST_COLOR))
                    item.setData(BEST_ROLE, True)

    # ------------------------------------------------------------------ queries

    def best_cells(self) -> dict[str, str]:
        """``{column header: method}`` of the highlighted cells."""
        out = {}
        for row in range(self.rowCount()):
            for col in range(2, self.columnCount()):
                item = self.item(row, col)
                if item is not None and item.data(BEST_ROLE):
                    out[self.horizontalHeaderItem(col).text()] = self.item(row, 0).text()
        return out

    def cell_text(self, method: str, column: str) -> str:
        row = self._methods.index(method)
        headers = [self.horizontalHeaderItem(c).text() for c in range(self.columnCount())]
        item = self.item(row, headers.index(column))
        return item.text() if item is not None else self.item(row, 2).text()  # a note

    def row_note(self, method: str) -> str | None:
        """The note shown in a row instead of its scores (e.g. "failed: …"), or ``None``."""
        return self._notes.get(method)

    def set_error_map_checked(self, method: str, checked: bool) -> None:
        """Tick a method's error-map box (emits :attr:`error_map_toggled`)."""
        item = self.item(self._methods.index(method), 1)
        item.setCheckState(Qt.CheckState.Checked if checked else Qt.CheckState.Unchecked)

    def _on_item_changed(self, item: QTableWidgetItem) -> None:
        if self._filling or item.column() != 1:
            return
        name = self.item(item.row(), 0).text()
        self.error_map_toggled.emit(name, item.checkState() == Qt.CheckState.Checked)

    # ------------------------------------------------------------------ export

    def csv_rows(self) -> list[list[str]]:
        """Header plus one row per method and frame, then the method's mean."""
        rows = [["method", "frame", "psnr_db", "ssim"]]
        for name in self._methods:
            scores = self._scores.get(name) if self._has_gt else None
            if name in self._notes:
                rows.append([name, "", self._notes[name], ""])
                continue
            if not scores or len(scores) != self._n_frames:
                rows.append([name, "", NO_GT if not self._has_gt else "not computed", ""])
                continue
            for t, s in enumerate(scores):
                rows.append([name, str(t), f"{s.psnr:.4f}", f"{s.ssim:.6f}"])
            mean = mean_score(scores)
            rows.append([name, "mean", f"{mean.psnr:.4f}", f"{mean.ssim:.6f}"])
        return rows

    def export_csv(self, path: str | Path) -> Path:
        path = Path(path)
        with path.open("w", newline="") as fh:
            csv.writer(fh).writerows(self.csv_rows())
        return path

"""A whole napari session with the compare dock, on the real canvas (run by
``tests/test_napari_session.py`` in a subprocess; not collected by pytest).

    python tests/napari_session.py --models DIR DIR DIR --out result.json

Opens the bundled W2S training pair and held-out pair as the sample-data menu names them,
docks the compare dock, restores twice with the given models + TV + NL-means, kills the
restore child in a third run, restores a fourth time, and writes every check to ``--out``
as JSON: ``{"ok": bool, "checks": [{"name", "ok", "detail"}], ...}``. Exit code 0 when all
checks passed, 1 when one failed, 2 when the script itself broke.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
import traceback
from pathlib import Path

TRAIN, TEST = "W2S ch0 train", "W2S ch0 test"


class Session:
    def __init__(self, out: Path) -> None:
        self.out = out
        self.checks: list[dict] = []
        self.info: dict = {}

    def check(self, name: str, ok, detail="") -> bool:
        self.checks.append({"name": name, "ok": bool(ok), "detail": str(detail)[:2000]})
        print(f"[{'ok' if ok else 'FAIL'}] {name}" + (f": {detail}" if detail and not ok
                                                     else ""), flush=True)
        return bool(ok)

    def write(self, error: str | None = None) -> bool:
        ok = error is None and all(c["ok"] for c in self.checks) and bool(self.checks)
        self.out.write_text(json.dumps({"ok": ok, "error": error, "checks": self.checks,
                                        **self.info}, indent=2))
        return ok


def pump(seconds: float) -> None:
    """Run Qt's event loop for ``seconds`` (the canvas draws, workers deliver events)."""
    from qtpy.QtCore import QEventLoop, QTimer

    loop = QEventLoop()
    QTimer.singleShot(int(seconds * 1000), loop.quit)
    loop.exec()


def tiny_training(form, outdir: Path) -> None:
    """Set the training dock's form to one tiny MAE model (seconds on a CPU)."""
    form.patch_size.setCurrentText("32")
    form.patches_per_image.setValue(8)
    form.epochs.setValue(1)
    form.steps.setValue(2)
    form.batch_size.setValue(4)
    form.unet_depth.setValue(1)
    form.unet_n_first.setValue(8)
    form.outdir.setText(str(outdir))
    form.set_losses("mae")


def wait_until(cond, timeout: float, step: float = 0.05) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        pump(step)
    return bool(cond())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", required=True, type=Path)
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--timeout", type=float, default=240, help="seconds per restore run")
    parser.add_argument("--size", default="1280x800", help="window size, WxH")
    args = parser.parse_args(argv)
    session = Session(args.out)
    try:
        run_session(session, args)
    except Exception:  # a broken script is reported, not mistaken for a pass
        traceback.print_exc()
        session.write(traceback.format_exc())
        return 2
    return 0 if session.write() else 1


def run_session(s: Session, args) -> None:
    import napari
    import numpy as np
    from qtpy.QtWidgets import QApplication

    from napari_care_losses._widgets import _compare_layers as L
    from napari_care_losses._widgets._compare_jobs import format_score
    from napari_care_losses._widgets._overlays import panel_overlay, panel_text
    from napari_care_losses._widgets.compare_widget import CompareWidget
    from napari_care_losses._widgets.model_registry import REGISTRY
    from napari_care_losses.sample_data import napari_sample_ch0, napari_sample_test_ch0

    s.info["qt_platform"] = QApplication.platformName() if QApplication.instance() else None
    viewer = napari.Viewer(title="napari session check", show=True)
    s.info["qt_platform"] = QApplication.platformName()
    s.check("real display (not offscreen)", s.info["qt_platform"] not in ("offscreen",
                                                                        "minimal"),
            s.info["qt_platform"])
    width, height = (int(v) for v in args.size.split("x"))
    viewer.window._qt_window.resize(width, height)
    # as File ▸ Open Sample does: the training pair first, then the held-out pair
    for data, kwargs, _ in napari_sample_ch0() + napari_sample_test_ch0():
        viewer.add_image(data, **kwargs)
    widget = CompareWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Compare restorations", area="right")
    REGISTRY.clear()
    names = [m.display_name for m in (REGISTRY.add(p) for p in args.models)]
    pump(0.5)

    picked = (widget.input_combo.currentText(), widget.gt_combo.currentText())
    s.info["default_pair"] = picked
    s.check("pickers default to the held-out pair",
            picked == (f"{TEST} low", f"{TEST} high"), picked)
    methods = [*names, "TV", "NL-means"]
    widget.set_checked_methods(methods)
    s.check("methods ticked", [sp.name for sp in widget.checked_specs()] != []
            and {sp.name for sp in widget.checked_specs()} == set(methods),
            [sp.name for sp in widget.checked_specs()])
    n_test = len(widget.input_frames())
    n_train = viewer.layers[f"{TRAIN} low"].data.shape[0]
    s.info["frames"] = {"held_out": n_test, "training": n_train}

    def restore(tag: str, kill: bool = False) -> float:
        finished = []
        widget.run_finished.connect(lambda: finished.append(1))
        t0 = time.monotonic()
        widget.restore()
        s.check(f"{tag}: run started", widget.is_running, widget.message())
        if kill:
            started = wait_until(lambda: widget._process.pid is not None
                                 and widget.progress.value() >= 1, args.timeout)
            pid = widget._process.pid
            s.check(f"{tag}: child restoring before the kill", started and pid, pid)
            if pid:
                os.kill(pid, signal.SIGKILL)
        done = wait_until(lambda: finished and not widget.is_running, args.timeout)
        seconds = time.monotonic() - t0
        s.check(f"{tag}: run_finished within {args.timeout:.0f} s", done, widget.message())
        pump(0.3)
        return seconds

    def check_state(tag: str) -> None:
        s.check(f"{tag}: napari alive", viewer.window._qt_window.isVisible()
                and viewer.window._qt_viewer.canvas is not None)
        s.check(f"{tag}: no TensorFlow in napari's process",
                "tensorflow" not in sys.modules and "keras" not in sys.modules,
                [m for m in ("tensorflow", "keras") if m in sys.modules])
        s.check(f"{tag}: every method restored", set(methods) <= set(widget.results),
                f"{sorted(widget.results)}; status {widget.message()!r}")
        s.check(f"{tag}: grid mode", viewer.canvas.grid.enabled)
        inp, gt = widget.input_layer(), widget.gt_layer()
        panels = [lyr for lyr in viewer.layers if lyr.visible]
        want = [inp.name, gt.name] + [n for n in widget.view.rows() if n in widget.results]
        s.check(f"{tag}: panels are input, ground truth, then the methods",
                [lyr.name for lyr in panels] == want, [lyr.name for lyr in panels])
        others = [lyr.name for lyr in viewer.layers if lyr not in (inp, gt)
                  and L.role(lyr) is None]
        s.check(f"{tag}: layers outside the comparison hidden in grid mode",
                others and not any(viewer.layers[n].visible for n in others), others)
        axis = L.frame_axis(viewer)
        for t in range(n_test):
            viewer.dims.set_current_step(axis, t)
            pump(0.2)
            bad = []
            for lyr in panels:
                data = np.asarray(lyr.data)
                frame = data[t] if data.ndim == 3 else data
                if data.ndim == 3 and data.shape[0] <= t or not np.isfinite(frame).all():
                    bad.append(f"{lyr.name}: no finite data at frame {t}")
                text = panel_text(lyr)
                if lyr is gt:
                    want = "Ground truth"
                else:
                    row = widget.view.input_key() if lyr is inp else lyr.name
                    want = format_score(widget.scores(row)[t])
                if text is None or not text.endswith(want):
                    bad.append(f"{lyr.name}: label {text!r}, frame {t} score {want!r}")
            s.check(f"{tag}: frame {t}: every panel has data and the label of its frame",
                    not bad, bad)
            table = {row: widget.table.cell_text(row, f"PSNR t{t}")
                     for row in widget.view.rows()}
            labels = {lyr.name: (panel_text(lyr) or "").split("\n")[1:2] for lyr in panels
                      if lyr is not gt}
            mism = [n for n, v in table.items() if labels.get(
                inp.name if n == widget.view.input_key() else n) != [f"PSNR {v} dB"]]
            s.check(f"{tag}: frame {t}: panel PSNR = table PSNR", not mism,
                    {n: (table[n], labels.get(n)) for n in mism})
        # the training pair has more frames: the slider must stay inside the compared stacks
        viewer.dims.set_current_step(axis, n_train - 1)
        pump(0.2)
        step = viewer.dims.current_step[axis]
        s.check(f"{tag}: frame slider kept inside the compared stacks",
                step <= n_test - 1, f"asked {n_train - 1}, at {step}, {n_test} frames")
        span = viewer.dims.range[axis]
        s.check(f"{tag}: frame slider spans the compared stacks only",
                span.stop == span.start + (n_test - 1) * span.step, f"{span}, {n_test} frames")
        check_label_fit(tag)

    def check_label_fit(tag: str) -> None:
        canvas = viewer.window._qt_viewer.canvas
        cell = viewer.canvas.viewbox_size(viewer.layers)  # (h, w) of one grid panel
        sizes, bad = {}, []
        for lyr in viewer.layers:
            overlay = panel_overlay(lyr)
            vis = canvas._layer_overlay_to_visual.get(lyr, {}).get(overlay)
            if overlay is None or not lyr.visible or vis is None:
                continue
            w, h = vis.x_size, vis.y_size
            sizes[lyr.name] = (round(w), round(h))
            if w > cell[1] or h > cell[0] * 0.6:
                bad.append(f"{lyr.name}: label {w:.0f}x{h:.0f} px, panel "
                           f"{cell[1]:.0f}x{cell[0]:.0f} px")
        s.info.setdefault("label_sizes", {})[tag] = {"panel_wh": [round(cell[1]),
                                                                  round(cell[0])], **sizes}
        s.check(f"{tag}: every label fits its panel", sizes and not bad, bad or sizes)

    s.info["seconds"] = {}
    for i in (1, 2):
        s.info["seconds"][f"run{i}"] = restore(f"run {i}")
        check_state(f"run {i}")

    s.info["seconds"]["run3_killed"] = restore("run 3 (child killed)", kill=True)
    status = widget.message()
    s.info["status_after_kill"] = status
    s.check("run 3: the dock reports the killed child", "ended by signal 9" in status, status)
    s.check("run 3: napari alive after the kill", viewer.window._qt_window.isVisible())
    s.check("run 3: Restore enabled again", widget.restore_button.isEnabled()
            and not widget.is_running)

    s.info["seconds"]["run4"] = restore("run 4")
    check_state("run 4")
    s.check("run 4: status reports all methods",
            f"restored with {len(methods)} of {len(methods)}" in widget.message(),
            widget.message())
    train_in_the_dock(s, viewer, args)
    widget.stop()
    REGISTRY.clear()


def train_in_the_dock(s: Session, viewer, args) -> None:
    """A tiny run in the training dock (its own child process): afterwards napari's
    process still holds no TensorFlow, and the new model is listed for comparing."""
    from napari_care_losses._widgets.model_registry import REGISTRY
    from napari_care_losses._widgets.training_widget import TrainingWidget

    dock = TrainingWidget(viewer)
    viewer.window.add_dock_widget(dock, name="Train CARE", area="right")
    f = dock.form
    tiny_training(f, Path(args.out).parent / "dock_models")
    f.preview_every.setValue(1)
    before = len(REGISTRY)
    started = dock.start_training()
    s.check("training: started in the dock", started, dock.data_label.text())
    done = started and wait_until(lambda: not dock.is_running, 240)
    pump(0.5)
    s.check("training: finished", done and dock.last_error is None, dock.last_error)
    s.check("training: the model is listed", len(REGISTRY) == before + 1, len(REGISTRY))
    s.check("training + restoring: no TensorFlow in napari's process",
            "tensorflow" not in sys.modules and "keras" not in sys.modules,
            [m for m in ("tensorflow", "keras") if m in sys.modules])


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    # leave without C++ exit handlers (Mesa's llvmpipe, Qt): the checks are written
    os._exit(code)

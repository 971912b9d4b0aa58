"""A whole napari session on the real canvas (issue #12): the compare dock restores twice,
survives a killed restore child and restores again, and napari never loads TensorFlow.

The session runs in a subprocess (``tests/napari_session.py``) with napari on the X display
(not Qt's offscreen platform), so the canvas really draws; this process only trains the
three tiny models and reads the session's JSON report.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("napari")
pytest.importorskip("tensorflow")

from napari_care_losses.io.data import make_patches  # noqa: E402
from napari_care_losses.sample_data import load_sample  # noqa: E402
from napari_care_losses.training.trainer import run_training  # noqa: E402

from ..conftest import tiny_config  # noqa: E402

SCRIPT = Path(__file__).with_name("napari_session.py")
TIMEOUT_S = 420


@pytest.mark.slow
def test_napari_session_restore_twice_kill_child_restore_again(tmp_path):
    if not os.environ.get("DISPLAY"):
        pytest.skip("needs an X display (xvfb-run, or Xvfb for conftest to start)")
    low, high = load_sample(0, "train")
    patches = make_patches(low[:2], high[:2], patch_size=32, patches_per_image=16, seed=0)
    models = [str(run_training(patches, tiny_config(loss, epochs=1, steps_per_epoch=2),
                               tmp_path / "models").model_dir)
              for loss in ("laplace", "fft", "bandpass")]

    env = {k: v for k, v in os.environ.items() if k != "QT_QPA_PLATFORM"}  # real display
    env["NAPARI_CARE_LOSSES_HOME"] = str(tmp_path / "home")  # no models of earlier sessions
    env.pop("PYTEST_CURRENT_TEST", None)
    out = tmp_path / "result.json"
    proc = subprocess.run([sys.executable, str(SCRIPT), "--models", *models, "--out", str(out)],
                          env=env, cwd=tmp_path, capture_output=True, text=True,
                          timeout=TIMEOUT_S)
    log = f"exit {proc.returncode}\n{proc.stdout[-6000:]}\n{proc.stderr[-6000:]}"
    assert out.exists(), log
    report = json.loads(out.read_text())
    failed = [c for c in report["checks"] if not c["ok"]]
    assert not failed, f"{json.dumps(failed, indent=1)}\n{log}"
    assert report["error"] is None, report["error"]
    assert proc.returncode == 0, log

    names = {c["name"] for c in report["checks"]}
    for tag in ("run 1", "run 2", "run 4"):  # each restore was checked, not skipped
        assert f"{tag}: no TensorFlow in napari's process" in names
        assert f"{tag}: frame slider kept inside the compared stacks" in names
        assert f"{tag}: frame slider spans the compared stacks only" in names
        assert f"{tag}: every label fits its panel" in names
        for t in range(report["frames"]["held_out"]):
            assert f"{tag}: frame {t}: every panel has data and the label of its frame" in names
    assert report["frames"]["training"] > report["frames"]["held_out"]
    assert "ended by signal 9" in report["status_after_kill"]
    assert "training + restoring: no TensorFlow in napari's process" in names
    assert report["qt_platform"] not in ("offscreen", "minimal")

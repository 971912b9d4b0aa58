"""Issue 18: a napari script without a main guard trains and restores through the docks.

The script (``no_main_guard_script.py``) runs as ``python script.py`` on the X display
(real GL); worker processes must start independently of ``__main__`` (a ``spawn`` start
re-ran the script in the worker: a second napari, and a Restore that never finished).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

import napari_care_losses

pytest.importorskip("napari")
pytest.importorskip("tensorflow")

SCRIPT = Path(__file__).with_name("no_main_guard_script.py")
TIMEOUT_S = 420


@pytest.mark.slow
def test_a_script_without_main_guard_trains_and_restores(tmp_path):
    if not os.environ.get("DISPLAY"):
        pytest.skip("needs an X display (xvfb-run, or Xvfb for conftest to start)")
    env = {k: v for k, v in os.environ.items() if k != "QT_QPA_PLATFORM"}  # real display
    env["NAPARI_CARE_LOSSES_HOME"] = str(tmp_path / "home")
    env["CARE_SCRIPT_OUT"] = str(tmp_path / "result.json")
    root = str(Path(napari_care_losses.__file__).resolve().parents[1])  # this checkout's code
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    env.pop("PYTEST_CURRENT_TEST", None)
    t0 = time.monotonic()
    try:
        proc = subprocess.run([sys.executable, str(SCRIPT)], env=env, cwd=tmp_path,
                              capture_output=True, text=True, timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired as exc:
        runs = (tmp_path / "result.json.runs").read_text()
        pytest.fail(f"the script did not finish within {TIMEOUT_S} s; top level ran as: "
                    f"{runs!r}\n{(exc.stderr or b'')[-4000:]!r}")
    seconds = time.monotonic() - t0
    log = f"exit {proc.returncode} after {seconds:.0f} s\n{proc.stdout[-4000:]}\n" \
          f"{proc.stderr[-6000:]}"

    runs = (tmp_path / "result.json.runs").read_text().splitlines()
    assert runs == [f"{runs[0].split()[0]} __main__"], f"the script ran again: {runs}\n{log}"
    report = json.loads((tmp_path / "result.json").read_text())
    failed = [c for c in report["checks"] if not c["ok"]]
    assert report["error"] is None and not failed, f"{json.dumps(report, indent=1)}\n{log}"
    assert {c["name"] for c in report["checks"]} >= {"training finished", "restore finished",
                                                     "every method restored"}
    children = report["children"]
    serve = "-m napari_care_losses.workers.serve"
    assert children and all(serve in cmd for cmd in children.values()), children
    assert len(children) == 2, children  # one training worker, one restore worker
    assert proc.returncode == 0, log
    assert seconds < TIMEOUT_S

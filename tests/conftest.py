"""Shared fixtures: offscreen Qt, quiet TensorFlow, tiny training configs and data."""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


def _start_xvfb() -> None:
    """napari's canvas needs OpenGL, which Qt's offscreen platform takes from an X display:
    without one (headless CI), start Xvfb for the session if it is installed."""
    import atexit
    import shutil
    import subprocess

    if os.environ.get("DISPLAY") or not shutil.which("Xvfb"):
        return
    read, write = os.pipe()
    proc = subprocess.Popen(["Xvfb", "-displayfd", str(write), "-screen", "0", "1280x1024x24",
                             "-nolisten", "tcp"], pass_fds=(write,),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.close(write)
    with os.fdopen(read) as fh:
        display = fh.readline().strip()
    if display:
        os.environ["DISPLAY"] = f":{display}"
        atexit.register(proc.terminate)
    else:
        proc.terminate()


_start_xvfb()
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# bioimageio.core reads KERAS_BACKEND once (default torch) and writes it back to the
# environment, which child processes inherit: this project's Keras runs on TensorFlow
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from napari_care_losses.config.train import TrainConfig  # noqa: E402
from napari_care_losses.io.data import make_patches  # noqa: E402
from napari_care_losses.losses import LossSpec  # noqa: E402
from napari_care_losses.sample_data import load_sample  # noqa: E402


def tiny_config(loss: str = "mae", **overrides) -> TrainConfig:
    """A U-Net small enough to train in seconds on 2 CPU cores."""
    settings = dict(patch_size=32, patches_per_image=16, epochs=2, steps_per_epoch=3,
                    batch_size=4, learning_rate=2e-3, unet_n_depth=1, unet_n_first=8,
                    unet_kern_size=3, reduce_lr_patience=0, seed=1)
    settings.update(overrides)
    return TrainConfig(loss=LossSpec.create(loss, patch_size=settings["patch_size"]),
                       **settings)


@pytest.fixture(autouse=True)
def own_models_home(tmp_path_factory, monkeypatch):
    """Each test gets its own napari-care-losses home (remembered models folder and
    settings): the docks list the models found there when they open."""
    monkeypatch.setenv("NAPARI_CARE_LOSSES_HOME", str(tmp_path_factory.mktemp("home")))


@pytest.fixture(scope="session")
def sample_pair() -> tuple[np.ndarray, np.ndarray]:
    """Two real W2S training fields (bundled crops), uint8 (2, 256, 256)."""
    low, high = load_sample(0, "train")
    return low[:2], high[:2]


@pytest.fixture(scope="session")
def tiny_patches(sample_pair):
    low, high = sample_pair
    return make_patches(low, high, patch_size=32, patches_per_image=16, seed=0)


# TensorFlow and Mesa's software OpenGL (used by napari's canvas under Xvfb) each carry
# LLVM; their static destructors collide when the process exits ("free(): invalid pointer",
# exit code 134) although every test passed. If both were loaded, leave without running
# the C++ destructors, keeping pytest's exit status.
_EXIT_STATUS = {"value": 0}


def pytest_sessionfinish(session, exitstatus) -> None:
    _EXIT_STATUS["value"] = int(exitstatus)


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config) -> None:
    import atexit
    import sys

    if "tensorflow" not in sys.modules or not os.path.exists("/proc/self/maps"):
        return
    with open("/proc/self/maps") as fh:
        llvm_gl = any("libLLVM" in line for line in fh)
    if llvm_gl:
        atexit._run_exitfuncs()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(_EXIT_STATUS["value"])


def pytest_collection_modifyitems(session, config, items) -> None:
    """napari viewer tests first: a process that loads TensorFlow before Mesa's OpenGL makes
    Mesa's LLVM bind to TensorFlow's and the first draw crash (see napari_care_losses._tf);
    tests that train or export in this process come after the viewers are up."""
    items.sort(key=lambda item: "make_napari_viewer" not in getattr(item, "fixturenames", ()))
    # ``gui``: everything that needs Qt (a viewer, a dock, qtbot) or lives under widgets/,
    # so that ``pytest -m "not slow and not gui"`` is the inner loop
    for item in items:
        fixtures = set(getattr(item, "fixturenames", ()))
        if fixtures & {"make_napari_viewer", "qtbot", "viewer"} or "widgets" in item.path.parts:
            item.add_marker(pytest.mark.gui)

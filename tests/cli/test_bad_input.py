"""Issue 18, the bad-input probe's classes 2, 5 and 6 through the command line: a full disk
while training, messages that name the right thing, and no temporary files left behind
(SIGTERM in every command). Class 4 (packages as models) is in tests/export."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import tifffile

from napari_care_losses import cli
from napari_care_losses.models.folder import ModelFolder, ModelFolderError, read_meta

from ..conftest import tiny_config

TINY_FLAGS = ["--patch-size", "32", "--patches-per-image", "16", "--steps", "2",
              "--batch-size", "4", "--unet-depth", "1", "--unet-first", "8",
              "--precision", "float32", "--seed", "1"]
CLI = [sys.executable, "-m", "napari_care_losses.cli"]
#: runs the CLI with every file limited to ARGV[1] bytes (writes beyond fail: EFBIG)
LIMITED = ("import resource, runpy, signal, sys; signal.signal(signal.SIGXFSZ, signal.SIG_IGN);"
           " resource.setrlimit(resource.RLIMIT_FSIZE, (int(sys.argv[1]), -1));"
           " sys.argv = sys.argv[1:]; runpy.run_module('napari_care_losses.cli', "
           "run_name='__main__')")


def env() -> dict:
    src = str(Path(__file__).resolve().parents[2] / "src")
    return {**os.environ, "PYTHONUNBUFFERED": "1",
            "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")])}


def one_error_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    return lines[0]


@pytest.fixture
def pair_files(sample_pair, tmp_path):
    low, high = tmp_path / "low.tif", tmp_path / "high.tif"
    tifffile.imwrite(low, sample_pair[0])
    tifffile.imwrite(high, sample_pair[1])
    return low, high


# -- 2. a full disk while training ----------------------------------------------------------

@pytest.mark.slow
def test_weights_that_cannot_be_written_end_with_one_line_and_exit_code_2(pair_files, tmp_path):
    """A real write failure of the operating system (every file limited to 20 kB: the weights
    do not fit) while the checkpoint is written: one line, exit code 2, a truthful folder."""
    low, high = pair_files
    out = tmp_path / "models"
    quiet_by_default = {k: v for k, v in env().items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    res = subprocess.run([sys.executable, "-c", LIMITED, "20000", "train", str(low), str(high),
                          "--loss", "mae", "--out", str(out), "--epochs", "2", *TINY_FLAGS],
                         env=quiet_by_default, capture_output=True, text=True, timeout=300)
    (model_dir,) = out.iterdir()
    line = one_error_line(res.stderr)
    assert res.returncode == 2, res
    assert line.startswith(f"napari-care-losses train: error: model folder {model_dir}: "
                           "cannot finish saving weights (File too large)"), line
    assert "FAILED" not in res.stdout
    assert sorted(p.name for p in model_dir.iterdir()) == ["care_losses.json", "config.json"]
    assert read_meta(model_dir)["status"] == "failed"
    with pytest.raises(ModelFolderError, match="training failed"):
        ModelFolder.open(model_dir).require_usable()


@pytest.mark.slow
def test_after_a_full_disk_nothing_more_is_written(tiny_patches, tmp_path, monkeypatch):
    """The epoch-1 checkpoints are written, epoch 2's hits the full disk: the best weights
    stay, and the last weights are not written again to the full disk (h5py crashed there)."""
    from napari_care_losses.training.trainer import Failed, train

    from ..training.test_interruptions import full_disk

    calls = full_disk(monkeypatch, writes_that_work=2)
    last = list(train(tiny_patches, tiny_config("mae", epochs=4), tmp_path))[-1]
    assert isinstance(last, Failed) and "disk full" in last.error
    names = [Path(c).name for c in calls]  # epoch 1: best, now; epoch 2: the failed one
    assert len(names) == 3 and "weights_last.saving.h5" not in names, names
    assert sorted(p.name for p in last.model_dir.glob("*.h5")) == [
        "weights_best.h5", "weights_now.h5"]


# -- 5. messages that name the right thing --------------------------------------------------

STACK = np.random.default_rng(0).integers(1, 60000, (5, 32, 32)).astype(np.uint16)


def run_cli(capsys, *argv) -> tuple[int, str]:
    rc = cli.main([str(a) for a in argv])
    return rc, one_error_line(capsys.readouterr().err)


def test_a_bad_low_file_is_named_not_the_ground_truth(tmp_path, capsys):
    high = tmp_path / "truth.tif"
    tifffile.imwrite(high, STACK, photometric="minisblack")
    low = tmp_path / "noisy.tif"
    bad = STACK.astype(np.float32)
    bad[2, 5, 5] = np.nan
    tifffile.imwrite(low, bad, photometric="minisblack")
    rc, err = run_cli(capsys, "evaluate", low, high, "--baseline", "gaussian", "-o",
                      tmp_path / "s.csv")
    assert rc == 2 and f"error: {low}: frame 2 contains NaN" in err and "truth.tif" not in err
    flat = STACK.copy()  # the ground truth's own errors still name it
    flat[1] = 9
    tifffile.imwrite(high, flat, photometric="minisblack")
    tifffile.imwrite(low, STACK, photometric="minisblack")
    rc, err = run_cli(capsys, "evaluate", low, high, "-o", tmp_path / "s.csv")
    assert rc == 2 and f"error: {high}: frame 1: PSNR/SSIM are undefined against a " in err


@pytest.mark.parametrize("kwargs", [{}, {"imagej": True}])
def test_an_empty_stack_is_called_empty_not_truncated(tmp_path, capsys, kwargs):
    empty = tmp_path / "empty.tif"
    with pytest.warns(UserWarning):  # tifffile: "writing zero-size array"
        tifffile.imwrite(empty, np.zeros((0, 32, 32), np.uint16), **kwargs)
    good = tmp_path / "good.tif"
    tifffile.imwrite(good, STACK, photometric="minisblack")
    for argv in (["train", empty, good], ["evaluate", good, empty]):
        rc, err = run_cli(capsys, *argv)
        assert rc == 2 and f"{empty}: an empty image" in err, err
        assert "truncated" not in err and "damaged" not in err


def fake_model(restore_frame, loss: str = "laplace"):
    """A :class:`RestorationModel` named model_x whose network is ``restore_frame``."""
    from napari_care_losses.restore.predict import RestorationModel

    class Fake(RestorationModel):
        def __init__(self, model_dir=None) -> None:
            self.model_dir, self.config = Path("model_x"), tiny_config(loss)

    Fake.restore_frame = restore_frame
    return Fake


def breaks_on_constant(self, img, tile_size=512):
    """As CSBDeep's normalisation: divides by the frame's range."""
    img = np.asarray(img, np.float32)
    norm = (img - img.min()) / (img.max() - img.min())
    return norm, norm


def test_a_constant_input_frame_is_named_as_such(tmp_path, capsys, monkeypatch):
    """Before: "restoration of … frame 1 with model_x contains NaN/inf" blamed the model."""
    from napari_care_losses.restore import predict
    from napari_care_losses.restore.engine import MethodSpec, restore_all

    flat = STACK.copy()
    flat[1] = 7
    low = tmp_path / "low.tif"
    tifffile.imwrite(low, flat, photometric="minisblack")
    monkeypatch.setattr(predict, "RestorationModel", fake_model(breaks_on_constant))
    monkeypatch.setattr(predict, "load_model", lambda d: predict.RestorationModel(d))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # numpy's divide-by-zero warnings never reach a user
        rc, err = run_cli(capsys, "predict", tmp_path, low, "-o", tmp_path / "r.tif")
        constant = (f"{low}: frame 1 is constant (all values 7); it has no intensity range to "
                    "normalise, so nothing can be restored")
        assert rc == 2 and err.endswith(f"error: {constant}"), err
        assert "NaN" not in err and not (tmp_path / "r.tif").exists()

        spec = MethodSpec("k", "Model X", "X", model_dir=str(tmp_path), probabilistic=True)
        _, errors = restore_all([spec, MethodSpec.for_baseline("tv")], low)
    assert errors == [f"Model X failed: {constant}", f"TV failed: {constant}"]

    # a method that copes with a constant frame (finite output) restores it
    monkeypatch.setattr(predict, "RestorationModel",
                        fake_model(lambda self, img, tile_size=512: (img * 0.5, None), "mae"))
    assert cli.main(["predict", str(tmp_path), str(low), "-o", str(tmp_path / "r.tif")]) == 0
    assert tifffile.imread(tmp_path / "r.tif")[1].max() == 3.5


def test_out_of_memory_names_the_file_and_frame(tmp_path, capsys, monkeypatch):
    from napari_care_losses.restore import predict
    from napari_care_losses.restore.engine import MethodSpec, restore_all

    low = tmp_path / "big.tif"
    tifffile.imwrite(low, STACK, photometric="minisblack")

    def oom(self, img, tile_size=512):
        raise MemoryError()

    monkeypatch.setattr(predict, "RestorationModel", fake_model(oom, "mae"))
    monkeypatch.setattr(predict, "load_model", lambda d: predict.RestorationModel(d))
    rc, err = run_cli(capsys, "predict", tmp_path, low, "-o", tmp_path / "r.tif")
    assert rc == 2 and f"error: out of memory: {low}: frame 0 (32x32 px) with model_x" in err
    assert "--tile-size" in err

    spec = MethodSpec("k", "Model X", "X", model_dir=str(tmp_path))
    _, errors = restore_all([spec], low)
    assert errors == [f"Model X failed at frame 0 of {low}: out of memory (32x32 px frames: "
                      "MemoryError)"]


@pytest.mark.slow
def test_tensorflow_says_nothing_on_stderr_when_it_loads(tmp_path):
    """TensorFlow's oneDNN notice (four lines) used to come before any later error."""
    code = ("import sys; from napari_care_losses._tf import ensure_tensorflow; "
            "ensure_tensorflow(); import tensorflow as tf; "
            "print('after', tf.constant(2).numpy(), file=sys.stderr)")
    res = subprocess.run([sys.executable, "-c", code], env=env(), capture_output=True,
                         text=True, timeout=300)
    assert res.returncode == 0 and res.stderr == "after 2\n", res.stderr


def test_a_crash_while_tensorflow_loads_is_still_reported():
    code = ("import ctypes\nfrom napari_care_losses import _tf\n"
            "with _tf._without_import_notices():\n    ctypes.string_at(0)\n")
    res = subprocess.run([sys.executable, "-X", "faulthandler", "-c", code], env=env(),
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == -signal.SIGSEGV
    assert "Fatal Python error: Segmentation fault" in res.stderr, res.stderr


def test_only_the_notices_are_held_back(capfd):
    from napari_care_losses._tf import IMPORT_NOTICES, _without_import_notices

    with _without_import_notices():
        os.write(2, f"W0000 {IMPORT_NOTICES[0]}\nsomething else\n".encode())
        os.write(2, f"I0000 port.cc:153] {IMPORT_NOTICES[1]} You may see …\n".encode())
    os.write(2, b"later\n")
    assert capfd.readouterr().err == "something else\nlater\n"


# -- 6. no temporary files left behind; SIGTERM in every command ----------------------------

def terminate_at(marker: str, setup: str, argv: list, cwd: Path, timeout: float = 120
                 ) -> subprocess.CompletedProcess:
    """Run the CLI in a child that first runs ``setup`` (patches that print ``marker`` and
    wait at the phase), send SIGTERM once ``marker`` is printed; the child's result."""
    code = (f"import sys, time\n{setup}\nfrom napari_care_losses import cli\n"
            f"sys.exit(cli.main({[str(a) for a in argv]!r}))\n")
    proc = subprocess.Popen([sys.executable, "-c", code], env=env(), cwd=cwd,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    seen, deadline = [], time.monotonic() + timeout
    try:
        for line in proc.stdout:
            seen.append(line)
            if marker in line or time.monotonic() > deadline:
                break
        if not any(marker in li for li in seen):
            proc.kill()
            raise AssertionError(f"{marker} never came: {seen} {proc.communicate()[1]}")
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=timeout)
    finally:
        proc.kill()
        proc.wait()
    return subprocess.CompletedProcess(proc.args, proc.returncode, "".join(seen) + out, err)


def terminated_line(res, command: str) -> None:
    line = one_error_line(res.stderr)
    assert res.returncode == 143, (res.returncode, res.stderr)
    assert line == (f"napari-care-losses {command}: terminated (SIGTERM); unfinished output "
                    "and temporary files removed")


FAKE_MODEL = """
import numpy as np
from types import SimpleNamespace
from napari_care_losses.restore import predict
class Fake:
    name = "model_x"
    loss = SimpleNamespace(name=SimpleNamespace(value="mae"))
    def restore(self, stack, tile_size=512, progress=None):
        return predict.Restoration(np.ones((3, 256, 256), np.float32) * np.arange(3)[:, None, None])
predict.load_model = lambda d: Fake()
"""


def test_sigterm_while_predict_writes_leaves_no_temporary_file(tmp_path):
    tifffile.imwrite(tmp_path / "in.tif", STACK[:3], photometric="minisblack")
    setup = FAKE_MODEL + """
import tifffile
def imwrite(path, *a, **k):
    open(path, "wb").write(b"partial" * 1000)
    print("WRITING", flush=True)
    time.sleep(60)
tifffile.imwrite = imwrite
"""
    res = terminate_at("WRITING", setup, ["predict", tmp_path, "in.tif", "-o", "out.tif"],
                       tmp_path)
    terminated_line(res, "predict")
    assert sorted(os.listdir(tmp_path)) == ["in.tif"]


def test_sigterm_during_evaluate_is_one_line(tmp_path):
    tifffile.imwrite(tmp_path / "low.tif", STACK, photometric="minisblack")
    tifffile.imwrite(tmp_path / "high.tif", STACK, photometric="minisblack")
    setup = """
from napari_care_losses.restore import baselines
def restore_frame(self, img):
    print("RESTORING", flush=True)
    time.sleep(60)
baselines.Baseline.restore_frame = restore_frame
"""
    res = terminate_at("RESTORING", setup, ["evaluate", "low.tif", "high.tif", "--baseline",
                                            "gaussian", "--strength", "1", "-o", "s.csv"],
                       tmp_path)
    terminated_line(res, "evaluate")
    assert sorted(os.listdir(tmp_path)) == ["high.tif", "low.tif"]


def test_sigterm_during_export_removes_its_temporary_folder(tmp_path):
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    setup = f"""
import os, tempfile
tempfile.tempdir = {str(tmpdir)!r}
from napari_care_losses.export import bioimageio as bexp
from napari_care_losses.models.folder import FINISHED
class Folder:
    status = FINISHED
    path = {str(tmp_path)!r}
    def require_usable(self):
        return self
bexp.ModelFolder.open = staticmethod(lambda d: Folder())
bexp._need_bioimageio = lambda: None
def build(folder, tmp, output, **kwargs):
    (tmp / "weights.keras").write_bytes(b"x" * 100000)
    print("BUILDING", flush=True)
    time.sleep(60)
bexp._build = build
"""
    res = terminate_at("BUILDING", setup,
                       ["export", "model", "-o", "m.zip", "--name", "test package"], tmp_path)
    terminated_line(res, "export")
    assert os.listdir(tmpdir) == [] and not (tmp_path / "m.zip").exists()


def test_a_failed_export_leaves_no_hidden_temporary_file(tmp_path, monkeypatch):
    import errno
    import shutil

    from napari_care_losses.export import bioimageio as bexp

    staged = tmp_path / "package.zip"
    staged.write_bytes(b"PK" * 1000)
    out = tmp_path / "out"
    out.mkdir()
    (out / "model.zip").write_bytes(b"the previous package")

    def copyfile(src, dst):
        Path(dst).write_bytes(b"PK")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(shutil, "copyfile", copyfile)
    with pytest.raises(OSError, match=f"could not write {out / 'model.zip'}: No space left"):
        bexp.publish(staged, out / "model.zip")
    assert os.listdir(out) == ["model.zip"]
    assert (out / "model.zip").read_bytes() == b"the previous package"


# -- 4. (fast part) a package that would fill the cache is refused before unpacking --------

def test_a_package_of_constant_weights_is_refused_before_unpacking(tmp_path, monkeypatch):
    import io
    import zipfile

    from napari_care_losses.models.package_import import PackageError, _check_size

    monkeypatch.delenv("NAPARI_CARE_LOSSES_MAX_UNPACK_MB", raising=False)
    inner = io.BytesIO()
    with zipfile.ZipFile(inner, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("model.weights.h5", bytes(100_000_000))  # 100 MB of zeros
    package = tmp_path / "bomb.zip"
    with zipfile.ZipFile(package, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("weights.keras", inner.getvalue())
        zf.writestr("care_losses.json", "{}")
    assert package.stat().st_size < 1_000_000
    with pytest.raises(PackageError, match=rf"^{package}: unpacking this 0\.\d MB package "
                                           r"would write 100 MB into the cache .*more than "
                                           r"the 64 MB allowed"):
        _check_size(package, "weights.keras")
    monkeypatch.setenv("NAPARI_CARE_LOSSES_MAX_UNPACK_MB", "200")  # the user trusts it
    _check_size(package, "weights.keras")


@pytest.mark.parametrize("argv", [
    ["predict", "MODEL", "IN", "-o", "OUT"],
    ["evaluate", "IN", "IN", "--baseline", "tv", "-o", "OUT"],
    ["export", "MODEL", "-o", "OUT"],
])
def test_an_existing_output_is_refused_before_any_work(tmp_path, capsys, argv):
    out = tmp_path / "out.file"
    out.write_bytes(b"keep me")
    tifffile.imwrite(tmp_path / "in.tif", np.ones((2, 32, 32), np.uint8))
    names = {"MODEL": str(tmp_path / "no-model"), "IN": str(tmp_path / "in.tif"),
             "OUT": str(out)}
    rc, err = run_cli(capsys, *(names.get(a, a) for a in argv))
    assert rc == 2
    assert one_error_line(err) == (f"napari-care-losses {argv[0]}: error: {out} already "
                                   "exists; pass --overwrite to replace it")
    assert out.read_bytes() == b"keep me"

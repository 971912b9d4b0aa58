"""A napari script as napari's gallery examples are written: a viewer made at module level,
the docks added, ``napari.run()`` at the end, and NO ``if __name__ == "__main__":`` guard
(run by ``test_no_main_guard_script.py`` as ``python no_main_guard_script.py``; not
collected by pytest).

A worker started through ``multiprocessing``'s ``spawn`` re-imports ``__main__``: in such a
script it opened a second napari and never served a request (issue 18). Here a QTimer
drives the docks once napari's event loop runs: the training dock trains a tiny model,
the compare dock restores with it and TV, the checks go to ``$CARE_SCRIPT_OUT`` (JSON,
with every child process seen), and the viewer closes. Every run of this file's top level
appends its process id to ``$CARE_SCRIPT_OUT.runs``: a worker that re-ran the script shows
there.
"""

import os
import sys
import time
from pathlib import Path

import napari
from qtpy.QtCore import QTimer

sys.path.insert(0, str(Path(__file__).resolve().parent))
from napari_session import Session, pump, tiny_training, wait_until  # noqa: E402

OUT = Path(os.environ["CARE_SCRIPT_OUT"])
with open(f"{OUT}.runs", "a") as runs:  # every execution of this top level
    runs.write(f"{os.getpid()} {__name__}\n")

T0 = time.monotonic()
session = Session(OUT)
session.info.update(children={}, seconds={})

viewer = napari.Viewer(title="no main guard")
viewer.open_sample("napari-care-losses", "w2s_ch0")
viewer.open_sample("napari-care-losses", "w2s_test_ch0")
_, trainer = viewer.window.add_plugin_dock_widget("napari-care-losses", "Train CARE")
_, compare = viewer.window.add_plugin_dock_widget("napari-care-losses", "Compare restorations")


def children() -> dict[str, str]:
    """Record every child process of this one (pid → command line)."""
    seen = session.info["children"]
    for entry in Path("/proc").iterdir():
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
        except (OSError, ValueError, IndexError):
            continue
        if ppid == os.getpid() and cmd:
            seen.setdefault(entry.name, cmd)
    return seen


def watching(cond):
    """``cond``, recording the child processes at every check."""
    def check() -> bool:
        children()
        return bool(cond())
    return check


def drive() -> None:
    try:
        train_and_restore()
    except Exception:  # a broken script is reported, not mistaken for a pass
        import traceback

        traceback.print_exc()
        session.write(traceback.format_exc())
    else:
        session.write()
    viewer.close()


def train_and_restore() -> None:
    from napari_care_losses._widgets.model_registry import REGISTRY

    tiny_training(trainer.form, OUT.parent / "models")
    t = time.monotonic()
    started = trainer.start_training()
    session.check("training started in the dock", started, trainer.status_label.text())
    done = started and wait_until(watching(lambda: not trainer.is_running), 240)
    session.info["seconds"]["train"] = time.monotonic() - t
    session.check("training finished", done and trainer.last_error is None,
                  f"{trainer.last_error}; {trainer.status_label.text()}")
    names = [m.display_name for m in REGISTRY.models()]
    session.check("the trained model is listed", len(names) == 1, names)

    finished = []
    compare.run_finished.connect(lambda: finished.append(1))
    compare.set_checked_methods([*names, "TV"])
    t = time.monotonic()
    compare.restore()
    done = wait_until(watching(lambda: finished and not compare.is_running), 240)
    session.info["seconds"]["restore"] = time.monotonic() - t
    session.check("restore finished", done, compare.message())
    session.check("every method restored", set(names + ["TV"]) <= set(compare.results),
                  f"{sorted(compare.results)}; {compare.message()}")
    session.check("no TensorFlow in napari's process",
                  "tensorflow" not in sys.modules and "keras" not in sys.modules)
    pump(0.2)
    session.info["seconds"]["total"] = time.monotonic() - T0


QTimer.singleShot(300, drive)
napari.run()

"""A stand-in for napari's process (run by ``test_training_process.py``; not collected):
trains in a worker with a long plan and, after the first batch, prints the worker's pid
and then either waits to be killed (``kill``) or exits normally while the run goes on in a
thread (``exit``: the exit handler must stop the worker and wait for it to save).

    python train_parent.py kill|exit OUTDIR
"""

import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from napari_care_losses.training.jobs import PreviewRequest  # noqa: E402
from napari_care_losses.training.trainer import BatchEnd, StopFlag  # noqa: E402
from napari_care_losses.workers.training_runs import run_jobs_in_process  # noqa: E402
from tests.conftest import tiny_config  # noqa: E402
from tests.workers.processes import workers  # noqa: E402

mode, outdir = sys.argv[1], Path(sys.argv[2])
from napari_care_losses.sample_data import load_sample  # noqa: E402

low, high = (a[:2] for a in load_sample(0, "train"))
first_batch = threading.Event()


def run() -> None:
    for item in run_jobs_in_process(low, high, ("low", "high"),
                                    [tiny_config("mae", epochs=500)], outdir, StopFlag(),
                                    PreviewRequest()):
        if isinstance(item.event, BatchEnd):
            first_batch.set()


threading.Thread(target=run, daemon=True).start()
first_batch.wait(300)
print(" ".join(map(str, workers())), flush=True)
if mode == "kill":
    time.sleep(600)  # killed by the test
sys.stdout.flush()
sys.exit(0)  # the exit handler runs with the worker still training

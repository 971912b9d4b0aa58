"""The docks' worker processes: TensorFlow never loads in napari's process.

``protocol`` (requests, control messages and events: frozen dataclasses; the path of one
event before and after), ``serve`` (the worker, ``python -m
napari_care_losses.workers.serve``: one serve loop), ``client`` (napari's side: start with
a hello watchdog, the socket, the end), ``training_runs`` (:func:`run_jobs_in_process`, the
training dock) and ``restore_runs`` (:class:`RestoreProcess`, the compare dock).
"""

"""The worker processes this test process started (Linux: read from /proc)."""

from __future__ import annotations

import os
from pathlib import Path

SERVE = b"napari_care_losses.workers.serve"


def child_processes(parent: int | None = None) -> dict[int, bytes]:
    """pid → command line (NUL-separated) of every live child of ``parent``."""
    parent = os.getpid() if parent is None else parent
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:  # ended meanwhile
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) == parent and fields[0] != "Z":
            found[int(entry.name)] = cmdline
    return found


def workers(parent: int | None = None) -> list[int]:
    """The live worker processes (``python -m napari_care_losses.workers.serve``)."""
    return [pid for pid, cmd in child_processes(parent).items() if SERVE in cmd]

"""napari's side of a worker process (:mod:`.protocol`): start, watchdog, requests, end.

:class:`WorkerClient` starts ``python -m napari_care_losses.workers.serve`` with
:mod:`subprocess` (never ``multiprocessing``, whose ``spawn`` re-runs the user's
``__main__``), hands it one end of a socket pair, and waits at most
:func:`start_limit_s` seconds (``NAPARI_CARE_LOSSES_WORKER_START_S``, default 60) for its
:class:`.protocol.Hello`; a worker that does not say hello in time is killed and the run
ends with one line naming the reason and the tail of the worker's output. The worker's
stdout and stderr go to a temporary log file, whose tail is shown whenever it fails.

:meth:`WorkerClient.replies` is a plain generator that reads the socket itself
(:func:`multiprocessing.connection.wait` with a timeout of :data:`POLL_S`, calling back in
between so Stop and the preview frame are passed on): no pump thread, no second queue. A
worker that dies reads as end-of-file and raises :class:`WorkerFailed` with its exit
status and log tail. Training workers are registered for napari's exit, which asks them to
stop and waits :data:`EXIT_GRACE_S` seconds for them to save their models.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from multiprocessing.connection import Connection, wait
from pathlib import Path

from .protocol import Done, Hello, Stop

#: Seconds between checks of Stop, the preview frame and the worker's health.
POLL_S = 0.1
#: Seconds napari's exit waits for a stopping training worker to finish its batch and save.
EXIT_GRACE_S = 120.0
#: Seconds a closed worker gets to finish its frame and exit before it is killed.
CLOSE_S = 5.0
#: The worker command (tests replace it); ``--fd N --nice K`` are appended. ``-P``: the
#: working directory (kept, for relative paths) is not put on ``sys.path``, so a user's
#: file named like a module cannot shadow it; the package comes from ``PYTHONPATH``.
SERVE_COMMAND = [sys.executable, "-P", "-m", "napari_care_losses.workers.serve"]
#: Lines of the worker's log shown in a failure's details.
LOG_TAIL_LINES = 20

_LIVE: weakref.WeakSet = weakref.WeakSet()  # workers to end at napari's exit


def start_limit_s() -> float:
    """Seconds a worker may take to say hello (TensorFlow's import is ~5 s)."""
    try:
        return float(os.environ.get("NAPARI_CARE_LOSSES_WORKER_START_S", "60"))
    except ValueError:
        return 60.0


class WorkerFailed(RuntimeError):
    """The worker did not start, or died: ``str`` is one line, ``log`` its last output."""

    def __init__(self, message: str, log: str = "") -> None:
        super().__init__(message)
        self.log = log


def died_message(exitcode: int | None, role: str = "training") -> str:
    if exitcode is not None and exitcode < 0:
        hint = " (killed: out of memory?)" if exitcode == -9 else ""
        return f"the {role} process was ended by signal {-exitcode}{hint}"
    return f"the {role} process exited unexpectedly (exit code {exitcode})"


class WorkerClient:
    """One worker process: :meth:`start`, :meth:`send`, :meth:`replies`, :meth:`close`."""

    def __init__(self, role: str, nice: int = 0, save_on_exit: bool = False) -> None:
        self.role = role  # "training", "restore": how messages name the process
        self.nice = nice
        self.save_on_exit = save_on_exit  # napari's exit: Stop, then wait EXIT_GRACE_S
        self.proc: subprocess.Popen | None = None
        self.conn: Connection | None = None
        self._sock: socket.socket | None = None
        self._log: Path | None = None
        self._send_lock = threading.Lock()
        self.closing = False

    # ------------------------------------------------------------------ start

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.alive else None

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self, cancel: Callable[[], bool] | None = None) -> bool:
        """Start the worker and wait for its hello; False if ``cancel()`` came first.
        Raises :class:`WorkerFailed` (the worker is ended) if it died or was too slow."""
        ours, theirs = socket.socketpair()
        fd, log = tempfile.mkstemp(prefix=f"care-{self.role}-", suffix=".log")
        self._log = Path(log)
        env = dict(os.environ)
        root = str(Path(__file__).resolve().parents[2])  # the package napari imported
        env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
        env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # no TensorFlow chatter in the log
        env["KERAS_BACKEND"] = "tensorflow"  # bioimageio.core may have set "torch" here
        try:
            with os.fdopen(fd, "wb") as out:
                self.proc = subprocess.Popen(
                    [*SERVE_COMMAND, "--fd", str(theirs.fileno()), "--nice", str(self.nice)],
                    pass_fds=(theirs.fileno(),), stdin=subprocess.DEVNULL, stdout=out,
                    stderr=subprocess.STDOUT, env=env)
        except OSError as exc:  # no such interpreter, no file descriptors left, …
            ours.close()
            self._remove_log()
            raise WorkerFailed(f"the {self.role} process could not be started: {exc}") from None
        except BaseException:
            ours.close()
            self._remove_log()
            raise
        finally:
            theirs.close()  # the worker holds the only other end: its death reads as EOF
        self._sock = ours
        self.conn = Connection(os.dup(ours.fileno()))
        _LIVE.add(self)
        limit = start_limit_s()
        deadline = time.monotonic() + limit
        while True:
            if cancel is not None and cancel():
                self.close(kill=True)
                return False
            left = deadline - time.monotonic()
            if left <= 0:
                self.close(kill=True, keep_log=True)
                raise self._failed(f"the {self.role} process did not start within {limit:g} s"
                                   " (no hello) and was ended")
            if not wait([self.conn], min(left, POLL_S)):
                continue
            try:
                message = self.conn.recv()
            except (EOFError, OSError):
                raise self._died(" while starting") from None
            if isinstance(message, Hello):
                return True

    # ------------------------------------------------------------------ talk

    def send(self, message: object) -> None:
        """Send a request or control message (from any thread)."""
        with self._send_lock:
            self.conn.send(message)

    def replies(self, poll: Callable[[], None] | None = None) -> Iterator:
        """Yield the worker's events for the request just sent, up to :class:`Done`;
        ``poll()`` runs between reads. Raises :class:`WorkerFailed` if the worker dies."""
        while True:
            if poll is not None:
                poll()
            if not wait([self.conn], POLL_S):
                continue
            try:
                message = self.conn.recv()
            except (EOFError, OSError):  # what it sent before it died was read first
                if self.closing:
                    return
                raise self._died() from None
            if isinstance(message, Done):
                return
            yield message

    def stop(self) -> None:
        """Ask the running request to stop (training: after its batch, saving its model)."""
        if self.alive:
            with contextlib.suppress(OSError):
                self.send(Stop())

    # ------------------------------------------------------------------ end

    def close(self, wait_s: float = CLOSE_S, kill: bool = False,
              keep_log: bool = False) -> None:
        """Close napari's end (the worker finishes its batch or frame, then exits), wait
        ``wait_s`` seconds for it, then kill it; ``kill``: at once."""
        self.closing = True
        _LIVE.discard(self)
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.shutdown(socket.SHUT_RDWR)  # EOF at the worker, and here
        if self.proc is not None:
            if not kill:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self.proc.wait(wait_s)
            if self.proc.poll() is None:
                self.proc.kill()
            self.proc.wait()
        for end in (self.conn, self._sock):
            if end is not None:
                with contextlib.suppress(OSError):
                    end.close()
        if not keep_log:
            self._remove_log()

    def _died(self, when: str = "") -> WorkerFailed:
        """The worker's end closed: wait for its exit status, then end everything."""
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(CLOSE_S)
        self.close(kill=True, keep_log=True)
        return self._failed(died_message(self.proc.returncode, self.role) + when)

    def _failed(self, reason: str) -> WorkerFailed:
        """One line: the reason and the last line the worker wrote; the tail as ``log``."""
        tail = self.log_tail()
        self._remove_log()
        last = tail.splitlines()[-1].strip() if tail else ""
        said = f"; its last output: {last[:300]}" if last else "; it wrote no output"
        return WorkerFailed(reason + said, tail)

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        try:
            with open(self._log, "rb") as fh:
                fh.seek(0, os.SEEK_END)
                fh.seek(max(0, fh.tell() - 16384))
                text = fh.read().decode("utf-8", "replace")
        except (OSError, TypeError):
            return ""
        kept = [line for line in text.splitlines() if line.strip()]
        return "\n".join(kept[-lines:])

    def _remove_log(self) -> None:
        if self._log is not None:
            with contextlib.suppress(OSError):
                self._log.unlink()
            self._log = None


@atexit.register
def _end_workers() -> None:
    """At napari's exit: ask training workers to stop and give them time to save, then
    end the others (a restore has nothing to save)."""
    workers = list(_LIVE)
    for worker in workers:
        if worker.save_on_exit:
            worker.stop()
    for worker in workers:
        worker.close(EXIT_GRACE_S if worker.save_on_exit else CLOSE_S)

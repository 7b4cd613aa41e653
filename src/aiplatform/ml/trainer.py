"""The training child process:

    python -m aiplatform.ml.trainer SPEC_PATH
    accelerate launch [accelerate options] -m aiplatform.ml.trainer SPEC_PATH

SPEC_PATH holds a TrainingSpec as JSON. The process reports on stdout in JSON lines, one event
per line, flushed at once; everything else that would go to stdout (library output, prints) is
sent to stderr. Events: started, progress, metrics, log, checkpoint, then one of
completed (exit 0), interrupted (exit 75) or error (exit 1).

SIGTERM asks for a stop: the current step finishes, a checkpoint is saved and reported, then
`interrupted`. A closed stdout means the parent is gone: the process exits at once, as it does
when it is orphaned (its parent process changes) while not already stopping.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any, BinaryIO, Final

import msgspec

from aiplatform.ml.training import Emit, TrainingSpec, train

EXIT_FAILED: Final = 1
EXIT_INTERRUPTED: Final = 75  # EX_TEMPFAIL: stopped on request, resumable from the checkpoint
EXIT_PARENT_GONE: Final = 141  # as a shell reports a process killed by SIGPIPE
_PARENT_POLL_S = 0.5
# An orphan whose stop was requested (a process-group SIGTERM may kill the launcher first) is
# given this long to save its checkpoint: the job's runner may still be reading its output.
_STOP_GRACE_S = 120.0

__all__ = ["JsonLines", "TrainingSpec", "main", "train"]


class JsonLines:
    """Writes events as JSON lines to a binary stream, each flushed on its own. A write to a
    closed pipe ends the process: nobody is left to read what it would report."""

    def __init__(self, stream: BinaryIO) -> None:
        self.stream = stream
        self.encoder = msgspec.json.Encoder()
        self.last_type: str | None = None

    def __call__(self, event: dict[str, Any]) -> None:
        try:
            self.stream.write(self.encoder.encode(event) + b"\n")
            self.stream.flush()
        except BrokenPipeError:
            os._exit(EXIT_PARENT_GONE)
        self.last_type = event["type"]


def claim_stdout() -> BinaryIO:
    """The real stdout, for events only; file descriptor 1 then points at stderr, so that
    whatever else writes to stdout, Python or native code, cannot break the protocol."""
    sys.stdout.flush()
    events = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    return events


def watch_parent(stopping: threading.Event) -> None:
    """Exits the process once its parent has changed (the parent died)."""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(_PARENT_POLL_S)
        # A SIGTERM that killed the parent too may not have been handled here yet.
        if stopping.wait(_PARENT_POLL_S):
            time.sleep(_STOP_GRACE_S)
        os._exit(EXIT_PARENT_GONE)

    threading.Thread(target=watch, name="parent-watchdog", daemon=True).start()


def run(spec_path: Path, emit: Emit, stopping: threading.Event) -> int:
    try:
        spec = msgspec.json.decode(spec_path.read_bytes(), type=TrainingSpec)
        train(spec, emit, stop_requested=stopping.is_set)
    except Exception as error:
        # Every process reports its own failure: one that fails alone would otherwise leave
        # the others waiting for it in silence.
        emit(
            {
                "type": "error",
                "error": f"{type(error).__name__}: {error}",
                "traceback": traceback.format_exc(),
            }
        )
        return EXIT_FAILED
    return 0


def main(argv: list[str] | None = None) -> int:
    arguments = sys.argv[1:] if argv is None else argv
    if len(arguments) != 1:
        print("usage: python -m aiplatform.ml.trainer SPEC_PATH", file=sys.stderr)
        return 2
    emit = JsonLines(claim_stdout())
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda _signum, _frame: stopping.set())
    watch_parent(stopping)
    code = run(Path(arguments[0]), emit, stopping)
    return EXIT_INTERRUPTED if code == 0 and emit.last_type == "interrupted" else code


if __name__ == "__main__":
    sys.exit(main())

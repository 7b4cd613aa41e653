"""Child processes of `aiplatform up`: started together, stopped together, none left behind."""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import psutil

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """Runs in the child before exec: if `up` itself is killed, the kernel sends SIGTERM."""
    os.setsid()
    with suppress(AttributeError, OSError):  # not Linux: the orderly stop still applies
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


@dataclass
class Child:
    name: str
    process: subprocess.Popen[bytes]


def start(
    name: str, arguments: Sequence[str], env: Mapping[str, str], output: Path | None = None
) -> Child:
    """Starts `aiplatform <arguments>` in its own session, so a terminal's Ctrl-C reaches only
    `up`, which then stops the children in order. `output`: a file for its stdout and stderr
    (default: this process's)."""
    command = [sys.executable, "-m", "aiplatform", *arguments]
    preexec: Callable[[], None] = _die_with_parent
    with ExitStack() as files:
        log = files.enter_context(output.open("ab")) if output is not None else None
        process = subprocess.Popen(
            command,
            env=dict(env),
            preexec_fn=preexec,
            stdout=log,
            stderr=subprocess.STDOUT if log is not None else None,
        )
    return Child(name, process)


@contextmanager
def running(
    name: str,
    arguments: Sequence[str],
    env: Mapping[str, str],
    output: Path | None = None,
    stop_timeout_s: float = 10.0,
) -> Iterator[Child]:
    """One child for the length of a block (tests, benchmarks): stopped as `up` stops its
    children, however the block ends."""
    child = start(name, arguments, env, output)
    try:
        yield child
    finally:
        stop_all([child], stop_timeout_s)


def stop_all(children: Sequence[Child], timeout_s: float) -> list[str]:
    """SIGTERM to every child, then SIGKILL to the process group of whatever is left at the
    deadline. Returns the names of children that had to be killed.

    Only the child itself gets the SIGTERM: Dramatiq's main process forwards it to its worker
    processes, and a worker that receives a second SIGTERM abandons its graceful stop."""
    deadline = time.monotonic() + timeout_s
    groups: dict[str, list[psutil.Process]] = {}
    for child in children:
        groups[child.name] = _process_tree(child.process.pid)
        with suppress(ProcessLookupError):
            child.process.send_signal(signal.SIGTERM)
    killed = []
    for child in children:
        try:
            child.process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            killed.append(child.name)
            _signal_group(child.process.pid, signal.SIGKILL)
            child.process.wait()
        # Grandchildren (Dramatiq's worker processes) must go with their parent.
        _, alive = psutil.wait_procs(
            groups[child.name], timeout=max(0.1, deadline - time.monotonic())
        )
        for process in alive:
            with suppress(psutil.NoSuchProcess):
                process.kill()
    return killed


def _process_tree(pid: int) -> list[psutil.Process]:
    try:
        children: list[psutil.Process] = psutil.Process(pid).children(recursive=True)
        return children
    except psutil.NoSuchProcess:
        return []


def _signal_group(pid: int, signum: signal.Signals) -> None:
    with suppress(ProcessLookupError):
        os.killpg(pid, signum)

"""The trainer child process: launched through `accelerate launch`, supervised, stopped.

The trainer (`aiplatform.ml.trainer`) writes one JSON object per line on stdout; this module
starts it in its own session (so a cancel can kill the launcher, the trainer and anything they
started as one process group), reads its lines, and enforces cancel and the time limit. It knows
nothing about events: `TrainingRun` turns the lines into them.
"""

from __future__ import annotations

import asyncio
import ctypes
import json
import logging
import os
import shlex
import signal
import sys
from collections.abc import Awaitable, Callable
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

log = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1
# A trainer's line can carry a traceback or a large metrics dict; asyncio's 64 KiB default is
# too little.
_LINE_LIMIT = 16 << 20
_STDERR_TAIL_BYTES = 4_000

# The process groups of the trainers this worker process runs, for a graceful stop; and
# whether one began (a trainer started after it is asked to stop at once).
_running_groups: set[int] = set()
_stopping = False


def stop_trainers() -> int:
    """Asks every trainer of this process to stop: SIGTERM to its group makes it finish the
    step, save a checkpoint and exit as interrupted, so its job is retried and resumes from
    that checkpoint on another worker. Returns how many were asked."""
    global _stopping
    _stopping = True
    for group in list(_running_groups):
        with suppress(ProcessLookupError, PermissionError):
            os.killpg(group, signal.SIGTERM)
    return len(_running_groups)


@dataclass(frozen=True)
class LaunchPlan:
    accelerate: list[str]  # `accelerate launch` options
    devices: list[str]  # what the job will run on, as recorded in JobStarted


def launch_plan(configured: str | None) -> LaunchPlan:
    """The configured `accelerate launch` options, else one process per visible NVIDIA GPU
    (NVML tells without importing torch), else one CPU process."""
    gpus = _nvidia_gpu_count()
    if configured:
        arguments = shlex.split(configured)
        on_cpu = "--cpu" in arguments or gpus == 0
        return LaunchPlan(arguments, ["cpu"] if on_cpu else [f"cuda:{i}" for i in range(gpus)])
    common = ["--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"]
    if gpus > 1:
        arguments = ["--multi_gpu", "--num_processes", str(gpus), *common]
        return LaunchPlan(arguments, [f"cuda:{i}" for i in range(gpus)])
    if gpus == 1:
        return LaunchPlan(["--num_processes", "1", *common], ["cuda:0"])
    threads = str(os.cpu_count() or 1)
    arguments = ["--cpu", "--num_processes", "1", "--num_cpu_threads_per_process", threads]
    return LaunchPlan([*arguments, *common], ["cpu"])


def _nvidia_gpu_count() -> int:
    try:
        import pynvml

        pynvml.nvmlInit()
        try:
            return int(pynvml.nvmlDeviceGetCount())
        finally:
            pynvml.nvmlShutdown()
    except Exception:  # no driver, no library: a CPU machine
        return 0


def _own_session_dying_with_parent() -> None:
    """In the child before exec: a process group of its own, and SIGKILL if the worker dies
    (the trainer notices its parent is gone and stops too)."""
    os.setsid()
    with suppress(AttributeError, OSError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


@dataclass
class Usage:
    """The child tree's peak memory and CPU time, sampled while it runs."""

    peak_memory_bytes: int = 0
    cpu_seconds: float = 0.0
    _seen: dict[int, float] = field(default_factory=dict)

    def sample(self, pid: int) -> None:
        try:
            root = psutil.Process(pid)
            tree = [root, *root.children(recursive=True)]
        except psutil.Error:
            return
        memory = 0
        for process in tree:
            with suppress(psutil.Error):
                memory += process.memory_info().rss
                times = process.cpu_times()
                self._seen[process.pid] = times.user + times.system
        self.peak_memory_bytes = max(self.peak_memory_bytes, memory)
        self.cpu_seconds = sum(self._seen.values())


@dataclass(frozen=True)
class Exit:
    """How the trainer ended. `stopped_by` says why this side stopped it, if it did."""

    returncode: int
    stopped_by: str | None  # "cancel", "time limit", or None
    stderr_tail: str


LineHandler = Callable[[dict[str, Any]], Awaitable[None]]


@dataclass
class TrainerProcess:
    spec_path: Path
    stderr_path: Path
    accelerate: list[str]
    time_limit_s: float
    soft_warning: Callable[[float], Awaitable[None]]
    should_stop: Callable[[], Awaitable[bool]]
    poll_interval_s: float = 0.5
    usage: Usage = field(default_factory=Usage)

    def command(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "accelerate.commands.launch",
            *self.accelerate,
            "-m",
            "aiplatform.ml.trainer",
            str(self.spec_path),
        ]

    async def run(self, on_line: LineHandler) -> Exit:
        with self.stderr_path.open("ab") as stderr:
            process = await asyncio.create_subprocess_exec(
                *self.command(),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=stderr,
                limit=_LINE_LIMIT,
                preexec_fn=_own_session_dying_with_parent,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        _running_groups.add(process.pid)
        if _stopping:
            with suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGTERM)
        reader = asyncio.create_task(self._read(process, on_line))
        try:
            stopped_by = await self._watch(process, reader)
            await reader
            returncode = await process.wait()
        except BaseException:
            _kill_group(process.pid)
            reader.cancel()
            with suppress(BaseException):
                await reader
            raise
        finally:
            _running_groups.discard(process.pid)
        return Exit(returncode, stopped_by, _tail(self.stderr_path))

    async def _read(self, process: asyncio.subprocess.Process, on_line: LineHandler) -> None:
        assert process.stdout is not None
        async for raw in process.stdout:
            try:
                message = json.loads(raw)
            except ValueError:
                log.warning("trainer wrote a line that is not JSON: %r", raw[:200])
                continue
            if isinstance(message, dict):
                await on_line(message)

    async def _watch(
        self, process: asyncio.subprocess.Process, reader: asyncio.Task[None]
    ) -> str | None:
        loop = asyncio.get_running_loop()
        started = loop.time()
        warned = False
        while not reader.done():
            await asyncio.wait({reader}, timeout=self.poll_interval_s)
            self.usage.sample(process.pid)
            elapsed = loop.time() - started
            if elapsed >= self.time_limit_s:
                _kill_group(process.pid)
                return "time limit"
            if not warned and elapsed >= self.time_limit_s * 0.9:
                warned = True
                await self.soft_warning(self.time_limit_s - elapsed)
            if await self.should_stop():
                _kill_group(process.pid)
                return "cancel"
        return None


def _kill_group(pid: int) -> None:
    """SIGKILL to the trainer's process group, and to any descendant that left it."""
    try:
        descendants = psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        descendants = []
    with suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)
    for process in descendants:
        with suppress(psutil.Error):
            process.kill()


def _tail(path: Path) -> str:
    with suppress(OSError), path.open("rb") as file:
        file.seek(0, os.SEEK_END)
        file.seek(max(0, file.tell() - _STDERR_TAIL_BYTES))
        return file.read().decode("utf-8", "replace")
    return ""

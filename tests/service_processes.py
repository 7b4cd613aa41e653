"""Platform services as separate OS processes, started and stopped as a container runtime
does: `aiplatform <command>` with the run's settings in its environment, SIGTERM to the main
process only, SIGKILL to whatever is left after the grace period."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil
import pytest

READY_WITHIN_S = 90


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start_service(arguments: list[str], log_path: Path, **env: str) -> subprocess.Popen[bytes]:
    """`aiplatform <arguments>` in a session of its own, its output kept in `log_path`."""
    with log_path.open("ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "aiplatform", *arguments],
            env={**os.environ, **env},
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def start_api(log_path: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    process = start_service(["api", "--host", "127.0.0.1", "--port", str(port)], log_path)
    return process, f"http://127.0.0.1:{port}"


def wait_ready(base: str, process: subprocess.Popen[bytes], log_path: Path) -> None:
    deadline = time.monotonic() + READY_WITHIN_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"{base} exited ({process.returncode}): {log_path.read_text()[-3000:]}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{base}/ready", timeout=5).status_code == 200:
                return
        time.sleep(0.5)
    pytest.fail(f"{base}/ready was not 200 within {READY_WITHIN_S} s")


def terminate(process: subprocess.Popen[bytes], grace_s: float) -> int | None:
    """SIGTERM to the main process, as `docker stop` and Kubernetes send it. Returns its exit
    code, or None when it had to be killed after `grace_s`. Its whole tree goes in the end."""
    try:
        tree = psutil.Process(process.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        tree = []
    with contextlib.suppress(ProcessLookupError):
        process.send_signal(signal.SIGTERM)
    code: int | None
    try:
        code = process.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        code = None
    kill_tree(process, tree)
    return code


def kill_tree(process: subprocess.Popen[bytes], tree: list[psutil.Process] | None = None) -> None:
    if tree is None:
        try:
            tree = psutil.Process(process.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            tree = []
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    for child in tree:
        with contextlib.suppress(psutil.NoSuchProcess):
            child.kill()
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=10)

"""The `aiplatform` command as a user runs it: `up` with no configuration at all (embedded
PostgreSQL and Redis), a project through real HTTP, and a clean stop; `migrate` twice."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import psutil
import pytest

from aiplatform.config import Settings

READY_WITHIN_S = 60
STOP_WITHIN_S = 10


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def clean_environment(data_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIPLATFORM_")}
    env["HOME"] = str(data_dir.parent)  # nothing of the user's own platform is touched
    return env


def wait_ready(base: str, process: subprocess.Popen[bytes]) -> float:
    started = time.monotonic()
    while time.monotonic() - started < READY_WITHIN_S:
        assert process.poll() is None, "aiplatform up exited before it was ready"
        try:
            if httpx.get(f"{base}/ready", timeout=2).status_code == 200:
                return time.monotonic() - started
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    pytest.fail(f"/ready was not 200 within {READY_WITHIN_S} s")


def first_admin_password(lines: list[str]) -> str:
    """`up` prints the generated password of the first admin once, on a fresh data dir."""
    for line in lines:
        match = re.search(r"Log in as 'admin' with the password (\S+)", line)
        if match:
            return match.group(1)
    pytest.fail(f"no admin password printed: {''.join(lines)}")


def descendants(pid: int) -> list[psutil.Process]:
    return psutil.Process(pid).children(recursive=True)


def platform_processes(data_dir: Path, pids: set[int]) -> list[psutil.Process]:
    """Processes left of this run: the children seen while it ran, or anything working in
    its data directory (the embedded PostgreSQL and Redis)."""
    left = []
    for process in psutil.process_iter(["pid", "cmdline"]):
        try:
            cmdline = " ".join(process.info["cmdline"] or [])
            if (
                process.pid in pids
                or str(data_dir) in cmdline
                or Path(process.cwd()).is_relative_to(data_dir)
            ):
                left.append(process)
        except psutil.Error:
            continue
    return left


@pytest.mark.slow
def test_up_with_no_configuration_serves_projects_and_stops_cleanly(tmp_path: Path) -> None:
    data_dir = tmp_path / "platform-data"
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "aiplatform",
            "up",
            "--port",
            str(port),
            "--data-dir",
            str(data_dir),
        ],
        env=clean_environment(data_dir),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    lines: list[str] = []
    assert process.stdout is not None
    reader = threading.Thread(
        target=lambda: lines.extend(line.decode() for line in process.stdout), daemon=True
    )
    reader.start()
    children: set[int] = set()
    try:
        wait_ready(base, process)
        children = {p.pid for p in descendants(process.pid)}
        password = first_admin_password(lines)
        token = httpx.post(
            f"{base}/api/v2/auth/token", json={"username": "admin", "password": password}
        ).json()["data"]["access_token"]
        with httpx.Client(
            base_url=f"{base}/api/v2", timeout=10, headers={"Authorization": f"Bearer {token}"}
        ) as http:
            created = http.post("/projects", json={"name": "end to end", "tags": ["e2e"]})
            assert created.status_code == 201, created.text
            project = created.json()["data"]
            position = created.json()["meta"]["position"]
            read = http.get(f"/projects/{project['id']}", params={"after": position})
            assert read.json()["data"]["name"] == "end to end"
            listed = http.get("/projects", params={"tag": "e2e"}).json()
            assert [p["id"] for p in listed["data"]] == [project["id"]]
            updated = http.put(
                f"/projects/{project['id']}",
                json={"description": "now described"},
                headers={"If-Match": "1"},
            )
            assert updated.status_code == 200
            history = http.get(f"/projects/{project['id']}/history").json()
            assert [e["type"] for e in history["data"]] == ["ProjectCreated", "ProjectUpdated"]
        assert httpx.get(f"{base}/schema/openapi.json").status_code == 200
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=STOP_WITHIN_S)
        except subprocess.TimeoutExpired:
            process.kill()
            pytest.fail(f"aiplatform up did not stop within {STOP_WITHIN_S} s")
    reader.join(timeout=5)
    output = "".join(lines)
    assert process.returncode == 0, output
    assert "AI Platform stopped" in output
    time.sleep(0.5)
    left = platform_processes(data_dir, children)
    assert not left, f"left behind: {[p.info for p in left]}"


@pytest.mark.slow
def test_migrate_is_idempotent(settings: Settings) -> None:
    env = {**os.environ, "AIPLATFORM_DATABASE_URL": settings.require_database_url()}
    for _ in range(2):
        result = subprocess.run(
            [sys.executable, "-m", "aiplatform", "migrate"],
            env=env,
            capture_output=True,
            timeout=60,
        )
        assert result.returncode == 0, result.stderr.decode()
        assert b"event store migrated" in result.stdout


def test_a_bad_setting_is_a_clear_message_not_a_traceback() -> None:
    env = {**os.environ, "AIPLATFORM_DATABASE_URL": "mysql://nope"}
    result = subprocess.run(
        [sys.executable, "-m", "aiplatform", "migrate"], env=env, capture_output=True, timeout=30
    )
    assert result.returncode == 2
    assert b"must start with postgresql://" in result.stderr
    assert b"Traceback" not in result.stderr


@pytest.mark.slow
def test_create_admin_creates_or_promotes_and_never_prints_the_password(settings: Settings) -> None:
    env = {**os.environ, "AIPLATFORM_DATABASE_URL": settings.require_database_url()}
    password = "Cli-admin-pass-42"
    username = f"cliadmin{os.getpid()}"
    outputs = []
    for _ in range(2):
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "aiplatform",
                "create-admin",
                "--username",
                username,
                "--password",
                password,
                "--email",
                f"{username}@example.com",
            ],
            env=env,
            capture_output=True,
            timeout=60,
        )
        assert result.returncode == 0, result.stderr.decode()
        outputs.append(result.stdout.decode() + result.stderr.decode())
    assert "created" in outputs[0]
    assert "promoted" in outputs[1]
    assert all(password not in output for output in outputs)
    weak = subprocess.run(
        [
            sys.executable,
            "-m",
            "aiplatform",
            "create-admin",
            "--username",
            "weak" + username,
            "--password",
            "short",
            "--email",
            "w@example.com",
        ],
        env=env,
        capture_output=True,
        timeout=60,
    )
    assert weak.returncode == 2
    assert b"at least 10 characters" in weak.stderr
    assert b"Traceback" not in weak.stderr

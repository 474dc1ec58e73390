"""The sample app under gunicorn on 127.0.0.1: serves, injects faults, refuses bad settings."""

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

APP_DIR = Path(__file__).resolve().parent.parent / "sample-app"
GUNICORN = Path(sys.executable).with_name("gunicorn")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _gunicorn(port: int, **env: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [str(GUNICORN), "--config", "gunicorn.conf.py", "--bind", f"127.0.0.1:{port}", "app:create_app()"],
        cwd=APP_DIR,
        env={**os.environ, "APP_VERSION": "feedbee", **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _wait_until_serving(proc: subprocess.Popen[str], url: str, deadline_s: float = 20) -> None:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"gunicorn exited early: {proc.stdout.read() if proc.stdout else ''}")
        try:
            requests.get(url, timeout=1)
        except requests.ConnectionError:
            time.sleep(0.05)  # polling an external process: nothing to await
        else:
            return
    pytest.fail("gunicorn did not start serving in time")


def _serve(**env: str) -> Iterator[str]:
    port = _free_port()
    proc = _gunicorn(port, **env)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_until_serving(proc, url + "/version")
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=15)


@pytest.fixture(scope="module")
def healthy_app() -> Iterator[str]:
    yield from _serve()


@pytest.fixture(scope="module")
def failing_health_app() -> Iterator[str]:
    yield from _serve(FAULT_HEALTH_FAIL="true", FAULT_ERROR_RATE="1")


def test_gunicorn_serves_health_and_version(healthy_app: str) -> None:
    health = requests.get(healthy_app + "/health", timeout=5)
    assert health.status_code == 200
    assert health.json() == {"status": "healthy", "version": "feedbee"}
    assert requests.get(healthy_app + "/", timeout=5).json()["version"] == "feedbee"


def test_gunicorn_serves_concurrent_requests(healthy_app: str) -> None:
    with requests.Session() as session:
        codes = {session.get(healthy_app + "/", timeout=5).status_code for _ in range(30)}
    assert codes == {200}


def test_fault_modes_apply_under_gunicorn(failing_health_app: str) -> None:
    assert requests.get(failing_health_app + "/health", timeout=5).status_code == 500
    assert requests.get(failing_health_app + "/", timeout=5).status_code == 500


def test_bad_setting_stops_gunicorn_with_one_clear_line() -> None:
    proc = _gunicorn(_free_port(), FAULT_ERROR_RATE="1.5")
    output, _ = proc.communicate(timeout=30)
    assert proc.returncode != 0
    assert "sample-app cannot start: FAULT_ERROR_RATE must be a number between 0 and 1, got '1.5'" in output
    assert "Traceback" not in output

"""``vestis serve --catalog DIR`` starts on the bundled model, says it is open, answers, and stops."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import httpx2

from .conftest import REPO_ROOT


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_vestis_serve_starts_on_the_bundled_model(index_dir):
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "VESTIS_API_KEYS"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "vestis", "serve", "--catalog", str(index_dir), "--port", str(port)],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        ready = None
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                ready = httpx2.get(f"http://127.0.0.1:{port}/readyz", timeout=2)
                if ready.status_code == 200:
                    break
            except httpx2.TransportError:
                pass
            time.sleep(0.3)
        assert ready is not None and ready.json()["status"] == "ready", proc.poll()
        assert ready.json()["model"] == "vestis-mini" and ready.json()["catalogs"] == ["shop"]
        out = httpx2.post(f"http://127.0.0.1:{port}/v1/search", json={"query": "jeans", "k": 3}, timeout=30).json()
        assert out["results"][0]["metadata"]["articleType"] == "Jeans"
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            log, _ = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            log, _ = proc.communicate()
    assert "no API keys configured" in log and "loopback only" in log
    assert f"http://127.0.0.1:{port}" in log and "Traceback" not in log

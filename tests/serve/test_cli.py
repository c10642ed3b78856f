"""``vestis serve --catalog DIR`` starts on the bundled model, says it is open, answers, and stops;
``vestis serve --config FILE`` takes its settings from a file."""

from __future__ import annotations

import contextlib
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


@contextlib.contextmanager
def vestis_serve(*args: str, port: int):
    """A ``vestis serve`` process, ready; yields a dict that holds its log once it has stopped."""
    env = {k: v for k, v in os.environ.items() if k != "VESTIS_API_KEYS"}
    proc = subprocess.Popen([sys.executable, "-m", "vestis", "serve", *args], cwd=REPO_ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)  # fmt: skip
    result: dict = {}
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
        result["ready"] = ready.json()
        yield result
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            result["log"], _ = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            result["log"], _ = proc.communicate()


def test_vestis_serve_starts_on_the_bundled_model(index_dir):
    port = free_port()
    with vestis_serve("--catalog", str(index_dir), "--port", str(port), port=port) as served:
        assert served["ready"]["model"] == "vestis-mini" and served["ready"]["catalogs"] == ["shop"]
        out = httpx2.post(f"http://127.0.0.1:{port}/v1/search", json={"query": "jeans", "k": 3}, timeout=30).json()
        assert out["results"][0]["metadata"]["articleType"] == "Jeans"
    log = served["log"]
    assert "no API keys configured" in log and "loopback only" in log
    assert f"http://127.0.0.1:{port}" in log and "Traceback" not in log


def test_vestis_serve_config_file(index_dir, tmp_path):
    port, other = free_port(), free_port()
    (tmp_path / "keys.txt").write_text("a-key-of-the-deployment-0123\n")
    rel = os.path.relpath(index_dir, tmp_path)  # paths in the file are relative to the file
    (tmp_path / "serve.yaml").write_text(
        f"catalog: {rel}\nport: {other}\nmax-batch: 8\nmax-wait-ms: 1\napi-keys-file: keys.txt\n"
    )
    with vestis_serve("--config", str(tmp_path / "serve.yaml"), "--port", str(port), port=port) as served:
        assert served["ready"]["catalogs"] == ["shop"]  # --port on the command line wins over the file's
        auth = {"Authorization": "Bearer a-key-of-the-deployment-0123"}
        assert httpx2.get(f"http://127.0.0.1:{port}/v1/stats", timeout=10).status_code == 401
        stats = httpx2.get(f"http://127.0.0.1:{port}/v1/stats", headers=auth, timeout=10).json()
        assert stats["max_batch"] == 8 and stats["max_wait_ms"] == 1
    assert "1 API key(s) configured" in served["log"] and "Traceback" not in served["log"]


def test_a_bad_config_file_is_one_clear_line(tmp_path):
    (tmp_path / "serve.yaml").write_text("max-batch: 0\nprot: 80\n")
    proc = subprocess.run([sys.executable, "-m", "vestis", "serve", "--config", str(tmp_path / "serve.yaml")],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert "serve.yaml" in proc.stderr and "max_batch" in proc.stderr

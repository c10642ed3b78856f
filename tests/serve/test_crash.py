"""An API write killed mid-request: ``vestis serve`` is SIGKILLed while it embeds a write of many items.
The catalog is left as it was before the write (one write is one transaction), the stale write lock
does not block the next writer, and the write sent again to a fresh server succeeds."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import httpx2
import pytest

from vestis.index.local import LocalStore

from .conftest import REPO_ROOT, data_url
from .test_poison import free_port

pytestmark = pytest.mark.slow


def start_server(index, log):
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "VESTIS_API_KEYS"}
    proc = subprocess.Popen([sys.executable, "-m", "vestis", "serve", "--catalog", str(index), "--port", str(port),
                             "--log-level", "warning"], cwd=REPO_ROOT, env=env, stdout=log,
                            stderr=subprocess.STDOUT)  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while True:
        try:
            if httpx2.get(url + "/readyz", timeout=2).status_code == 200:
                return proc, url
        except httpx2.TransportError:
            pass
        assert proc.poll() is None and time.monotonic() < deadline, "the server did not start"
        time.sleep(0.3)


def test_a_write_killed_mid_request_leaves_the_catalog_as_it_was(index_copy, outside_rows, tmp_path):
    with LocalStore.open(index_copy) as store:
        before, generation = store.count(), store.generation()
    items = [{"id": r["id"], "image": data_url(r["image"]),
              "metadata": {"productDisplayName": r["productDisplayName"] or "a product", "kind": r["articleType"]}}
             for r in outside_rows[:200]]  # fmt: skip
    n = len(items)
    with open(tmp_path / "server.log", "w") as log:
        proc, url = start_server(index_copy, log)
        answers = []

        def send():
            try:
                answers.append(httpx2.post(url + "/v1/catalogs/shop/items", json={"items": items}, timeout=300))
            except httpx2.HTTPError as exc:
                answers.append(exc)

        sender = threading.Thread(target=send)
        sender.start()
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not answers:  # kill once the write is embedding its photos
            if httpx2.get(url + "/v1/stats", timeout=10).json()["images"]["items"] > 0:
                break
            time.sleep(0.01)
        assert not answers, "the write finished before the kill"
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
        sender.join(60)
        assert answers and isinstance(answers[0], httpx2.HTTPError)
    with LocalStore.open(index_copy) as store:
        check = store.check()
        assert check["ok"], check
        assert (store.count(), store.generation()) == (before, generation)  # all or nothing: nothing
    with open(tmp_path / "server2.log", "w") as log:
        proc, url = start_server(index_copy, log)
        try:
            r = httpx2.post(url + "/v1/catalogs/shop/items", json={"items": items}, timeout=300)
            assert r.status_code == 200 and r.json()["added"] == n, r.text
            assert r.json()["total_items"] == before + n
        finally:
            proc.send_signal(signal.SIGINT)
            proc.wait(30)

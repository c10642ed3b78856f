"""Resident memory of ``vestis serve`` under large-but-allowed images: peak and after the burst.

Starts ``vestis serve`` (no catalog, the default model) in a subprocess on 127.0.0.1 and sends
bursts of ``--clients`` concurrent ``POST /v1/embeddings`` requests, each one 6000x6000 image
(36 MP, under the default 40 MP limit): black PNGs (about 35 KB each, the issue's case: no
draft decoding for PNG) and JPEG photos of the same size. It reads the server's resident set
from ``/proc`` (``VmRSS``, and ``VmHWM`` for the peak, reset before each scenario) and writes
``results/bench/serve_memory.json``. Every request must be answered with 200.

    python benchmarks/serve_memory.py [--clients 8] [--bursts 3] [--side 6000]

Traffic goes to 127.0.0.1 only; each burst is ``--clients`` requests.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import json
import os
import sys
import time
from pathlib import Path

import httpx2
import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from serve_load import REPO, free_port, machine  # noqa: E402

MiB = 1024 * 1024


def status(pid: int, field: str) -> int:
    """A ``/proc/PID/status`` field in bytes (VmRSS, VmHWM)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise KeyError(field)


def reset_peak(pid: int) -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0); False where the kernel does not allow it."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def images(side: int) -> dict[str, str]:
    black = io.BytesIO()
    Image.new("RGB", (side, side)).save(black, format="PNG", optimize=True)
    rng = np.random.default_rng(0)  # a photo-like JPEG: smooth gradients plus noise
    y, x = np.mgrid[0:side, 0:side].astype(np.float32) / side
    pixels = np.stack([x * 200, y * 180, (1 - x) * 160], -1) + rng.normal(0, 6, (side, side, 3))
    photo = io.BytesIO()
    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(photo, format="JPEG", quality=80)
    del pixels, x, y
    return {f"png {side}x{side} (black, {len(black.getvalue()) // 1024} KB)": "data:image/png;base64,"
            + base64.b64encode(black.getvalue()).decode(),
            f"jpeg {side}x{side} (photo, {len(photo.getvalue()) // 1024} KB)": "data:image/jpeg;base64,"
            + base64.b64encode(photo.getvalue()).decode()}  # fmt: skip


async def burst(url: str, image: str, clients: int) -> list[int]:
    async with httpx2.AsyncClient(base_url=url, timeout=300) as c:
        answers = await asyncio.gather(*(c.post("/v1/embeddings", json={"input": [image]}) for _ in range(clients)))
    return [r.status_code for r in answers]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clients", type=int, default=8, help="concurrent requests per burst")
    ap.add_argument("--bursts", type=int, default=3)
    ap.add_argument("--side", type=int, default=6000, help="image width and height in pixels")
    ap.add_argument("--out", type=Path, default=REPO / "results" / "bench" / "serve_memory.json")
    args = ap.parse_args()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if k != "VESTIS_API_KEYS"}
    cmd = [sys.executable, "-m", "vestis", "serve", "--port", str(port), "--log-level", "warning"]
    proc = __import__("subprocess").Popen(cmd, cwd=REPO, env=env)
    results: dict = {"machine": machine(), "clients": args.clients, "bursts": args.bursts, "scenarios": []}
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                if httpx2.get(url + "/readyz", timeout=2).status_code == 200:
                    break
            except httpx2.TransportError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("vestis serve did not start")
            time.sleep(0.3)
        small = "data:image/png;base64," + base64.b64encode(_small_png()).decode()
        for _ in range(2):  # warm-up: the encoder's working memory for a batch of this size is in the baseline
            asyncio.run(burst(url, small, args.clients))
        payloads = images(args.side)
        for name, image in payloads.items():
            time.sleep(1.0)
            before = status(proc.pid, "VmRSS")
            peak_reset = reset_peak(proc.pid)
            start = time.perf_counter()
            codes = []
            for _ in range(args.bursts):
                codes += asyncio.run(burst(url, image, args.clients))
            seconds = time.perf_counter() - start
            peak = status(proc.pid, "VmHWM")
            time.sleep(2.0)
            after = status(proc.pid, "VmRSS")
            row = {"scenario": name, "requests": len(codes), "ok": codes.count(200), "seconds": round(seconds, 2),
                   "rss_before_mib": round(before / MiB), "peak_rss_mib": round(peak / MiB),
                   "rss_after_mib": round(after / MiB), "peak_is_since_reset": peak_reset}  # fmt: skip
            results["scenarios"].append(row)
            print(f"{name:>34}: {row['ok']}/{row['requests']} ok in {row['seconds']} s; RSS {row['rss_before_mib']} "
                  f"-> peak {row['peak_rss_mib']} -> after {row['rss_after_mib']} MiB", flush=True)  # fmt: skip
    finally:
        proc.send_signal(2)
        try:
            proc.wait(30)
        except Exception:  # noqa: BLE001
            proc.kill()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1))
    if any(r["ok"] != r["requests"] for r in results["scenarios"]):
        raise SystemExit("some requests were not answered with 200")


def _small_png() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (64, 64), (120, 30, 30)).save(buf, format="PNG")
    return buf.getvalue()


if __name__ == "__main__":
    main()

"""Load on ``vestis serve`` over loopback: requests/s and p50/p99 latency, micro-batching on and off.

Starts ``vestis serve`` in a subprocess on 127.0.0.1 (a free port) over an index of the
bundled demo catalog (300 KAGL products) with the default model, then drives it with a
bounded asyncio client: ``--concurrency`` requests in flight, for ``--duration`` seconds per
scenario, after a short warm-up. Scenarios, one item per request as a shop's backend sends
them: text embeddings (product titles), image embeddings (product photos as data URLs) and
text search (k=10). Every request must be answered with 200: the run fails otherwise.

    python benchmarks/serve_load.py [--duration 20] [--concurrency 32] [--out results/bench/serve_load.json]

Before/after a change on a real catalog (issue #20's HTTP figure): ``--index DIR`` serves that
index instead of the demo one, ``--source TREE`` runs the server from another source tree
(``git worktree add /tmp/before <rev>``; it goes first on the server's PYTHONPATH), and
``--batching on`` keeps one mode:

    python benchmarks/serve_load.py --index KAGL40K --scenarios search --batching on --source /tmp/before

Traffic goes to 127.0.0.1 only, and every loop stops at its deadline.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx2
import pyarrow.parquet as pq

from vestis.data import demo_catalog_path

REPO = Path(__file__).resolve().parents[1]
SCENARIOS = ("text", "image", "search")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def payloads(table, scenario: str) -> list[tuple[str, dict]]:
    """(path, JSON body) of each request a scenario cycles through."""
    rows = table.to_pylist()
    titles = [r["productDisplayName"] or f"{r['baseColour'] or ''} {r['articleType'] or ''}".strip() for r in rows]
    titles = [t for t in titles if t]
    if scenario == "text":
        return [("/v1/embeddings", {"input": t, "model": "vestis-mini"}) for t in titles]
    if scenario == "image":
        urls = [f"data:image/jpeg;base64,{base64.b64encode(r['image']).decode()}" for r in rows if r["image"]]
        return [("/v1/embeddings", {"input": [u], "encoding_format": "base64"}) for u in urls]
    if scenario == "search":
        queries = sorted({f"{r['baseColour'] or ''} {r['articleType'] or ''}".strip().lower() for r in rows} - {""})
        return [("/v1/search", {"query": q, "k": 10}) for q in queries]
    raise ValueError(scenario)


async def drive(url: str, requests: list[tuple[str, dict]], *, concurrency: int, duration: float,
                warmup: float = 2.0, headers: dict | None = None) -> dict:  # fmt: skip
    """``concurrency`` workers cycle through ``requests`` until ``duration`` seconds have passed."""
    limits = httpx2.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    failures: list[str] = []
    sent = 0
    async with httpx2.AsyncClient(base_url=url, timeout=60, limits=limits, headers=headers) as client:

        async def worker(n: int, deadline: float, record: bool) -> None:
            nonlocal sent
            i = n
            while time.perf_counter() < deadline:
                path, body = requests[i % len(requests)]
                i += concurrency
                start = time.perf_counter()
                if record:
                    sent += 1
                try:
                    r = await client.post(path, json=body)
                except httpx2.HTTPError as exc:
                    if record:
                        failures.append(f"{type(exc).__name__}: {exc}")
                    continue
                if record:
                    latencies.append(time.perf_counter() - start)
                    statuses[r.status_code] = statuses.get(r.status_code, 0) + 1

        end = time.perf_counter() + warmup
        await asyncio.gather(*(worker(n, end, False) for n in range(concurrency)))
        start = time.perf_counter()
        await asyncio.gather(*(worker(n, start + duration, True) for n in range(concurrency)))
        elapsed = time.perf_counter() - start
    ok = statuses.get(200, 0)
    lat = sorted(latencies)

    def pct(p: float) -> float:
        return round(1000 * lat[min(len(lat) - 1, int(p * len(lat)))], 1) if lat else 0.0

    return {
        "requests": sent,
        "answered": len(latencies),
        "ok": ok,
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
        "failures": failures[:5],
        "dropped": sent - len(latencies),
        "seconds": round(elapsed, 2),
        "requests_per_s": round(ok / elapsed, 1),
        "p50_ms": pct(0.50),
        "p99_ms": pct(0.99),
        "mean_ms": round(1000 * statistics.fmean(lat), 1) if lat else 0.0,
    }


class Server:
    """``vestis serve`` in a subprocess on a free loopback port."""

    def __init__(self, index: Path, *, batching: bool, log: Path, source: Path | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        args = [sys.executable, "-m", "vestis", "serve", "--catalog", str(index), "--port", str(self.port),
                "--log-level", "warning", "--batching" if batching else "--no-batching"]  # fmt: skip
        env = {k: v for k, v in os.environ.items() if k != "VESTIS_API_KEYS"}
        if source is not None:  # another source tree's vestis, ahead of the installed one
            env["PYTHONPATH"] = os.pathsep.join(x for x in (str(source), env.get("PYTHONPATH")) if x)
        self.log = open(log, "w")  # noqa: SIM115
        # `python -m` puts its working directory first on sys.path: run in the tree whose vestis is meant
        self.proc = subprocess.Popen(args, cwd=source or REPO, env=env, stdout=self.log, stderr=subprocess.STDOUT)

    def __enter__(self) -> Server:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"vestis serve exited with {self.proc.returncode}; see {self.log.name}")
            try:
                if httpx2.get(self.url + "/readyz", timeout=2).status_code == 200:
                    return self
            except httpx2.TransportError:
                pass
            time.sleep(0.3)
        raise RuntimeError("vestis serve did not become ready in 180 s")

    def stats(self) -> dict:
        return httpx2.get(self.url + "/v1/stats", timeout=10).json()

    def __exit__(self, *exc) -> None:
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


def build_demo_index(folder: Path) -> Path:
    from vestis.index.build import build_index

    index = folder / "demo"
    build_index(demo_catalog_path(), index, quiet=True)
    return index


def machine() -> dict:
    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(),
            "load_average_at_start": [round(x, 2) for x in os.getloadavg()]}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--duration", type=float, default=20.0, help="measured seconds per scenario and mode")
    ap.add_argument("--concurrency", type=int, default=32, help="requests in flight")
    ap.add_argument("--scenarios", default=",".join(SCENARIOS))
    ap.add_argument("--out", type=Path, default=REPO / "results" / "bench" / "serve_load.json")
    ap.add_argument("--index", type=Path, help="serve this index instead of one built from the demo catalog")
    ap.add_argument("--source", type=Path, help="run the server from this source tree (before/after runs)")
    ap.add_argument("--batching", choices=("on", "off", "both"), default="both")
    args = ap.parse_args()
    scenarios = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    table = pq.read_table(demo_catalog_path())
    results: dict = {"machine": machine(), "concurrency": args.concurrency, "duration_s": args.duration,
                     "index": str(args.index) if args.index else "demo catalog (300 products)",
                     "source": str(args.source) if args.source else str(REPO), "runs": []}  # fmt: skip
    modes = {"on": (True,), "off": (False,), "both": (True, False)}[args.batching]
    with tempfile.TemporaryDirectory(prefix="vestis-load-") as tmp:
        index = args.index or build_demo_index(Path(tmp))
        for batching in modes:
            log = Path(tmp) / f"server-{batching}.log"
            with Server(index, batching=batching, log=log, source=args.source) as server:
                for scenario in scenarios:
                    run = asyncio.run(drive(server.url, payloads(table, scenario), concurrency=args.concurrency,
                                            duration=args.duration))  # fmt: skip
                    run.update(scenario=scenario, batching=batching)
                    results["runs"].append(run)
                    print(f"{scenario:>6} batching={'on ' if batching else 'off'} {run['requests_per_s']:7.1f} req/s "
                          f"p50 {run['p50_ms']:7.1f} ms  p99 {run['p99_ms']:7.1f} ms  "
                          f"answered {run['answered']}/{run['requests']}", flush=True)  # fmt: skip
                results.setdefault("batcher_stats", {})["on" if batching else "off"] = server.stats()
    print()
    print("| scenario | micro-batching | requests/s | p50 ms | p99 ms | requests | answered | non-200 |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for r in results["runs"]:
        bad = r["requests"] - r["ok"]
        print(f"| {r['scenario']} | {'on' if r['batching'] else 'off'} | {r['requests_per_s']} | {r['p50_ms']} | "
              f"{r['p99_ms']} | {r['requests']} | {r['answered']} | {bad} |")  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1))
    print(f"\nwrote {args.out}")
    problems = [r for r in results["runs"] if r["dropped"] or r["ok"] != r["requests"]]
    if problems:
        sys.exit(f"{len(problems)} runs had unanswered or failed requests")


if __name__ == "__main__":
    main()

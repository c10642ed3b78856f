"""Micro-batching: concurrent requests share encoder calls, with the same results as one at a time."""

from __future__ import annotations

import asyncio
import threading
import time

import httpx2
import numpy as np
import pytest

from vestis.errors import ImageError
from vestis.serve.app import ServeConfig, create_app
from vestis.serve.batching import BatchedEncoder, MicroBatcher, Overloaded

from .conftest import ServerThread, data_url


class Recorder:
    """fn(items) -> one row per item ([value, call number]); records each call's items."""

    def __init__(self, delay: float = 0.0, bad: object = None) -> None:
        self.calls: list[list] = []
        self.delay = delay
        self.bad = bad

    def __call__(self, items):
        self.calls.append(list(items))
        time.sleep(self.delay)
        if self.bad is not None and self.bad in items:
            raise ImageError(f"image {items.index(self.bad)}: cannot decode image data")
        return np.array([[float(x), len(self.calls)] for x in items], dtype=np.float32)


def run(coro):
    return asyncio.run(coro)


async def _with(batcher, body):
    await batcher.start()
    try:
        return await body()
    finally:
        await batcher.stop()


def test_concurrent_jobs_share_calls_and_keep_their_order():
    fn = Recorder(delay=0.02)
    b = MicroBatcher(fn, name="t", max_batch=16, max_wait_ms=20)

    async def body():
        return await asyncio.gather(*(b.submit([i, i + 100]) for i in range(20)))

    results = run(_with(b, body))
    for i, r in enumerate(results):
        assert r[:, 0].tolist() == [i, i + 100]
    assert len(fn.calls) < 20 and max(len(c) for c in fn.calls) <= 16
    assert sum(len(c) for c in fn.calls) == 40
    assert b.stats.requests == 20 and b.stats.calls == len(fn.calls)


def test_disabled_runs_one_request_at_a_time():
    fn = Recorder()
    b = MicroBatcher(fn, name="t", max_batch=16, max_wait_ms=20, enabled=False)

    async def body():
        return await asyncio.gather(*(b.submit([i]) for i in range(10)))

    results = run(_with(b, body))
    assert [r[0, 0] for r in results] == list(range(10)) and len(fn.calls) == 10


def test_wait_is_bounded():
    b = MicroBatcher(Recorder(), name="t", max_batch=64, max_wait_ms=30)

    async def body():
        start = time.perf_counter()
        await b.submit([1])
        return time.perf_counter() - start

    assert run(_with(b, body)) < 0.5  # a lone request waits ~30 ms for company, then runs


def test_one_bad_input_fails_only_its_request():
    fn = Recorder(bad=13)
    b = MicroBatcher(fn, name="t", max_batch=64, max_wait_ms=30)

    async def body():
        return await asyncio.gather(*(b.submit([i]) for i in (11, 12, 13, 14)), return_exceptions=True)

    results = run(_with(b, body))
    assert isinstance(results[2], ImageError)
    assert [r[0, 0] for i, r in enumerate(results) if i != 2] == [11, 12, 14]
    assert len(fn.calls[0]) == 4  # tried together first, then one by one


def test_queue_is_bounded():
    fn = Recorder(delay=0.2)
    b = MicroBatcher(fn, name="t", max_batch=1, max_wait_ms=0, max_queue=2)

    async def body():
        first = asyncio.ensure_future(b.submit([0]))
        await asyncio.sleep(0.05)  # the worker has taken it: the queue is empty again
        rest = [asyncio.ensure_future(b.submit([i])) for i in range(1, 5)]
        return await asyncio.gather(first, *rest, return_exceptions=True)

    results = run(_with(b, body))
    assert sum(isinstance(r, Overloaded) for r in results) == 2 and b.stats.rejected == 2


def test_batched_encoder_from_threads():
    fn = Recorder(delay=0.01)
    texts = MicroBatcher(fn, name="texts", max_batch=32, max_wait_ms=20)
    images = MicroBatcher(fn, name="images", max_batch=32, max_wait_ms=20)

    async def body():
        await images.start()
        enc = BatchedEncoder(type("E", (), {"name": "fake", "dim": 2})(), texts, images, timeout=10)
        out: dict[int, np.ndarray] = {}

        def worker(i):
            out[i] = enc.encode_texts([i])

        threads = [threading.Thread(target=worker, args=(i,)) for i in range(12)]
        await asyncio.to_thread(lambda: ([t.start() for t in threads], [t.join() for t in threads]))
        await images.stop()
        assert enc.name == "fake" and enc.dim == 2
        with pytest.raises(RuntimeError, match="event loop"):
            enc.encode_texts(["on the loop"])
        return out

    out = run(_with(texts, body))
    assert {i: v[0, 0] for i, v in out.items()} == {i: i for i in range(12)}
    assert len(fn.calls) < 12


# ----------------------------------------------------------- through the real server


class CountingEncoder:
    """The real encoder, counting its calls."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.text_calls = 0
        self.image_calls = 0

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def encode_texts(self, texts, **kw):
        self.text_calls += 1
        return self.inner.encode_texts(texts, **kw)

    def encode_images(self, images, **kw):
        self.image_calls += 1
        return self.inner.encode_images(images, **kw)


@pytest.mark.parametrize("batching", [True, False])
def test_server_batches_concurrent_requests(mini, catalog_table, batching):
    enc = CountingEncoder(mini)
    texts = [f"{colour} {kind}" for colour in ("red", "navy", "black", "white") for kind in
             ("summer dress", "leather boots", "denim jeans", "wool scarf", "linen shirt", "sports shoes")]  # fmt: skip
    photos = catalog_table.column("image").to_pylist()[:12]
    config = ServeConfig(batching=batching, max_batch=64, max_wait_ms=20)
    with ServerThread(create_app(config, encoder=enc)) as server:
        warm_up = enc.text_calls  # the one text the server encodes before it says it is ready
        assert warm_up == 1 and enc.image_calls == 0

        async def main():
            async with httpx2.AsyncClient(base_url=server.url, timeout=60) as c:
                t = [c.post("/v1/embeddings", json={"input": x}) for x in texts]
                i = [c.post("/v1/embeddings", json={"input": [data_url(p)]}) for p in photos]
                responses = await asyncio.gather(*t, *i)
                stats = (await c.get("/v1/stats")).json()
            return responses, stats

        responses, stats = asyncio.run(main())
    assert all(r.status_code == 200 for r in responses)
    got = np.array([r.json()["data"][0]["embedding"] for r in responses])
    alone = np.concatenate([mini.encode_texts([x]) for x in texts] + [mini.encode_images([p]) for p in photos])
    np.testing.assert_allclose(got, alone, atol=1e-5)  # the same vectors as one request at a time
    assert stats["texts"]["requests"] == len(texts) and stats["images"]["requests"] == len(photos)
    if batching:
        assert enc.text_calls - warm_up < len(texts) and enc.image_calls < len(photos)
        assert stats["texts"]["mean_batch"] > 1
    else:
        assert enc.text_calls - warm_up == len(texts) and enc.image_calls == len(photos)

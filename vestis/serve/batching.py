"""Micro-batching: concurrent requests share one encoder call.

Each modality (texts, images) has a :class:`MicroBatcher`: requests put a job (their
items and a future) on a bounded queue; one worker task takes the oldest job, waits at
most ``max_wait_ms`` after that job arrived for others to join (fewer when the batch
fills up to ``max_batch`` items), and runs the encoder once for all of them in its own
thread, so the event loop keeps accepting requests meanwhile. While one batch runs, the
next one gathers: under load the wait costs nothing and batches grow by themselves.

A job never waits longer than ``max_wait_ms`` for company, the queue holds at most
``max_queue`` jobs (beyond that :class:`Overloaded`, answered 503 with Retry-After), and
a batch that fails (on one request's input, or on anything else) is re-run job by job, so
only the request that causes it gets the error. With ``enabled=False`` each job runs alone, in
arrival order: the one-request-at-a-time baseline the load benchmark compares with.

:class:`BatchedEncoder` lets synchronous library code (``Catalog.search``, label
embeddings) running in worker threads go through the same batchers.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from vestis.errors import VestisError

log = logging.getLogger("vestis.serve")


class Overloaded(VestisError):
    """The batcher's queue is full: the server is saturated (HTTP 503)."""


@dataclass
class _Job:
    items: list
    future: asyncio.Future
    arrived: float


@dataclass
class BatcherStats:
    requests: int = 0
    items: int = 0
    calls: int = 0  # encoder calls (one per batch, plus retries after a failed batch)
    largest_batch: int = 0
    rejected: int = 0
    busy_seconds: float = 0.0
    batch_sizes: collections.Counter = field(default_factory=collections.Counter)

    def to_dict(self) -> dict:
        return {
            "requests": self.requests,
            "items": self.items,
            "encoder_calls": self.calls,
            "mean_batch": round(self.items / self.calls, 2) if self.calls else 0.0,
            "largest_batch": self.largest_batch,
            "rejected": self.rejected,
            "busy_seconds": round(self.busy_seconds, 3),
        }


class MicroBatcher:
    """Groups concurrent ``submit`` calls into calls of ``fn(items)``.

    ``fn`` returns an array with one row per item, or a tuple of such arrays; each caller
    gets its own rows (of each).
    """

    def __init__(
        self,
        fn: Callable[[list], np.ndarray],
        *,
        name: str,
        max_batch: int = 64,
        max_wait_ms: float = 5.0,
        max_queue: int = 1024,
        enabled: bool = True,
    ) -> None:
        if max_batch < 1 or max_queue < 1 or max_wait_ms < 0:
            raise ValueError("max_batch and max_queue must be >= 1, max_wait_ms >= 0")
        self.fn = fn
        self.name = name
        self.max_batch = max_batch if enabled else 1
        self.max_wait = max_wait_ms / 1000.0 if enabled else 0.0
        self.max_queue = max_queue
        self.enabled = enabled
        self.stats = BatcherStats()
        self._jobs: collections.deque[_Job] = collections.deque()
        self._queued_items = 0
        self._wakeup: asyncio.Event | None = None
        self._task: asyncio.Task | None = None
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._wakeup = asyncio.Event()
        self._executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix=f"vestis-{self.name}")
        self._task = asyncio.create_task(self._run(), name=f"vestis-batcher-{self.name}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
        while self._jobs:
            job = self._jobs.popleft()
            if not job.future.done():
                job.future.set_exception(Overloaded("the server is shutting down"))
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None

    @property
    def queued(self) -> int:
        return len(self._jobs)

    # --------------------------------------------------------------------- submit

    async def submit(self, items: Sequence) -> np.ndarray:
        """Embed ``items`` (in one batch with whatever else is waiting); rows in order.

        A request of more than ``max_batch`` items is queued as several jobs of at most
        ``max_batch``, so no encoder call is ever larger (the label embeddings of the built-in
        articleType taxonomy are one request of 120 texts)."""
        if self._task is None or self._wakeup is None:
            raise RuntimeError(f"batcher {self.name} is not running")
        items = list(items)
        if not items:
            raise ValueError("nothing to embed")
        size = self.max_batch if self.enabled else len(items)
        chunks = [items[i : i + size] for i in range(0, len(items), size)]
        if len(self._jobs) + len(chunks) > self.max_queue:
            self.stats.rejected += 1
            raise Overloaded(f"the {self.name} queue is full ({self.max_queue} requests waiting); retry shortly")
        loop = asyncio.get_running_loop()
        jobs = [_Job(chunk, loop.create_future(), loop.time()) for chunk in chunks]
        self._jobs.extend(jobs)
        self._queued_items += len(items)
        self.stats.requests += 1
        self.stats.items += len(items)
        self._wakeup.set()
        if len(jobs) == 1:
            return await jobs[0].future
        try:
            return _concat(await asyncio.gather(*(job.future for job in jobs)))
        finally:
            for job in jobs:  # one part failed: the others are not waited for
                if not job.future.done():
                    job.future.cancel()

    def submit_threadsafe(self, items: Sequence, timeout: float | None = None) -> np.ndarray:
        """``submit`` from a worker thread (never from the event loop's own thread)."""
        if self._loop is None:
            raise RuntimeError(f"batcher {self.name} is not running")
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self._loop:
            raise RuntimeError("submit_threadsafe called on the event loop thread; await submit() instead")
        fut = asyncio.run_coroutine_threadsafe(self.submit(items), self._loop)
        try:
            return fut.result(timeout)
        except concurrent.futures.TimeoutError:
            fut.cancel()
            raise

    # --------------------------------------------------------------------- worker

    def _take_batch(self) -> list[_Job]:
        batch, n = [], 0
        while self._jobs:
            job = self._jobs[0]
            if job.future.done():  # the client went away
                self._jobs.popleft()
                self._queued_items -= len(job.items)
                continue
            if batch and n + len(job.items) > self.max_batch:
                break
            self._jobs.popleft()
            self._queued_items -= len(job.items)
            batch.append(job)
            n += len(job.items)
            if n >= self.max_batch:
                break
        return batch

    async def _run(self) -> None:
        assert self._wakeup is not None
        loop = asyncio.get_running_loop()
        while True:
            while not self._jobs:
                self._wakeup.clear()
                await self._wakeup.wait()
            deadline = self._jobs[0].arrived + self.max_wait
            while self._queued_items < self.max_batch:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                self._wakeup.clear()
                try:
                    await asyncio.wait_for(self._wakeup.wait(), remaining)
                except TimeoutError:
                    break
            batch = self._take_batch()
            if batch:
                try:
                    await self._execute(batch)
                except asyncio.CancelledError:
                    for job in batch:
                        if not job.future.done():
                            job.future.set_exception(Overloaded("the server is shutting down"))
                    raise

    def _call(self, items: list) -> np.ndarray:
        start = time.perf_counter()
        try:
            return self.fn(items)
        finally:
            self.stats.calls += 1
            self.stats.busy_seconds += time.perf_counter() - start

    async def _execute(self, batch: list[_Job]) -> None:
        loop = asyncio.get_running_loop()
        items = [x for job in batch for x in job.items]
        self.stats.largest_batch = max(self.stats.largest_batch, len(items))
        self.stats.batch_sizes[len(items)] += 1
        try:
            vectors = await loop.run_in_executor(self._executor, self._call, items)
        except Exception as exc:  # noqa: BLE001 - handed to the waiting request(s)
            if len(batch) == 1:
                _fail(batch[0], exc, self.name)
                return
            # whatever went wrong (a bad input, a tokenizer bug), one request must not fail the others:
            # run them one by one, so only the one that causes it gets the error
            for job in batch:
                try:
                    result = await loop.run_in_executor(self._executor, self._call, job.items)
                except Exception as exc:  # noqa: BLE001 - handed to the waiting request
                    _fail(job, exc, self.name)
                else:
                    _succeed(job, result)
            return
        start = 0
        for job in batch:
            _succeed(job, _rows(vectors, start, start + len(job.items)))
            start += len(job.items)


def _rows(result, start: int, stop: int):
    """Rows ``start:stop`` of an array, or of each array in a tuple."""
    if isinstance(result, tuple):
        return tuple(part[start:stop] for part in result)
    return result[start:stop]


def _concat(parts: list):
    """The rows of several results (arrays, or tuples of arrays) one after the other."""
    if isinstance(parts[0], tuple):
        return tuple(np.concatenate([p[i] for p in parts]) for i in range(len(parts[0])))
    return np.concatenate(parts)


def _succeed(job: _Job, value: np.ndarray) -> None:
    if not job.future.done():
        job.future.set_result(value)


def _fail(job: _Job, exc: BaseException, name: str = "") -> None:
    if not isinstance(exc, VestisError):  # a bug, not the client's input: the server's log says where
        log.error("%s: encoder call for one request failed", name, exc_info=exc)
    if not job.future.done():
        job.future.set_exception(exc)


class BatchedEncoder:
    """An encoder whose ``encode_texts``/``encode_images`` go through the server's batchers.

    Everything else (``name``, ``dim``, ``fingerprint``, ``logit_scale``, ``tokenizer``...)
    is the wrapped encoder's. Call it from worker threads only.
    """

    def __init__(self, encoder, texts: MicroBatcher, images: MicroBatcher, *, timeout: float | None = None) -> None:
        self._encoder = encoder
        self._texts = texts
        self._images = images
        self._timeout = timeout

    def __getattr__(self, name: str):
        return getattr(self._encoder, name)

    @property
    def wrapped(self):
        return self._encoder

    def encode_texts(self, texts: Sequence[str], *, batch_size: int | None = None) -> np.ndarray:
        return _first(self._texts.submit_threadsafe(list(texts), self._timeout))

    def encode_images(self, images: Sequence, *, batch_size: int | None = None) -> np.ndarray:
        return _first(self._images.submit_threadsafe(list(images), self._timeout))

    def __repr__(self) -> str:
        return f"<BatchedEncoder {self._encoder!r}>"


def _first(result):
    return result[0] if isinstance(result, tuple) else result
